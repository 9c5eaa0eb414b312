"""Issue 19, first run: the Models tab and its service (gsv_core.model_setup).

Service: every pretrained item listed present / missing where the settings point; a download with byte progress,
cancel and resume through a stand-in for huggingface_hub (no network); a clear message offline; pointing at an
upstream GPT-SoVITS folder of tiny models makes its files listed, allowed and remembered (no restart).
Browser (Debian chromium): the tab with no models, then after pointing at the folder; the TTS dropdown gains them.
Screenshots go to test-output/browser/models_*.png."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from config import load_settings
from gsv_core import download as D
from gsv_core import model_setup as ms
from test_download import FakeHub

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ITEM_KEYS = ["bert", "hubert", "sv", "g2pw", "v1", "v2", "v2Pro", "v2ProPlus", "v3", "v4"]


def fresh_settings(home: Path):
    """A first-run app rooted in ``home``: nothing downloaded, no my_config."""
    s = load_settings(environ={"GSV_HOME": str(home)}, my_config=home / "no_my_config.py")
    return dataclasses.replace(s, device="cpu", precision="fp32")


def upstream_folder(root: Path, parity_dir: Path, tiny_assets: dict) -> Path:
    """An upstream GPT-SoVITS checkout of tiny models: BERT, HuBERT, SV and the v2ProPlus base weights in
    GPT_SoVITS/pretrained_models, G2PW absent, and finetuned weights in GPT_weights_v2 / SoVITS_weights_v2."""
    up = root / "GPT-SoVITS-v2pro"
    pm = up / "GPT_SoVITS" / "pretrained_models"
    for kind, name in (("bert", "chinese-roberta-wwm-ext-large"), ("hubert", "chinese-hubert-base")):
        shutil.copytree(tiny_assets[kind], pm / name)
        shutil.copy(pm / name / "model.safetensors", pm / name / "pytorch_model.bin")  # upstream's file name
    (pm / "sv").mkdir(parents=True)
    shutil.copy(tiny_assets["sv"], pm / "sv" / "pretrained_eres2netv2w24s4ep4.ckpt")
    (pm / "v2Pro").mkdir()
    shutil.copy(parity_dir / "s1_v2.ckpt", pm / "s1v3.ckpt")
    shutil.copy(parity_dir / "s2_v2ProPlus.pth.xz", pm / "v2Pro" / "s2Gv2ProPlus.pth")
    (up / "GPT_weights_v2").mkdir()
    (up / "SoVITS_weights_v2").mkdir()
    shutil.copy(parity_dir / "s1_v2.ckpt", up / "GPT_weights_v2" / "voice-e15.ckpt")
    shutil.copy(parity_dir / "s2_v2.pth.xz", up / "SoVITS_weights_v2" / "voice_e8_s200.pth")
    return up


# ---------------------------------------------------------------------------------------------------------------
# the service

def test_first_run_lists_every_item_missing(tmp_path):
    settings = fresh_settings(tmp_path)
    entries = ms.inventory(settings)
    keys = [e.key for e in entries]
    assert keys[:len(ITEM_KEYS)] == ITEM_KEYS
    assert {"whisper:tiny", "whisper:small", "whisper:large-v3", "whisper:large-v3-turbo"} <= set(keys)
    assert all(e.state == "missing" and e.size == 0 for e in entries)
    bert = ms.entry(settings, "bert")
    assert bert.path == tmp_path / "pretrained_models" / "chinese-roberta-wwm-ext-large" and bert.group == "feature"
    assert ms.entry(settings, "v2ProPlus").group == "base" and ms.entry(settings, "whisper:tiny").group == "asr"
    with pytest.raises(ms.ModelSetupError, match="no model item"):
        ms.entry(settings, "nonsense")


def test_present_partial_and_finetuning_files(tmp_path):
    from test_download import populate

    settings = fresh_settings(tmp_path)
    pm = Path(settings.pretrained_dir)
    populate(pm, keys={"hubert", "v2"})
    (pm / "gsv-v2final-pretrained" / "s2D2333k.pth").unlink()  # only finetuning needs it
    (pm / "chinese-roberta-wwm-ext-large").mkdir(parents=True)
    (pm / "chinese-roberta-wwm-ext-large" / "config.json").write_text("{}")
    by = {e.key: e for e in ms.inventory(settings)}
    assert by["hubert"].state == "present" and by["hubert"].size > 0
    assert by["v2"].present and by["v2"].training_missing == ("gsv-v2final-pretrained/s2D2333k.pth",)
    assert by["bert"].state == "partial" and by["bert"].missing == ("tokenizer.json", "pytorch_model.bin")
    assert by["v1"].state == "missing"


class ProgressHub(FakeHub):
    """The stand-in hub, also driving the tqdm class like huggingface_hub does (in four chunks)."""

    def __call__(self, repo_id, filename, *, local_dir=None, endpoint=None, tqdm_class=None, **kwargs):
        if tqdm_class is not None:
            size = len((self.root / repo_id / filename).read_bytes()) if (self.root / repo_id / filename).is_file() else 0
            bar = tqdm_class(total=size, initial=0, unit="B")
            for _ in range(4):
                bar.update(size // 4)
            bar.close()
        return super().__call__(repo_id, filename, local_dir=local_dir, endpoint=endpoint, **kwargs)


def test_download_reports_progress_and_resumes_after_cancel(tmp_path, monkeypatch):
    hub = ProgressHub(tmp_path / "hub")
    monkeypatch.setattr(D, "hf_hub_download", hub)
    monkeypatch.setattr(D, "_offline_mode", lambda: False)  # the suite runs with HF_HUB_OFFLINE=1; no network here
    settings = fresh_settings(tmp_path / "home")
    seen: list[tuple[float, str]] = []
    done = ms.download(settings, "v2", progress=lambda f, t: seen.append((f, t)), training_files=False)
    assert done.present and not (Path(settings.pretrained_dir) / "gsv-v2final-pretrained" / "s2D2333k.pth").exists()
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(0 < f < 1 for f in fractions)
    assert any("s2G2333k.pth (2/2)" in t for _, t in seen) and hub.fetched() == [
        "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt", "gsv-v2final-pretrained/s2G2333k.pth"]

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ms.DownloadCancelled):
        ms.download(settings, "hubert", cancel=cancel)
    assert ms.entry(settings, "hubert").state == "missing"
    assert ms.download(settings, "hubert").present  # the next try fetches it
    # already present: nothing fetched, no network needed
    calls = len(hub.calls)
    assert ms.download(settings, "hubert").present and len(hub.calls) == calls


def test_download_offline_is_clear(tmp_path, monkeypatch):
    from huggingface_hub import constants

    settings = fresh_settings(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ms.ModelSetupError) as err:
        ms.download(settings, "bert")
    assert err.value.key == "download.offline"
    text = str(err.value)
    assert "BERT folder" in text and "HF_HUB_OFFLINE=1" in text and "pretrained_models/chinese-roberta-wwm-ext-large" in text
    assert str(tmp_path) not in text  # no host path in the message
    with pytest.raises(ms.ModelSetupError) as err:
        ms.download(settings, "whisper:tiny")
    assert err.value.key == "download.offline" and "Whisper tiny" in str(err.value)
    from gsv_core.messages import render

    assert "无法连接" in render(err.value, "zh")


def test_download_without_network_is_clear(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise ConnectionError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(D, "_offline_mode", lambda: False)
    monkeypatch.setattr(D, "hf_hub_download", no_network)
    settings = fresh_settings(tmp_path)
    with pytest.raises(ms.ModelSetupError) as err:
        ms.download(settings, "sv")
    assert err.value.key == "download.offline" and "name resolution" in str(err.value)
    assert ms.entry(settings, "sv").state == "missing"


def test_point_at_gpt_sovits_folder(tmp_path, parity_dir, tiny_assets):
    from gsv_core import paths
    from pages.services import Services

    settings = fresh_settings(tmp_path / "home")
    up = upstream_folder(tmp_path, parity_dir, tiny_assets)
    services = Services(settings)
    assert services.gpt_choices() == [] and "Open the Models tab" in services.no_models_message()
    weight = up / "SoVITS_weights_v2" / "voice_e8_s200.pth"
    with pytest.raises(paths.PathRefused):
        paths.check_readable(settings, weight)

    # bad folders: one readable message, the same whether the path exists or not
    for bad in (tmp_path / "nowhere", tmp_path / "home", ""):
        with pytest.raises(ms.ModelSetupError) as err:
            ms.use_gpt_sovits_folder(settings, bad)
        assert err.value.key == "download.folder_invalid" and "is not a GPT-SoVITS folder" in str(err.value)
    assert not Path(settings.local_settings).exists()

    report = ms.use_gpt_sovits_folder(settings, up / "GPT_SoVITS")  # its subfolder names it too
    assert report.folder == up.resolve() and (report.pretrained, report.gpt, report.sovits) == (4, 1, 1)
    # the same settings object (every tab holds it) now uses the folder: no restart
    assert services.settings is settings and Path(settings.pretrained_dir) == up / "GPT_SoVITS" / "pretrained_models"
    assert Path(settings.bert_dir) == up / "GPT_SoVITS" / "pretrained_models" / "chinese-roberta-wwm-ext-large"
    by = {e.key: e for e in ms.inventory(settings)}
    assert [k for k in ITEM_KEYS if by[k].present] == ["bert", "hubert", "sv", "v2ProPlus"]
    gpts = [label for label, _ in services.gpt_choices()]
    sovits = [label for label, _ in services.sovits_choices()]
    assert gpts == ["GPT_weights_v2/voice-e15.ckpt", "pretrained v2Pro/v2ProPlus/v3/v4 · s1v3.ckpt"]
    assert sovits == ["SoVITS_weights_v2/voice_e8_s200.pth", "pretrained v2ProPlus · s2Gv2ProPlus.pth"]
    assert services.no_models_message() == ""
    assert services.check_model_path(sovits[0], "SoVITS") == str(weight.resolve())
    assert services.check_model_path(str(weight), "SoVITS") == str(weight.resolve())  # an allowed model folder now
    assert paths.check_readable(settings, weight) == weight.resolve()
    assert "voice_e8_s200.pth — SoVITS (s2) weights, v2" in services.models_info(gpts[0], sovits[0])

    # remembered: the next start reads it from LOCAL_SETTINGS
    assert json.loads(Path(settings.local_settings).read_text())["gpt_sovits_dir"] == str(up.resolve())
    again = dataclasses.replace(fresh_settings(tmp_path / "home"), device="cpu", precision="fp32")
    assert again == settings
    # another folder replaces the first one's weight folders instead of piling them up
    other = tmp_path / "other"
    (other / "GPT_SoVITS" / "pretrained_models").mkdir(parents=True)
    ms.use_gpt_sovits_folder(settings, other)
    assert not any(Path(d).is_relative_to(up) for d in settings.gpt_weight_dirs)
    assert Path(settings.bert_dir).is_relative_to(other) and services.gpt_choices() == []
    ms.forget_gpt_sovits_folder(settings)
    assert "gpt_sovits_dir" not in json.loads(Path(settings.local_settings).read_text())
    assert fresh_settings(tmp_path / "home").gpt_sovits_dir is None


def test_explicit_settings_win_over_the_folder(tmp_path, parity_dir, tiny_assets):
    """A BERT_DIR set in my_config stays; GSV_PRETRAINED_DIR in the environment keeps the pretrained folder."""
    home = tmp_path / "home"
    home.mkdir()
    up = upstream_folder(tmp_path, parity_dir, tiny_assets)
    (home / "local_settings.json").write_text(json.dumps({"gpt_sovits_dir": str(up)}))
    (home / "my_config.py").write_text("BERT_DIR = 'my_bert'\n")
    s = load_settings(environ={"GSV_HOME": str(home)}, my_config=home / "my_config.py")
    assert s.bert_dir == home / "my_bert" and s.hubert_dir == up / "GPT_SoVITS" / "pretrained_models" / "chinese-hubert-base"
    s = load_settings(environ={"GSV_HOME": str(home), "GSV_PRETRAINED_DIR": "pm"}, my_config=home / "none.py")
    assert s.pretrained_dir == home / "pm" and s.hubert_dir == home / "pm" / "chinese-hubert-base"
    assert up / "GPT_weights_v2" in s.gpt_weight_dirs
    (home / "local_settings.json").write_text("{damaged")
    assert load_settings(environ={"GSV_HOME": str(home)}, my_config=home / "none.py").gpt_sovits_dir is None


# ---------------------------------------------------------------------------------------------------------------
# the page in a browser

def build_test_app(settings):
    """The whole app when pages/app.py wires the Models tab, else the TTS tab and the Models tab alone."""
    import inspect

    import gradio as gr

    import pages.app as A
    from pages.common import collecting_page_loads, guard_number_inputs
    from pages.i18n import T, language_switch
    from pages.models import build_models_tab
    from pages.services import Services
    from pages.tts import build_tts_tab

    if "build_models_tab" in inspect.getsource(A):
        return A.build_app(settings)
    services = Services(settings)
    with gr.Blocks(title="GSV Playground") as app, collecting_page_loads() as page_loads:
        language_switch()
        with gr.Tabs():
            with gr.Tab(T("TTS", "语音合成"), id="tts"):
                build_tts_tab(services)
            with gr.Tab(T("Models", "模型"), id="models"):
                build_models_tab(settings, services)
        for fn, inputs, outputs in page_loads:
            app.load(fn, inputs, outputs, queue=False, show_progress="hidden")
    guard_number_inputs(app)
    A._launch_in_both_languages(app)
    app.gsv_services = services
    return app


def _close_toasts(page) -> None:
    close = page.locator(".toast-close")
    for i in range(close.count()):
        try:
            close.nth(i).click(timeout=2000)
        except Exception:  # noqa: BLE001 - a toast may close itself meanwhile
            pass


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh installs it)")
def test_models_tab_in_browser(tmp_path, parity_dir, tiny_assets, monkeypatch):
    from huggingface_hub import constants
    from playwright.sync_api import expect, sync_playwright

    from pages.app import launch_kwargs

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the Download button must not reach the network here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path / "gradio_tmp"))
    settings = fresh_settings(tmp_path / "home")
    up = upstream_folder(tmp_path, parity_dir, tiny_assets)
    app = build_test_app(settings)
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                       **launch_kwargs(settings))
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
            page.goto(app.local_url)
            # the TTS tab points to the Models tab instead of printing folder paths
            info = page.locator("#tts-models-info")
            info.get_by_text("Open the Models tab").wait_for(timeout=60_000)
            assert "pretrained_models" not in info.inner_text() and "GPT_weights" not in info.inner_text()
            page.screenshot(path=str(SHOTS / "models_tts_no_models.png"))

            page.get_by_role("tab", name="Models").click()
            table = page.locator("#models-table")
            table.get_by_text("BERT folder (bert)").wait_for(timeout=30_000)
            text = table.inner_text()
            assert text.count("✗ missing") >= 16 and "✓ present" not in text
            assert "whisper:large-v3" in text and "v2ProPlus pretrained weights" in text
            assert str(tmp_path) not in page.content()  # no host path in the page
            page.get_by_text("0 of 10").wait_for(timeout=10_000)
            page.screenshot(path=str(SHOTS / "models_first_run.png"), full_page=True)

            # offline: the download says so clearly (and where the files go by hand); the table stays
            page.locator("#models-download").click()
            page.locator("#models-download-info").get_by_text("Cannot reach", exact=False).wait_for(timeout=30_000)
            assert "pretrained_models/chinese-roberta-wwm-ext-large" in page.locator("#models-download-info").inner_text()
            assert table.get_by_text("BERT folder (bert)").is_visible()
            page.screenshot(path=str(SHOTS / "models_offline.png"))
            _close_toasts(page)

            # a wrong folder: a readable message
            page.locator("#models-folder textarea, #models-folder input").first.fill(str(tmp_path / "nowhere"))
            page.locator("#models-use-folder").click()
            page.locator(".toast-body").filter(has_text="is not a GPT-SoVITS folder").first.wait_for(timeout=30_000)
            assert table.get_by_text("BERT folder (bert)").is_visible()
            page.screenshot(path=str(SHOTS / "models_bad_folder.png"))
            _close_toasts(page)

            page.locator("#models-folder textarea, #models-folder input").first.fill(str(up))
            page.locator("#models-use-folder").click()
            page.locator("#models-folder-info").get_by_text("Using").wait_for(timeout=30_000)
            page.get_by_text("4 of 10").wait_for(timeout=30_000)
            text = table.inner_text()
            assert text.count("✓ present") == 4 and "GPT_SoVITS/pretrained_models" in text
            assert "missing: s2Gv2Pro.pth" in text and "finetuning also needs: s2Dv2ProPlus.pth" in text
            assert str(tmp_path) not in page.content()
            page.screenshot(path=str(SHOTS / "models_after_folder.png"), full_page=True)

            # a reload: the TTS dropdown lists the folder's models, and the note is gone
            page.reload()
            page.locator("#tts-models-info").get_by_text("SoVITS (s2) weights", exact=False).wait_for(timeout=60_000)
            page.get_by_label(re.compile(r"^GPT (模型|model) \(A\)")).first.click()
            page.get_by_role("option", name="GPT_weights_v2/voice-e15.ckpt").wait_for(timeout=10_000)
            page.screenshot(path=str(SHOTS / "models_tts_after_folder.png"))

            # the same tab for a Chinese browser
            zh = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
            zh.goto(app.local_url)
            zh.get_by_role("tab", name="模型").click()
            expect(zh.locator("#models-table")).to_contain_text("✓ 已就绪", timeout=30_000)
            expect(zh.locator("#models-table")).to_contain_text("✗ 缺失")
            expect(zh.locator("#models-table")).to_contain_text("中文多音字判断")
            zh.get_by_text("使用已有的 GPT-SoVITS 文件夹").wait_for(timeout=10_000)
            zh.screenshot(path=str(SHOTS / "models_zh.png"), full_page=True)
            browser.close()
    finally:
        app.close()
