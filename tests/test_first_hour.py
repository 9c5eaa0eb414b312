"""Regression tests of issue 12 ("the bugs a new user hits in the first hour") that need no browser: an experiment
cannot be silently repurposed (item 4), the training status is one readable panel (item 5), the Eval tab's
baseline/finetuned defaults (item 10), the sweep form shows only its compare type's fields, long spectrograms keep
their shape and expected user errors print no traceback (item 11). Items 1-3 and 6-9 are tested beside the code
they fix (test_same_process, test_app, test_config, test_asr, test_launcher, test_tts_cli, test_engine); the
browser journey is tests/test_browser_first_hour.py."""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from config import load_settings


def _settings(tmp_path: Path):
    base = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")
    return dataclasses.replace(base, experiments_dir=tmp_path / "experiments",
                               gpt_weight_dirs=(tmp_path / "weights" / "gpt",),
                               sovits_weight_dirs=(tmp_path / "weights" / "sovits",))


# -- item 4 ------------------------------------------------------------------------------------------------------
def test_saved_experiment_is_not_repurposed(tmp_path):
    from gsv_core.finetune.pipeline import Experiment, FinetuneConfig, FinetuneError

    settings = _settings(tmp_path)
    lst = tmp_path / "a.list"
    lst.write_text("x.wav|s|ZH|你好。\n", encoding="utf-8")
    other = tmp_path / "b.list"
    other.write_text("y.wav|s|ZH|再见。\n", encoding="utf-8")
    exp = Experiment(settings, FinetuneConfig(name="voice", version="v2ProPlus", source=str(lst)))
    exp.save()
    before = exp.layout.experiment_json.read_text(encoding="utf-8")
    # before any features exist the settings may still change (nothing version-specific was made yet)
    Experiment(settings, FinetuneConfig(name="voice", version="v2Pro", source=str(other)))
    exp.save(features=dict(done=True))
    before = exp.layout.experiment_json.read_text(encoding="utf-8")
    with pytest.raises(FinetuneError, match="prepared for v2ProPlus"):
        Experiment(settings, FinetuneConfig(name="voice", version="v2Pro", source=str(lst)))
    with pytest.raises(FinetuneError, match="made from a.list"):
        Experiment(settings, FinetuneConfig(name="voice", version="v2ProPlus", source=str(other)))
    copy = tmp_path / "kept" / "source-123.list"  # a byte-identical copy (an upload) is the same dataset
    copy.parent.mkdir()
    shutil.copy(lst, copy)
    Experiment(settings, FinetuneConfig(name="voice", version="v2ProPlus", source=str(copy)))
    assert exp.layout.experiment_json.read_text(encoding="utf-8") == before


def test_jobs_refuse_repurposing_and_stay_idle(tmp_path):
    from gsv_core.finetune.jobs import FinetuneJobs
    from gsv_core.finetune.pipeline import Experiment, FinetuneConfig, FinetuneError

    settings = _settings(tmp_path)
    lst = tmp_path / "a.list"
    lst.write_text("x.wav|s|ZH|你好。\n", encoding="utf-8")
    Experiment(settings, FinetuneConfig(name="voice", version="v2ProPlus", source=str(lst))).save(
        features=dict(done=True))
    jobs = FinetuneJobs(settings)
    with pytest.raises(FinetuneError):
        jobs.start(FinetuneConfig(name="voice", version="v2Pro", source=str(lst)), ("data",))
    assert jobs.status().state == "idle" and not jobs.running()


# -- item 5 ------------------------------------------------------------------------------------------------------
def test_status_panel_is_one_readable_block():
    from gsv_core.finetune.jobs import FinetuneJobs, JobStatus
    from pages.finetune import _status_html

    jobs = FinetuneJobs(object())
    jobs._status = JobStatus(state="running", experiment="voice", stages=("data", "features", "s2", "s1"),
                             started=time.time() - 75)
    jobs._progress(0.46, "[s2] epoch 1/8 step 12/96 mel 21.3 ETA 3:20")
    st = jobs.status()
    assert st.stage == "s2" and st.stage_number == 3 and st.message.startswith("epoch 1/8")
    html = _status_html(st)
    assert "stage 3/4" in html and "SoVITS training" in html and "46%" in html and "elapsed 1:1" in html
    assert html.count("ETA") == 1  # the trainer's own estimate only: no second, contradicting one
    failed = JobStatus(state="failed", experiment="voice", error="RuntimeError: boom <b>", started=time.time())
    assert "boom &lt;b&gt;" in _status_html(failed) and "#c0392b" in _status_html(failed)
    assert _status_html(JobStatus()) .count("No job running.") == 1


# -- item 10 -----------------------------------------------------------------------------------------------------
def test_eval_defaults_baseline_is_the_base_model(tmp_path, parity_dir):
    from gsv_core.weights import default_comparison

    settings = _settings(tmp_path)
    pm = Path(settings.pretrained_dir)
    (pm / "v2Pro").mkdir(parents=True)
    shutil.copy(parity_dir / "s1_v2.ckpt", pm / "s1v3.ckpt")
    shutil.copy(parity_dir / "s2_v2ProPlus.pth.xz", pm / "v2Pro" / "s2Gv2ProPlus.pth")
    gdir, sdir = settings.gpt_weight_dirs[0], settings.sovits_weight_dirs[0]
    gdir.mkdir(parents=True)
    sdir.mkdir(parents=True)
    for i, epoch in enumerate((5, 10, 15)):  # natural order puts e5 first; the newest is e15
        for folder, name in ((gdir, f"voice-e{epoch}.ckpt"), (sdir, f"voice_e{epoch}_s{epoch * 10}.pth")):
            (folder / name).write_bytes(b"x")
            os.utime(folder / name, (1_000_000 + i, 1_000_000 + i))
    base, tuned = default_comparison(settings, "GPT")
    assert Path(base).name == "s1v3.ckpt" and Path(tuned).name == "voice-e15.ckpt"
    base, tuned = default_comparison(settings, "SoVITS")
    assert Path(base).name == "s2Gv2ProPlus.pth" and Path(tuned).name == "voice_e15_s150.pth"
    shutil.rmtree(pm)  # no base models: the oldest finetuned export is the baseline
    base, tuned = default_comparison(settings, "GPT")
    assert Path(base).name == "voice-e5.ckpt" and Path(tuned).name == "voice-e15.ckpt"


def test_eval_tab_fills_baseline_and_finetuned(tmp_path, parity_dir):
    import gradio as gr

    from pages.eval import build_eval_tab
    from pages.services import Services

    settings = _settings(tmp_path)
    pm = Path(settings.pretrained_dir)
    pm.mkdir(parents=True)
    shutil.copy(parity_dir / "s1_v2.ckpt", pm / "s1v3.ckpt")
    gdir = settings.gpt_weight_dirs[0]
    gdir.mkdir(parents=True)
    shutil.copy(parity_dir / "s1_v2.ckpt", gdir / "voice-e15.ckpt")
    with gr.Blocks():
        c = build_eval_tab(settings, Services(settings, asr=object()))
    # the dropdowns hold list labels (folder/name, or "pretrained ... · name"), not server paths
    assert c["gpt_a"].value.endswith("s1v3.ckpt") and c["name_a"].value == "baseline"
    assert c["gpt_b"].value.endswith("/voice-e15.ckpt") and c["name_b"].value == "finetuned"


# -- item 11 -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compare, shown", [("top_k", (True, False, False)), ("kpt", (False, True, False)),
                                            ("models", (False, False, True)), ("none", (False, False, False)),
                                            ("ref_audio", (False, False, False)), ("full", (True, False, False))])
def test_sweep_form_shows_only_its_fields(compare, shown):
    from pages.refaudio import sweep_fields_visibility

    assert tuple(u["visible"] for u in sweep_fields_visibility(compare)) == shown


def test_long_result_spectrogram_keeps_its_shape(tmp_path):
    from PIL import Image

    from refaudio.plots import MAX_SPECTROGRAM_COLUMNS, spectrogram_png

    sr = 32000
    wav = (0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * sr) / sr)).astype(np.float32)  # a minute
    w, h = Image.open(spectrogram_png(wav, sr, tmp_path / "long.png")).size
    assert w <= MAX_SPECTROGRAM_COLUMNS + 1 and h == 257
    w_short, _ = Image.open(spectrogram_png(wav[: 2 * sr], sr, tmp_path / "short.png")).size
    assert w_short < MAX_SPECTROGRAM_COLUMNS  # short results keep one column per frame


def test_user_errors_print_no_traceback(capfd):
    import gradio as gr
    from gradio_client import Client

    from gsv_core.errors import GSVError
    from pages.common import user_errors

    @user_errors
    def refuse(x):
        raise GSVError("the text is empty")

    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(refuse, box, box, api_name="refuse")
    demo.queue().launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        with pytest.raises(Exception, match="the text is empty"):
            Client(demo.local_url, verbose=False).predict("x", api_name="/refuse")
    finally:
        demo.close()
    assert "Traceback" not in capfd.readouterr().err
