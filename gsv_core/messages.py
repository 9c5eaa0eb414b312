"""Message keys of user errors, in English and Chinese.

A service raises ``keyed(SomeGSVError, "text.empty", limit=5000)``: an ordinary exception of that type whose
``str()`` is the English message (what CLIs and logs print) and which also carries ``key`` and ``params``, so a page
can show :func:`render` in the user's language. Errors raised without a key are shown in English everywhere.

One entry per message: ``key: (english, chinese)``, both ``str.format`` templates over the same parameters.
"""
from __future__ import annotations

from typing import Any, Type, TypeVar

CATALOG: dict[str, tuple[str, str]] = {
    # models and files
    "models.none": ("No GPT model and no SoVITS model found. Open the Models tab to download the pretrained models "
                    "or to point at an existing GPT-SoVITS folder.",
                    "没有找到 GPT 模型和 SoVITS 模型。请打开“模型”页下载预训练模型，或指定已有的 GPT-SoVITS 文件夹。"),
    "models.none_kind": ("No {kind} model found. Open the Models tab to download the pretrained models or to point "
                         "at an existing GPT-SoVITS folder.",
                         "没有找到 {kind} 模型。请打开“模型”页下载预训练模型，或指定已有的 GPT-SoVITS 文件夹。"),
    "models.pick_both": ("Choose a GPT model and a SoVITS model first.", "请先选择 GPT 模型和 SoVITS 模型。"),
    "models.missing_file": ("Model file not found: {name}", "找不到模型文件：{name}"),
    "path.none": ("No {what} was given.", "没有提供{what}。"),
    "path.refused_data": ("{what} {name!r} cannot be used: the app reads only its own folders, uploads and the data "
                          "folders ({data}; DATA_DIRS in my_config.py). Upload the file, or put it in a data folder.",
                          "无法使用{what} {name!r}：本应用只读取它自己的文件夹、上传的文件和数据文件夹（{data}；见 "
                          "my_config.py 中的 DATA_DIRS）。请上传文件，或把它放进数据文件夹。"),
    "path.missing": ("{what} {name!r} does not exist (check the path, or upload it).",
                     "{what} {name!r} 不存在（请检查路径，或上传文件）。"),
    "path.missing_plain": ("{what} {name!r} does not exist.", "{what} {name!r} 不存在。"),
    "path.is_folder": ("{what} {name!r} is a folder; give a file.", "{what} {name!r} 是文件夹，请给出文件。"),
    "path.not_folder": ("{what} {name!r} is not a folder.", "{what} {name!r} 不是文件夹。"),
    "path.outside": ("{what} {name!r} cannot be used: only folders under {base}/ can be chosen here.",
                     "无法使用{what} {name!r}：这里只能选择 {base}/ 下的文件夹。"),
    # audio
    "audio.none": ("no audio given (upload or record a file first)", "没有音频（请先上传或录制）"),
    "audio.not_found": ("{name}: audio file not found", "{name}：找不到音频文件"),
    "audio.empty_file": ("{name}: the file is empty (0 bytes)", "{name}：文件为空（0 字节）"),
    "audio.undecodable": ("{name}: cannot decode this audio (corrupt or unsupported format; {error})",
                          "{name}：无法解码此音频（文件损坏或格式不支持；{error}）"),
    "audio.ref_length": ("{name}: reference audio is {duration:.2f} s long ({side}); it must be between {min_s:g} and "
                         "{max_s:g} seconds. Trim or pick another clip.",
                         "{name}：参考音频长 {duration:.2f} 秒（{side}）；必须在 {min_s:g} 到 {max_s:g} 秒之间。"
                         "请剪裁或换一段。"),
    "path.refused": ("{name} is outside the folders this app may read.", "{name} 不在本应用可读取的文件夹内。"),
    "path.not_found": ("File not found: {name}", "找不到文件：{name}"),
    # text and references
    "request.invalid": ("Cannot synthesise: {problems}.", "无法合成：{problems_zh}。"),
    "text.empty": ("Enter some text to synthesise.", "请输入要合成的文本。"),
    "text.too_long": ("The text has {n} characters; at most {limit} can be synthesised at once.",
                      "文本有 {n} 个字符，一次最多合成 {limit} 个。"),
    "ref.missing": ("Choose a reference audio (3–10 s of the target voice).",
                    "请选择参考音频（目标音色的 3–10 秒录音）。"),
    "tts.freeze_mismatch": ("Freeze: the frozen semantic tokens are for {tokens} fragment(s), but the text is cut into "
                            "{fragments}. Keep the text and split method of the take whose tokens you freeze, or "
                            "untick Freeze.",
                            "冻结：冻结的语义 token 对应 {tokens} 个片段，但文本被切分成 {fragments} 个。请保持该次合成的文本"
                            "和切分方式，或取消勾选“冻结”。"),
    "tts.freeze_nothing": ("Freeze: there are no semantic tokens to reuse yet. Synthesise once without Freeze first.",
                           "冻结：还没有可复用的语义 token。请先不勾选“冻结”合成一次。"),
    "ref.text_needed": ("SoVITS {version} needs the reference text (what is said in the reference audio).",
                        "SoVITS {version} 需要参考文本（参考音频里说的话）。"),
    # jobs
    "job.busy": ("Another job is running ({what}); wait for it or cancel it first.",
                 "另一个任务正在运行（{what}）；请等待其完成或先取消。"),
    "job.cancelled": ("Cancelled.", "已取消。"),
    # library management
    "library.clip_in_product": ("Clip {clip} is used by product(s) {products}; delete or edit those products first.",
                                "片段 {clip} 被预设 {products} 使用；请先删除或修改这些预设。"),
    "library.clip_in_task": ("Clip {clip} is a reference of sweep task(s) {tasks}; delete those tasks first.",
                             "片段 {clip} 是对比任务 {tasks} 的参考音频；请先删除这些任务。"),
    "library.role_not_empty": ("Role {role} still holds {clips} clip(s), {tasks} task(s) and {products} product(s); "
                               "tick \"delete everything it holds\" (CLI: --force) to delete them with it.",
                               "角色 {role} 仍有 {clips} 个片段、{tasks} 个任务和 {products} 个预设；勾选“连同其内容一起删除”"
                               "（命令行：--force）才能一并删除。"),
    "library.task_running": ("Task {task} is running; cancel it and wait until it stops before deleting it.",
                             "任务 {task} 正在运行；请先取消并等待其停止后再删除。"),
    "library.confirm_delete": ("Tick the confirmation box to delete {what}.", "请勾选确认框以删除 {what}。"),
    "library.not_found": ("{what} not found (deleted meanwhile?).", "找不到{what}（可能已被删除）。"),
    "library.name_taken": ("The name {name} is already taken.", "名称 {name} 已被使用。"),
    "library.name_empty": ("Enter a name.", "请输入名称。"),
    # uploads and tables
    "upload.too_big": ("{name} is larger than the {limit} MB upload limit.", "{name} 超过上传上限 {limit} MB。"),
    "csv.bad_rows": ("{name}: bad rows:\n{rows}", "{name}：以下行有误：\n{rows}"),
    "number.not_finite": ("{field}: expected a finite number, got {value}", "{field}：需要一个有限的数值，收到 {value}"),
    # downloads
    "download.offline": ("Cannot reach {host} to download {name} ({reason}). Check the internet connection or set "
                         "HF_ENDPOINT to a mirror (e.g. https://hf-mirror.com); the files can also be copied by hand "
                         "into {folder}.",
                         "无法连接 {host} 下载 {name}（{reason}）。请检查网络，或把 HF_ENDPOINT 设为镜像（如 "
                         "https://hf-mirror.com）；也可以手动把文件复制到 {folder}。"),
    "download.folder_invalid": ("{name} is not a GPT-SoVITS folder (no GPT_SoVITS/pretrained_models inside).",
                                "{name} 不是 GPT-SoVITS 文件夹（其中没有 GPT_SoVITS/pretrained_models）。"),
}

#: the Chinese of words a message takes as parameters (what a path is, which side of a limit): Chinese messages
#: show them translated; unknown words stay as they are
WORDS_ZH = {
    "file": "文件", "folder": "文件夹", "test CSV": "测试集 CSV", "reference audio": "参考音频", "audio": "音频",
    "ASR model folder": "ASR 模型文件夹", "WavLM model folder": "WavLM 模型文件夹", "run folder": "评测文件夹",
    "auxiliary reference": "辅助参考音频", "speaker reference": "说话人参考音频", "aux_refs": "辅助参考音频",
    "sv_ref": "说话人参考音频", "GPT model": "GPT 模型", "SoVITS model": "SoVITS 模型", ".list file": ".list 文件",
    "CSV": "CSV", "too short": "太短", "too long": "太长", "dataset folder": "数据集文件夹",
    "recording": "录音", "recordings folder": "录音文件夹", "product zip": "预设压缩包",
}

E = TypeVar("E", bound=BaseException)


def english(key: str, params: dict[str, Any]) -> str:
    return CATALOG[key][0].format(**params)


def keyed(exc_type: Type[E], key: str, **params: Any) -> E:
    """An exception of ``exc_type`` with the English message of ``key`` that also carries the key and parameters."""
    if key not in CATALOG:
        raise KeyError(f"unknown message key {key!r}")
    exc = exc_type(english(key, params))
    exc.key = key  # type: ignore[attr-defined]
    exc.params = params  # type: ignore[attr-defined]
    return exc


def render(exc: BaseException, lang: str) -> str:
    """The message of ``exc`` in ``lang`` ('zh' or 'en'): its key's template when it carries one, else ``str(exc)``."""
    key = getattr(exc, "key", None)
    if key in CATALOG:
        template = CATALOG[key][1 if lang == "zh" else 0]
        params = dict(getattr(exc, "params", {}))
        if lang == "zh":
            params = {k: WORDS_ZH.get(v, v) if isinstance(v, str) and k in ("what", "side") else v
                      for k, v in params.items()}
        try:
            return template.format(**params)
        except (KeyError, IndexError, ValueError):
            return str(exc)
    return str(exc)
