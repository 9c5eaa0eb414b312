"""The app in a real headless browser (playwright + Debian chromium): every tab opens, a TTS generation with the
tiny fixture models plays, bad inputs show a readable message and the app keeps serving; screenshots of every tab
go to test-output/ (look at them: Chinese must render, which needs fonts-wqy-microhei)."""
from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from test_app import app_settings, serve_app, write_wav

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TABS = ["TTS", "ASR", "Dataset", "Finetune", "Eval", "RefAudio"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, parity_dir, tiny_assets):
    root = tmp_path_factory.mktemp("browser_app")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    app = serve_app(app_settings(root, parity_dir, tiny_assets))
    yield {"url": app.local_url, "root": root}
    app.close()


def _alive(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status == 200 and "GSV Playground" in r.read().decode("utf-8", "replace")


def _error_shown(page, text: str, timeout: float = 60_000):
    """A readable error toast containing ``text`` appears; it is closed again so the next case starts clean."""
    toast = page.locator(".toast-body").filter(has_text=text).first
    toast.wait_for(state="visible", timeout=timeout)
    close = page.locator(".toast-close")
    for i in range(close.count()):
        try:
            close.nth(i).click(timeout=2000)
        except Exception:  # noqa: BLE001 - a toast may close itself meanwhile
            pass


def _upload_ref(page, path: Path):
    box = page.locator("#tts-ref-audio")
    clear = box.get_by_label("Clear")
    if clear.count():
        clear.first.click()
    box.locator("input[type=file]").set_input_files(str(path))
    page.wait_for_timeout(500)


def test_chinese_font_installed():
    out = subprocess.run(["fc-match", "sans:lang=zh-cn"], capture_output=True, text=True).stdout
    assert "WenQuanYi" in out or "Noto Sans CJK" in out, f"no CJK font: {out!r} (apt-get install fonts-wqy-microhei)"


def test_every_tab_opens_with_screenshots(browser, site):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(site["url"], wait_until="load")
    page.get_by_text("GPT-SoVITS voice-cloning workbench").wait_for()  # the en-US locale
    for name in TABS:
        page.get_by_role("tab", name=name).click()
        page.wait_for_timeout(400)
        if name == "TTS":
            page.locator("#tts-text").get_by_text("Text to synthesise").wait_for()
        page.screenshot(path=str(SHOTS / f"tab_{name.lower()}.png"), full_page=True)
    # no tab is a placeholder any more
    page.get_by_role("tab", name="Finetune").click()
    page.locator("#ft-one-click").wait_for()
    assert page.get_by_text("coming with its issue").count() == 0
    page.close()


def test_tts_generation_and_bad_inputs(browser, site, tiny_assets, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(site["url"], wait_until="load")
    page.locator("#tts-max-tokens input[type=number]").fill("12")
    page.locator("#tts-max-tokens input[type=number]").press("Enter")

    # empty text
    page.locator("#tts-text textarea").fill("   ")
    _upload_ref(page, tiny_assets["ref"])
    page.locator("#tts-go").click()
    _error_shown(page, "the text is empty")

    # a good generation
    page.locator("#tts-text textarea").fill("今天天气很好。我们去公园散步吧！")
    page.locator("#tts-ref-text textarea").fill("你早上好，这是参考声音。")
    page.locator("#tts-go").click()
    page.locator("#tts-info-a").get_by_text("RTF").wait_for(timeout=120_000)
    info = page.locator("#tts-info-a").inner_text()
    assert "seed" in info and "fragment" in info
    page.screenshot(path=str(SHOTS / "tts_generated.png"), full_page=True)

    # references that are too short, too long, or not audio at all
    for name, make, message in [
        ("short", lambda p: write_wav(p, 1.0), "too short"),
        ("long", lambda p: write_wav(p, 30.0), "too long"),
        ("corrupt", lambda p: (p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt junk" + bytes(300)), p)[1], "corrupt"),
    ]:
        path = make(tmp_path / f"{name}.wav")
        _upload_ref(page, path)
        page.locator("#tts-go").click()
        _error_shown(page, message)
        page.screenshot(path=str(SHOTS / f"tts_bad_{name}_ref.png"))
        assert _alive(site["url"])

    # a malformed batch CSV
    bad = tmp_path / "bad.csv"
    bad.write_text("name,words\na,b\n", encoding="utf-8")
    page.get_by_role("button", name="Batch export (CSV").click()
    page.locator("#tts-batch-csv input[type=file]").set_input_files(str(bad))
    page.wait_for_timeout(500)
    page.locator("#tts-batch-go").click()
    _error_shown(page, "must contain the columns id and text")
    page.screenshot(path=str(SHOTS / "tts_bad_csv.png"), full_page=True)

    # still serving: another generation with the good reference works
    _upload_ref(page, tiny_assets["ref"])
    page.locator("#tts-info-a").get_by_text("RTF").wait_for()
    before = page.locator("#tts-info-a").inner_text()
    page.locator("#tts-go").click()
    page.wait_for_function("([sel, old]) => { const t = document.querySelector(sel).innerText;"
                           " return t.includes('RTF') && t !== old; }", arg=["#tts-info-a", before], timeout=120_000)
    assert _alive(site["url"])
    page.close()


def test_no_models_present(browser, tmp_path, parity_dir, tiny_assets):
    app = serve_app(app_settings(tmp_path, parity_dir, tiny_assets, with_models=False))
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app.local_url, wait_until="load")
        page.locator("#tts-models-info").get_by_text("No GPT model and no SoVITS model found").wait_for()
        _upload_ref(page, tiny_assets["ref"])
        page.locator("#tts-go").click()
        _error_shown(page, "No GPT model and no SoVITS model found")
        page.screenshot(path=str(SHOTS / "tts_no_models.png"), full_page=True)
        assert _alive(app.local_url)
        page.close()
    finally:
        app.close()


def test_asr_transcription(browser, tmp_path_factory, parity_dir, tiny_assets):
    """The ASR tab transcribes a file with a (tiny, random) CTranslate2 Whisper found under whisper_dir and shows
    the row in the proofreading table."""
    import dataclasses

    from helpers.tiny_whisper import build_tiny_whisper

    root = tmp_path_factory.mktemp("browser_asr")
    build_tiny_whisper(root / "whisper" / "tiny-random")
    settings = dataclasses.replace(app_settings(root, parity_dir, tiny_assets), whisper_dir=root / "whisper")
    (root / "data").mkdir(exist_ok=True)
    clip = write_wav(root / "data" / "clip_for_asr.wav", 2.0, sr=16000)  # a data folder: typed paths elsewhere are refused
    app = serve_app(settings)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app.local_url, wait_until="load")
        page.get_by_role("tab", name="ASR").click()
        page.get_by_label("…or file / folder paths on this machine (one per line)").fill(str(clip))
        page.get_by_label("VAD filter (skip silence)").uncheck()  # keep the random model from skipping the tone
        page.get_by_role("button", name="Transcribe", exact=True).click()
        # wait for the finished status (the progress bar also names the file while it runs: not enough), then the
        # row must be in the proofreading table
        page.get_by_text("1/1 files transcribed").wait_for(timeout=180_000)
        page.screenshot(path=str(SHOTS / "asr_transcribed.png"), full_page=True)
        cells = page.locator("#asr-table").inner_text()  # the ASR tab's table (other tabs hold tables too)
        assert "clip_for_asr.wav" in cells, cells[:500]
        assert _alive(app.local_url)
        page.close()
    finally:
        app.close()
