"""The RefAudio tab in headless Debian chromium: create a role, import a small .list (uploaded with its audio), run
a small sweep (top_k 2 values x 1 text, tiny models), score a result, save a product and load it in the TTS tab;
screenshots of every step go to test-output/browser/refaudio_*.png (look at them: Chinese must render)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_app import app_settings, serve_app
from test_refaudio_tab import write_library_list

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

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
    root = tmp_path_factory.mktemp("browser_refaudio")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    app = serve_app(app_settings(root, parity_dir, tiny_assets))
    yield {"url": app.local_url, "root": root, "services": app.gsv_services}
    app.close()


def _shot(page, name: str) -> None:
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / f"refaudio_{name}.png"), full_page=True)


def _number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def test_role_import_sweep_score_product(browser, site, tmp_path):
    svc = site["services"].refaudio
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(site["url"], wait_until="load")
    page.get_by_role("tab", name="RefAudio").click()

    # 1. a role
    page.locator("#ra-role-category textarea, #ra-role-category input").first.fill("动漫")
    page.locator("#ra-role-name textarea, #ra-role-name input").first.fill("爱丽丝")
    page.locator("#ra-create-role").click()
    page.locator("#ra-status").get_by_text("动漫/爱丽丝").wait_for(timeout=30_000)
    role = svc.library.find_role("动漫", "爱丽丝")["id"]
    _shot(page, "1_role")

    # 2. import a .list uploaded together with its audio
    lst, wavs = write_library_list(tmp_path / "upload")
    page.locator("#ra-import-files input[type=file]").set_input_files([str(lst)] + [str(w) for w in wavs])
    page.wait_for_timeout(1500)
    page.locator("#ra-import-go").click()
    page.locator("#ra-import-report").get_by_text("4 added").wait_for(timeout=60_000)
    clips = svc.list_clips(role, valid=True)
    assert len(clips) == 3
    page.locator("#ra-clips [role=gridcell]").filter(has_text="clip_2").first.click()  # the longest clip
    page.locator("#ra-selected textarea, #ra-selected input").first.wait_for()
    page.wait_for_function("() => { const el = document.querySelector('#ra-clip-view img');"
                           " return el && el.src && el.naturalWidth > 0; }", timeout=30_000)
    _shot(page, "2_import")

    # 3. a small sweep: top_k 2 and 5, one text, one reference, few tokens
    page.get_by_role("tab", name="Sweep", exact=True).click()
    page.locator("#ra-values textarea, #ra-values input").first.fill("2, 5")
    page.locator("#ra-ref-ids textarea, #ra-ref-ids input").first.fill(str(clips[0]["id"]))
    page.locator("#ra-texts textarea").fill("今天天气很好。")
    page.get_by_text("Base parameters", exact=True).click()
    _number(page, "ra-max-tokens", 10)
    page.locator("#ra-sweep-go").click()
    # the final status (the progress overlay also shows "2/2 done" while the results are being measured)
    page.wait_for_function("() => { const t = document.querySelector('#ra-sweep-status').innerText;"
                           " return t.includes(': done') && t.includes('2/2 done'); }", timeout=120_000)
    task_id = svc.list_tasks(role)[0]["id"]
    assert svc.task_status(task_id)["counts"]["done"] == 2
    _shot(page, "3_sweep")

    # 4. results: longest first, pick one, score it (saved at once)
    page.get_by_role("tab", name="Results", exact=True).click()
    page.locator("#ra-r-show").click()
    cells = page.locator("#ra-results-table [role=gridcell]").filter(has_text="top_k=")
    cells.nth(1).wait_for(timeout=30_000)  # both results are listed
    cells.first.click()
    page.locator("#ra-item-info").get_by_text("Result").first.wait_for(timeout=30_000)
    page.wait_for_function("() => { const el = document.querySelector('#ra-item-spec img');"
                           " return el && el.naturalWidth > 0; }", timeout=30_000)
    item = int(page.locator("#ra-item-id input[type=number]").input_value())
    page.locator("#ra-score").get_by_text("4", exact=True).click()
    page.locator("#ra-score-info").get_by_text("saved: 4").wait_for(timeout=30_000)
    assert svc.result(item)["user_score"] == 4
    _shot(page, "4_results_scored")

    # 5. a product from the scored result
    page.get_by_role("tab", name="Products", exact=True).click()
    page.locator("#ra-p-name textarea, #ra-p-name input").first.fill("晴天 sunny")
    page.locator("#ra-p-save").click()
    page.locator("#ra-p-info").get_by_text("saved").wait_for(timeout=30_000)
    products = svc.list_products(role)
    assert [p["name"] for p in products] == ["晴天 sunny"]
    _shot(page, "5_product")

    # 6. the TTS tab loads it
    page.get_by_role("tab", name="TTS").click()
    page.get_by_role("button", name="Load product (a voice").click()
    page.locator("#tts-product-refresh").click()
    page.wait_for_timeout(800)
    page.locator("#tts-product input").click()
    page.get_by_role("option").filter(has_text="晴天 sunny").first.click()
    page.locator("#tts-product-load").click()
    page.locator("#tts-product-info").get_by_text("Loaded").wait_for(timeout=30_000)
    it = svc.result(item)
    assert page.locator("#tts-ref-text textarea").input_value() == it["ref_text"]
    _shot(page, "6_tts_loaded")
    page.close()
