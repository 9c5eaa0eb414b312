"""The Dataset tab: layout and wiring only, over :mod:`gsv_core.dataset` (the flow from raw recordings to a clean
``.list``: separation, denoising, slicing with a preview of the cut points, loudness, transcription, proofreading,
cleaning report and reference pool). ``python -m gsv_core.dataset`` runs the same flow without the UI."""
from __future__ import annotations

import dataclasses
import html
import threading
import time
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from gsv_core import asr as asr_svc
from gsv_core import paths
from gsv_core.dataset import separation
from gsv_core.dataset.cleanup import DenoiseParams, LoudnessParams
from gsv_core.dataset.flow import (DEFAULT_STEPS, MIN_REFPOOL_S, PROOF_COLUMNS, STEP_LABELS, STEPS, DatasetCancelled,
                                   DatasetFlow, DatasetFlowError, FlowConfig)
from gsv_core.finetune.slicer import SlicerParams

from .common import on_page_load, shown_path, user_errors
from .refpool import build_refpool_import

REPORT_COLUMNS = ["group / rule", "clips", "seconds", "only reason"]
STEP_CHOICES = [(f"{i + 1} {STEP_LABELS[s]}", s) for i, s in enumerate(STEPS)]

HELP = """
From long recordings (podcasts, streams, game voice lines; any format FFmpeg reads, or folders of them) to a clean
training `.list`. Tick the steps you need; each writes into the dataset's folder and **resumes** where it stopped
(after Cancel, a crash or a restart press Run again). *Separation* keeps the voice and removes music and effects
(audio-separator with UVR models: `python -m gsv_core.download --separator bs-roformer`); *denoising* removes steady
noise (noisereduce); *slicing* cuts at silences (preview the cut points first); *loudness* brings every clip to the
same LUFS; *transcription* runs a faster-whisper model (`python -m gsv_core.download --asr large-v3`); then
**proofread** the table (click a row to hear it, edit text, delete or merge rows) and look at the *cleaning report*:
its clean 3–5 s clips (the range can start at 2 s) form the reference pool you can import into a RefAudio role.
The same flow: `python -m gsv_core.dataset NAME recordings/ --steps ...`.
"""


def _status_md(flow: Optional[DatasetFlow]) -> str:
    if flow is None or not flow.state_path.is_file():
        return "No dataset loaded: type a new name, add recordings and press Run."
    st = flow.status()
    done = ", ".join(STEP_LABELS[s] for s, ok in st["steps"].items() if ok) or "—"
    return (f"**{html.escape(st['name'])}** · {st['inputs']} input(s) · steps done: {done}  \n"
            f"separated {st['separated']} · denoised {st['denoised']} · clips {st['sliced']} · normalised "
            f"{st['normalized']} · transcribed {st['transcribed']} · **.list rows {st['list_rows']}** · reference "
            f"pool {st['refpool']}")


def build_dataset_tab(settings: Any, services: Any) -> dict[str, Any]:
    c: dict[str, Any] = {}
    cancels: dict[str, threading.Event] = {}
    sep_dir = separation.model_dir(settings)

    def names() -> list[str]:
        return DatasetFlow.list_names(settings)

    def sep_choices() -> list[tuple[str, str]]:
        have = separation.present_models(sep_dir)
        out = [(f"{m.key} · {m.label}" + ("" if m.key in have else " (not downloaded)"), m.key)
               for m in separation.SEPARATION_MODELS]
        out += [(f"{f} (downloaded)", f) for f in have if f not in separation.MODELS_BY_KEY]
        return out

    def asr_choices() -> list[str]:
        return asr_svc.model_names(settings.whisper_dir)

    with gr.Accordion("Help 帮助", open=False):
        gr.Markdown(HELP)
    with gr.Row(equal_height=True):
        existing = names()
        c["name"] = gr.Dropdown(existing, value=existing[0] if existing else None, allow_custom_value=True, scale=3,
                                label=f"数据集 Dataset (a folder under {shown_path(settings.datasets_dir)})",
                                elem_id="ds-name")
        c["load"] = gr.Button("Load 载入", size="sm", scale=1, elem_id="ds-load")
    with gr.Row():
        c["uploads"] = gr.File(file_count="multiple", type="filepath", label="Recordings 录音 (upload)", height=130,
                               scale=2, elem_id="ds-uploads")
        c["paths"] = gr.Textbox(label="…or recordings / folders on this machine (one per line; data folders only)",
                                lines=3, scale=3, elem_id="ds-paths")
    c["steps"] = gr.CheckboxGroup(STEP_CHOICES, value=list(DEFAULT_STEPS), label="Steps 步骤", elem_id="ds-steps")
    with gr.Accordion("1 Vocal separation 人声分离 (audio-separator)", open=False):
        with gr.Row():
            c["sep_model"] = gr.Dropdown(sep_choices(), value=separation.DEFAULT_MODEL, allow_custom_value=True,
                                         label="model (python -m gsv_core.download --separator NAME)", scale=3,
                                         elem_id="ds-sep-model")
            c["sep_window"] = gr.Number(value=30.0, minimum=5, maximum=600, label="window (s)", scale=1)
    with gr.Accordion("2 Denoising 降噪 (noisereduce)", open=False):
        with gr.Row():
            c["dn_strength"] = gr.Slider(0.1, 1.0, value=DenoiseParams.strength, step=0.05,
                                         label="strength (share of the noise removed)")
            c["dn_stationary"] = gr.Checkbox(value=True, label="steady noise (hum, hiss); off = changing noise")
    with gr.Accordion("3 Slicer 切分 (upstream's parameters)", open=True):
        d = SlicerParams()
        with gr.Row():
            c["threshold"] = gr.Number(value=d.threshold_db, label="silence threshold (dB)", elem_id="ds-threshold")
            c["min_length"] = gr.Number(value=d.min_length_ms, precision=0, label="min length (ms)")
            c["min_interval"] = gr.Number(value=d.min_interval_ms, precision=0, label="min interval (ms)")
            c["hop_size"] = gr.Number(value=d.hop_size_ms, precision=0, label="hop size (ms)")
            c["max_sil_kept"] = gr.Number(value=d.max_sil_kept_ms, precision=0, label="max silence kept (ms)")
            c["max_amp"] = gr.Number(value=d.normalize_max, label="max amplitude")
            c["alpha"] = gr.Number(value=d.alpha, label="mix alpha")
        with gr.Row():
            c["preview"] = gr.Button("Preview cut points 预览切点 (first recording, after separation/denoising when done)", size="sm", elem_id="ds-preview")
        c["preview_plot"] = gr.Plot(label="waveform and cut points", elem_id="ds-preview-plot")
    with gr.Accordion("4 Loudness 响度 (pyloudnorm) · 5 Transcription 转写 (faster-whisper)", open=True):
        with gr.Row():
            c["lufs"] = gr.Number(value=LoudnessParams.target_lufs, label="target loudness (LUFS)")
            c["peak_db"] = gr.Number(value=LoudnessParams.peak_db, label="peak limit (dBFS)")
            models = asr_choices()
            c["asr_model"] = gr.Dropdown(models, value=models[0] if models else None, allow_custom_value=True,
                                         label=f"ASR model (under {shown_path(settings.whisper_dir)}; "
                                               "python -m gsv_core.download --asr large-v3)", scale=2,
                                         elem_id="ds-asr-model")
            c["lang"] = gr.Dropdown(list(asr_svc.LANGUAGES), value="zh", label="language", elem_id="ds-lang")
            c["beam"] = gr.Slider(1, 10, value=5, step=1, label="beam size")
            c["speaker"] = gr.Textbox(label="speaker (default: dataset name)")
    with gr.Accordion("6 Cleaning report 清洗报告 · reference pool 参考池", open=False):
        with gr.Row():
            c["min_s"] = gr.Number(value=1.2, minimum=0.1, label="drop shorter than (s)")
            c["max_s"] = gr.Number(value=15.0, minimum=1.0, label="drop longer than (s)")
            c["ref_min"] = gr.Number(value=3.0, minimum=MIN_REFPOOL_S, label=f"reference pool from (s, ≥ {MIN_REFPOOL_S:g})",
                                     elem_id="ds-ref-min")
            c["ref_max"] = gr.Number(value=5.0, minimum=2.5, label="reference pool to (s)", elem_id="ds-ref-max")
    with gr.Row():
        c["run"] = gr.Button("Run 运行 (resumes)", variant="primary", elem_id="ds-run")
        c["cancel"] = gr.Button("Cancel 取消", variant="stop", elem_id="ds-cancel")
    c["status"] = gr.Markdown(_status_md(None), elem_id="ds-status")
    gr.Markdown("### Proofreading 校对 — click a row to hear it; edit speaker / lang / text, then Save")
    c["table"] = gr.Dataframe(headers=PROOF_COLUMNS, datatype=["str", "number", "str", "str", "str", "str"],
                              value=[], interactive=True, wrap=True, type="array", static_columns=[0, 1, 5],
                              column_widths=["24%", "6%", "9%", "5%", "46%", "10%"], max_height=460,
                              elem_id="ds-table")
    with gr.Row(equal_height=True):
        c["player"] = gr.Audio(label="selected clip", type="filepath", interactive=False, scale=3,
                               elem_id="ds-player")
        with gr.Column(scale=2):
            c["selected"] = gr.Textbox(label="selected row (clip)", interactive=True, elem_id="ds-selected")
            with gr.Row():
                c["save"] = gr.Button("Save edits 保存", size="sm", elem_id="ds-save")
                c["delete"] = gr.Button("Delete row 删除", size="sm", elem_id="ds-delete")
                c["merge"] = gr.Button("Merge with next 合并", size="sm", elem_id="ds-merge")
                c["restore"] = gr.Button("Restore deleted", size="sm", elem_id="ds-restore")
    c["list_file"] = gr.File(label=".list / CSV", interactive=False, file_count="multiple", elem_id="ds-list-file")
    c["report"] = gr.Dataframe(headers=REPORT_COLUMNS, interactive=False, label="Cleaning report 清洗报告",
                               elem_id="ds-report", max_height=360)

    def flow_of(name: Optional[str]) -> DatasetFlow:
        return DatasetFlow(settings, (name or "").strip())

    def outputs_of(flow: Optional[DatasetFlow]) -> tuple:
        if flow is None:
            return _status_md(None), [], None, []
        files = [str(p) for p in (flow.list_path, flow.csv_path) if p.is_file()]
        return (_status_md(flow), [r.cells() for r in flow.rows()], files or None, flow.report_rows())

    view_outputs = [c["status"], c["table"], c["list_file"], c["report"]]

    def config_from(values: dict) -> FlowConfig:
        def num(key, kind=float):
            v = values[key]
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DatasetFlowError(f"{key.replace('_', ' ')}: give a number")
            return kind(v)

        asr_model = values["asr_model"]
        steps = tuple(values["steps"] or ())
        if asr_model:
            asr_model = str(paths.check_readable(settings, asr_svc.resolve_model(settings.whisper_dir, asr_model),
                                                 "ASR model folder", kind="dir"))
        return FlowConfig(
            steps=steps, separation_model=(values["sep_model"] or separation.DEFAULT_MODEL).strip(),
            separation_window_s=num("sep_window"),
            denoise=DenoiseParams(strength=num("dn_strength"), stationary=bool(values["dn_stationary"])),
            slicer=SlicerParams(threshold_db=num("threshold"), min_length_ms=num("min_length", int),
                                min_interval_ms=num("min_interval", int), hop_size_ms=num("hop_size", int),
                                max_sil_kept_ms=num("max_sil_kept", int), normalize_max=num("max_amp"),
                                alpha=num("alpha")),
            loudness=LoudnessParams(target_lufs=num("lufs"), peak_db=num("peak_db")),
            asr_model=asr_model or "", language=values["lang"] or "zh", beam_size=num("beam", int),
            speaker=(values["speaker"] or "").strip(), refpool_seconds=(num("ref_min"), num("ref_max")),
            min_seconds=num("min_s"), max_seconds=num("max_s")).validate()

    def take_inputs(flow: DatasetFlow, uploads, path_text) -> None:
        typed = [str(paths.check_readable(settings, p.strip(), "recording or folder", kind="any"))
                 for p in (path_text or "").splitlines() if p.strip()]
        if typed or uploads:
            current = [] if typed else flow.inputs()
            flow.set_inputs(current + typed)
        if uploads:
            flow.add_uploads(uploads)

    form_keys = ("name", "uploads", "paths", "steps", "sep_model", "sep_window", "dn_strength", "dn_stationary",
                 "threshold", "min_length", "min_interval", "hop_size", "max_sil_kept", "max_amp", "alpha", "lufs",
                 "peak_db", "asr_model", "lang", "beam", "speaker", "min_s", "max_s", "ref_min", "ref_max")
    form = [c[k] for k in form_keys]

    @user_errors
    def run(*args, progress=gr.Progress()):
        values = dict(zip(form_keys, args))
        flow = flow_of(values["name"])
        cfg = config_from(values)
        take_inputs(flow, values["uploads"], values["paths"])
        key = flow.name
        if key in cancels:
            raise DatasetFlowError(f"dataset {key} is already running; cancel it or wait")
        event = threading.Event()
        cancels[key] = event
        t0 = time.perf_counter()
        try:
            progress(0.0, desc="starting")
            summary = flow.run(cfg, asr=services.asr, progress=lambda f, m: progress(f, desc=m), cancel=event.is_set)
            note = f"Done in {time.perf_counter() - t0:.0f} s."
        except DatasetCancelled as exc:
            summary, note = None, f"Cancelled: {exc}"
        finally:
            cancels.pop(key, None)
        status, table, files, report = outputs_of(flow)
        gr.Info(note)
        status = f"{note}  \n{status}" if summary is None else f"{note} {status}"
        return status, table, files, report, gr.update(choices=names(), value=flow.name)

    c["run"].click(run, form, view_outputs + [c["name"]], api_name="dataset_run", concurrency_limit=2)

    def cancel(name):
        event = cancels.get((name or "").strip())
        if event is None:
            return "Nothing is running for this dataset."
        event.set()
        return "Cancelling after the current window or clip; everything finished so far is kept."

    c["cancel"].click(cancel, c["name"], c["status"], api_name="dataset_cancel", queue=False)

    @user_errors
    def load(name):
        flow = flow_of(name)
        if not flow.state_path.is_file():
            raise DatasetFlowError(f"there is no dataset {flow.name!r} yet: add recordings and press Run")
        cfg = flow.config()
        asr_name = ""
        if cfg.asr_model:
            try:
                asr_name = Path(cfg.asr_model).resolve().relative_to(Path(settings.whisper_dir).resolve()).as_posix()
            except ValueError:
                asr_name = ""
        sl, dn, ld = cfg.slicer, cfg.denoise, cfg.loudness
        form_values = [list(cfg.steps), cfg.separation_model, cfg.separation_window_s, dn.strength, dn.stationary,
                       sl.threshold_db, sl.min_length_ms, sl.min_interval_ms, sl.hop_size_ms, sl.max_sil_kept_ms,
                       sl.normalize_max, sl.alpha, ld.target_lufs, ld.peak_db, asr_name or None, cfg.language,
                       cfg.beam_size, cfg.speaker, cfg.min_seconds, cfg.max_seconds, cfg.refpool_seconds[0],
                       cfg.refpool_seconds[1]]
        return (*outputs_of(flow), *form_values)

    loaded_keys = [k for k in form_keys if k not in ("name", "uploads", "paths")]
    c["load"].click(load, c["name"], view_outputs + [c[k] for k in loaded_keys], api_name="dataset_load")

    @user_errors
    def preview(*args):
        values = dict(zip(form_keys, args))
        flow = flow_of(values["name"])
        take_inputs(flow, values["uploads"], values["paths"])
        cfg = config_from({**values, "steps": ["slice"]})
        from gsv_core.dataset.audiostream import AudioStream
        from gsv_core.dataset.slicing import plan, preview_figure, scan_loudness

        stem, path, stage = flow.slicer_input(dataclasses.replace(cfg, steps=tuple(values["steps"] or ())))
        minutes = getattr(settings, "max_audio_minutes", None)
        scan = scan_loudness(AudioStream(path, cfg.slicer.sample_rate,
                                         max_seconds=float(minutes) * 60 if minutes else None), cfg.slicer)
        chunks = plan(scan, cfg.slicer)
        return preview_figure(scan, chunks, cfg.slicer, title=f"{stem} · {stage}"), _status_md(flow)

    c["preview"].click(preview, form, [c["preview_plot"], c["status"]], api_name="dataset_preview")

    def select_row(name, table, evt: gr.SelectData):
        try:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
            rows = _rows(table)
            clip = str(rows[row][0])
            return str(flow_of(name).clip_path(clip)), clip
        except Exception:  # noqa: BLE001 - a click outside the data: nothing to play
            return None, ""

    c["table"].select(select_row, [c["name"], c["table"]], [c["player"], c["selected"]], show_progress="hidden")

    @user_errors
    def save(name, table):
        flow = flow_of(name)
        flow.save_edits(_rows(table))
        return outputs_of(flow)

    c["save"].click(save, [c["name"], c["table"]], view_outputs, api_name="dataset_save_edits")

    @user_errors
    def delete(name, selected):
        flow = flow_of(name)
        if not (selected or "").strip():
            raise DatasetFlowError("click the row to delete first")
        flow.delete([selected])
        return (*outputs_of(flow), "")

    c["delete"].click(delete, [c["name"], c["selected"]], view_outputs + [c["selected"]], api_name="dataset_delete")

    @user_errors
    def merge(name, selected):
        flow = flow_of(name)
        rows = [r.clip for r in flow.rows()]
        clip = (selected or "").strip()
        if clip not in rows:
            raise DatasetFlowError("click the first of the two rows to merge")
        i = rows.index(clip)
        if i + 1 >= len(rows):
            raise DatasetFlowError("the last row has no next row to merge with")
        flow.merge(rows[i], rows[i + 1])
        return (*outputs_of(flow), "")

    c["merge"].click(merge, [c["name"], c["selected"]], view_outputs + [c["selected"]], api_name="dataset_merge")

    @user_errors
    def restore(name):
        flow = flow_of(name)
        flow.restore()
        return outputs_of(flow)

    c["restore"].click(restore, c["name"], view_outputs, api_name="dataset_restore")

    gr.Markdown("### Reference pool → RefAudio")

    def pool_of(name):
        flow = flow_of(name)
        return flow.refpool_list if flow.refpool_list.is_file() else None

    c["pool"] = build_refpool_import(services, pool_of, [c["name"]], "ds", "dataset_import_pool")

    def on_load(current):
        existing = names()
        value = current if current in existing else (existing[0] if existing else current)
        try:
            flow = flow_of(value) if value else None
        except Exception:  # noqa: BLE001
            flow = None
        return (gr.update(choices=existing, value=value), gr.update(choices=sep_choices()),
                gr.update(choices=asr_choices()), *outputs_of(flow))

    on_page_load(on_load, [c["name"]], [c["name"], c["sep_model"], c["asr_model"], *view_outputs])
    return c


def _rows(table: Any) -> list[list[Any]]:
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):
        return table.values.tolist()
    if isinstance(table, dict) and "data" in table:
        return list(table["data"])
    return [list(r) for r in table]
