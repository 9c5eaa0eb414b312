"""Issue 12's journey in headless Debian chromium: start the app, synthesise in the TTS tab, then train SoVITS for
one step in the Finetune tab of the same process (this crashed with "Inference tensors cannot be saved for
backward"), with the training view readable (one status panel, the loss curve, the log); then reload the page and
find every list filled (models, experiment with its saved settings, RefAudio roles, products).

Screenshots: test-output/browser/first_hour_*.png (looked at: status panel without stacked overlays, curve, log)."""
from __future__ import annotations

import dataclasses
import lzma
import os
import shutil
from pathlib import Path

import pytest

from finetune.test_e2e import make_dataset
from test_app import app_settings, serve_app

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def site(tmp_path_factory, parity_dir, tiny_assets):
    from gsv_core.finetune.pipeline import Experiment, FinetuneConfig

    root = tmp_path_factory.mktemp("first_hour")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    settings = dataclasses.replace(app_settings(root, parity_dir, tiny_assets), experiments_dir=root / "experiments",
                                   whisper_dir=root / "whisper")
    pre = Path(settings.pretrained_dir)  # the form's model paths must lie in the app's folders (docs/security.md)
    pre.mkdir(parents=True, exist_ok=True)
    s2g = pre / "s2Gv2Pro.pth"
    s2g.write_bytes(lzma.decompress((parity_dir / "s2_v2Pro.pth.xz").read_bytes()))
    s1 = pre / "s1_v2.ckpt"
    shutil.copy(parity_dir / "s1_v2.ckpt", s1)
    # an experiment whose data and features are ready; its SoVITS stage is one tiny step (the form keeps options
    # it does not show, such as the decoder slice and max_steps)
    cfg = FinetuneConfig(name="first_hour", version="v2Pro", source=str(make_dataset(root / "data")),
                         pretrained_s1=str(s1), pretrained_s2g=str(s2g), device="cpu",
                         precision="fp32", s2=dict(segment_size=1280, max_steps=1, batch_size=2, epochs=1,
                                                   save_every_epochs=1),
                         s1=dict(batch_size=4, epochs=1, save_every_epochs=1))
    Experiment(settings, cfg).run(("data", "features"))
    app = serve_app(settings)
    try:
        yield dict(url=app.local_url, settings=settings, services=app.gsv_services, root=root)
    finally:
        app.close()


def test_synthesise_then_train_then_reload(site, tiny_assets):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(site["url"], wait_until="load")
            # 1. synthesise (fills the spectrogram caches under inference mode)
            page.locator("#tts-max-tokens input[type=number]").fill("12")
            page.locator("#tts-max-tokens input[type=number]").press("Enter")
            page.locator("#tts-ref-audio input[type=file]").set_input_files(str(tiny_assets["ref"]))
            page.locator("#tts-ref-text textarea").fill("你早上好，这是参考声音。")
            page.locator("#tts-go").click()
            page.locator("#tts-info-a").get_by_text("RTF").wait_for(timeout=120_000)

            # 2. the Finetune tab shows the saved experiment with its own settings (not the form's defaults)
            page.get_by_role("tab", name="Finetune").click()
            page.locator("#ft-name input").first.wait_for()
            assert page.locator("#ft-name input").first.input_value() == "first_hour"
            page.locator("#ft-s2").click()
            page.locator(".ft-status[data-state=done], .ft-status[data-state=failed]").wait_for(timeout=300_000)
            status = page.locator("#ft-status").inner_text()
            assert "done" in status and "Inference tensors" not in status, status
            page.locator("#ft-losses").scroll_into_view_if_needed()
            page.locator("#ft-losses img, #ft-losses canvas, #ft-losses svg").first.wait_for(timeout=30_000)
            # one status panel: no progress overlay left covering the report, the curve or the log
            assert page.locator(".ft-status").count() == 1
            assert "first_hour_e1_s1.pth" in page.locator("#ft-log textarea").input_value()
            page.locator("#ft-status").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "first_hour_1_trained.png"), full_page=True)

            # 3. things made after the page was opened appear after a reload
            svc = site["services"].refaudio
            role = svc.create_role("voices", "after_start")
            clip, _ = svc.library.add_clip(role, tiny_assets["ref"], "你早上好，这是参考声音。", "zh")
            services = site["services"]  # the lists hold labels; the library stores the files they name
            gpt = services.check_model_path(services.gpt_choices()[0][1], "GPT")
            sovits = services.check_model_path(services.sovits_choices()[0][1], "SoVITS")
            svc.save_product(role, "preset after start", gpt_path=gpt, sovits_path=sovits, ref_clip_id=clip)
            page.reload(wait_until="load")
            page.get_by_role("tab", name="RefAudio").click()
            role_box = page.locator("#ra-role input").first
            role_box.wait_for()
            page.wait_for_function("() => document.querySelector('#ra-role input').value.includes('after_start')",
                                   timeout=30_000)
            page.screenshot(path=str(SHOTS / "first_hour_2_reloaded_refaudio.png"), full_page=True)
            page.get_by_role("tab", name="TTS").click()
            page.get_by_role("button", name="Load product (a voice").click()
            page.locator("#tts-product input").first.click()
            page.get_by_role("option", name="preset after start", exact=False).first.wait_for(timeout=30_000)
            page.keyboard.press("Escape")
            page.get_by_role("tab", name="Finetune").click()
            assert page.locator("#ft-name input").first.input_value() == "first_hour"
            assert page.locator("#ft-version input[value=v2Pro]").is_checked()
            page.screenshot(path=str(SHOTS / "first_hour_3_reloaded_finetune.png"), full_page=True)
            page.close()
        finally:
            browser.close()
