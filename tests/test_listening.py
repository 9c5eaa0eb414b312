"""Blind listening tests: per-rater order, de-randomised A/B and CMOS, persistence and resume, statistics on
hand-made answers, and the UI driven in process through gradio_client."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eval import listening as L
from eval.stats import bootstrap_ci


def _wav(path: Path, freq: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(1600) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return str(path)


def _fake_run(root: Path, n: int = 6, systems=("base", "tuned")) -> Path:
    """A finished run folder as eval/run.py writes it (config.json, results.jsonl, audio/SYSTEM/...)."""
    run = root / "run"
    ref = _wav(root / "ref.wav", 100)
    cfg = dict(test_csv=str(root / "missing.csv"),
               systems=[dict(name=s, gpt="g", sovits="s", ref_audio=ref, ref_text="r", params={}) for s in systems])
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(cfg))
    with open(run / "results.jsonl", "w") as fh:
        for k, s in enumerate(systems):
            for i in range(n):
                rel = f"audio/{s}/u{i}_s0_t0.wav"
                _wav(run / rel, 200 + 50 * i + 7 * k)
                fh.write(json.dumps(dict(system=s, id=f"u{i}", sample=0, text=f"句子{i}", audio=rel)) + "\n")
    return run


def test_order_reproducible_per_rater_and_different_across_raters(tmp_path):
    test = L.create_test_from_run(_fake_run(tmp_path, n=8), "ab")
    o1, o1b, o2 = test.order("alice"), test.order(" alice "), test.order("bob")
    assert o1 == o1b == L.open_test(test.dir.parent.parent, "ab").order("alice")
    assert sorted(k for k, _ in o1) == sorted(k for k, _ in o2) == [it["key"] for it in test.items]
    assert o1 != o2
    assert {s for _, s in o1} == {True, False}  # the side is drawn per item
    # anonymised: stimuli names carry neither the system nor the sentence id
    for it in test.items:
        for key in ("audio_a", "audio_b"):
            assert not any(s in Path(it[key]).name for s in ("base", "tuned", it["id"] + "_"))
    mos = L.create_test_from_run(test.dir.parent.parent, "mos")
    assert len(mos) == 16 and all(s is False for _, s in mos.order("alice"))


def test_ab_and_cmos_are_derandomised(tmp_path):
    run = _fake_run(tmp_path)
    ab = L.create_test_from_run(run, "ab")
    # the rater always picks the side that plays "tuned": every answer must count for tuned, whatever the side
    for pos in range(len(ab)):
        t = ab.trial("carol", pos)
        it = ab._index[t.key]
        tuned_path = ab.dir / it["audio_b"]
        ab.answer("carol", pos, "A" if t.left == tuned_path else "B")
    res = ab.results(n_boot=200)
    rows = {r["system"]: r for r in res["rows"]}
    assert rows["tuned"]["count"] == len(ab) and rows["base"]["count"] == 0 and rows["tie"]["count"] == 0
    assert rows["tuned"]["mean"] == 1.0 and rows["tuned vs base"]["mean"] == 1.0
    swaps = [a["swapped"] for a in ab.all_answers()]
    assert True in swaps and False in swaps  # the raw display answers differ, the values do not
    assert {a["answer"] for a in ab.all_answers()} == {"A", "B"}

    cmos = L.create_test_from_run(run, "cmos")
    for pos in range(len(cmos)):
        t = cmos.trial("dan", pos)
        tuned_right = t.right == cmos.dir / cmos._index[t.key]["audio_b"]
        cmos.answer("dan", pos, 2 if tuned_right else -2)  # "tuned is better" in display terms
    r = cmos.results(n_boot=200)["rows"][0]
    assert r["system"] == "tuned vs base" and r["mean"] == 2.0 and r["n"] == len(cmos)


def test_answers_persisted_and_resumed(tmp_path):
    run = _fake_run(tmp_path, n=4)
    test = L.open_or_create(run, "mos")
    assert test.resume_position("eve") == 0
    test.answer("eve", 0, 4)
    test.answer("eve", 1, "2")
    test.answer("eve", 1, 3)  # changed answer: the last counts
    # a torn line (a killed process mid-write) is ignored and repaired on the next append
    with open(test.answers_path, "a") as fh:
        fh.write('{"rater": "eve", "key"')
    again = L.open_or_create(run, "mos")  # a new session: reads the same folder
    assert again.resume_position("eve") == 2 and again.resume_position("frank") == 0
    assert again.trial("eve", 1).answer == 3 and again.trial("eve", 2).answer is None
    again.answer("eve", 2, 5)
    lines = again.answers_path.read_text().splitlines()
    assert all(json.loads(x) for x in lines) and len(lines) == 4
    assert again.answered("eve") == 3
    with pytest.raises(L.ListeningError, match="whole number from 1 to 5"):
        again.answer("eve", 3, 6)
    with pytest.raises(L.ListeningError, match="rater name"):
        again.answer("  ", 3, 4)
    with pytest.raises(L.ListeningError, match="is a MOS test"):
        L.open_or_create(run, "ab", name="mos")
    with pytest.raises(L.ListeningError, match="already exists"):
        L.create_test_from_run(run, "mos")


def test_summary_statistics_on_hand_made_answers(tmp_path):
    run = _fake_run(tmp_path, n=3)
    test = L.create_test_from_run(run, "smos", name="sim")
    assert all(it.get("ref") for it in test.items)
    scores = {"base": [2, 3, 2], "tuned": [4, 5, 4]}
    by_key = {(it["system"], it["id"]): it["key"] for it in test.items}
    order = [k for k, _ in test.order("gus")]
    for (system, rid), key in by_key.items():
        test.answer("gus", order.index(key), scores[system][int(rid[1:])])
    res = test.write_results()
    rows = {r["system"]: r for r in res["rows"]}
    for s, vals in scores.items():
        ci = bootstrap_ci([float(v) for v in vals])
        assert rows[s]["n"] == 3 and rows[s]["mean"] == pytest.approx(np.mean(vals))
        assert (rows[s]["ci_lo"], rows[s]["ci_hi"]) == pytest.approx((ci.lo, ci.hi))
    assert json.loads((test.dir / "results.json").read_text())["rows"][0]["system"] == "base"
    csv_text = (test.dir / "results.csv").read_text()
    assert csv_text.splitlines()[0] == "system,metric,n,count,mean,ci_lo,ci_hi" and "tuned,SMOS,3" in csv_text
    assert "base" in (test.dir / "answers.csv").read_text()

    # explicit lists, A/B with hand-made values: 3 tuned, 1 base, 1 tie
    files_a = [_wav(tmp_path / "la" / f"{i}.wav", 300 + i) for i in range(5)]
    files_b = [_wav(tmp_path / "lb" / f"{i}.wav", 400 + i) for i in range(5)]
    ab = L.create_test_from_lists(run, "ab", {"x": files_a, "y": files_b}, name="lists")
    wanted = ["y", "y", "y", "x", "tie"]
    for pos, (key, swapped) in enumerate(ab.order("h")):
        w = wanted[int(ab._index[key]["id"])]
        ans = "tie" if w == "tie" else ("A" if (w == "x") != swapped else "B")
        ab.answer("h", pos, ans)
    rows = {r["system"]: r for r in ab.results()["rows"]}
    assert (rows["y"]["count"], rows["x"]["count"], rows["tie"]["count"]) == (3, 1, 1)
    assert rows["y"]["mean"] == pytest.approx(0.6) and rows["y vs x"]["mean"] == pytest.approx(0.4)
    index = L.write_listening_summary(run)
    assert index == run / "listening" / "index.html" and "lists" in index.read_text() and "sim" in index.read_text()
    assert [r["test"] for r in json.loads((run / "listening" / "summary.json").read_text())] == ["lists", "sim"]
    assert L.write_listening_summary(tmp_path / "empty") is None
    with pytest.raises(L.ListeningError, match="equal length"):
        L.create_test_from_lists(run, "cmos", {"x": files_a, "y": files_b[:2]}, name="bad")
    with pytest.raises(L.ListeningError, match="not found"):
        L.create_test_from_lists(run, "mos", {"x": [str(tmp_path / "nope.wav")]}, name="bad2")


def test_ui_in_process(tmp_path, monkeypatch):
    import gradio as gr
    from gradio_client import Client

    from config import load_settings
    from pages.listening import build_listening_ui

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio_tmp"))
    settings = load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "no_my_config.py")
    reports = Path(settings.reports_dir)
    run = _fake_run(reports, n=3)
    with gr.Blocks() as app:
        with gr.Tab("Listening"):
            build_listening_ui(settings)
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        names = {e for e in client.view_api(return_format="dict", print_info=False)["named_endpoints"]}
        assert {"/listening_start", "/listening_next", "/listening_previous", "/listening_results",
                "/listening_refresh_runs"} <= names
        upd = client.predict(None, api_name="/listening_refresh_runs")
        assert upd["value"] == run.name and [c[0] for c in upd["choices"]] == [run.name]  # names, no server paths
        with pytest.raises(Exception, match="rater name"):
            client.predict(str(run), "ab", "", "", "", api_name="/listening_start")
        out = client.predict(str(run), "ab", "", "", "ivy", api_name="/listening_start")
        status, progress, left, right = out[0], out[1], out[4]["value"], out[5]["value"]
        assert "Item 1 of 3" in progress and "A/B" in status and out[5]["visible"] is True
        assert left and right and Path(left).is_file() and Path(right).is_file()
        assert "base" not in left + right and "tuned" not in left + right
        with pytest.raises(Exception, match="choose an answer"):
            client.predict(None, api_name="/listening_next")
        out = client.predict("A", api_name="/listening_next")
        assert "Item 2 of 3" in out[1] and "answered 1 of 3" in out[1]
        out = client.predict("tie", api_name="/listening_previous")
        assert "Item 1 of 3" in out[1] and out[6]["value"] == "A" and out[4]["value"] == left
        test = L.open_test(run, "ab")
        assert test.answered("ivy") == 2  # both answers on disk at once

        # a new session (a closed tab) resumes at the first unanswered item
        client2 = Client(app.local_url, verbose=False)
        out = client2.predict(str(run), "ab", "", "", "ivy", api_name="/listening_start")
        assert "Item 3 of 3" in out[1] and "resuming" in out[0]
        out = client2.predict("B", api_name="/listening_next")
        assert "every item is answered" in out[0]
        md = client2.predict(api_name="/listening_results")
        assert "preference" in md and "95% CI" in md and "| tie |" in md
        assert (run / "listening" / "ab" / "results.csv").is_file() and (run / "listening" / "index.html").is_file()
        # MOS with the same rater: its own order, one player
        out = client2.predict(str(run), "mos", "", "", "ivy", api_name="/listening_start")
        assert "Item 1 of 6" in out[1] and out[5]["visible"] is False and out[4]["label"] == "Sample"
        # a Chinese browser: the statuses, the answer labels and the errors in Chinese
        zh = Client(app.local_url, verbose=False, headers={"Accept-Language": "zh-CN"})
        out = zh.predict(str(run), "cmos", "", "", "ivy", api_name="/listening_start")
        assert "第 1 项，共 3 项" in out[1] and "评分人 **ivy**" in out[0] and out[4]["label"] == "A"
        assert [c[0] for c in out[6]["choices"]][0] == "-3 A 好得多"
        with pytest.raises(Exception, match="请先选择答案"):
            zh.predict(None, api_name="/listening_next")
    finally:
        app.close()
