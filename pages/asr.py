"""The ASR tab: layout and event wiring over :mod:`gsv_core.asr` (all the logic lives in the service)."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from gsv_core import asr as asr_svc
from gsv_core import paths as path_policy
from gsv_core.errors import GSVError

from .common import on_page_load, shown_path

log = logging.getLogger(__name__)

_HELP = ("Transcribe a file or a whole folder (searched recursively) with a local faster-whisper model, proofread "
         "the text in the table (edit the **text**, **speaker** or **lang** cells), then save a GPT-SoVITS `.list` "
         "(`path|speaker|LANG|text`), a CSV or SRT subtitles into the output folder. Failed files stay in the "
         "table with their error and are left out of the `.list`.")


def _message(exc: BaseException) -> str:
    if isinstance(exc, GSVError):
        return str(exc)
    log.exception("ASR tab: unexpected error")
    return f"Unexpected error ({type(exc).__name__}): {exc}"


def _fail(exc: BaseException) -> str:
    msg = _message(exc)
    gr.Warning(msg)
    return f"**Error:** {msg}"


def _table_rows(table: Any) -> list[list[Any]]:
    """The Dataframe's value as a list of rows (it arrives as a pandas DataFrame or a list)."""
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):
        return table.values.tolist()
    if isinstance(table, dict) and "data" in table:
        return list(table["data"])
    return [list(r) for r in table]


def build_asr_tab(settings, asr_service: asr_svc.ASRService) -> None:
    """Create the ASR tab's components inside the caller's ``gr.Tab``."""
    out_root = Path(settings.output_dir) / "asr"
    cancels: dict[str, threading.Event] = {}

    def model_choices() -> list[str]:
        return asr_service.model_names()  # names under WHISPER_DIR (no server paths in the page)

    initial = model_choices()
    gr.Markdown(_HELP)
    with gr.Row():
        model = gr.Dropdown(choices=initial, value=initial[0] if initial else None, allow_custom_value=True,
                            label="Model folder (CTranslate2 Whisper)", scale=4,
                            info=f"folders found under {shown_path(settings.whisper_dir)}; or type a model folder path")
        refresh = gr.Button("Refresh models", scale=1)
    with gr.Row():
        language = gr.Dropdown(choices=list(asr_svc.LANGUAGES), value="zh", label="Language",
                               info="auto = detect per file")
        vad = gr.Checkbox(value=True, label="VAD filter (skip silence)")
        beam = gr.Slider(1, 10, value=5, step=1, label="Beam size")
        device = gr.Dropdown(choices=list(asr_svc.DEVICES), value="auto", label="Device")
        compute = gr.Dropdown(choices=list(asr_svc.COMPUTE_TYPES), value="auto", label="Compute type",
                              info="auto = int8 on CPU, float16 on CUDA")
    with gr.Row():
        t2s = gr.Checkbox(value=False, label="Traditional → Simplified (Chinese)")
        punct = gr.Radio(choices=list(asr_svc.PUNCTUATION_MODES), value="keep", label="Chinese punctuation",
                         info="keep · strip · normalise to full-width")
        speaker = gr.Textbox(label="Speaker", placeholder="default: each file's folder name")
    with gr.Row():
        uploads = gr.File(file_count="multiple", label="Audio files (upload)", type="filepath", scale=2,
                          height=140)
        paths = gr.Textbox(label="…or file / folder paths on this machine (one per line)", lines=3, scale=3)
    with gr.Row():
        go = gr.Button("Transcribe", variant="primary")
        stop = gr.Button("Cancel", variant="stop")
    status = gr.Markdown("")
    table = gr.Dataframe(headers=list(asr_svc.TABLE_HEADERS), datatype=["str"] * 4 + ["number"] * 2 + ["str"],
                         value=[], interactive=True, wrap=True, label="Transcripts (edit text before saving)",
                         static_columns=[0, 4, 5, 6], type="array",
                         column_widths=["22%", "9%", "6%", "45%", "5%", "5%", "8%"])
    rows_state = gr.State([])
    with gr.Row():
        list_path = gr.Textbox(label="Open a .list for proofreading (path)", scale=3)
        list_upload = gr.File(label="…or upload a .list", file_types=[".list", ".txt"], type="filepath", scale=2,
                              height=140)
        load_btn = gr.Button("Load .list", scale=1)
    with gr.Row():
        name = gr.Textbox(label="File name (without extension)", placeholder="default: input name + time")
        save_list = gr.Button("Save .list")
        save_csv = gr.Button("Save CSV")
        save_srt = gr.Button("Save SRT")
    saved = gr.File(label="Saved files", file_count="multiple", interactive=False)

    # --- callbacks -------------------------------------------------------------------------------------------
    def on_refresh(current):
        choices = model_choices()
        value = current if current else (choices[0] if choices else None)
        note = "" if choices else (f"**Error:** no model folder found under {settings.whisper_dir}: put a "
                                   "CTranslate2 Whisper model there or type a folder path.")
        return gr.update(choices=choices, value=value), note

    def on_transcribe(model_dir, lang, vad_on, beam_size, dev, ctype, t2s_on, punct_mode, spk, files, path_text,
                      request: gr.Request, progress=gr.Progress()):
        key = getattr(request, "session_hash", None) or "default"
        cancel = threading.Event()
        cancels[key] = cancel
        try:
            # uploads are temporary files: keep copies so the .list points at audio that stays
            inputs = [str(p) for p in asr_svc.keep_uploads(files or [], out_root / "audio", spk or "")]
            inputs += [str(path_policy.check_readable(settings, p.strip(), "audio file or folder", kind="any"))
                       for p in (path_text or "").splitlines() if p.strip()]
            if not inputs:
                raise asr_svc.ASRError("no audio given: upload files, or type a file or folder path")
            if model_dir:
                model_dir = str(path_policy.check_readable(settings, asr_service.resolve_model(model_dir),
                                                           "ASR model folder", kind="dir"))
            opts = asr_svc.ASROptions(model_dir=model_dir or "", language=lang or "zh", vad_filter=bool(vad_on),
                                      beam_size=int(beam_size or 5), device=dev or "auto",
                                      compute_type=ctype or "auto", t2s=bool(t2s_on), punctuation=punct_mode or "keep",
                                      speaker=spk or None)
            progress(0.0, desc="loading model")
            t0 = time.perf_counter()
            rows = asr_service.transcribe(inputs, opts, progress=lambda f, m: progress(f, desc=m), cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a readable message
            return gr.update(), gr.update(), _fail(exc)
        finally:
            cancels.pop(key, None)
        bad = [r for r in rows if not r.ok]
        note = f"{len(rows) - len(bad)}/{len(rows)} files transcribed in {time.perf_counter() - t0:.1f} s"
        if cancel.is_set():
            note = "Cancelled — " + note
        if bad:
            note += f"; {len(bad)} failed (see the status column)"
            gr.Warning(f"{len(bad)} file(s) could not be transcribed: {bad[0].error}")
        return asr_svc.rows_to_table(rows), [r.to_dict() for r in rows], note

    def on_cancel(request: gr.Request):
        key = getattr(request, "session_hash", None) or "default"
        event = cancels.get(key)
        if event is None:
            return "Nothing to cancel."
        event.set()
        return "Cancelling after the current segment…"

    def on_load(path_text, upload):
        source = upload or (path_text or "").strip()
        try:
            if not source:
                raise asr_svc.ASRError("choose a .list file (path or upload)")
            source = str(path_policy.check_readable(settings, source, ".list file"))
            rows = asr_svc.read_list(source)
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), _fail(exc)
        return asr_svc.rows_to_table(rows), [r.to_dict() for r in rows], f"Loaded {len(rows)} lines from {source}"

    def make_save(fmt: str):
        def on_save(table_value, state, base, lang, paths_text):
            try:
                original = [asr_svc.ASRRow.from_dict(d) for d in (state or [])]
                rows = asr_svc.rows_from_table(_table_rows(table_value), original)
                if not rows:
                    raise asr_svc.ASRError("nothing to save: transcribe something or load a .list first")
                stem = asr_svc._safe_name(base or "") or (
                    asr_svc.default_output_name([p for p in (paths_text or "").splitlines() if p.strip()])
                    + time.strftime("_%Y%m%d-%H%M%S"))
                default_lang = lang if lang and lang != "auto" else "zh"
                written = asr_svc.save(rows, fmt, out_root, stem, default_lang=default_lang)
            except Exception as exc:  # noqa: BLE001
                return gr.update(), _fail(exc)
            where = written[0] if len(written) == 1 else f"{len(written)} files in {written[0].parent}"
            return [str(p) for p in written], f"Saved {fmt.upper()}: {where}"
        return on_save

    # --- wiring ----------------------------------------------------------------------------------------------
    refresh.click(on_refresh, [model], [model, status], api_name="asr_refresh_models")
    on_page_load(lambda current: on_refresh(current)[0], [model], [model])
    go.click(on_transcribe, [model, language, vad, beam, device, compute, t2s, punct, speaker, uploads, paths],
             [table, rows_state, status], api_name="asr_transcribe")
    stop.click(on_cancel, None, [status], api_name="asr_cancel", queue=False)
    load_btn.click(on_load, [list_path, list_upload], [table, rows_state, status], api_name="asr_load_list")
    save_inputs = [table, rows_state, name, language, paths]
    save_list.click(make_save("list"), save_inputs, [saved, status], api_name="asr_save_list")
    save_csv.click(make_save("csv"), save_inputs, [saved, status], api_name="asr_save_csv")
    save_srt.click(make_save("srt"), save_inputs, [saved, status], api_name="asr_save_srt")
