"""The ASR tab: layout and event wiring over :mod:`gsv_core.asr` (all the logic lives in the service)."""
from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from gsv_core import asr as asr_svc
from gsv_core import paths as path_policy
from gsv_core.errors import GSVError

from .common import on_page_load, shown_path
from .i18n import T, error_text, say

log = logging.getLogger(__name__)

_HELP = ("Transcribe a file or a whole folder (searched recursively) with a local faster-whisper model, proofread "
         "the text in the table (edit the **text**, **speaker** or **lang** cells), then save a GPT-SoVITS `.list` "
         "(`path|speaker|LANG|text`), a CSV or SRT subtitles into the output folder. Failed files stay in the "
         "table with their error and are left out of the `.list`.")
_HELP_ZH = ("用本地 faster-whisper 模型转写一个文件或整个文件夹（包括子文件夹），在表格里校对文本（可编辑 **text**、"
            "**speaker**、**lang** 列），再把 GPT-SoVITS `.list`（`path|speaker|LANG|text`）、CSV 或 SRT 字幕保存到输出"
            "文件夹。转写失败的文件会连同错误信息留在表格里，但不会写入 `.list`。")
#: the labels of the punctuation modes (the values are the service's)
_PUNCTUATION = {"keep": ("keep", "保留"), "strip": ("strip", "去除"), "fullwidth": ("full-width", "统一为全角")}


def _progress_text(message: str) -> str:
    """A progress line of the ASR service in the request's language ("2/5: a.wav", "done: 5/5 files")."""
    m = re.fullmatch(r"done: (\d+)/(\d+) files", message or "")
    if m:
        return say("done: {n}/{total} files", "完成：{n}/{total} 个文件", n=m.group(1), total=m.group(2))
    return message


def _message(exc: BaseException) -> str:
    if isinstance(exc, GSVError):
        return error_text(exc)
    log.exception("ASR tab: unexpected error")
    return say("Unexpected error ({kind}): {exc}", "意外错误（{kind}）：{exc}", kind=type(exc).__name__, exc=exc)


def _fail(exc: BaseException) -> str:
    msg = _message(exc)
    gr.Warning(msg)
    return say("**Error:** {msg}", "**错误：** {msg}", msg=msg)


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
    gr.Markdown(T(_HELP, _HELP_ZH))
    whisper_dir = shown_path(settings.whisper_dir)
    with gr.Row():
        model = gr.Dropdown(choices=initial, value=initial[0] if initial else None, allow_custom_value=True,
                            label=T("Model folder (CTranslate2 Whisper)", "模型文件夹（CTranslate2 Whisper）"), scale=4,
                            info=T(f"folders found under {whisper_dir}; or type a model folder path",
                                   f"{whisper_dir} 下找到的文件夹；也可以直接输入模型文件夹路径"))
        refresh = gr.Button(T("Refresh models", "刷新模型列表"), scale=1)
    with gr.Row():
        language = gr.Dropdown(choices=[(T("auto", "自动检测"), c) if c == "auto" else c for c in asr_svc.LANGUAGES],
                               value="zh", label=T("Language", "语言"),
                               info=T("auto = detect per file", "自动检测 = 逐个文件识别语言"))
        vad = gr.Checkbox(value=True, label=T("VAD filter (skip silence)", "VAD 过滤（跳过静音）"))
        beam = gr.Slider(1, 10, value=5, step=1, label=T("Beam size", "束搜索宽度（beam size）"))
        device = gr.Dropdown(choices=[(T("auto", "自动"), c) if c == "auto" else c for c in asr_svc.DEVICES],
                             value="auto", label=T("Device", "设备"))
        compute = gr.Dropdown(choices=[(T("auto", "自动"), c) if c == "auto" else c for c in asr_svc.COMPUTE_TYPES],
                              value="auto", label=T("Compute type", "计算精度"),
                              info=T("auto = int8 on CPU, float16 on CUDA", "自动 = CPU 上用 int8，CUDA 上用 float16"))
    with gr.Row():
        t2s = gr.Checkbox(value=False, label=T("Traditional → Simplified (Chinese)", "繁体转简体（中文）"))
        punct = gr.Radio(choices=[(T(*_PUNCTUATION.get(m, (m, m))), m) for m in asr_svc.PUNCTUATION_MODES],
                         value="keep", label=T("Chinese punctuation", "中文标点"),
                         info=T("keep · strip · normalise to full-width", "保留 · 去除 · 统一为全角"))
        speaker = gr.Textbox(label=T("Speaker", "说话人"),
                             placeholder=T("default: each file's folder name", "默认：每个文件所在文件夹的名称"))
    with gr.Row():
        uploads = gr.File(file_count="multiple", label=T("Audio files (upload)", "音频文件（上传）"), type="filepath",
                          scale=2, height=140)
        paths = gr.Textbox(label=T("…or file / folder paths on this machine (one per line)",
                                   "…或本机上的文件 / 文件夹路径（每行一个）"), lines=3, scale=3)
    with gr.Row():
        go = gr.Button(T("Transcribe", "开始转写"), variant="primary")
        stop = gr.Button(T("Cancel", "取消"), variant="stop")
    status = gr.Markdown("")
    table = gr.Dataframe(headers=list(asr_svc.TABLE_HEADERS), datatype=["str"] * 4 + ["number"] * 2 + ["str"],
                         value=[], interactive=True, wrap=True, elem_id="asr-table",
                         label=T("Transcripts (edit text before saving)", "转写结果（保存前可修改文本）"),
                         static_columns=[0, 4, 5, 6], type="array",
                         column_widths=["22%", "9%", "6%", "45%", "5%", "5%", "8%"])
    rows_state = gr.State([])
    with gr.Row():
        list_path = gr.Textbox(label=T("Open a .list for proofreading (path)", "打开 .list 进行校对（路径）"), scale=3)
        list_upload = gr.File(label=T("…or upload a .list", "…或上传 .list 文件"), file_types=[".list", ".txt"],
                              type="filepath", scale=2, height=140)
        load_btn = gr.Button(T("Load .list", "载入 .list"), scale=1)
    with gr.Row():
        name = gr.Textbox(label=T("File name (without extension)", "文件名（不含扩展名）"),
                          placeholder=T("default: input name + time", "默认：输入名称 + 时间"))
        save_list = gr.Button(T("Save .list", "保存 .list"))
        save_csv = gr.Button(T("Save CSV", "保存 CSV"))
        save_srt = gr.Button(T("Save SRT", "保存 SRT"))
    saved = gr.File(label=T("Saved files", "已保存的文件"), file_count="multiple", interactive=False)

    # --- callbacks -------------------------------------------------------------------------------------------
    def on_refresh(current):
        choices = model_choices()
        value = current if current else (choices[0] if choices else None)
        note = "" if choices else say("**Error:** no model folder found under {folder}: put a CTranslate2 Whisper "
                                      "model there or type a folder path.",
                                      "**错误：** {folder} 下没有找到模型文件夹：请把 CTranslate2 Whisper 模型放到那里，"
                                      "或直接输入文件夹路径。", folder=settings.whisper_dir)
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
                raise asr_svc.ASRError(say("no audio given: upload files, or type a file or folder path",
                                           "没有音频：请上传文件，或输入文件或文件夹路径"))
            if model_dir:
                model_dir = str(path_policy.check_readable(settings, asr_service.resolve_model(model_dir),
                                                           "ASR model folder", kind="dir"))
            opts = asr_svc.ASROptions(model_dir=model_dir or "", language=lang or "zh", vad_filter=bool(vad_on),
                                      beam_size=int(beam_size or 5), device=dev or "auto",
                                      compute_type=ctype or "auto", t2s=bool(t2s_on), punctuation=punct_mode or "keep",
                                      speaker=spk or None)
            progress(0.0, desc=say("loading model", "正在加载模型"))
            t0 = time.perf_counter()
            rows = asr_service.transcribe(inputs, opts, progress=lambda f, m: progress(f, desc=_progress_text(m)),
                                          cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a readable message
            return gr.update(), gr.update(), _fail(exc)
        finally:
            cancels.pop(key, None)
        bad = [r for r in rows if not r.ok]
        note = say("{ok}/{n} files transcribed in {s:.1f} s", "已转写 {ok}/{n} 个文件，用时 {s:.1f} 秒",
                   ok=len(rows) - len(bad), n=len(rows), s=time.perf_counter() - t0)
        if cancel.is_set():
            note = say("Cancelled — ", "已取消 — ") + note
        if bad:
            note += say("; {n} failed (see the status column)", "；{n} 个失败（见 status 列）", n=len(bad))
            gr.Warning(say("{n} file(s) could not be transcribed: {error}", "{n} 个文件无法转写：{error}",
                           n=len(bad), error=bad[0].error))
        return asr_svc.rows_to_table(rows), [r.to_dict() for r in rows], note

    def on_cancel(request: gr.Request):
        key = getattr(request, "session_hash", None) or "default"
        event = cancels.get(key)
        if event is None:
            return say("Nothing to cancel.", "没有可取消的任务。")
        event.set()
        return say("Cancelling after the current segment…", "当前片段完成后取消…")

    def on_load(path_text, upload):
        source = upload or (path_text or "").strip()
        try:
            if not source:
                raise asr_svc.ASRError(say("choose a .list file (path or upload)", "请选择一个 .list 文件（路径或上传）"))
            source = str(path_policy.check_readable(settings, source, ".list file"))
            rows = asr_svc.read_list(source)
        except Exception as exc:  # noqa: BLE001
            return gr.update(), gr.update(), _fail(exc)
        return (asr_svc.rows_to_table(rows), [r.to_dict() for r in rows],
                say("Loaded {n} lines from {source}", "已从 {source} 载入 {n} 行", n=len(rows), source=source))

    def make_save(fmt: str):
        def on_save(table_value, state, base, lang, paths_text):
            try:
                original = [asr_svc.ASRRow.from_dict(d) for d in (state or [])]
                rows = asr_svc.rows_from_table(_table_rows(table_value), original)
                if not rows:
                    raise asr_svc.ASRError(say("nothing to save: transcribe something or load a .list first",
                                               "没有可保存的内容：请先转写音频或载入 .list"))
                stem = asr_svc._safe_name(base or "") or (
                    asr_svc.default_output_name([p for p in (paths_text or "").splitlines() if p.strip()])
                    + time.strftime("_%Y%m%d-%H%M%S"))
                default_lang = lang if lang and lang != "auto" else "zh"
                written = asr_svc.save(rows, fmt, out_root, stem, default_lang=default_lang)
            except Exception as exc:  # noqa: BLE001
                return gr.update(), _fail(exc)
            where = written[0] if len(written) == 1 else say("{n} files in {folder}", "{folder} 中的 {n} 个文件",
                                                             n=len(written), folder=written[0].parent)
            return [str(p) for p in written], say("Saved {fmt}: {where}", "已保存 {fmt}：{where}", fmt=fmt.upper(),
                                                  where=where)
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
