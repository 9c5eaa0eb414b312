"""The Models tab (first run): every pretrained file the app can use, present or missing, a download button, and a
field to use the models of an existing GPT-SoVITS folder. Layout and wiring only: the logic is
:mod:`gsv_core.model_setup` (command line: ``python -m gsv_core.download``)."""
from __future__ import annotations

from typing import Any

import gradio as gr

from gsv_core import model_setup as ms
from gsv_core.download import VERSION_NEEDS
from gsv_core.errors import GSVError

from .common import on_page_load, shown_path, user_errors
from .i18n import T, error_text, say


def _failed(exc: BaseException) -> str:
    """A user error of an action: a warning toast and the same text in the page; the table stays as it was."""
    msg = error_text(exc)
    gr.Warning(msg)
    return say("**Error:** {msg}", "**错误：** {msg}", msg=msg)

COLUMNS = ["item", "status", "size", "where", "needed for", "notes"]
CANCEL_KEY = "models-download"
#: the "everything version X needs" choices, the usual first download (upstream's current default) first
RECOMMENDED_ORDER = ("v2ProPlus", "v2Pro", "v2", "v4", "v3", "v1")
#: what each item is for, in Chinese (the service's English text is the other side)
_PURPOSE_ZH = {
    "bert": "合成与微调中的中文文本特征（所有版本）；G2PW 的分词器",
    "hubert": "合成时把参考音频变成提示 token；微调的数据准备（所有版本）",
    "sv": "v2Pro / v2ProPlus 的说话人向量（合成与微调）",
    "g2pw": "v2 及以后版本的中文多音字判断（没有它则用 pypinyin，准确度较低）",
    "v1": "v1 底模：v1 零样本合成与 v1 微调（s2D 仅微调需要）",
    "v2": "v2 底模：v2 零样本合成与 v2 微调（s2D 仅微调需要）",
    "v2Pro": "v2Pro 底模：v2Pro 零样本合成与微调（s2D 仅微调需要）",
    "v2ProPlus": "v2ProPlus 底模：v2ProPlus 零样本合成与微调（s2D 仅微调需要）",
    "v3": "v3 底模 + BigVGAN 声码器：v3 零样本合成（24 kHz）与 v3 LoRA 微调",
    "v4": "v4 底模 + 声码器：v4 零样本合成（48 kHz）与 v4 LoRA 微调",
}
_WHISPER_ZH = "语音识别（ASR 页、数据集转写、参考文本）；faster-whisper"


def _state(e: ms.ModelEntry) -> str:
    # plain symbols (✓ ⚠ ✗), not emoji: they render with the app's CJK fonts
    if e.state == "present":
        return say("✓ present", "✓ 已就绪")
    if e.state == "partial":
        return say("⚠ incomplete", "⚠ 不完整")
    return say("✗ missing", "✗ 缺失")


def _notes(e: ms.ModelEntry) -> str:
    names = [n.split("/")[-1] for n in e.missing]
    if names:
        return say("missing: {names}", "缺少：{names}", names=", ".join(names))
    if e.present and e.training_missing:
        return say("finetuning also needs: {names}", "微调还需要：{names}",
                   names=", ".join(n.split("/")[-1] for n in e.training_missing))
    return ""


def _purpose(e: ms.ModelEntry) -> str:
    zh = _WHISPER_ZH if e.group == "asr" else _PURPOSE_ZH.get(e.key, e.purpose)
    return say(e.purpose, zh)  # no parameters: the texts are not formatted


def rows(entries: list[ms.ModelEntry]) -> list[list[str]]:
    return [[f"{e.name} ({e.key})", _state(e), ms.human_size(e.size), shown_path(e.path), _purpose(e), _notes(e)]
            for e in entries]


def download_choices(entries: list[ms.ModelEntry]) -> list[tuple[str, str]]:
    """The dropdown: "everything version X needs" first, then every item that is not complete."""
    by_key = {e.key: e for e in entries}
    out = []
    for version in RECOMMENDED_ORDER:
        keys = VERSION_NEEDS[version]
        todo = [k for k in keys if k in by_key and not by_key[k].present]
        if todo:
            out.append((say("everything {v} needs ({keys})", "{v} 需要的全部（{keys}）", v=version,
                            keys=", ".join(todo)), f"version:{version}"))
    for e in entries:
        if not e.present:
            out.append((f"{e.name} ({e.key})", e.key))
    return out


def summary(settings: Any, entries: list[ms.ModelEntry]) -> str:
    present = sum(1 for e in entries if e.present and e.group != "asr")
    total = sum(1 for e in entries if e.group != "asr")
    text = say("**{present} of {total}** pretrained items present in `{folder}`.",
               "预训练模型 **{present}/{total}** 项已就绪，位于 `{folder}`。", present=present, total=total,
               folder=shown_path(settings.pretrained_dir))
    folder = ms.saved_gpt_sovits_folder(settings)
    if folder is not None:
        text += " " + say("Using the GPT-SoVITS folder `{folder}`.", "正在使用 GPT-SoVITS 文件夹 `{folder}`。",
                          folder=shown_path(folder))
    return text


def build_models_tab(settings: Any, services: Any) -> dict[str, Any]:
    """The Models tab; ``settings`` is the app's shared settings object (the one ``services`` holds)."""
    c: dict[str, Any] = {}
    gr.Markdown(T(
        "Every pretrained file the app can use. Download what is missing (from Hugging Face; an interrupted "
        "download resumes), or use the models of a GPT-SoVITS folder you already have. The command line does the "
        "same: `python -m gsv_core.download --list`.",
        "本应用可使用的全部预训练文件。可下载缺失的文件（来自 Hugging Face；中断后可续传），或直接使用你已有的 "
        "GPT-SoVITS 文件夹中的模型。命令行同样可以：`python -m gsv_core.download --list`。"))
    c["summary"] = gr.Markdown(elem_id="models-summary")
    c["table"] = gr.Dataframe(headers=COLUMNS, datatype=["str"] * len(COLUMNS), interactive=False, wrap=True,
                              elem_id="models-table", max_height=520,
                              column_widths=["19%", "9%", "7%", "25%", "25%", "15%"])
    with gr.Row(equal_height=True):
        c["item"] = gr.Dropdown([], label=T("Download", "下载"), scale=4, elem_id="models-item",
                                info=T("an item, or everything one model version needs",
                                       "某一项，或某个模型版本需要的全部"))
        c["training"] = gr.Checkbox(value=True, label=T("with the finetuning files (s2D)", "包括微调所需文件（s2D）"),
                                    scale=2, elem_id="models-training")
        c["download"] = gr.Button(T("Download", "下载"), variant="primary", scale=1, elem_id="models-download")
        c["cancel"] = gr.Button(T("Cancel", "取消"), variant="stop", scale=1, elem_id="models-cancel")
        c["refresh"] = gr.Button(T("Refresh", "刷新"), scale=1, elem_id="models-refresh")
    c["download_info"] = gr.Markdown(elem_id="models-download-info")
    gr.Markdown(T("### Use an existing GPT-SoVITS folder", "### 使用已有的 GPT-SoVITS 文件夹"))
    with gr.Row(equal_height=True):
        c["folder"] = gr.Textbox(label=T("GPT-SoVITS folder on the server", "服务器上的 GPT-SoVITS 文件夹"), scale=4,
                                 placeholder="D:/GPT-SoVITS-v2pro-20250604", elem_id="models-folder",
                                 info=T("the folder holding GPT_SoVITS/pretrained_models; the finetuned models in its "
                                        "GPT_weights… and SoVITS_weights… folders are listed too",
                                        "包含 GPT_SoVITS/pretrained_models 的文件夹；其中 GPT_weights… 和 "
                                        "SoVITS_weights… 文件夹里的微调模型也会被列出"))
        c["use_folder"] = gr.Button(T("Use this folder", "使用此文件夹"), variant="primary", scale=1,
                                    elem_id="models-use-folder")
        c["forget_folder"] = gr.Button(T("Stop using it", "不再使用"), scale=1, elem_id="models-forget-folder")
    c["folder_info"] = gr.Markdown(elem_id="models-folder-info")

    def refresh():
        entries = ms.inventory(settings)
        choices = download_choices(entries)
        return (summary(settings, entries), rows(entries),
                gr.update(choices=choices, value=choices[0][1] if choices else None))

    listing = [c["summary"], c["table"], c["item"]]
    on_page_load(refresh, None, listing)
    c["refresh"].click(user_errors(refresh), None, listing)

    @user_errors
    def fetch(key, training, progress=gr.Progress()):
        if not key:
            return (_failed(ms.ModelSetupError(say("Choose what to download first.", "请先选择要下载的内容。"))),
                    *refresh())
        keys = list(VERSION_NEEDS[key.split(":", 1)[1]]) if key.startswith("version:") else [key]
        cancel = services.cancel_event(CANCEL_KEY)
        done = []
        try:
            for i, k in enumerate(keys):
                if cancel.is_set():
                    break
                step = (lambda frac, text, i=i: progress((i + frac) / len(keys), desc=text))
                e = ms.download(settings, k, progress=step, cancel=cancel, training_files=bool(training))
                done.append(e.name)
        except ms.DownloadCancelled:
            pass
        except GSVError as exc:  # offline, a mirror without the file, a full disk: say so, keep the table
            return (_failed(exc), *refresh())
        finally:
            services.cancel(CANCEL_KEY)
        if cancel.is_set() and len(done) < len(keys):
            note = say("Cancelled after {done}. What was downloaded is kept: download again to resume.",
                       "已在 {done} 之后取消。已下载的部分会保留：再次下载即可续传。",
                       done=", ".join(done) or say("nothing", "无"))
        else:
            note = say("Done: {names}. The model lists of the other tabs show them after Refresh (or a page reload).",
                       "完成：{names}。其他页的模型列表在刷新（或重新加载页面）后显示它们。", names=", ".join(done))
        return (note, *refresh())

    c["download"].click(fetch, [c["item"], c["training"]], [c["download_info"], *listing],
                        concurrency_limit=1, concurrency_id="models-download")

    def cancel():
        services.cancel(CANCEL_KEY)
        return say("Cancelling…", "正在取消……")

    c["cancel"].click(cancel, None, c["download_info"], queue=False)

    @user_errors
    def use_folder(raw):
        try:
            report = ms.use_gpt_sovits_folder(settings, raw)
        except GSVError as exc:
            return (_failed(exc), gr.update(), gr.update(), *refresh())
        if getattr(services, "_engine", None) is not None:  # an open engine re-reads G2PW's folder
            from gsv_core.text import configure as configure_text

            configure_text(settings)
        note = say("Using `{folder}`: {n} pretrained item(s), {gpt} GPT and {sovits} SoVITS finetuned file(s). The "
                   "TTS tab lists them after Refresh (or a page reload); the app remembers the folder.",
                   "正在使用 `{folder}`：{n} 项预训练模型，{gpt} 个 GPT 和 {sovits} 个 SoVITS 微调模型。语音合成页"
                   "刷新（或重新加载页面）后即可选择；应用会记住此文件夹。", folder=shown_path(report.folder),
                   n=report.pretrained, gpt=report.gpt, sovits=report.sovits)
        return (note, "", "", *refresh())  # the field emptied, an earlier download error cleared

    c["use_folder_event"] = c["use_folder"].click(use_folder, c["folder"],
                                                  [c["folder_info"], c["folder"], c["download_info"], *listing])

    @user_errors
    def forget_folder():
        if ms.saved_gpt_sovits_folder(settings) is None:
            return (say("No GPT-SoVITS folder is in use.", "当前没有使用 GPT-SoVITS 文件夹。"), *refresh())
        ms.forget_gpt_sovits_folder(settings)
        return (say("The folder is forgotten: the app's own pretrained folder is used again after a restart.",
                    "已不再记住该文件夹：重启后应用会重新使用自己的预训练文件夹。"), *refresh())

    c["forget_folder"].click(forget_folder, None, [c["folder_info"], *listing])
    return c
