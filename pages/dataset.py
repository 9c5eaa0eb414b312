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

from .cleaning_rules import REPORT_COLUMNS, with_meaning
from .common import on_page_load, shown_path, user_errors
from .i18n import T, error_text, say
from .refpool import build_refpool_import

#: the steps in Chinese (gsv_core.dataset.flow.STEP_LABELS holds the English names)
STEP_LABELS_ZH = {"separate": "人声分离", "denoise": "降噪", "slice": "切分", "normalize": "响度归一化",
                  "transcribe": "转写", "report": "清洗报告"}
STEP_CHOICES = [(T(f"{i + 1} {STEP_LABELS[s]}", f"{i + 1} {STEP_LABELS_ZH[s]}"), s) for i, s in enumerate(STEPS)]
#: the separation models' descriptions in Chinese (gsv_core.dataset.separation holds the English ones)
SEP_LABELS_ZH = {"bs-roformer": "BS-Roformer 人声/伴奏（人声 SDR 12.9；质量最好，CPU 上较慢）",
                 "mel-roformer": "Mel-Band-Roformer 人声/伴奏（人声 SDR 11.4）",
                 "hp2": "UVR HP2 人声/伴奏（VR；原版 UVR5 默认，速度快）",
                 "hp5": "UVR HP5：只保留主人声，去掉和声（VR）",
                 "deecho-dereverb": "UVR DeEcho-DeReverb：去除人声轨的回声和混响（VR）"}


def _step_name(step: str) -> str:
    return say(STEP_LABELS[step], STEP_LABELS_ZH.get(step, STEP_LABELS[step]))


def _progress_text(message: str) -> str:
    """A progress line of the flow ("slicing: clip 3/9") with its step name in the request's language."""
    for step, label in STEP_LABELS.items():
        if message.startswith(label + ":"):
            return _step_name(step) + message[len(label):]
    return message

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
HELP_ZH = """
把长录音（播客、直播、游戏语音；FFmpeg 能读的任何格式，或整个文件夹）整理成干净的训练 `.list`。勾选需要的步骤；
每一步都写入数据集文件夹，并从中断处**继续**（取消、崩溃或重启后再按一次“运行”即可）。*人声分离*保留人声、去掉音乐和
音效（audio-separator 与 UVR 模型：`python -m gsv_core.download --separator bs-roformer`）；*降噪*去除稳定噪声
（noisereduce）；*切分*在静音处切开（可先预览切点）；*响度归一化*把每个片段调到相同的 LUFS；*转写*使用 faster-whisper
模型（`python -m gsv_core.download --asr large-v3`）；然后**校对**表格（点一行试听，修改文本，删除或合并行），并查看
*清洗报告*：其中 3–5 秒的干净片段（下限可低至 2 秒）组成参考池，可以导入 RefAudio 的角色。
命令行做同样的事：`python -m gsv_core.dataset NAME recordings/ --steps ...`。
"""


def _status_md(flow: Optional[DatasetFlow]) -> str:
    if flow is None or not flow.state_path.is_file():
        return say("No dataset loaded: type a new name, add recordings and press Run.",
                   "尚未载入数据集：输入新名称，添加录音，然后按“运行”。")
    st = flow.status()
    done = say(", ", "、").join(_step_name(s) for s, ok in st["steps"].items() if ok) or "—"
    return say("**{name}** · {inputs} input(s) · steps done: {done}  \n"
               "separated {separated} · denoised {denoised} · clips {sliced} · normalised {normalized} · "
               "transcribed {transcribed} · **.list rows {list_rows}** · reference pool {refpool}",
               "**{name}** · {inputs} 个输入 · 已完成步骤：{done}  \n"
               "已分离 {separated} · 已降噪 {denoised} · 片段 {sliced} · 已归一化 {normalized} · "
               "已转写 {transcribed} · **.list 行数 {list_rows}** · 参考池 {refpool}",
               **{**st, "name": html.escape(st["name"]), "done": done})


def build_dataset_tab(settings: Any, services: Any) -> dict[str, Any]:
    c: dict[str, Any] = {}
    cancels: dict[str, threading.Event] = {}
    sep_dir = separation.model_dir(settings)

    def names() -> list[str]:
        return DatasetFlow.list_names(settings)

    def sep_choices() -> list[tuple[str, str]]:
        have = separation.present_models(sep_dir)
        # computed per request (the page-load hook refreshes them), so they follow the request's language
        out = [(f"{m.key} · {say(m.label, SEP_LABELS_ZH.get(m.key, m.label))}"
                + ("" if m.key in have else say(" (not downloaded)", "（未下载）")), m.key)
               for m in separation.SEPARATION_MODELS]
        out += [(f + say(" (downloaded)", "（已下载）"), f) for f in have if f not in separation.MODELS_BY_KEY]
        return out

    def asr_choices() -> list[str]:
        return asr_svc.model_names(settings.whisper_dir)

    with gr.Accordion(T("Help", "帮助"), open=False):
        gr.Markdown(T(HELP, HELP_ZH))
    with gr.Row(equal_height=True):
        existing = names()
        datasets_dir = shown_path(settings.datasets_dir)
        c["name"] = gr.Dropdown(existing, value=existing[0] if existing else None, allow_custom_value=True, scale=3,
                                label=T(f"Dataset (a folder under {datasets_dir})", f"数据集（{datasets_dir} 下的文件夹）"),
                                elem_id="ds-name")
        c["load"] = gr.Button(T("Load", "载入"), size="sm", scale=1, elem_id="ds-load")
    with gr.Row():
        c["uploads"] = gr.File(file_count="multiple", type="filepath", label=T("Recordings (upload)", "录音（上传）"),
                               height=130, scale=2, elem_id="ds-uploads")
        c["paths"] = gr.Textbox(label=T("…or recordings / folders on this machine (one per line; data folders only)",
                                        "……或本机上的录音 / 文件夹（每行一个；仅限数据文件夹）"),
                                lines=3, scale=3, elem_id="ds-paths")
    c["steps"] = gr.CheckboxGroup(STEP_CHOICES, value=list(DEFAULT_STEPS), label=T("Steps", "步骤"), elem_id="ds-steps")
    with gr.Accordion(T("1 Vocal separation (audio-separator)", "1 人声分离（audio-separator）"), open=False):
        with gr.Row():
            c["sep_model"] = gr.Dropdown(sep_choices(), value=separation.DEFAULT_MODEL, allow_custom_value=True,
                                         label=T("model (python -m gsv_core.download --separator NAME)",
                                                 "模型（python -m gsv_core.download --separator NAME）"), scale=3,
                                         elem_id="ds-sep-model")
            c["sep_window"] = gr.Number(value=30.0, minimum=5, maximum=600, label=T("window (s)", "窗口（秒）"),
                                        scale=1)
    with gr.Accordion(T("2 Denoising (noisereduce)", "2 降噪（noisereduce）"), open=False):
        with gr.Row():
            c["dn_strength"] = gr.Slider(0.1, 1.0, value=DenoiseParams.strength, step=0.05,
                                         label=T("strength (share of the noise removed)", "强度（去除噪声的比例）"))
            c["dn_stationary"] = gr.Checkbox(value=True, label=T("steady noise (hum, hiss); off = changing noise",
                                                                 "稳定噪声（嗡声、嘶声）；关闭 = 变化的噪声"))
    with gr.Accordion(T("3 Slicer (upstream's parameters)", "3 切分（与原版参数相同）"), open=True):
        d = SlicerParams()
        with gr.Row():
            c["threshold"] = gr.Number(value=d.threshold_db, label=T("silence threshold (dB)", "静音阈值（dB）"),
                                       elem_id="ds-threshold")
            c["min_length"] = gr.Number(value=d.min_length_ms, precision=0, label=T("min length (ms)", "最短长度（毫秒）"))
            c["min_interval"] = gr.Number(value=d.min_interval_ms, precision=0,
                                          label=T("min interval (ms)", "最短切分间隔（毫秒）"))
            c["hop_size"] = gr.Number(value=d.hop_size_ms, precision=0, label=T("hop size (ms)", "帧移（毫秒）"))
            c["max_sil_kept"] = gr.Number(value=d.max_sil_kept_ms, precision=0,
                                          label=T("max silence kept (ms)", "保留静音上限（毫秒）"))
            c["max_amp"] = gr.Number(value=d.normalize_max, label=T("max amplitude", "最大幅度"))
            c["alpha"] = gr.Number(value=d.alpha, label=T("mix alpha", "混合比例 alpha"))
        with gr.Row():
            c["preview"] = gr.Button(T("Preview cut points (first recording, after separation/denoising when done)",
                                       "预览切点（第一段录音；已完成人声分离/降噪时用其结果）"),
                                     size="sm", elem_id="ds-preview")
        c["preview_plot"] = gr.Plot(label=T("waveform and cut points", "波形与切点"), elem_id="ds-preview-plot")
    with gr.Accordion(T("4 Loudness (pyloudnorm) · 5 Transcription (faster-whisper)",
                        "4 响度归一化（pyloudnorm）· 5 转写（faster-whisper）"), open=True):
        with gr.Row():
            c["lufs"] = gr.Number(value=LoudnessParams.target_lufs, label=T("target loudness (LUFS)", "目标响度（LUFS）"))
            c["peak_db"] = gr.Number(value=LoudnessParams.peak_db, label=T("peak limit (dBFS)", "峰值上限（dBFS）"))
            models = asr_choices()
            whisper_dir = shown_path(settings.whisper_dir)
            c["asr_model"] = gr.Dropdown(models, value=models[0] if models else None, allow_custom_value=True,
                                         label=T(f"ASR model (under {whisper_dir}; "
                                                 "python -m gsv_core.download --asr large-v3)",
                                                 f"ASR 模型（{whisper_dir} 下；"
                                                 "python -m gsv_core.download --asr large-v3）"), scale=2,
                                         elem_id="ds-asr-model")
            c["lang"] = gr.Dropdown(list(asr_svc.LANGUAGES), value="zh", label=T("language", "语言"), elem_id="ds-lang")
            c["beam"] = gr.Slider(1, 10, value=5, step=1, label=T("beam size", "束宽 beam size"))
            c["speaker"] = gr.Textbox(label=T("speaker (default: dataset name)", "说话人（默认：数据集名）"))
    with gr.Accordion(T("6 Cleaning report · reference pool", "6 清洗报告 · 参考池"), open=False):
        with gr.Row():
            c["min_s"] = gr.Number(value=1.2, minimum=0.1, label=T("drop shorter than (s)", "剔除短于（秒）"))
            c["max_s"] = gr.Number(value=15.0, minimum=1.0, label=T("drop longer than (s)", "剔除长于（秒）"))
            c["ref_min"] = gr.Number(value=3.0, minimum=MIN_REFPOOL_S,
                                     label=T(f"reference pool from (s, ≥ {MIN_REFPOOL_S:g})",
                                             f"参考池下限（秒，≥ {MIN_REFPOOL_S:g}）"),
                                     elem_id="ds-ref-min")
            c["ref_max"] = gr.Number(value=5.0, minimum=2.5, label=T("reference pool to (s)", "参考池上限（秒）"),
                                     elem_id="ds-ref-max")
    with gr.Row():
        c["run"] = gr.Button(T("Run (resumes)", "运行（可续跑）"), variant="primary", elem_id="ds-run")
        c["cancel"] = gr.Button(T("Cancel", "取消"), variant="stop", elem_id="ds-cancel")
    c["status"] = gr.Markdown(_status_md(None), elem_id="ds-status")
    gr.Markdown(T("### Proofreading — click a row to hear it; edit speaker / lang / text, then Save",
                  "### 校对 — 点一行试听；修改说话人 / 语言 / 文本，然后保存"))
    c["table"] = gr.Dataframe(headers=PROOF_COLUMNS, datatype=["str", "number", "str", "str", "str", "str"],
                              value=[], interactive=True, wrap=True, type="array", static_columns=[0, 1, 5],
                              column_widths=["24%", "6%", "9%", "5%", "46%", "10%"], max_height=460,
                              elem_id="ds-table")
    with gr.Row(equal_height=True):
        c["player"] = gr.Audio(label=T("selected clip", "选中的片段"), type="filepath", interactive=False, scale=3,
                               elem_id="ds-player")
        with gr.Column(scale=2):
            c["selected"] = gr.Textbox(label=T("selected row (clip)", "选中的行（片段）"), interactive=True,
                                       elem_id="ds-selected")
            with gr.Row():
                c["save"] = gr.Button(T("Save edits", "保存修改"), size="sm", elem_id="ds-save")
                c["delete"] = gr.Button(T("Delete row", "删除行"), size="sm", elem_id="ds-delete")
                c["merge"] = gr.Button(T("Merge with next", "与下一行合并"), size="sm", elem_id="ds-merge")
                c["restore"] = gr.Button(T("Restore deleted", "恢复已删除"), size="sm", elem_id="ds-restore")
    c["list_file"] = gr.File(label=T(".list / CSV", ".list / CSV 文件"), interactive=False, file_count="multiple",
                             elem_id="ds-list-file")
    c["report"] = gr.Dataframe(headers=REPORT_COLUMNS, interactive=False, label=T("Cleaning report", "清洗报告"),
                               elem_id="ds-report", max_height=360, wrap=True,
                               column_widths=["22%", "10%", "12%", "12%", "44%"])

    def flow_of(name: Optional[str]) -> DatasetFlow:
        return DatasetFlow(settings, (name or "").strip())

    def outputs_of(flow: Optional[DatasetFlow]) -> tuple:
        if flow is None:
            return _status_md(None), [], None, []
        files = [str(p) for p in (flow.list_path, flow.csv_path) if p.is_file()]
        return (_status_md(flow), [r.cells() for r in flow.rows()], files or None, with_meaning(flow.report_rows()))

    view_outputs = [c["status"], c["table"], c["list_file"], c["report"]]

    def config_from(values: dict) -> FlowConfig:
        def num(key, kind=float):
            v = values[key]
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DatasetFlowError(say("{field}: give a number", "{field}：请填写一个数值",
                                           field=key.replace("_", " ")))
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
            raise DatasetFlowError(say("dataset {name} is already running; cancel it or wait",
                                       "数据集 {name} 正在运行；请取消或等待", name=key))
        event = threading.Event()
        cancels[key] = event
        t0 = time.perf_counter()
        try:
            progress(0.0, desc=say("starting", "开始"))
            summary = flow.run(cfg, asr=services.asr, progress=lambda f, m: progress(f, desc=_progress_text(m)),
                               cancel=event.is_set)
            note = say("Done in {s:.0f} s.", "完成，用时 {s:.0f} 秒。", s=time.perf_counter() - t0)
        except DatasetCancelled as exc:
            summary, note = None, say("Cancelled: {why}", "已取消：{why}", why=error_text(exc))
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
            return say("Nothing is running for this dataset.", "这个数据集没有正在运行的任务。")
        event.set()
        return say("Cancelling after the current window or clip; everything finished so far is kept.",
                   "将在当前窗口或片段结束后取消；已完成的部分都会保留。")

    c["cancel"].click(cancel, c["name"], c["status"], api_name="dataset_cancel", queue=False)

    @user_errors
    def load(name):
        flow = flow_of(name)
        if not flow.state_path.is_file():
            raise DatasetFlowError(say("there is no dataset {name!r} yet: add recordings and press Run",
                                       "还没有数据集 {name!r}：请添加录音并按“运行”", name=flow.name))
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
            raise DatasetFlowError(say("click the row to delete first", "请先点选要删除的行"))
        flow.delete([selected])
        return (*outputs_of(flow), "")

    c["delete"].click(delete, [c["name"], c["selected"]], view_outputs + [c["selected"]], api_name="dataset_delete")

    @user_errors
    def merge(name, selected):
        flow = flow_of(name)
        rows = [r.clip for r in flow.rows()]
        clip = (selected or "").strip()
        if clip not in rows:
            raise DatasetFlowError(say("click the first of the two rows to merge", "请先点选要合并的两行中的第一行"))
        i = rows.index(clip)
        if i + 1 >= len(rows):
            raise DatasetFlowError(say("the last row has no next row to merge with", "最后一行没有可合并的下一行"))
        flow.merge(rows[i], rows[i + 1])
        return (*outputs_of(flow), "")

    c["merge"].click(merge, [c["name"], c["selected"]], view_outputs + [c["selected"]], api_name="dataset_merge")

    @user_errors
    def restore(name):
        flow = flow_of(name)
        flow.restore()
        return outputs_of(flow)

    c["restore"].click(restore, c["name"], view_outputs, api_name="dataset_restore")

    gr.Markdown(T("### Reference pool → RefAudio", "### 参考池 → 参考音频库"))

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
