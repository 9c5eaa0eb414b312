"""The Finetune tab in a launched app: the data stage through its api_name (gradio_client) on an espeak-ng dataset,
bad input (a path-like experiment name, a missing .list) gives a readable error and the app keeps serving; then the
same stage driven from headless Debian chromium, with screenshots in test-output/browser/finetune_*.png (look at
them: the cleaning report must be readable and Chinese must render)."""
from __future__ import annotations

import dataclasses
import lzma
import os
import shutil
from pathlib import Path

import pytest

from finetune.test_e2e import make_dataset
from test_app import serve_app

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FORM_KEYS = ("name", "version", "list_file", "list_path", "audio_dir", "lang", "min_s", "max_s", "min_snr",
             "ref_min", "ref_max", "val_frac", "test_frac", "split_seed", "pre_s1", "pre_s2g", "pre_s2d",
             "bert_dir", "hubert_dir", "sv_path", "s2_bs", "s2_epochs", "s2_save", "s2_text_lr", "s1_bs",
             "s1_epochs", "s1_save", "lora", "lora_rank", "device", "precision", "asr_check")


@pytest.fixture(scope="module")
def site(tmp_path_factory, parity_dir, tiny_assets):
    """An app whose settings point at tmp folders and the tiny BERT/HuBERT/SV models; the parity fixtures serve as
    the "pretrained" GPT and SoVITS (their paths are typed into the form, as a user would)."""
    from config import load_settings

    root = tmp_path_factory.mktemp("ft_tab")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    pre = root / "pretrained"
    pre.mkdir()
    s2g = pre / "s2Gv2Pro.pth"
    s2g.write_bytes(lzma.decompress((parity_dir / "s2_v2Pro.pth.xz").read_bytes()))
    s1 = pre / "s1.ckpt"
    shutil.copy(parity_dir / "s1_v2.ckpt", s1)
    base = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "no_my_config.py")
    settings = dataclasses.replace(
        base, bert_dir=Path(tiny_assets["bert"]), hubert_dir=Path(tiny_assets["hubert"]),
        sv_path=Path(tiny_assets["sv"]), gpt_weight_dirs=(root / "weights" / "gpt",),
        sovits_weight_dirs=(root / "weights" / "sovits",), experiments_dir=root / "experiments",
        whisper_dir=root / "whisper", device="cpu", precision="fp32", pretrained_dir=pre)
    for d in (*settings.gpt_weight_dirs, *settings.sovits_weight_dirs, settings.whisper_dir):
        d.mkdir(parents=True, exist_ok=True)
    lst = make_dataset(root / "data")
    app = serve_app(settings)
    try:
        yield dict(app=app, url=app.local_url, root=root, settings=settings, list=lst, s1=s1, s2g=s2g,
                   services=app.gsv_services)
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(site):
    from gradio_client import Client

    return Client(site["url"], verbose=False)


def _form(site, **over) -> list:
    values = dict(name="ft_api", version="v2Pro", list_file=None, list_path=str(site["list"]), audio_dir="",
                  lang="zh", min_s=1.2, max_s=15.0, min_snr=12.0, ref_min=3.0, ref_max=5.0, val_frac=0.05,
                  test_frac=0.05, split_seed=3, pre_s1=str(site["s1"]), pre_s2g=str(site["s2g"]), pre_s2d="",
                  bert_dir="", hubert_dir="", sv_path="", s2_bs=4, s2_epochs=1, s2_save=1, s2_text_lr=0.4, s1_bs=4,
                  s1_epochs=1, s1_save=1, lora=False, lora_rank=32, device="cpu", precision="fp32", asr_check=False)
    values.update(over)
    assert tuple(values) == FORM_KEYS
    return list(values.values()) + [None, 5]  # + asr model, held-out sentences used


def _rows(table) -> list[list]:
    return table["data"] if isinstance(table, dict) else table


def test_cleaning_rules_read_in_both_languages():
    """Every rule of the cleaning report has a meaning in English and Chinese; the id stays in the first column."""
    from types import SimpleNamespace

    from gradio.context import LocalContext

    from gsv_core.finetune.data import CLEANING_RULES, ROW_RULES
    from pages.cleaning_rules import RULE_TEXT, with_meaning

    assert set(CLEANING_RULES) | set(ROW_RULES) <= set(RULE_TEXT)
    assert all(en.strip() and zh.strip() and en != zh for en, zh in RULE_TEXT.values())
    rows = [["= kept", 20, 31.5, ""], ["low_snr", 2, 3.1, 1], ["some_future_rule", 1, 1.0, 0]]
    assert [r[-1] for r in with_meaning(rows)] == ["clips kept for training", "noisy: SNR below the limit", ""]
    token = LocalContext.request.set(SimpleNamespace(cookies={}, headers={"accept-language": "zh-CN,zh;q=0.9"}))
    try:
        zh = with_meaning(rows)
    finally:
        LocalContext.request.reset(token)
    assert zh[1] == ["low_snr", 2, 3.1, 1, "噪声大：信噪比低于下限"] and zh[0][-1] == "保留用于训练的片段"


def test_api_data_stage_errors_and_status(site, client):
    from gradio_client.exceptions import AppError

    from gsv_core.finetune.data import CLEANING_RULES
    from gsv_core.finetune.layout import ExperimentLayout

    status, rules, _losses, exports, _selection, log = client.predict(*_form(site), api_name="/finetune_data")
    assert "done" in status, status
    rows = _rows(rules)
    names = [r[0] for r in rows]
    assert rows and "= kept" in names and "= train" in names
    assert {"too_short", "missing_audio"} <= set(names) and set(CLEANING_RULES) <= set(names)
    failed = {r[0]: r[1] for r in rows}
    assert failed["too_short"] >= 1 and failed["missing_audio"] == 1 and failed["= kept"] >= 20
    meaning = {r[0]: r[-1] for r in rows}  # the rule id stays; its meaning is the last column
    assert meaning["too_short"] == "shorter than the minimum duration" and all(meaning.values())
    assert "stages done:** data" in exports and "ft_api" in log
    # the values typed into the form reached the experiment (the handler takes its inputs as *args)
    cfg = site["services"].finetune_jobs.status()
    layout = ExperimentLayout.under(site["settings"].experiments_dir, "ft_api")
    saved = layout.experiment_json.read_text(encoding="utf-8")
    assert str(site["s2g"]) in saved and '"seed": 3' in saved and cfg.state == "done"

    with pytest.raises(AppError, match="not usable"):
        client.predict(*_form(site, name="../x"), api_name="/finetune_data")
    assert not (site["settings"].experiments_dir.parent / "x").exists()
    missing = site["root"] / "nowhere" / "missing.list"
    with pytest.raises(AppError, match="missing.list"):
        client.predict(*_form(site, name="ft_missing", list_path=str(missing)), api_name="/finetune_data")

    # the app keeps serving: status and cancel answer, the first experiment's report is still shown
    status, rules, *_ = client.predict("ft_api", api_name="/finetune_status")
    assert "No job running" in status or "done" in status
    assert {"too_short", "missing_audio"} <= {r[0] for r in _rows(rules)}
    assert client.predict(api_name="/finetune_cancel") == "No job running."


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh installs it)")
def test_browser_prepare_data_and_cancel(site):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(site["url"], wait_until="load")
            page.get_by_role("tab", name="Finetune").click()
            name = page.locator("#ft-name input").first
            name.fill("浏览器_ui")
            name.press("Enter")
            page.locator("#ft-list-path textarea, #ft-list-path input").first.fill(str(site["list"]))
            page.get_by_text("Pretrained models (empty = the version's files").click()
            page.get_by_label("GPT s1 .ckpt").fill(str(site["s1"]))
            page.get_by_label("SoVITS s2G .pth").fill(str(site["s2g"]))
            page.locator("#ft-data").click()
            page.locator("#ft-rules [role=gridcell]").filter(has_text="too_short").first.wait_for(timeout=90_000)
            page.wait_for_function("() => document.querySelector('#ft-status').innerText.includes('done')",
                                   timeout=60_000)
            page.locator("#ft-rules").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "finetune_1_data.png"), full_page=True)
            layout_root = site["settings"].experiments_dir / "浏览器_ui"
            saved = (layout_root / "experiment.json").read_text(encoding="utf-8")
            assert str(site["s1"]) in saved and str(site["list"]) in saved

            page.locator("#ft-cancel").click()
            page.locator("#ft-status").get_by_text("No job running.").wait_for(timeout=30_000)
            page.wait_for_timeout(300)
            page.screenshot(path=str(SHOTS / "finetune_2.png"), full_page=True)
            page.close()
        finally:
            browser.close()
