"""The Eval tab: in process through its api_names with gradio_client (a run on the tiny fixture models and a tiny
random Whisper, plus a system of existing audio from the CSV's audio:NAME column, gives the per-system summary with
both error-rate aggregations, the per-bucket table, the pairwise comparison and report files; every engine parameter
of a system reaches its config; a punctuation-variants run gives the variant deltas; a malformed CSV lists its bad
rows in the page; an existing run's report is rebuilt with other length buckets), and in a headless browser (the tab
runs a tiny evaluation and the produced report.html opens with its bucket, F0/energy and plot sections; screenshots
test-output/browser/eval_*.png)."""
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
    """The /eval_run inputs by name (pages.eval.run_input_names): engine parameters at their defaults but top_k 5
    and max_tokens 8 for both systems."""
    from gradio_client import handle_file

    from pages.eval import param_defaults, run_input_names

    services = served["services"]
    gpt = services.gpt_choices()[0][1]
    sovits = {label.split("/")[-1]: v for label, v in services.sovits_choices()}
    whisper = str(served["settings"].whisper_dir / "tiny-random")
    values = dict(csv_file=None, csv_path=str(csv_path), text_lang="zh", name_a="base", gpt_a=gpt,
                  sovits_a=sovits["s2_v2.pth.xz"], name_b="plus", gpt_b=gpt, sovits_b=sovits["s2_v2ProPlus.pth.xz"],
                  ref_audio=handle_file(str(tiny_assets["ref"])), ref_text=REF_TEXT, ref_lang="zh", asr_model=whisper,
                  asr_lang="zh", asr_beam=1, asr_vad=False, asr_max_tokens=4, samples=1, seed=11, max_error="0",
                  min_sim="", max_tries=2, run_name=run_name, protocol="gsv", numerals="off",
                  drop_interjections=False, similarity_model="eres2netv2", wavlm_dir="", bucket_by="tokens",
                  bucket_edges="")
    for system in ("a", "b"):
        values.update({f"{system}_{k}": v for k, v in param_defaults().items()})
        values.update({f"{system}_top_k": 5, f"{system}_max_tokens": 8})
    values.update(kw)
    names = run_input_names()
    assert set(values) == set(names), set(values) ^ set(names)
    return [values[n] for n in names]


def _data(root: Path) -> Path:
    """A folder the app may read (DATA_DIRS): typed server paths elsewhere are refused."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    return data


def test_asr_models_listed_and_tab_built(served):
    info = served["client"].view_api(return_format="dict", print_info=False)
    names = set(info["named_endpoints"])
    assert {"/eval_run", "/eval_run_variants", "/eval_cancel", "/eval_rebuild_report", "/eval_refresh"} <= names
    out = served["client"].predict(None, None, None, None, None, api_name="/eval_refresh")
    asr = out[4]
    assert asr["value"] == "tiny-random"  # model names under WHISPER_DIR, no server paths in the page


def test_run_gives_summary_pairwise_and_report(served, tiny_assets):
    import soundfile as sf

    from gsv_core.engine.request import SynthesisRequest
    from pages.eval import param_names

    root = served["root"]
    data = _data(root)
    wav, sr = sf.read(tiny_assets["aux"])
    sf.write(data / "up_s1.wav", wav[: sr * 2], sr)  # "upstream's" output of s1 (no file for s2)
    csv_path = data / "tests.csv"
    csv_path.write_text("id,text,lang,audio:upstream\ns1,今天天气很好。,zh,up_s1.wav\ns2,我们去公园散步吧！,zh,\n",
                        encoding="utf-8")
    status, summary, prosody, buckets, pairwise, variants, files, frame, rebuild = served["client"].predict(
        *_inputs(served, tiny_assets, csv_path, "tab_run", b_temperature=0.8, b_split_method="cut0",
                 protocol="seed-tts-eval", numerals="digits"), api_name="/eval_run")
    run_dir = served["settings"].reports_dir / "tab_run"
    assert "Done" in status and "5 utterances" in status, status
    from pages.eval import PROSODY_COLUMNS, SUMMARY_COLUMNS

    rows = {r[0]: r for r in summary["data"]}
    assert set(rows) == {"base", "plus", "upstream"}
    cols = SUMMARY_COLUMNS  # the headers are display labels
    assert "error rate corpus" in summary["headers"] and "seed WER %" in summary["headers"]
    for name in ("base", "plus"):
        r = dict(zip(cols, rows[name]))
        assert r["utterances"] == 2 and r["tries"] == 4 and r["rerolled"] == 2  # CER threshold 0: always re-rolled
        assert 0 <= float(r["error_rate_corpus"]) and int(r["ref_len"]) > 0 and "±" in r["error_rate_utt"]
        assert float(r["seed_wer_percent"]) >= 0 and r["similarity_model"] == "eres2netv2"
    up = dict(zip(cols, rows["upstream"]))
    assert up["utterances"] == 1 and up["tries"] == 1 and up["rtf_mean"] == ""  # scored, not synthesised
    pros = {r[0]: dict(zip(["system", *PROSODY_COLUMNS], r)) for r in prosody["data"]}
    assert all("±" in pros[n]["vs_ref_energy_w1_db"] for n in ("base", "plus"))  # noise-like audio: energy, no F0
    assert pros["plus"]["vs_base_voicing_agreement"] != "" and pros["base"]["vs_base_voicing_agreement"] == ""
    assert buckets["headers"][:2] == ["system", "bucket"] and "error_rate" in buckets["headers"]
    assert {r[0] for r in buckets["data"]} == {"base", "plus", "upstream"}
    assert any(r[1].startswith("short") for r in buckets["data"]) and any(r[1].startswith("all") for r in buckets["data"])
    metrics = {r[2] for r in pairwise["data"]}
    assert {"error_rate_corpus", "error_rate_utt_mean", "similarity"} <= metrics
    assert {(r[0], r[1]) for r in pairwise["data"]} == {("base", "plus"), ("base", "upstream"), ("plus", "upstream")}
    assert variants["data"] in ([], [[""] * len(variants["headers"])])  # no punctuation variants in this run
    names = {Path(f).name for f in files}
    assert {"report.html", "report.json", "summary.csv", "pairwise.csv", "buckets.csv", "prosody.csv"} <= names
    assert (run_dir / "report.html").is_file() and (run_dir / "test.csv").is_file()
    assert (run_dir / "audio" / "upstream" / "s1_s0_t0.wav").is_file()
    assert "<iframe" in frame and "report.html" in frame
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["seed"] == 11 and [s["name"] for s in saved["systems"]] == ["base", "plus", "upstream"]
    assert saved["systems"][2]["external"] and saved["numerals"] == "digits" and saved["seed_compatible"]
    assert saved["systems"][0]["params"]["max_tokens"] == 8 and saved["reroll"]["max_tries"] == 2
    # every engine parameter of a system (the shared request conversion's) reaches the config, per system
    a, b = saved["systems"][0]["params"], saved["systems"][1]["params"]
    defaults = SynthesisRequest.defaults()
    assert set(param_names()) - {"aux_refs", "sv_ref"} <= set(a)  # audio files: only when given
    assert a["temperature"] == defaults["temperature"] and b["temperature"] == 0.8
    assert a["split_method"] == "cut1" and b["split_method"] == "cut0"
    assert rebuild["value"] == run_dir.name and run_dir.name in str(rebuild["choices"])  # names, no paths

    # the report is served from the run folder (the iframe's URL)
    import re
    import urllib.request

    url = re.search(r"src='([^']+)'", frame).group(1)
    with urllib.request.urlopen(served["app"].local_url.rstrip("/") + url, timeout=30) as r:
        assert r.status == 200 and "Evaluation report" in r.read().decode("utf-8")

    # the same run again resumes (nothing redone) and a rebuild reads the folder back, with other buckets
    again = served["client"].predict(*_inputs(served, tiny_assets, csv_path, "tab_run", b_temperature=0.8,
                                              b_split_method="cut0", protocol="seed-tts-eval", numerals="digits"),
                                     api_name="/eval_run")
    assert "Done" in again[0] and len((run_dir / "results.jsonl").read_text().splitlines()) == 5
    (run_dir / "report.html").unlink()
    status, summary2, _, buckets2, *_ = served["client"].predict(str(run_dir), "chars", "3, 8",
                                                              api_name="/eval_rebuild_report")
    assert "rebuilt" in status and (run_dir / "report.html").is_file() and summary2["data"] == summary["data"]
    assert {r[1] for r in buckets2["data"]} == {"medium (3–8 chars)", "all"}  # 6 and 8 characters
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["buckets"]["definition"]["by"] == "chars" and report["buckets"]["definition"]["edges"] == [3, 8]


def test_punctuation_variants_give_deltas(served, tiny_assets):
    csv_path = _data(served["root"]) / "punct.csv"
    csv_path.write_text("id,text\np1,今天天气很好，我们去公园散步吧。\n", encoding="utf-8")
    status, summary, prosody, buckets, pairwise, variants, files, *_ = served["client"].predict(
        *_inputs(served, tiny_assets, csv_path, "", name_b="", max_error="", max_tries=1),
        api_name="/eval_run_variants")
    assert "Done" in status and "6 utterances" in status, status
    assert variants["headers"][:2] == ["system", "variant"] and "delta_error_rate" in variants["headers"]
    assert {r[1] for r in variants["data"]} == {"original", "no_punct", "no_commas", "extra_commas", "fullwidth",
                                               "halfwidth"}
    names = {Path(f).name for f in files}
    assert {"variants.csv", "variant_deltas.csv"} <= names
    import re

    run_dir = Path(re.search(r"→ `([^`]+)`", status).group(1))
    assert run_dir.name.endswith("_variants") and run_dir.parent == served["settings"].reports_dir
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = {r["variant"]: r["text"] for r in rows}
    assert texts["no_punct"] == "今天天气很好我们去公园散步吧" and texts["fullwidth"] == texts["original"]
    assert all(r["base_id"] == "p1" and "pause_s" in r for r in rows)


def test_bad_csv_lists_bad_rows_and_bad_inputs_are_messages(served, tiny_assets):
    from gradio_client.exceptions import AppError

    root = served["root"]
    bad = _data(root) / "bad.csv"
    bad.write_text("id,text,ref_audio\na,好的,\n,,\nb,,\nc,文本,missing.wav\na,重复,\n", encoding="utf-8")
    status, summary, prosody, buckets, pairwise, variants, files, frame, _ = served["client"].predict(
        *_inputs(served, tiny_assets, bad, "bad_run"), api_name="/eval_run")
    assert "Malformed test CSV" in status and "4 bad row(s)" in status
    for needle in ("line 3: empty row", "line 4: empty text", "line 5: reference audio", "missing.wav",
                   "does not exist", "line 6: duplicate id"):  # the app's path policy names the missing file
        assert needle in status, (needle, status)
    assert summary["data"] in ([], [[""] * len(summary["headers"])]) and not frame
    assert not (served["settings"].reports_dir / "bad_run").exists()

    outside = root / "outside.wav"  # an audio path the CSV names outside the app's folders is refused
    outside.write_bytes(b"RIFF")
    (_data(root) / "ext.csv").write_text(f"id,text,audio:up\na,好,{outside}\n", encoding="utf-8")
    status = served["client"].predict(*_inputs(served, tiny_assets, _data(root) / "ext.csv", "ext_bad"),
                                      api_name="/eval_run")[0]
    assert "Malformed test CSV" in status and "line 2" in status and "outside.wav" in status, status
    assert not (served["settings"].reports_dir / "ext_bad").exists()
    with pytest.raises(AppError, match="choose a test CSV"):
        served["client"].predict(*_inputs(served, tiny_assets, "", "x"), api_name="/eval_run")
    ok = _data(root) / "ok.csv"
    ok.write_text("id,text\na,好\n", encoding="utf-8")
    with pytest.raises(AppError, match="threshold must be a number"):
        served["client"].predict(*_inputs(served, tiny_assets, ok, "x", max_error="abc"), api_name="/eval_run")
    with pytest.raises(AppError, match="run folder name"):
        served["client"].predict(*_inputs(served, tiny_assets, ok, "../up"), api_name="/eval_run")
    with pytest.raises(AppError, match="only folders under reports/"):
        served["client"].predict(str(root), "tokens", "", api_name="/eval_rebuild_report")
    (served["settings"].reports_dir / "empty").mkdir(exist_ok=True)
    with pytest.raises(AppError, match="not an evaluation run folder"):
        served["client"].predict("empty", "tokens", "", api_name="/eval_rebuild_report")
    with pytest.raises(AppError, match="bucket edges must increase"):
        served["client"].predict(*_inputs(served, tiny_assets, ok, "x", bucket_edges="40,15"), api_name="/eval_run")
    with pytest.raises(AppError, match="wavlm-sv similarity model needs its folder"):
        served["client"].predict(*_inputs(served, tiny_assets, ok, "x", similarity_model="wavlm-sv"),
                                 api_name="/eval_run")
    with pytest.raises(AppError, match="no WavLM speaker-verification model"):  # a folder without the weights
        served["client"].predict(*_inputs(served, tiny_assets, ok, "x", similarity_model="wavlm-sv",
                                          wavlm_dir=str(_data(root))), api_name="/eval_run")
    assert served["client"].predict(api_name="/eval_cancel") == "No evaluation is running."
    # a Chinese browser reads the tab's messages in Chinese
    from gradio_client import Client

    zh = Client(served["app"].local_url, verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert zh.predict(api_name="/eval_cancel") == "没有正在运行的评测。"
    with pytest.raises(AppError, match="重新生成的错误率阈值必须是数字或留空"):
        zh.predict(*_inputs(served, tiny_assets, ok, "x", max_error="abc"), api_name="/eval_run")


# ----------------------------------------------------------------------------------------------------------------
# browser

@pytest.mark.skipif(not __import__("test_browser").CHROMIUM, reason="Debian chromium is not installed")
def test_browser_eval_run_and_report(tmp_path_factory, parity_dir, tiny_assets):
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, _alive

    root = tmp_path_factory.mktemp("eval_browser")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    settings = _settings(root, parity_dir, tiny_assets)
    csv_path = _data(root) / "tests.csv"
    csv_path.write_text("id,text,lang\ns1,今天天气很好。,zh\ns2,我们去公园散步吧！,zh\n", encoding="utf-8")
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
            for system in ("a", "b"):  # every engine parameter of a system, in its own accordion
                page.locator(f"#eval-params-{system}").get_by_text("engine parameters").first.click()
                page.locator(f"#eval-{system}-max-tokens input").first.wait_for(timeout=10_000)
            assert page.locator("#eval-a-repetition-penalty input").first.input_value() == "1.35"
            page.screenshot(path=str(SHOTS / "eval_tab_params.png"), full_page=True)
            for sel, value in (("#eval-a-max-tokens", "8"), ("#eval-b-max-tokens", "8"), ("#eval-run-name", None),
                               ("#eval-bucket-edges", "7,10")):
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
            assert "baseline" in summary and "finetuned" in summary and "error rate corpus" in summary
            assert "short" in page.locator("#eval-buckets").inner_text()
            saved = json.loads((settings.reports_dir / "browser_run" / "config.json").read_text(encoding="utf-8"))
            assert saved["reroll"] == dict(max_error_rate=None, min_similarity=None, max_tries=1)
            assert saved["systems"][0]["params"]["max_tokens"] == 8 and saved["systems"][1]["params"]["max_tokens"] == 8
            assert saved["buckets"] == dict(by="tokens", edges=[7.0, 10.0])
            frame = page.frame_locator("#eval-report iframe")
            frame.get_by_text("Evaluation report").first.wait_for(timeout=30_000)
            # the report itself, opened in the browser from the run folder
            href = page.locator("#eval-report a").first.get_attribute("href")
            report = browser.new_page(viewport={"width": 1400, "height": 1400})
            report.goto(app.local_url.rstrip("/") + href, wait_until="load")
            report.get_by_role("heading", name="Per system").wait_for()
            assert report.locator("img").count() >= 1 and report.locator("audio").count() >= 4
            assert report.evaluate("document.querySelector('audio').src").startswith("http")
            for heading in ("Length buckets", "F0 and energy alignment", "Plots"):
                assert report.get_by_role("heading", name=heading).count() == 1, heading
            buckets = report.locator("table.buckets").first.inner_text()
            assert "≤ 7 tokens" in buckets and "7–10 tokens" in buckets and "baseline" in buckets and "±" in buckets
            assert report.locator("img[alt^='F0 contour s1']").count() == 1
            assert report.locator("img[alt^='Frame energy distribution s1']").count() == 1
            assert report.locator("img[alt='error rate by length bucket']").count() == 1
            # every plot decoded (a broken data URI has no natural size)
            assert report.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            report.screenshot(path=str(SHOTS / "eval_report.png"), full_page=True)
            for section, height in (("buckets", 900), ("prosody", 700), ("plots", 1400)):  # the new sections, each
                top = report.locator(f"#{section}").bounding_box()["y"]
                report.screenshot(path=str(SHOTS / f"eval_report_{section}.png"), full_page=True,
                                  clip=dict(x=0, y=top - 10, width=1400, height=height))
            # a malformed CSV lists the bad rows in the page
            bad = _data(root) / "bad.csv"
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
    csv_path = _data(root) / "cancel.csv"
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
