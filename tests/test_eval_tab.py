"""The Eval tab: in process through its api_names with gradio_client (a run on the tiny fixture models and a tiny
random Whisper gives the per-system summary, the pairwise comparison and report files; a malformed CSV lists its bad
rows in the page; an existing run's report is rebuilt), and in a headless browser (the tab runs a tiny evaluation
and the produced report.html opens; screenshot test-output/browser/eval_report.png)."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from test_app import app_settings, serve_app

REF_TEXT = "你早上好，这是参考声音。"
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "browser"


def _settings(root: Path, parity_dir, tiny_assets):
    from helpers.tiny_whisper import build_tiny_whisper

    build_tiny_whisper(root / "whisper" / "tiny-random")
    return dataclasses.replace(app_settings(root, parity_dir, tiny_assets), whisper_dir=root / "whisper",
                               reports_dir=root / "reports", cpu_threads=2)


@pytest.fixture(scope="module")
def served(tmp_path_factory, parity_dir, tiny_assets):
    from gradio_client import Client

    root = tmp_path_factory.mktemp("eval_tab")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    settings = _settings(root, parity_dir, tiny_assets)
    app = serve_app(settings)
    try:
        yield {"app": app, "client": Client(app.local_url, verbose=False), "root": root, "settings": settings,
               "services": app.gsv_services}
    finally:
        app.close()


def _inputs(served, tiny_assets, csv_path, run_name, **kw):
    from gradio_client import handle_file

    services = served["services"]
    gpt = services.gpt_choices()[0][1]
    sovits = {label.split("/")[-1]: v for label, v in services.sovits_choices()}
    whisper = str(served["settings"].whisper_dir / "tiny-random")
    values = dict(csv_file=None, csv_path=str(csv_path), text_lang="zh", name_a="base", gpt_a=gpt,
                  sovits_a=sovits["s2_v2.pth.xz"], name_b="plus", gpt_b=gpt, sovits_b=sovits["s2_v2ProPlus.pth.xz"],
                  ref_audio=handle_file(str(tiny_assets["ref"])), ref_text=REF_TEXT, ref_lang="zh", asr_model=whisper,
                  asr_lang="zh", asr_beam=1, asr_vad=False, asr_max_tokens=4, samples=1, seed=11, top_k=5,
                  temperature=1.0, max_tokens=8, max_error="0", min_sim="", max_tries=2, run_name=run_name)
    values.update(kw)
    return list(values.values())


def test_asr_models_listed_and_tab_built(served):
    info = served["client"].view_api(return_format="dict", print_info=False)
    names = set(info["named_endpoints"])
    assert {"/eval_run", "/eval_cancel", "/eval_rebuild_report", "/eval_refresh"} <= names
    out = served["client"].predict(None, None, None, None, None, api_name="/eval_refresh")
    asr = out[4]
    assert asr["value"] == str(served["settings"].whisper_dir / "tiny-random")


def test_run_gives_summary_pairwise_and_report(served, tiny_assets):
    root = served["root"]
    csv_path = root / "tests.csv"
    csv_path.write_text("id,text,lang\ns1,今天天气很好。,zh\ns2,我们去公园散步吧！,zh\n", encoding="utf-8")
    status, summary, pairwise, files, frame, rebuild = served["client"].predict(
        *_inputs(served, tiny_assets, csv_path, "tab_run"), api_name="/eval_run")
    run_dir = served["settings"].reports_dir / "tab_run"
    assert "Done" in status and "4 utterances" in status, status
    rows = {r[0]: r for r in summary["data"]}
    assert set(rows) == {"base", "plus"}
    cols = summary["headers"]
    for name in ("base", "plus"):
        r = dict(zip(cols, rows[name]))
        assert r["utterances"] == 2 and r["tries"] == 4 and r["rerolled"] == 2  # CER threshold 0: always re-rolled
        assert 0 <= float(r["error_rate"]) and int(r["ref_len"]) > 0
    metrics = {r[2] for r in pairwise["data"]}
    assert {"error_rate", "similarity"} <= metrics
    assert all(r[0] == "base" and r[1] == "plus" for r in pairwise["data"])
    names = {Path(f).name for f in files}
    assert {"report.html", "report.json", "summary.csv", "pairwise.csv"} <= names
    assert (run_dir / "report.html").is_file() and (run_dir / "test.csv").is_file()
    assert "<iframe" in frame and "report.html" in frame
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["seed"] == 11 and [s["name"] for s in saved["systems"]] == ["base", "plus"]
    assert saved["systems"][0]["params"]["max_tokens"] == 8 and saved["reroll"]["max_tries"] == 2
    assert rebuild["value"] == str(run_dir) and str(run_dir) in str(rebuild["choices"])

    # the report is served from the run folder (the iframe's URL)
    import re
    import urllib.request

    url = re.search(r"src='([^']+)'", frame).group(1)
    with urllib.request.urlopen(served["app"].local_url.rstrip("/") + url, timeout=30) as r:
        assert r.status == 200 and "Evaluation report" in r.read().decode("utf-8")

    # the same run again resumes (nothing redone) and a rebuild reads the folder back
    again = served["client"].predict(*_inputs(served, tiny_assets, csv_path, "tab_run"), api_name="/eval_run")
    assert "Done" in again[0] and len((run_dir / "results.jsonl").read_text().splitlines()) == 4
    (run_dir / "report.html").unlink()
    status, summary2, *_ = served["client"].predict(str(run_dir), api_name="/eval_rebuild_report")
    assert "rebuilt" in status and (run_dir / "report.html").is_file() and summary2["data"] == summary["data"]


def test_bad_csv_lists_bad_rows_and_bad_inputs_are_messages(served, tiny_assets):
    from gradio_client.exceptions import AppError

    root = served["root"]
    bad = root / "bad.csv"
    bad.write_text("id,text,ref_audio\na,好的,\n,,\nb,,\nc,文本,missing.wav\na,重复,\n", encoding="utf-8")
    status, summary, pairwise, files, frame, _ = served["client"].predict(
        *_inputs(served, tiny_assets, bad, "bad_run"), api_name="/eval_run")
    assert "Malformed test CSV" in status and "4 bad row(s)" in status
    for needle in ("line 3: empty row", "line 4: empty text", "line 5: reference audio not found",
                   "line 6: duplicate id"):
        assert needle in status, (needle, status)
    assert summary["data"] in ([], [[""] * len(summary["headers"])]) and not frame
    assert not (served["settings"].reports_dir / "bad_run").exists()

    with pytest.raises(AppError, match="choose a test CSV"):
        served["client"].predict(*_inputs(served, tiny_assets, "", "x"), api_name="/eval_run")
    ok = root / "ok.csv"
    ok.write_text("id,text\na,好\n", encoding="utf-8")
    with pytest.raises(AppError, match="threshold must be a number"):
        served["client"].predict(*_inputs(served, tiny_assets, ok, "x", max_error="abc"), api_name="/eval_run")
    with pytest.raises(AppError, match="run folder name"):
        served["client"].predict(*_inputs(served, tiny_assets, ok, "../up"), api_name="/eval_run")
    with pytest.raises(AppError, match="not an evaluation run folder"):
        served["client"].predict(str(root), api_name="/eval_rebuild_report")
    assert served["client"].predict(api_name="/eval_cancel") == "No evaluation is running."


# ----------------------------------------------------------------------------------------------------------------
# browser

@pytest.mark.skipif(not __import__("test_browser").CHROMIUM, reason="Debian chromium is not installed")
def test_browser_eval_run_and_report(tmp_path_factory, parity_dir, tiny_assets):
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, _alive

    root = tmp_path_factory.mktemp("eval_browser")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    settings = _settings(root, parity_dir, tiny_assets)
    csv_path = root / "tests.csv"
    csv_path.write_text("id,text,lang\ns1,今天天气很好。,zh\n", encoding="utf-8")
    SHOTS.mkdir(parents=True, exist_ok=True)
    app = serve_app(settings)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(app.local_url, wait_until="load")
            page.get_by_role("tab", name="Eval").click()
            page.locator("#eval-csv-path textarea, #eval-csv-path input").first.fill(str(csv_path))
            page.locator("#eval-ref-audio input[type=file]").set_input_files(str(tiny_assets["ref"]))
            page.wait_for_timeout(500)
            page.locator("#eval-ref-text textarea").fill(REF_TEXT)
            for sel, value in (("#eval-max-tokens", "8"), ("#eval-run-name", None)):
                box = page.locator(f"{sel} input, {sel} textarea").first
                box.fill(value or "browser_run")
                box.press("Tab")
            page.get_by_label("ASR VAD filter").uncheck()
            page.get_by_label("ASR max tokens (0 = no cap)").fill("4")
            page.get_by_label("ASR beam size").fill("1")
            page.locator("#eval-run").click()
            page.locator("#eval-status").get_by_text("Done").wait_for(timeout=300_000)
            page.screenshot(path=str(SHOTS / "eval_tab_done.png"), full_page=True)
            summary = page.locator("#eval-summary").inner_text()
            assert "baseline" in summary and "finetuned" in summary
            saved = json.loads((settings.reports_dir / "browser_run" / "config.json").read_text(encoding="utf-8"))
            assert saved["reroll"] == dict(max_error_rate=None, min_similarity=None, max_tries=1)
            assert saved["systems"][0]["params"]["max_tokens"] == 8
            frame = page.frame_locator("#eval-report iframe")
            frame.get_by_text("Evaluation report").first.wait_for(timeout=30_000)
            # the report itself, opened in the browser from the run folder
            href = page.locator("#eval-report a").first.get_attribute("href")
            report = browser.new_page(viewport={"width": 1400, "height": 1400})
            report.goto(app.local_url.rstrip("/") + href, wait_until="load")
            report.get_by_text("Per system").wait_for()
            assert report.locator("img").count() >= 1 and report.locator("audio").count() >= 2
            assert report.evaluate("document.querySelector('audio').src").startswith("http")
            report.screenshot(path=str(SHOTS / "eval_report.png"), full_page=True)
            # a malformed CSV lists the bad rows in the page
            bad = root / "bad.csv"
            bad.write_text("id,text\nx,\n,y\n", encoding="utf-8")
            page.locator("#eval-csv-path textarea, #eval-csv-path input").first.fill(str(bad))
            page.locator("#eval-run").click()
            page.locator("#eval-status").get_by_text("line 2: empty text").wait_for(timeout=60_000)
            assert "line 3: empty id" in page.locator("#eval-status").inner_text()
            page.screenshot(path=str(SHOTS / "eval_bad_csv.png"), full_page=True)
            assert _alive(app.local_url)
            browser.close()
    finally:
        app.close()


def test_cancel_stops_the_run_and_keeps_finished(served, tiny_assets):
    import time

    root = served["root"]
    csv_path = root / "cancel.csv"
    csv_path.write_text("id,text\n" + "".join(f"c{i},今天天气很好。\n" for i in range(6)), encoding="utf-8")
    client = served["client"]
    job = client.submit(*_inputs(served, tiny_assets, csv_path, "cancel_run", max_tries=1), api_name="/eval_run")
    results = served["settings"].reports_dir / "cancel_run" / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (results.is_file() and results.read_text().strip()):
        time.sleep(0.05)
    assert "Cancelling" in client.predict(api_name="/eval_cancel")
    status = job.result(timeout=120)[0]
    assert "Cancelled" in status, status
    done = len(results.read_text().splitlines())
    assert 1 <= done < 12
