"""Evaluation loop (eval/run.py), report (eval/report.py) and CLI (python -m eval).

Inputs are validated with every bad row named; the end-to-end run uses the tiny fixture checkpoints (s1_v2 with
s2_v2 and s2_v2ProPlus), the tiny feature models and a tiny random CTranslate2 Whisper (garbage text, capped), so
with a CER threshold of 0 every utterance is re-rolled; an exception raised mid-run leaves a resumable folder.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from config import load_settings
from eval.run import (CSVFormatError, EvalCancelled, EvalError, EvalRunner, RunConfig, load_results, read_test_csv,
                      seed_for)
from gsv_core.errors import GSVError

REPO = Path(__file__).resolve().parents[1]
REF_TEXT = "你早上好，这是参考声音。"
FAST_ASR = dict(vad_filter=False, beam_size=1, max_new_tokens=4, temperature=0.0, compute_type="int8", device="cpu")


# ----------------------------------------------------------------------------------------------------------------
# inputs

def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tests.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_read_test_csv_good_rows(tmp_path):
    (tmp_path / "r.wav").write_bytes(b"x")
    p = _csv(tmp_path, "id,text,ref_audio,ref_text,lang\na1,今天天气很好。,,,\nb2,Hello there.,r.wav,参考,en\n")
    items = read_test_csv(p)
    assert [i.id for i in items] == ["a1", "b2"]
    assert items[0].lang == "zh" and items[0].ref_audio == ""
    assert items[1].lang == "en" and items[1].ref_audio == str(tmp_path / "r.wav") and items[1].line == 3


def test_read_test_csv_lists_every_bad_row(tmp_path):
    p = _csv(tmp_path, "id,text,ref_audio,lang\n"
                       "a,好的,,\n"
                       ",,,\n"            # line 3: empty row
                       "a,重复,,\n"       # line 4: duplicate id
                       "b,,,\n"           # line 5: empty text
                       "c,文本,missing.wav,\n"  # line 6: broken audio path
                       "d,文本,,fr\n"     # line 7: unknown language
                       ",文本,,\n"        # line 8: empty id
                       "e,ok,,\n")
    with pytest.raises(CSVFormatError) as err:
        read_test_csv(p)
    msg = str(err.value)
    assert "6 bad row(s)" in msg
    for line, what in [(3, "empty row"), (4, "duplicate id 'a' (first on line 2)"), (5, "empty text"),
                       (6, "reference audio not found"), (7, "unknown lang 'fr'"), (8, "empty id")]:
        assert f"line {line}: {what}" in msg
    assert "line 2" not in msg.replace("first on line 2", "") and "line 9" not in msg


@pytest.mark.parametrize("header, needle", [("name,text", "missing column(s) id"),
                                            ("id,sentence", "missing column(s) text"),
                                            ("id,text,speaker", "unknown column(s) speaker")])
def test_read_test_csv_bad_header(tmp_path, header, needle):
    with pytest.raises(CSVFormatError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        read_test_csv(_csv(tmp_path, header + "\nx,y\n"))


def test_read_test_csv_missing_or_empty_file(tmp_path):
    with pytest.raises(CSVFormatError, match="not found"):
        read_test_csv(tmp_path / "nope.csv")
    with pytest.raises(CSVFormatError, match="no test rows"):
        read_test_csv(_csv(tmp_path, "id,text\n"))


def test_run_config_from_yaml_relative_paths_and_errors(tmp_path):
    for name in ("g.ckpt", "s.pth", "r.wav", "t.csv"):
        (tmp_path / name).write_bytes(b"x")
    cfg = dict(test_csv="t.csv", asr_model="whisper", samples=2, seed=7,
               systems=[dict(name="base", gpt="g.ckpt", sovits="s.pth", ref_audio="r.wav", ref_text="hi",
                             top_k=5, max_tokens=10)],
               reroll=dict(max_error_rate=0.1, max_tries=3), asr=dict(beam_size=1))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    rc = RunConfig.from_file(tmp_path / "run.yaml")
    assert rc.test_csv == str(tmp_path / "t.csv") and rc.systems[0].gpt == str(tmp_path / "g.ckpt")
    assert rc.systems[0].params == {"top_k": 5, "max_tokens": 10} and rc.reroll.max_tries == 3
    assert RunConfig.from_dict(json.loads(json.dumps(rc.to_dict()))).fingerprint() == rc.fingerprint()

    bad = dict(cfg, systems=[dict(name="base", gpt="nope.ckpt", sovits="s.pth", colour=1),
                             dict(name="base", gpt="g.ckpt")], reroll=dict(max_tries=0), extra=1)
    with pytest.raises(EvalError) as err:
        RunConfig.from_dict(bad, base=tmp_path)
    msg = str(err.value)
    for needle in ("unknown key(s) extra", "gpt file not found", "unknown parameter(s) colour", "duplicate name",
                   "needs both gpt and sovits", "max_tries"):
        assert needle in msg, needle
    (tmp_path / "broken.yaml").write_text("systems: [", encoding="utf-8")
    with pytest.raises(EvalError, match="not valid YAML"):
        RunConfig.from_file(tmp_path / "broken.yaml")


def test_seeds_are_distinct_and_reproducible():
    seeds = {seed_for(1234, k, t) for k in range(5) for t in range(5)}
    assert len(seeds) == 25 and seed_for(1234, 2, 3) == seed_for(1234, 2, 3)
    assert all(0 <= s < 2**32 for s in seeds)


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "eval", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for cmd in ("run", "report", "asr"):
        assert cmd in out.stdout


# ----------------------------------------------------------------------------------------------------------------
# end to end with tiny models

@pytest.fixture(scope="module")
def e2e(tmp_path_factory, parity_dir, tiny_assets):
    from gsv_core.asr import ASRService
    from gsv_core.api import Engine
    from helpers.tiny_whisper import build_tiny_whisper

    tmp = tmp_path_factory.mktemp("eval_run")
    whisper = build_tiny_whisper(tmp / "whisper")
    settings = load_settings(environ={"GSV_HOME": str(tmp)}, my_config=tmp / "none.py")
    engine = Engine.open(settings, device="cpu", precision="fp32", bert_dir=tiny_assets["bert"],
                         hubert_dir=tiny_assets["hubert"], sv_path=tiny_assets["sv"], log_path=tmp / "tts_log.csv")
    csv_path = tmp / "tests.csv"
    csv_path.write_text("id,text,lang\ns1,今天天气很好。,zh\ns2,我们去公园散步吧！,zh\n", encoding="utf-8")
    systems = [dict(name=name, gpt=str(parity_dir / "s1_v2.ckpt"), sovits=str(parity_dir / sovits),
                    ref_audio=str(tiny_assets["ref"]), ref_text=REF_TEXT, max_tokens=8, top_k=5)
               for name, sovits in (("base", "s2_v2.pth.xz"), ("plus", "s2_v2ProPlus.pth.xz"))]
    cfg = dict(test_csv=str(csv_path), asr_model=str(whisper), asr_language="zh", systems=systems, seed=11,
               reroll=dict(max_error_rate=0.0, max_tries=2), asr=FAST_ASR, sv_path=str(tiny_assets["sv"]),
               batch_size=1)
    return dict(runner=EvalRunner(engine, ASRService(cpu_threads=2), settings), cfg=cfg, tmp=tmp, engine=engine)


class _Boom(Exception):
    pass


def test_run_interrupted_then_resumed_then_reported(e2e):
    runner, tmp = e2e["runner"], e2e["tmp"]
    config = RunConfig.from_dict(e2e["cfg"])
    run_dir = tmp / "run1"
    seen = []

    def crash_after_first(fraction, message):
        seen.append(message)
        if message.startswith("1/4"):
            raise _Boom("killed")

    with pytest.raises(_Boom):
        runner.run(config, run_dir, progress=crash_after_first)
    first = load_results(run_dir)
    assert len(first) == 1 and (run_dir / "config.json").is_file()
    assert RunConfig.from_dict(json.loads((run_dir / "config.json").read_text())).fingerprint() == config.fingerprint()
    # a torn line (process killed while writing) is ignored and cut before appending
    with open(run_dir / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"system": "base", "id": "s2"')

    calls = []
    real = e2e["engine"].synthesize_many

    def counting(requests, **kw):
        calls.extend((r.sovits_path, r.text, r.seed) for r in requests)
        return real(requests, **kw)

    e2e["engine"].synthesize_many = counting
    try:
        runner.run(config, run_dir)
    finally:
        del e2e["engine"].synthesize_many
    rows = load_results(run_dir)
    keys = [(r["system"], r["id"], r["sample"]) for r in rows]
    assert len(rows) == 4 and len(set(keys)) == 4
    assert rows[0] == first[0]  # the finished utterance was kept, not redone
    assert (first[0]["text"], first[0]["seed"]) not in [(c[1], c[2]) for c in calls if "s2_v2.pth" in str(c[0])]
    assert len(calls) == 3 * 2  # three utterances left, two tries each (CER threshold 0 always fails)
    for r in rows:
        assert r["n_tries"] == 2 and len(r["tries"]) == 2 and not r["passed"]
        assert [t["seed"] for t in r["tries"]] == [seed_for(11, 0, 0), seed_for(11, 0, 1)]
        for t in r["tries"]:
            assert (run_dir / t["audio"]).is_file()
            assert t["error_rate"] is not None and t["substitutions"] + t["deletions"] + t["hits"] == t["ref_len"]
            assert t["rtf"] > 0 and t["duration"] > 0 and -1.0 <= t["similarity"] <= 1.0
            assert "f0_mean" in t and "silence_ratio" in t
        best = min(r["tries"], key=lambda t: t["error_rate"])
        assert r["error_rate"] == best["error_rate"]

    pytest.importorskip("eval.stats")
    from eval.__main__ import main

    assert main(["report", str(run_dir)]) == 0
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "base" in html and "plus" in html and "data:image/png;base64," in html and "F0 contour s1#0" in html
    assert "src='audio/base/s1_s0_t" in html
    data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert data["systems"] == ["base", "plus"] and len(data["sentences"]) == 2
    summ = {s["system"]: s for s in data["summary"]}
    for name in ("base", "plus"):
        base_rows = [r for r in rows if r["system"] == name]
        s_sum = sum(r["substitutions"] + r["deletions"] + r["insertions"] for r in base_rows)
        n_sum = sum(r["ref_len"] for r in base_rows)
        assert summ[name]["error_rate"] == pytest.approx(s_sum / n_sum)
    assert {p["metric"] for p in data["pairwise"]} >= {"error_rate", "similarity"}
    assert all(p["verdict"].startswith("too few sentences") for p in data["pairwise"]), data["pairwise"]  # n = 2
    for name in ("utterances.csv", "summary.csv", "pairwise.csv", "sentences.csv"):
        assert (run_dir / name).stat().st_size > 0
    assert "Listening tests" not in html  # no listening test yet: no link

    # a blind test on this run's audio is linked from the rebuilt report
    from eval.listening import create_test_from_run

    mos = create_test_from_run(run_dir, "mos")
    mos.answer("rater1", 0, 4)
    assert main(["report", str(run_dir)]) == 0
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Listening tests" in html and "href='listening/index.html'" in html
    assert (run_dir / "listening" / "index.html").is_file()


def test_cancel_keeps_finished_and_changed_config_is_refused(e2e):
    runner, tmp = e2e["runner"], e2e["tmp"]
    config = RunConfig.from_dict(dict(e2e["cfg"], reroll=dict(max_tries=1)))
    run_dir = tmp / "run2"
    cancel = threading.Event()

    def cancel_after_first(fraction, message):
        if message.startswith("1/4"):
            cancel.set()

    with pytest.raises(EvalCancelled):
        runner.run(config, run_dir, progress=cancel_after_first, cancel=cancel)
    assert len(load_results(run_dir)) == 1
    changed = RunConfig.from_dict(dict(e2e["cfg"], seed=12, reroll=dict(max_tries=1)))
    with pytest.raises(EvalError, match="different configuration"):
        runner.run(changed, run_dir)
    with pytest.raises(GSVError, match="not an evaluation run folder"):
        from eval.report import build_report

        build_report(tmp)


def test_cli_run_with_config_then_report_and_bad_csv(e2e, tiny_assets):
    tmp = e2e["tmp"]
    env = dict(__import__("os").environ, GSV_HOME=str(tmp), GSV_MY_CONFIG=str(tmp / "none.py"), GSV_DEVICE="cpu",
               GSV_PRECISION="fp32", GSV_CPU_THREADS="2", GSV_BERT_DIR=str(tiny_assets["bert"]),
               GSV_HUBERT_DIR=str(tiny_assets["hubert"]), GSV_SV_PATH=str(tiny_assets["sv"]))
    cfg = dict(e2e["cfg"], reroll=dict(max_tries=1), systems=e2e["cfg"]["systems"][:1])
    (tmp / "cli.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    # the models are not in a model folder of these settings: refused like in the Eval tab
    refused = subprocess.run([sys.executable, "-m", "eval", "run", "--config", str(tmp / "cli.yaml"), "--run-dir",
                              str(tmp / "refused")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "is not one of the listed models" in refused.stderr
    weights_dir = str(Path(cfg["systems"][0]["gpt"]).parent)
    env.update(GSV_GPT_WEIGHT_DIRS=weights_dir, GSV_SOVITS_WEIGHT_DIRS=weights_dir)
    (tmp / "cli.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    run_dir = tmp / "cli_run"
    cmd = [sys.executable, "-m", "eval", "run", "--config", str(tmp / "cli.yaml"), "--run-dir", str(run_dir)]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (run_dir / "report.html").is_file() and len(load_results(run_dir)) == 2
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["seed"] == 11 and saved["systems"][0]["name"] == "base"
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "2/2 utterances already done" in again.stderr
    assert len(load_results(run_dir)) == 2

    bad_csv = tmp / "bad.csv"
    bad_csv.write_text("id,text\nx,\n,y\n", encoding="utf-8")
    (tmp / "bad.yaml").write_text(yaml.safe_dump(dict(cfg, test_csv=str(bad_csv))), encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "eval", "run", "--config", str(tmp / "bad.yaml"), "--run-dir",
                          str(tmp / "bad_run")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert "line 2: empty text" in bad.stderr and "line 3: empty id" in bad.stderr
