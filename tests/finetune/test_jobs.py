"""FinetuneJobs: one background job at a time, status while running, cancel, follow-up, failures kept readable."""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gsv_core.errors import GSVError
from gsv_core.finetune.jobs import FinetuneJobs, JobBusyError
from gsv_core.finetune.pipeline import Experiment, FinetuneConfig


@pytest.fixture()
def settings(tmp_path):
    from config import load_settings

    base = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    return dataclasses.replace(base, experiments_dir=tmp_path / "exp", device="cpu", precision="fp32")


def _dataset(tmp_path: Path, n: int = 12) -> Path:
    sr = 32000
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        t = np.arange(int(3.0 * sr)) / sr
        f0 = 140 + 5 * i
        wav = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
        wav = np.concatenate([np.zeros(3200), wav + 0.002 * rng.standard_normal(len(t)), np.zeros(3200)])
        path = tmp_path / f"c{i}.wav"
        sf.write(path, wav.astype(np.float32), sr)
        lines.append(f"{path}|spk|zh|今天天气很好我们一起去公园散步。")
    lst = tmp_path / "d.list"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lst


def test_job_runs_stage_then_follow_up_and_refuses_a_second_job(settings, tmp_path):
    jobs = FinetuneJobs(settings)
    gate = threading.Event()
    seen = {}

    def follow_up(progress, cancel):
        progress(0.5, "half")
        gate.wait(20)
        seen["exports"] = Experiment.open(settings, "a").layout.split_list("train").is_file()
        return "ranked"

    cfg = FinetuneConfig(name="a", source=str(_dataset(tmp_path)))
    jobs.start(cfg, ("data",), follow_up=follow_up)
    with pytest.raises(JobBusyError, match="still running"):
        jobs.start(FinetuneConfig(name="b", source=str(tmp_path / "d.list")), ("data",))
    deadline = time.monotonic() + 60
    while jobs.status().stage != "select" and time.monotonic() < deadline:
        time.sleep(0.05)
    st = jobs.status()
    assert st.state == "running" and 0.85 <= st.fraction < 1.0 and st.stages == ("data", "select")
    assert st.message == "half" and st.stage_number == 2  # "[select] half": the stage is parsed off the message
    gate.set()
    st = jobs.wait(60)
    assert st.state == "done" and st.fraction == 1.0 and st.result == "ranked" and seen["exports"]
    assert any("clips kept" in line for line in st.log)
    assert Experiment.open(settings, "a").stage_records()["data"]["done"]


def test_failure_is_reported_and_a_failed_follow_up_keeps_the_training_result(settings, tmp_path):
    jobs = FinetuneJobs(settings)
    bad = tmp_path / "empty.list"
    bad.write_text("nothing|here\n", encoding="utf-8")
    jobs.start(FinetuneConfig(name="bad", source=str(bad)), ("data",))
    st = jobs.wait(60)
    assert st.state == "failed" and "invalid_row" in st.error and "cleaning_report.csv" in st.error

    def no_asr(progress, cancel):
        raise GSVError("no faster-whisper model found")

    jobs.start(FinetuneConfig(name="ok", source=str(_dataset(tmp_path))), ("data",), follow_up=no_asr)
    st = jobs.wait(60)
    assert st.state == "done" and "selection not done" in st.message and "faster-whisper" in st.error


def test_cancel_stops_the_running_stage(settings, tmp_path):
    jobs = FinetuneJobs(settings)
    assert not jobs.cancel()  # nothing running
    jobs.start(FinetuneConfig(name="c", source=str(_dataset(tmp_path, 30))), ("data",))
    jobs.cancel()
    st = jobs.wait(60)
    assert st.state in ("cancelled", "done")  # a very fast stage may finish before it looks at the flag
    if st.state == "cancelled":
        assert "again" in st.message


def test_asr_transcript_check_is_wired_through_the_pipeline(settings, tmp_path):
    """With asr_check set, the data stage transcribes every clean clip: a random Whisper hears garbage, so every
    clip fails asr_mismatch and the empty-dataset error names that rule; without a transcriber it refuses."""
    from gsv_core.asr import ASRService, transcriber
    from gsv_core.finetune.data import EmptyDatasetError
    from gsv_core.finetune.pipeline import FinetuneError
    from helpers.tiny_whisper import build_tiny_whisper

    model = build_tiny_whisper(tmp_path / "whisper" / "tiny")
    cfg = FinetuneConfig(name="asr", source=str(_dataset(tmp_path, 4)), asr_check=str(model))
    exp = Experiment(settings, cfg)
    with pytest.raises(FinetuneError, match="transcriber"):
        exp.run(["data"])
    heard = []
    base = transcriber(ASRService(tmp_path / "whisper"), model, max_new_tokens=6)

    def transcribe(path, lang):
        heard.append(lang)
        return base(path, lang)

    with pytest.raises(EmptyDatasetError, match="asr_mismatch"):
        exp.run(["data"], transcribe=transcribe)
    assert heard == ["zh"] * 4


def test_selection_ranking_ties_and_order():
    from eval.selection import Candidate, _rank

    cands = [Candidate(n, f"{n}.ckpt", f"{n}.pth") for n in ("a", "b", "c")] + [Candidate("base", "x", "y", True)]
    summary = [dict(system="a", error_rate=0.10, similarity_mean=0.80), dict(system="b", error_rate=0.10,
               similarity_mean=0.90), dict(system="c", error_rate=0.05, similarity_mean=0.70),
               dict(system="base", error_rate=0.01, similarity_mean=0.99)]
    ranked = _rank(summary, cands)
    by = {r["system"]: r for r in ranked}
    assert by["a"]["rank_cer"] == by["b"]["rank_cer"] == 2.5 and by["c"]["rank_cer"] == 1
    assert [by[k]["rank_similarity"] for k in "bac"] == [1, 2, 3]
    # b: (2.5 + 1) / 2 = 1.75 beats c: (1 + 3) / 2 = 2 and a: 2.25; the baseline is listed last, never best
    assert [r["system"] for r in ranked] == ["b", "c", "a", "base"]
    assert by["b"]["best"] and not by["base"]["best"] and by["base"]["rank"] is None
