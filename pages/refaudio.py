"""The RefAudio tab: layout and wiring only. Everything it does is :class:`refaudio.service.RefAudioService`
(``services.refaudio``: one per app, sharing the app's engine and ASR service); see docs/refaudio.md.

Sub-tabs: Library (roles, .list import, clip table with filters, re-labelling, clip view and splitting, speaker
grouping), Sweep (comparison tasks with progress and cancel), Results (sortable, filterable table; player,
spectrogram, metrics, 0-5 score saved at once, A/B compare, long-text stage), Products (save, export, import).
Files shown in the page come only from the library and output folders (``resolve_served``)."""
from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Sequence

import gradio as gr

from gsv_core.errors import GSVError

from . import manage
from .common import on_page_load, split_method_choices, text_language_choices, user_errors
from .i18n import T, say

CLIP_COLUMNS = ["id", "category", "name", "duration", "valid", "language", "transcript", "checked", "best score",
                "from clip"]
RESULT_COLUMNS = ["id", "cell", "reference", "text", "sample", "seed", "duration", "cer", "sim_ref", "sim_centroid",
                  "duration_z", "flags", "score", "remark", "status"]
TASK_COLUMNS = ["id", "name", "compare", "status", "done", "failed", "total", "note"]
PRODUCT_COLUMNS = ["id", "role", "name", "GPT", "SoVITS", "ref clip", "aux clips", "score", "params"]
SCORE_CHOICES = [(T("none", "未评"), -1)] + [(str(k), k) for k in range(6)]
LANGS = text_language_choices()
SPLITS = split_method_choices()
#: labels of the sort keys, compare types and filters whose values the services read (technical names such as
#: top_k or cer are shown as they are)
SORT_LABELS = {"id": ("id", "id"), "name": ("name", "名称"), "duration": ("duration", "时长"),
               "category": ("category", "分类"), "created": ("created", "创建时间"), "language": ("language", "语言"),
               "score": ("score", "评分"), "cell": ("cell", "单元格"), "seed": ("seed", "种子"), "text": ("text", "文本"),
               "reference": ("reference", "参考片段"), "sample": ("sample", "样本")}
COMPARE_LABELS = {
    "none": ("none (the base settings only)", "无（只用基础参数）"),
    "ref_audio": ("ref_audio (reference clips)", "ref_audio（参考片段）"),
    "gpt_path": ("gpt_path (GPT models)", "gpt_path（GPT 模型）"),
    "sovits_path": ("sovits_path (SoVITS models)", "sovits_path（SoVITS 模型）"),
    "split_method": ("split_method (text splitting)", "split_method（文本切分方式）"),
    "aux_refs": ("aux_refs (auxiliary references)", "aux_refs（辅助参考音频）"),
    "speed": ("speed", "speed（语速）"), "pause": ("pause (between fragments)", "pause（片段间停顿）"),
    "kpt": ("kpt (grid of top_k × top_p × temperature)", "kpt（top_k × top_p × temperature 网格）"),
    "models": ("models (every GPT × every SoVITS)", "models（每个 GPT × 每个 SoVITS）"),
    "full": ("full (JSON: several settings at once)", "full（JSON：同时对比多个参数）"),
}


#: the states of a task (RefAudioService.task_status) in Chinese
STATE_ZH = {"queued": "排队中", "running": "运行中", "scoring": "评分中", "done": "已完成", "cancelled": "已取消",
            "failed": "失败", "pending": "待运行"}


def _sort_choices(keys: Sequence[str], labels: Optional[dict] = None) -> list[tuple[Any, str]]:
    """Dropdown choices over ``keys`` (the values the services read), labelled in both languages where a label
    exists."""
    labels = SORT_LABELS if labels is None else labels
    return [(T(*labels[k]) if k in labels else k, k) for k in keys]

HELP_EN = """
**Workflow** 1. *Library*: create a role (category + name), import a GPT-SoVITS `.list` (`audio|speaker|lang|text`;
upload the .list together with its audio files or a zip of both, or give a .list path on this machine), filter the
clips, re-label, split long clips, group speakers. 2. *Sweep*: choose what to compare (reference clips, top_k,
top_p, temperature, a kpt grid, models, ...), test texts and samples; every cell uses the same seeds, so cells
differ only by what varies. 3. *Results*: longest first by default; sort by any metric, listen, look at the
spectrogram, score 0-5 (saved at once), compare two results A/B, run a long text with the best settings.
4. *Products*: save a result's complete settings as a voice preset; export a zip (our `preset.json`, upstream
`api_v2.json` / `tts_infer.yaml`) or load it in the TTS tab ("Load product").

**Values** of a single-variable sweep are comma-separated (`5, 15, 30`); `aux_refs` takes groups of clip ids
separated by `;` (`3 4; 5; ` — an empty group means none); `full` takes JSON (`{"top_k": [5, 15], "speed": [0.9,
1.1]}`). **Split regions**: one per line, `start end [transcript]` in seconds.
"""
HELP_ZH = """
**流程** 1. *素材库*：创建角色（分类 + 名称），导入 GPT-SoVITS 的 `.list`（`音频|说话人|语言|文本`；把 .list 和
它的音频文件一起上传，或上传两者的 zip，或填写本机上的 .list 路径），筛选片段、重新分类、切分长片段、按说话人分组。
2. *参数对比*：选择要对比的项（参考片段、top_k、top_p、temperature、kpt 网格、模型……）、测试文本和每格样本数；
每一格使用相同的随机种子，因此各格之间只差在被对比的那一项。3. *结果*：默认最长的在前；可按任一指标排序、试听、
查看频谱、打 0-5 分（立即保存）、A/B 对比两个结果、用最佳设置跑一段长文本。4. *预设*：把一个结果的完整设置保存为
音色预设；导出 zip（本项目的 `preset.json`，以及上游的 `api_v2.json` / `tts_infer.yaml`），或在语音合成页载入
（“载入预设”）。

**对比值**：单变量对比用逗号分隔（`5, 15, 30`）；`aux_refs` 接受以 `;` 分隔的多组片段 id（`3 4; 5; `——空组表示
不用辅助参考）；`full` 接受 JSON（`{"top_k": [5, 15], "speed": [0.9, 1.1]}`）。**切分区间**：每行一个，
`起点 终点 [转写]`，单位为秒。
"""


# -- small parsers (pure; the errors they raise are shown in the page) ----------------------------------------------

class RefAudioPageError(GSVError):
    """A value typed into the RefAudio tab that cannot be used."""


#: the Chinese names of the things the page's errors name (``what`` of the parsers below; English: the key)
_WHAT_ZH = {
    "clip ids": "片段 id", "aux_refs group": "aux_refs 组", "auxiliary clip ids": "辅助参考片段 id",
    "reference clip ids": "参考片段 id", "product ids": "预设 id", "clip": "片段", "anchor clip": "锚点片段",
    "task": "任务", "result": "结果", "result A": "结果 A", "result B": "结果 B", "task or result": "任务或结果",
    "result (Results tab)": "结果（结果页）", "max CER": "最大 CER", "min similarity": "最低相似度",
}


def _what(what: str) -> str:
    """``what`` in the language of the request (English when it has no Chinese name)."""
    return say(what, _WHAT_ZH.get(what, what))


def parse_ids(text: Any, what: str = "clip ids") -> list[int]:
    """'3, 4 7' -> [3, 4, 7]; numbers from a list pass through."""
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        tokens = [str(t) for t in text]
    else:
        tokens = [t for t in re.split(r"[\s,;]+", str(text).strip()) if t]
    out = []
    for t in tokens:
        try:
            f = float(t)
        except ValueError:
            raise RefAudioPageError(say("{what}: {t!r} is not a number.", "{what}：{t!r} 不是数字。",
                                        what=_what(what), t=t)) from None
        if f != int(f) or f < 1:
            raise RefAudioPageError(say("{what}: {t!r} is not an id (a whole number from 1).",
                                        "{what}：{t!r} 不是 id（应为从 1 起的整数）。", what=_what(what), t=t))
        if int(f) not in out:
            out.append(int(f))
    return out


def parse_list_values(text: Any, what: str) -> list[str]:
    values = [v.strip() for v in re.split(r"[,\n]+", str(text or "")) if v.strip()]
    if not values:
        raise RefAudioPageError(say("Give the {what} values to compare, separated by commas (e.g. 5, 15, 30).",
                                    "请填写要对比的 {what} 取值，用逗号分隔（例如 5, 15, 30）。", what=what))
    return values


def parse_values(compare: str, text: str, gpt_values: Sequence[str], sovits_values: Sequence[str],
                 grid: dict[str, str]) -> Any:
    """The ``values`` of a TaskSpec from the form fields of the Sweep sub-tab."""
    if compare in ("none", "ref_audio"):
        return None
    if compare == "kpt":
        out = {k: parse_list_values(v, k) for k, v in grid.items() if str(v or "").strip()}
        if not out:
            raise RefAudioPageError(say("A kpt grid needs values for top_k, top_p and/or temperature.",
                                        "kpt 网格需要填写 top_k、top_p 和/或 temperature 的取值。"))
        return out
    if compare == "gpt_path":
        if not gpt_values:
            raise RefAudioPageError(say("Choose the GPT models to compare in 'GPT models to compare'.",
                                        "请在“要对比的 GPT 模型”中选择要对比的 GPT 模型。"))
        return list(gpt_values)
    if compare == "sovits_path":
        if not sovits_values:
            raise RefAudioPageError(say("Choose the SoVITS models to compare in 'SoVITS models to compare'.",
                                        "请在“要对比的 SoVITS 模型”中选择要对比的 SoVITS 模型。"))
        return list(sovits_values)
    if compare == "models":
        if not gpt_values or not sovits_values:
            raise RefAudioPageError(say("A models comparison pairs every chosen GPT with every chosen SoVITS model: "
                                        "choose at least one of each.",
                                        "模型对比会把每个选中的 GPT 与每个选中的 SoVITS 模型配对：两种各至少选一个。"))
        return [[g, s] for g in gpt_values for s in sovits_values]
    if compare == "aux_refs":
        groups = str(text or "").split(";")
        return [parse_ids(g, "aux_refs group") for g in groups]
    if compare == "full":
        try:
            values = json.loads(str(text or ""))
        except json.JSONDecodeError as exc:
            raise RefAudioPageError(say("A full comparison takes JSON like {{\"top_k\": [5, 15]}}: {exc}",
                                        "full 对比需要 JSON，例如 {{\"top_k\": [5, 15]}}：{exc}", exc=exc)) from None
        if not isinstance(values, dict):
            raise RefAudioPageError(say("A full comparison takes a JSON object: setting -> list of values.",
                                        "full 对比需要一个 JSON 对象：参数名 -> 取值列表。"))
        return values
    return parse_list_values(text, compare)


def parse_regions(text: Any) -> list[dict]:
    """Lines 'start end [transcript]' (or 'start-end transcript') -> split segments."""
    segments = []
    for no, line in enumerate(str(text or "").splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(?:-|–|,|\s)\s*(\d+(?:\.\d+)?)\s*(.*)$", line)
        if not m:
            raise RefAudioPageError(say("Region line {no}: write 'start end [transcript]' in seconds, e.g. "
                                        "'0.5 4.2 今天天气很好'.",
                                        "区间第 {no} 行：请写成“起点 终点 [转写]”，单位为秒，例如“0.5 4.2 今天天气很好”。",
                                        no=no))
        segments.append({"start": float(m.group(1)), "end": float(m.group(2)), "transcript": m.group(3).strip()})
    if not segments:
        raise RefAudioPageError(say("Give at least one region: 'start end [transcript]' per line, in seconds.",
                                    "请至少给出一个区间：每行“起点 终点 [转写]”，单位为秒。"))
    return segments


# -- rows -----------------------------------------------------------------------------------------------------------

def _r(v: Any, n: int = 3) -> Any:
    if isinstance(v, float):
        return round(v, n)
    return "" if v is None else v


def clip_rows(clips: list[dict]) -> list[list[Any]]:
    return [[c["id"], c["category"], c["name"], _r(c["duration"], 2), "yes" if c["valid"] else "no", c["language"],
             c["transcript"], "yes" if c["manual_checked"] else "", _r(c.get("best_score")),
             _r(c.get("source_clip_id"))] for c in clips]


def result_rows(items: list[dict]) -> list[list[Any]]:
    return [[r["id"], r["cell_label"], f"{r['clip_id']}: {r.get('ref_name') or ''}", r["text"][:40], r["sample"],
             r["seed"], _r(r["duration"], 2), _r(r["cer"]), _r(r["sim_ref"]), _r(r["sim_centroid"]),
             _r(r["duration_z"], 2), r["flags"] or "", _r(r["user_score"]), r["remark"] or "",
             r["status"] + (f": {r['error'][:60]}" if r.get("error") else "")] for r in items]


def task_rows(tasks: list[dict]) -> list[list[Any]]:
    return [[t["id"], t["name"], t["compare_type"], t["status"], t["done"], t["failed"], t["total"],
             (t["error"] or "")[:80]] for t in tasks]


def product_rows(products: list[dict]) -> list[list[Any]]:
    return [[p["id"], f"{p['role_category']}/{p['role_name']}", p["name"], Path(p["gpt_path"]).name,
             Path(p["sovits_path"]).name, p["ref_clip_id"], ", ".join(map(str, p["aux_clip_ids"])), _r(p["score"]),
             json.dumps(p["params"], ensure_ascii=False)] for p in products]


def sweep_fields_visibility(compare: str):
    """(values box, kpt grid row, model pickers row) visibility for a compare type: a single variable or "full"
    takes the values box, "kpt" the grid, "models" the model pickers; "none"/"ref_audio" need none of them."""
    values = compare not in ("none", "ref_audio", "kpt", "models")
    return gr.update(visible=values), gr.update(visible=compare == "kpt"), gr.update(visible=compare == "models")


def role_choices(svc) -> list[tuple[str, int]]:
    return [(say("{role} ({clips} clips, {tasks} tasks)", "{role}（{clips} 个片段，{tasks} 个任务）",
                 role=f"{r['category']}/{r['name']}", clips=r["clips"], tasks=r["tasks"]), r["id"])
            for r in svc.list_roles()]


def product_choices(svc, role_id: Optional[int] = None) -> list[tuple[str, int]]:
    return [(f"{p['role_category']}/{p['role_name']} · {p['name']} (#{p['id']})", p["id"])
            for p in svc.list_products(role_id)]


def _role(role_id: Any) -> int:
    if role_id in (None, ""):
        raise RefAudioPageError(say("Choose a role first (or create one: category + name → Create role).",
                                    "请先选择角色（或新建一个：分类 + 名称 → 创建角色）。"))
    return int(role_id)


def _one_id(value: Any, what: str) -> int:
    if value in (None, "") or float(value) < 1:
        raise RefAudioPageError(say("Choose a {what} first (click its row in the table, or type its id).",
                                    "请先选择{what}（点击表格中的行，或输入其 id）。", what=_what(what)))
    return int(value)


def _metrics_md(item: dict) -> str:
    fields = [("duration", "s"), ("cer", ""), ("sim_ref", ""), ("sim_centroid", ""), ("duration_z", ""),
              ("sec_per_char", "s")]
    parts = [f"**{k}** {_r(item.get(k))}{u}" for k, u in fields if item.get(k) is not None]
    p = item["params"]
    settings = ", ".join(f"{k}={p.get(k)}" for k in ("top_k", "top_p", "temperature", "repetition_penalty",
                                                      "speed", "split_method") if k in p)
    text = (say("**Result {id}** · task {task} · cell *{cell}* · reference clip {clip} ({ref}) · seed {seed} · "
                "sample {sample}  \n",
                "**结果 {id}** · 任务 {task} · 单元格 *{cell}* · 参考片段 {clip}（{ref}）· 种子 {seed} · "
                "样本 {sample}  \n",
                id=item["id"], task=item["task_id"], cell=item["cell_label"], clip=item["clip_id"],
                ref=item.get("ref_name") or "—", seed=item["seed"], sample=item["sample"])
            + (" · ".join(parts) or say("no metrics yet", "尚无指标")) + "  \n"
            + say("settings: {settings} · GPT {gpt} · SoVITS {sovits}", "设置：{settings} · GPT {gpt} · SoVITS {sovits}",
                  settings=settings, gpt=Path(p.get("gpt_path", "")).name, sovits=Path(p.get("sovits_path", "")).name))
    if item.get("flags"):
        text += say("  \n**flags:** {flags}", "  \n**标记：** {flags}", flags=item["flags"])
    if item.get("asr_text"):
        text += say("  \nASR: {text}", "  \nASR 转写：{text}", text=item["asr_text"])
    if item.get("error"):
        text += say("  \n**error:** {error}", "  \n**错误：** {error}", error=item["error"])
    return text


# -- the tab --------------------------------------------------------------------------------------------------------

def build_refaudio_unavailable(services: Any, error: str) -> dict[str, Any]:
    """The RefAudio tab when its library cannot be opened: the reason, and a button that moves the damaged file
    aside (nothing is deleted) so the next start of the app begins a new library."""
    c: dict[str, Any] = {}
    # the reason is the library's own (English) message, shown after the heading in either language
    c["error"] = gr.Markdown(T(f"**The RefAudio library is not available.** {error}",
                               f"**参考音频库无法使用。** {error}"), elem_id="ra-unavailable")
    c["move"] = gr.Button(T("Move the damaged library aside", "移开损坏的资料库"), variant="stop",
                          elem_id="ra-move-aside")

    @user_errors
    def move():
        moved = services.move_refaudio_db_aside()
        return say("Moved to `{name}`. Restart GSV Playground to start a new, empty RefAudio library "
                   "(the other tabs keep working meanwhile).",
                   "已移到 `{name}`。重启 GSV Playground 即会新建一个空的参考音频库（其他页面在此期间照常可用）。",
                   name=Path(moved).name)

    c["move"].click(move, None, c["error"], api_name="refaudio_move_db_aside")
    return c


def build_refaudio_tab(settings: Any, services: Any) -> dict[str, Any]:
    from refaudio.library import CLIP_SORTS
    from refaudio.scoring import RESULT_SORTS
    from refaudio.sweeps import COMPARE_TYPES, PARAM_DEFAULTS, TaskSpec

    svc = services.refaudio
    gr.set_static_paths(paths=[svc.library_root, svc.out_root])  # nothing else of the disk is served
    gpts, sovitss = services.gpt_choices(), services.sovits_choices()
    roles = role_choices(svc)
    c: dict[str, Any] = {}

    def served(path: Any) -> str:
        return str(svc.resolve_served(path))

    with gr.Accordion(T("Help: workflow, values, regions", "帮助：流程、对比值、切分区间"), open=False):
        gr.Markdown(T(HELP_EN, HELP_ZH))
    with gr.Row(equal_height=True):
        c["role"] = gr.Dropdown(roles, value=roles[0][1] if roles else None, label=T("Role", "角色"), scale=3,
                                allow_custom_value=True, elem_id="ra-role")
        c["role_category"] = gr.Textbox(label=T("new role: category", "新角色：分类"), scale=1,
                                        elem_id="ra-role-category")
        c["role_name"] = gr.Textbox(label=T("new role: name", "新角色：名称"), scale=1, elem_id="ra-role-name")
        c["create_role"] = gr.Button(T("Create role", "创建角色"), scale=1, elem_id="ra-create-role")
        c["refresh"] = gr.Button(T("Refresh", "刷新"), scale=1, size="sm", elem_id="ra-refresh")
    c["status"] = gr.Markdown(elem_id="ra-status")

    with gr.Tabs():
        # -- library ---------------------------------------------------------------------------------------------
        with gr.Tab(T("Library", "素材库"), id="ra-library"):
            with gr.Accordion(T("Import a .list", "导入 .list"), open=True):
                with gr.Row():
                    c["import_files"] = gr.File(file_count="multiple", type="filepath", height=110,
                                                label=T(".list + its audio files, or a zip of both",
                                                        ".list 及其音频文件，或两者打包的 zip"),
                                                elem_id="ra-import-files")
                    with gr.Column():
                        c["import_path"] = gr.Textbox(label=T("…or a .list path on this machine",
                                                              "…或本机上的 .list 路径"),
                                                      elem_id="ra-import-path")
                        with gr.Row():
                            c["import_category"] = gr.Textbox(value="default", label=T("into category", "导入到分类"))
                            c["import_update"] = gr.Checkbox(value=False, label=T("update transcripts of duplicates",
                                                                                  "更新重复片段的转写"))
                        c["import_go"] = gr.Button(T("Import", "导入"), variant="primary", elem_id="ra-import-go")
                c["import_report"] = gr.Markdown(elem_id="ra-import-report")
            with gr.Row():
                c["f_categories"] = gr.Dropdown([], multiselect=True, label=T("categories", "分类"), scale=2,
                                               allow_custom_value=True)
                c["f_text"] = gr.Textbox(label=T("name / transcript contains", "名称 / 转写包含"), scale=2,
                                         elem_id="ra-f-text")
                c["f_valid"] = gr.Radio([(T("all", "全部"), "all"), (T("valid 3-10 s", "有效 3-10 秒"), "valid"),
                                         (T("invalid", "无效"), "invalid")],
                                        value="all", label=T("valid", "有效性"), scale=2)
                c["f_min"] = gr.Number(value=0, label=T("min s", "最短（秒）"), scale=1)
                c["f_max"] = gr.Number(value=0, label=T("max s (0 = any)", "最长（秒，0 = 不限）"), scale=1)
                c["f_sort"] = gr.Dropdown(_sort_choices(CLIP_SORTS), value="duration", label=T("sort", "排序"),
                                          scale=1)
                c["f_desc"] = gr.Checkbox(value=True, label=T("descending", "降序"), scale=1)
                c["search"] = gr.Button(T("Search", "筛选"), scale=1, elem_id="ra-search")
            c["clips"] = gr.Dataframe(headers=CLIP_COLUMNS, value=[], interactive=False, wrap=True, max_height=360,
                                      elem_id="ra-clips")
            with gr.Row(equal_height=True):
                c["selected"] = gr.Textbox(label=T("selected clip ids (click rows; editable)",
                                                   "已选片段 id（点击表格行选取；可编辑）"), scale=3,
                                           elem_id="ra-selected")
                c["clear_sel"] = gr.Button(T("Clear selection", "清空选择"), size="sm", scale=1)
                c["relabel_to"] = gr.Textbox(label=T("category for the selection", "所选片段的新分类"), scale=2,
                                             elem_id="ra-relabel-to")
                c["relabel"] = gr.Button(T("Relabel selected", "重新分类"), scale=1, elem_id="ra-relabel")
            with gr.Row():
                with gr.Column(scale=1):
                    c["clip_id"] = gr.Number(label=T("clip id", "片段 id"), precision=0, elem_id="ra-clip-id")
                    c["clip_audio"] = gr.Audio(label=T("clip", "片段"), type="filepath", interactive=False,
                                               elem_id="ra-clip-audio")
                    c["clip_text"] = gr.Textbox(label=T("transcript", "转写文本"), lines=2)
                    with gr.Row():
                        c["clip_lang"] = gr.Dropdown(LANGS, value="zh", label=T("language", "语言"))
                        c["clip_checked"] = gr.Checkbox(label=T("manually checked", "已人工校对"))
                    c["clip_save"] = gr.Button(T("Save clip text", "保存片段文本"), size="sm")
                with gr.Column(scale=2):
                    c["clip_view"] = gr.Image(label=T("waveform + spectrogram", "波形 + 频谱"), type="filepath",
                                              interactive=False, elem_id="ra-clip-view")
                    with gr.Row():
                        c["regions"] = gr.Textbox(label=T("split regions: 'start end [transcript]' per line",
                                                          "切分区间：每行“起点 终点 [转写]”"),
                                                  lines=3, scale=3, elem_id="ra-regions")
                        with gr.Column(scale=1):
                            c["split_join"] = gr.Checkbox(label=T("join regions into one clip", "把各区间拼成一个片段"))
                            c["split_preview"] = gr.Button(T("Preview marks", "预览切分点"), size="sm")
                            c["split_go"] = gr.Button(T("Split", "切分"), size="sm", elem_id="ra-split")
            with gr.Accordion(T("Speaker grouping", "说话人分组"), open=False):
                with gr.Row():
                    c["anchor"] = gr.Number(label=T("anchor clip id", "锚点片段 id"), precision=0)
                    c["threshold"] = gr.Slider(-1.0, 1.0, value=0.6, step=0.01,
                                               label=T("similarity threshold", "相似度阈值"))
                    c["group_to"] = gr.Textbox(value="similar", label=T("move ≥ threshold into category",
                                                                        "把 ≥ 阈值的片段移入分类"))
                with gr.Row():
                    c["similar"] = gr.Button(T("Similarity histogram", "相似度直方图"))
                    c["move_similar"] = gr.Button(T("Move similar clips", "移动相似片段"))
                    c["cluster"] = gr.Button(T("Cluster the role", "对角色聚类"))
                    c["apply_clusters"] = gr.Button(T("Apply clusters as speaker_N", "按聚类结果分为 speaker_N"))
                with gr.Row():
                    c["histogram"] = gr.Image(label=T("histogram", "直方图"), type="filepath", interactive=False)
                    c["similar_table"] = gr.Dataframe(headers=["clip", "similarity"], value=[], interactive=False,
                                                      max_height=300)
                c["clusters_state"] = gr.State([])
                c["clusters"] = gr.Dataframe(headers=["cluster", "clips"], value=[], interactive=False)

        # -- sweep -----------------------------------------------------------------------------------------------
        with gr.Tab(T("Sweep", "参数对比"), id="ra-sweep"):
            with gr.Row():
                c["task_name"] = gr.Textbox(label=T("task name", "任务名"), elem_id="ra-task-name")
                c["compare"] = gr.Dropdown(_sort_choices(COMPARE_TYPES, COMPARE_LABELS), value="top_k",
                                           label=T("compare", "对比项"), elem_id="ra-compare")
                c["values"] = gr.Textbox(value="5, 15, 30", label=T("values (comma-separated; JSON for full)",
                                                                    "对比值（逗号分隔；full 用 JSON）"),
                                         elem_id="ra-values")
            # only the fields of the chosen compare type are shown (see sweep_fields_visibility)
            with gr.Row(visible=False) as c["grid_row"]:
                c["grid_k"] = gr.Textbox(value="5, 15", label=T("kpt grid: top_k", "kpt 网格：top_k"))
                c["grid_p"] = gr.Textbox(value="0.8, 1.0", label=T("kpt grid: top_p", "kpt 网格：top_p"))
                c["grid_t"] = gr.Textbox(value="0.8, 1.0", label=T("kpt grid: temperature", "kpt 网格：temperature"))
            with gr.Row(visible=False) as c["models_row"]:
                c["gpt_values"] = gr.Dropdown(gpts, multiselect=True,
                                              label=T("GPT models to compare (gpt_path/models)",
                                                      "要对比的 GPT 模型（gpt_path/models）"))
                c["sovits_values"] = gr.Dropdown(sovitss, multiselect=True,
                                                 label=T("SoVITS models to compare (sovits_path/models)",
                                                         "要对比的 SoVITS 模型（sovits_path/models）"))
            with gr.Row():
                c["gpt"] = gr.Dropdown(gpts, value=gpts[0][1] if gpts else None,
                                       label=T("GPT model (base)", "GPT 模型（基础）"))
                c["sovits"] = gr.Dropdown(sovitss, value=sovitss[0][1] if sovitss else None,
                                          label=T("SoVITS model (base)", "SoVITS 模型（基础）"))
            with gr.Row():
                c["ref_ids"] = gr.Textbox(label=T("reference clip ids (or use the Library selection)",
                                                  "参考片段 id（或使用素材库中的选择）"),
                                          elem_id="ra-ref-ids")
                c["use_selection"] = gr.Button(T("← Library selection", "← 素材库中的选择"), size="sm")
                c["ref_categories"] = gr.Dropdown([], multiselect=True, allow_custom_value=True,
                                                 label=T("…and/or every valid clip of categories",
                                                         "…和/或这些分类中的所有有效片段"))
                c["aux_ids"] = gr.Textbox(label=T("auxiliary reference clip ids (base)", "辅助参考片段 id（基础）"))
            with gr.Row():
                c["texts"] = gr.Textbox(value="今天天气很好，我们去公园散步吧。", lines=3, scale=3,
                                        label=T("test texts (one per line)", "测试文本（每行一条）"), elem_id="ra-texts")
                with gr.Column(scale=1):
                    c["text_lang"] = gr.Dropdown(LANGS, value="zh", label=T("text language", "文本语言"))
                    c["samples"] = gr.Number(value=1, precision=0, minimum=1, maximum=50,
                                             label=T("samples per cell", "每格样本数"), elem_id="ra-samples")
                    c["seed"] = gr.Number(value=1234, precision=0, minimum=0, label=T("task seed", "任务随机种子"))
            manage.sweep_text_picker(svc, c)  # library texts, each with its own language (pages/manage.py)
            with gr.Accordion(T("Base parameters", "基础参数"), open=False):
                with gr.Row():
                    c["top_k"] = gr.Number(value=PARAM_DEFAULTS["top_k"], precision=0, label=T("top_k", "top_k"))
                    c["top_p"] = gr.Number(value=PARAM_DEFAULTS["top_p"], label=T("top_p", "top_p"))
                    c["temperature"] = gr.Number(value=PARAM_DEFAULTS["temperature"],
                                                 label=T("temperature", "temperature（温度）"))
                    c["repetition_penalty"] = gr.Number(value=PARAM_DEFAULTS["repetition_penalty"],
                                                        label=T("repetition penalty", "重复惩罚"))
                with gr.Row():
                    c["speed"] = gr.Number(value=PARAM_DEFAULTS["speed"], label=T("speed", "语速"))
                    c["split"] = gr.Dropdown(SPLITS, value=PARAM_DEFAULTS["split_method"],
                                             label=T("split method", "文本切分方式"))
                    c["pause"] = gr.Number(value=PARAM_DEFAULTS["pause"], label=T("pause (s)", "停顿（秒）"))
                    c["noise_scale"] = gr.Number(value=PARAM_DEFAULTS["noise_scale"],
                                                 label=T("noise scale", "噪声系数"))
                    c["max_tokens"] = gr.Number(value=0, precision=0, minimum=0, elem_id="ra-max-tokens",
                                                label=T("max semantic tokens (0 = model limit)",
                                                        "最大语义 token 数（0 = 模型上限）"))
            with gr.Row():
                c["sweep_go"] = gr.Button(T("Create and start", "创建并运行"), variant="primary",
                                          elem_id="ra-sweep-go")
                c["sweep_cancel"] = gr.Button(T("Cancel", "取消"), variant="stop", elem_id="ra-sweep-cancel")
            c["sweep_status"] = gr.Markdown(elem_id="ra-sweep-status")
            with gr.Row():
                c["follow_id"] = gr.Number(label=T("task id", "任务 id"), precision=0, scale=1)
                c["follow"] = gr.Button(T("Follow / status", "查看进度"), scale=1)
                c["start_again"] = gr.Button(T("Start (resume)", "继续运行"), scale=1)
            c["tasks"] = gr.Dataframe(headers=TASK_COLUMNS, value=[], interactive=False, max_height=260,
                                      elem_id="ra-tasks")

        # -- results ---------------------------------------------------------------------------------------------
        with gr.Tab(T("Results", "结果"), id="ra-results"):
            with gr.Row():
                c["r_task"] = gr.Dropdown([], label=T("task", "任务"), scale=3, elem_id="ra-r-task",
                                          allow_custom_value=True)
                c["r_sort"] = gr.Dropdown(_sort_choices(RESULT_SORTS), value="duration", label=T("sort", "排序"),
                                          scale=1, elem_id="ra-r-sort")
                c["r_desc"] = gr.Checkbox(value=True, label=T("descending", "降序"), scale=1)
                c["r_status"] = gr.Dropdown([(T("done", "已完成"), "done"), (T("failed", "失败"), "failed"),
                                             (T("pending", "待运行"), "pending"), (T("all", "全部"), "all")],
                                            value="done", label=T("status", "状态"), scale=1)
            with gr.Row():
                c["r_min_score"] = gr.Dropdown([(T("any", "不限"), -1)] + [(str(k), k) for k in range(6)], value=-1,
                                               label=T("min score", "最低评分"))
                c["r_max_cer"] = gr.Textbox(label=T("max CER (empty = any)", "最大 CER（留空 = 不限）"))
                c["r_min_sim"] = gr.Textbox(label=T("min similarity (empty = any)", "最低相似度（留空 = 不限）"))
                c["r_flagged"] = gr.Radio([(T("any", "不限"), "any"), (T("flagged", "有标记"), "flagged"),
                                           (T("clean", "无标记"), "clean")], value="any", label=T("flags", "标记"))
                c["r_remark"] = gr.Textbox(label=T("remark contains", "备注包含"))
                c["r_show"] = gr.Button(T("Show", "显示"), elem_id="ra-r-show")
            c["results"] = gr.Dataframe(headers=RESULT_COLUMNS, value=[], interactive=False, wrap=True,
                                        max_height=360, elem_id="ra-results-table")
            with gr.Row():
                with gr.Column(scale=1):
                    c["item_id"] = gr.Number(label=T("result id", "结果 id"), precision=0, elem_id="ra-item-id")
                    c["item_audio"] = gr.Audio(label=T("result", "结果"), type="filepath", interactive=False,
                                               elem_id="ra-item-audio")
                    c["score"] = gr.Radio(SCORE_CHOICES, value=-1, label=T("score 0-5 (saved at once)",
                                                                           "评分 0-5（立即保存）"),
                                          elem_id="ra-score")
                    c["remark"] = gr.Textbox(label=T("remark (Enter saves)", "备注（回车保存）"), elem_id="ra-remark")
                    c["score_info"] = gr.Markdown(elem_id="ra-score-info")
                with gr.Column(scale=2):
                    c["item_spec"] = gr.Image(label=T("spectrogram", "频谱"), type="filepath", interactive=False,
                                              elem_id="ra-item-spec")
                    c["item_info"] = gr.Markdown(elem_id="ra-item-info")
            with gr.Accordion(T("A/B compare", "A/B 对比"), open=False):
                with gr.Row():
                    c["ab_a"] = gr.Number(label=T("A result id", "A 结果 id"), precision=0)
                    c["ab_b"] = gr.Number(label=T("B result id", "B 结果 id"), precision=0)
                    c["ab_set_a"] = gr.Button(T("A ← current", "A ← 当前结果"), size="sm")
                    c["ab_set_b"] = gr.Button(T("B ← current", "B ← 当前结果"), size="sm")
                    c["ab_go"] = gr.Button(T("Compare", "对比"))
                with gr.Row():
                    with gr.Column():
                        c["ab_audio_a"] = gr.Audio(label=T("A", "A"), type="filepath", interactive=False)
                        c["ab_spec_a"] = gr.Image(label=T("A", "A"), type="filepath", interactive=False)
                    with gr.Column():
                        c["ab_audio_b"] = gr.Audio(label=T("B", "B"), type="filepath", interactive=False)
                        c["ab_spec_b"] = gr.Image(label=T("B", "B"), type="filepath", interactive=False)
                c["ab_info"] = gr.Markdown()
            with gr.Accordion(T("Long-text test", "长文本测试"), open=False):
                c["long_text"] = gr.Textbox(lines=4, label=T("long text (the current result's settings and seed; "
                                                             "no result chosen → the task's best-scored one)",
                                                             "长文本（使用当前结果的设置和种子；未选结果时用该任务"
                                                             "评分最高的结果）"))
                with gr.Row():
                    c["long_lang"] = gr.Dropdown(LANGS, value="zh", label=T("language", "语言"))
                    c["long_go"] = gr.Button(T("Run the long text", "运行长文本"))
                    manage.long_text_picker(svc, c)
                c["long_info"] = gr.Markdown()

        # -- products --------------------------------------------------------------------------------------------
        with gr.Tab(T("Products", "预设"), id="ra-products"):
            with gr.Row(equal_height=True):
                c["p_name"] = gr.Textbox(label=T("product name (from the current result)", "预设名（取自当前结果）"),
                                         scale=2, elem_id="ra-p-name")
                c["p_remark"] = gr.Textbox(label=T("remark", "备注"), scale=2)
                c["p_overwrite"] = gr.Checkbox(label=T("overwrite", "覆盖同名预设"), scale=1)
                c["p_save"] = gr.Button(T("Save product", "保存预设"), variant="primary", scale=1,
                                        elem_id="ra-p-save")
            c["p_info"] = gr.Markdown(elem_id="ra-p-info")
            c["products"] = gr.Dataframe(headers=PRODUCT_COLUMNS, value=[], interactive=False, wrap=True,
                                         max_height=300, elem_id="ra-products-table")
            with gr.Row():
                c["p_pick"] = gr.Dropdown([], multiselect=True, label=T("products to export", "要导出的预设"), scale=3,
                                          allow_custom_value=True)
                c["p_models"] = gr.Checkbox(label=T("include model files", "包含模型文件"), scale=1)
                c["p_export"] = gr.Button(T("Export zip", "导出 zip"), scale=1)
                c["p_file"] = gr.File(label=T("export", "导出文件"), interactive=False, height=80, scale=2)
            with gr.Row():
                c["p_zip"] = gr.File(label=T("product zip to import", "要导入的预设 zip"), file_types=[".zip"],
                                     type="filepath", height=80, scale=3)
                c["p_import_overwrite"] = gr.Checkbox(label=T("overwrite same names", "覆盖同名预设"), scale=1)
                c["p_import"] = gr.Button(T("Import", "导入"), scale=1)
        manage.build_refaudio_manage(svc, c)  # the Manage sub-tab: deletes, exports, edits, test texts

    _wire(svc, services, c, served, TaskSpec)
    return c


def _wire(svc, services, c: dict[str, Any], served, TaskSpec) -> None:
    # -- role-wide refresh -------------------------------------------------------------------------------------
    def task_choices(role_id):
        if role_id in (None, ""):
            return []
        return [(say("#{id} {name} ({status}, {done}/{total})", "#{id} {name}（{status}，{done}/{total}）",
                     id=t["id"], name=t["name"], status=t["status"], done=t["done"], total=t["total"]), t["id"])
                for t in svc.list_tasks(int(role_id))]

    def role_view(role_id, task_value=None):
        if role_id in (None, ""):
            empty = gr.update(choices=[], value=[])
            return ([], empty, empty, [], gr.update(choices=[], value=None), [], gr.update(choices=[], value=[]))
        rid = int(role_id)
        cats = svc.categories(rid)
        tasks = task_choices(rid)
        ids = [v for _, v in tasks]
        task_value = task_value if task_value in ids else (ids[0] if ids else None)
        return (clip_rows(svc.list_clips(rid)), gr.update(choices=cats, value=[]), gr.update(choices=cats, value=[]),
                task_rows(svc.list_tasks(rid)), gr.update(choices=tasks, value=task_value),
                product_rows(svc.list_products(rid)), gr.update(choices=product_choices(svc, rid), value=[]))

    role_outputs = [c[k] for k in ("clips", "f_categories", "ref_categories", "tasks", "r_task", "products",
                                   "p_pick")]

    @user_errors
    def select_role(role_id):
        return role_view(role_id)

    c["role"].change(select_role, c["role"], role_outputs, api_name="refaudio_select_role")

    @user_errors
    def refresh(role_id):
        roles = role_choices(svc)
        ids = [v for _, v in roles]
        role_id = role_id if role_id in ids else (ids[0] if ids else None)
        return (gr.update(choices=roles, value=role_id), *role_view(role_id))

    c["refresh"].click(refresh, c["role"], [c["role"], *role_outputs], api_name="refaudio_refresh")

    def refresh_models(gpt, sovits, gpt_values, sovits_values):
        gpts, sovitss = services.gpt_choices(), services.sovits_choices()
        g_ok, s_ok = {v for _, v in gpts}, {v for _, v in sovitss}
        return (gr.update(choices=gpts, value=gpt if gpt in g_ok else (gpts[0][1] if gpts else None)),
                gr.update(choices=sovitss, value=sovits if sovits in s_ok else (sovitss[0][1] if sovitss else None)),
                gr.update(choices=gpts, value=[v for v in (gpt_values or []) if v in g_ok]),
                gr.update(choices=sovitss, value=[v for v in (sovits_values or []) if v in s_ok]))

    def on_load(role_id, gpt, sovits, gpt_values, sovits_values):
        try:
            roles = refresh(role_id)
        except gr.Error:  # the library cannot be read: the tab says so in its own actions
            roles = [gr.skip()] * (1 + len(role_outputs))
        return (*roles, *refresh_models(gpt, sovits, gpt_values, sovits_values))

    model_keys = ("gpt", "sovits", "gpt_values", "sovits_values")
    on_page_load(on_load, [c["role"], *(c[k] for k in model_keys)],
                 [c["role"], *role_outputs, *(c[k] for k in model_keys)])

    @user_errors
    def create_role(category, name):
        rid = svc.create_role(category, name)
        return gr.update(choices=role_choices(svc), value=rid), say(
            "Role **{role}** ready (id {id}).", "角色 **{role}** 已就绪（id {id}）。", role=f"{category}/{name}", id=rid)

    c["create_role"].click(create_role, [c["role_category"], c["role_name"]], [c["role"], c["status"]],
                           api_name="refaudio_create_role")

    # -- library -----------------------------------------------------------------------------------------------
    def clip_filter(role_id, categories, text, valid, fmin, fmax, sort, desc):
        rid = _role(role_id)
        kw: dict[str, Any] = {"categories": categories or (), "sort": sort or "duration",
                              "descending": bool(desc), "limit": 2000}
        if valid in ("valid", "invalid"):
            kw["valid"] = valid == "valid"
        if fmin not in (None, "") and float(fmin) > 0:
            kw["min_duration"] = float(fmin)
        if fmax not in (None, "") and float(fmax) > 0:
            kw["max_duration"] = float(fmax)
        rows = svc.list_clips(rid, **kw)
        if text:  # name or transcript
            by_name = svc.list_clips(rid, name=text, **kw)
            by_text = svc.list_clips(rid, transcript=text, **kw)
            keep = {r["id"] for r in by_name} | {r["id"] for r in by_text}
            rows = [r for r in rows if r["id"] in keep]
        return clip_rows(rows)

    filters = [c[k] for k in ("role", "f_categories", "f_text", "f_valid", "f_min", "f_max", "f_sort", "f_desc")]
    c["search"].click(user_errors(clip_filter), filters, c["clips"], api_name="refaudio_clips")
    c["f_text"].submit(user_errors(clip_filter), filters, c["clips"])

    @user_errors
    def do_import(role_id, files, path, category, update, progress=gr.Progress()):
        rid = _role(role_id)
        refused: list[tuple[int, str, str]] = []
        options = dict(category=(category or "default").strip() or "default",
                       on_duplicate="update" if update else "skip", progress=lambda f, m: progress(f, desc=m))
        if files:
            report = svc.import_upload(rid, files, **options)
            name = next((Path(str(f)).name for f in files if str(f).lower().endswith(".list")),
                        say("the upload", "上传的文件"))
        elif str(path or "").strip():
            report = svc.import_server_list(rid, str(path).strip().strip('"'), **options)
            name = Path(str(path).strip()).name
        else:
            raise RefAudioPageError(say("Upload a .list with its audio (or a zip), or give a .list path.",
                                        "请上传 .list 及其音频（或 zip），或填写 .list 路径。"))
        lines = [say("**Import of {name}:** {summary}", "**导入 {name}：** {summary}", name=name,
                     summary=report.summary())]
        for title, issues in ((say("rejected", "被拒绝"), report.errors),
                              (say("outside 3-10 s (imported as invalid)", "不在 3-10 秒内（已作为无效片段导入）"),
                               report.out_of_range),
                              (say("already present", "已存在"), report.duplicates)):
            if issues:
                lines.append(f"\n**{title}:**")
                lines += [say("- line {line} `{path}`: {reason}", "- 第 {line} 行 `{path}`：{reason}", line=i.line,
                              path=i.path, reason=i.reason) for i in issues[:50]]
        cats = svc.categories(rid)
        return ("\n".join(lines), clip_rows(svc.list_clips(rid)), gr.update(choices=cats),
                gr.update(choices=cats), gr.update(choices=role_choices(svc), value=rid))

    c["import_go"].click(do_import, [c["role"], c["import_files"], c["import_path"], c["import_category"],
                                     c["import_update"]],
                         [c["import_report"], c["clips"], c["f_categories"], c["ref_categories"], c["role"]],
                         api_name="refaudio_import")

    def show_clip(clip_id):
        cid = _one_id(clip_id, "clip")
        row = svc.library.clip(cid)
        return (served(svc.clip_audio(cid)), served(svc.clip_view(cid)), row["transcript"], row["language"],
                bool(row["manual_checked"]))

    clip_outputs = [c["clip_audio"], c["clip_view"], c["clip_text"], c["clip_lang"], c["clip_checked"]]
    c["clip_id"].submit(user_errors(show_clip), c["clip_id"], clip_outputs, api_name="refaudio_clip")

    @user_errors
    def pick_clip(selected, evt: gr.SelectData):
        cid = int(evt.row_value[0])
        ids = parse_ids(selected)
        if cid not in ids:
            ids.append(cid)
        return (cid, ", ".join(map(str, ids)), *show_clip(cid))

    c["clips"].select(pick_clip, c["selected"], [c["clip_id"], c["selected"], *clip_outputs])
    c["clear_sel"].click(lambda: "", None, c["selected"])

    @user_errors
    def relabel(role_id, selected, category, *flt):
        ids = parse_ids(selected)
        if not ids:
            raise RefAudioPageError(say("Select clips first (click rows of the table, or type their ids).",
                                        "请先选择片段（点击表格中的行，或输入其 id）。"))
        n = svc.relabel(ids, category)
        cats = svc.categories(_role(role_id))
        return (say("{n} clip(s) moved to **{category}**.", "{n} 个片段已移到 **{category}**。", n=n,
                    category=category), clip_filter(role_id, *flt), gr.update(choices=cats), gr.update(choices=cats))

    c["relabel"].click(relabel, [c["role"], c["selected"], c["relabel_to"], *filters[1:]],
                       [c["status"], c["clips"], c["f_categories"], c["ref_categories"]], api_name="refaudio_relabel")

    @user_errors
    def save_clip(clip_id, text, lang, checked, *flt):
        cid = _one_id(clip_id, "clip")
        row = svc.update_clip(cid, transcript=text, language=lang, manual_checked=bool(checked))
        return say("Clip {id} saved.", "片段 {id} 已保存。", id=cid), clip_filter(row["role_id"], *flt)

    c["clip_save"].click(save_clip, [c["clip_id"], c["clip_text"], c["clip_lang"], c["clip_checked"], *filters[1:]],
                         [c["status"], c["clips"]], api_name="refaudio_edit_clip")

    @user_errors
    def split_preview(clip_id, regions):
        cid = _one_id(clip_id, "clip")
        segs = parse_regions(regions)
        marks = sorted({s["start"] for s in segs} | {s["end"] for s in segs})
        return served(svc.clip_view(cid, marks, [(s["start"], s["end"]) for s in segs]))

    c["split_preview"].click(split_preview, [c["clip_id"], c["regions"]], c["clip_view"],
                             api_name="refaudio_split_preview")

    @user_errors
    def split(role_id, clip_id, regions, join, *flt):
        cid = _one_id(clip_id, "clip")
        made = svc.split_clip(cid, parse_regions(regions), join=bool(join))
        return (say("Clip {id} → new clip(s) {made}.", "片段 {id} → 新片段 {made}。", id=cid,
                    made=", ".join(map(str, made))), clip_filter(role_id, *flt))

    c["split_go"].click(split, [c["role"], c["clip_id"], c["regions"], c["split_join"], *filters[1:]],
                        [c["status"], c["clips"]], api_name="refaudio_split")

    @user_errors
    def similarity(anchor, threshold, categories, progress=gr.Progress()):
        out = svc.similarity(_one_id(anchor, "anchor clip"), categories or (), float(threshold),
                             progress=lambda f, m: progress(f, desc=m))
        rows = [[cid, round(s, 4)] for cid, s in out["scores"]]
        note = say("{n} clip(s) scored against clip {anchor}", "已对 {n} 个片段计算与片段 {anchor} 的相似度",
                   n=len(rows), anchor=out["anchor"])
        if out.get("errors"):
            note += say("; without a vector: ", "；无法提取声纹向量：") + "; ".join(
                f"{k}: {v}" for k, v in list(out["errors"].items())[:10])
        return served(out["histogram_png"]), rows, note

    c["similar"].click(similarity, [c["anchor"], c["threshold"], c["f_categories"]],
                       [c["histogram"], c["similar_table"], c["status"]], api_name="refaudio_similarity")

    @user_errors
    def move_similar(role_id, anchor, threshold, target, categories, *flt):
        moved = svc.move_similar(_one_id(anchor, "anchor clip"), float(threshold), target, categories or ())
        return say("{n} clip(s) moved to **{target}**: {ids}", "{n} 个片段已移到 **{target}**：{ids}", n=len(moved),
                   target=target, ids=", ".join(map(str, moved))), clip_filter(role_id, *flt)

    c["move_similar"].click(move_similar, [c["role"], c["anchor"], c["threshold"], c["group_to"], c["f_categories"],
                                           *filters[1:]], [c["status"], c["clips"]], api_name="refaudio_move_similar")

    @user_errors
    def cluster(role_id, threshold, categories):
        clusters = svc.cluster(_role(role_id), float(threshold), categories or ())
        rows = [[k, ", ".join(map(str, ids))] for k, ids in enumerate(clusters, 1)]
        return clusters, rows, say("{n} cluster(s) at threshold {t:.2f}; press Apply to label them speaker_1, "
                                   "speaker_2, ...",
                                   "阈值 {t:.2f} 下得到 {n} 个聚类；点“按聚类结果分为 speaker_N”即可标为 speaker_1、"
                                   "speaker_2……", n=len(clusters), t=float(threshold))

    c["cluster"].click(cluster, [c["role"], c["threshold"], c["f_categories"]],
                       [c["clusters_state"], c["clusters"], c["status"]], api_name="refaudio_cluster")

    @user_errors
    def apply_clusters(role_id, clusters, *flt):
        if not clusters:
            raise RefAudioPageError(say("Cluster the role first.", "请先对角色聚类。"))
        applied = svc.apply_clusters(clusters)
        cats = svc.categories(_role(role_id))
        return (say("Applied: {groups}", "已应用：{groups}",
                    groups=", ".join(f"{k} ({len(v)})" for k, v in applied.items())), clip_filter(role_id, *flt),
                gr.update(choices=cats), gr.update(choices=cats))

    c["apply_clusters"].click(apply_clusters, [c["role"], c["clusters_state"], *filters[1:]],
                              [c["status"], c["clips"], c["f_categories"], c["ref_categories"]],
                              api_name="refaudio_apply_clusters")

    # -- sweep -------------------------------------------------------------------------------------------------
    c["use_selection"].click(lambda s: s, c["selected"], c["ref_ids"])
    c["compare"].change(sweep_fields_visibility, c["compare"], [c["values"], c["grid_row"], c["models_row"]],
                        queue=False, show_progress="hidden")

    def status_md(task_id: int) -> str:
        st = svc.task_status(task_id)
        n = st["counts"]
        state = say(st["state"], STATE_ZH.get(st["state"], st["state"]))
        text = say("**Task {id}** ({name}): {state} · {done}/{total} done, {failed} failed · {pct:.0f}%",
                   "**任务 {id}**（{name}）：{state} · 已完成 {done}/{total}，失败 {failed} · {pct:.0f}%",
                   id=task_id, name=st["task"]["name"], state=state, done=n["done"], total=n["total"],
                   failed=n["failed"], pct=st["fraction"] * 100)
        if st["message"]:
            text += f" · {st['message']}"
        if st["error"]:
            text += f"  \n{st['error']}"
        return text

    def follow(task_id: int, role_id, progress):
        """Yield page updates while the task runs; the task goes on in the background if the page goes away."""
        last = 0.0
        while True:
            st = svc.task_status(task_id)
            progress(st["fraction"], desc=(st["message"] or say(st["state"], STATE_ZH.get(st["state"],
                                                                                            st["state"])))[:120])
            if st["state"] not in ("queued", "running", "scoring"):
                break
            if time.monotonic() - last > 2.0:
                last = time.monotonic()
                yield status_md(task_id), task_rows(svc.list_tasks(role_id)), gr.skip(), task_id, gr.skip()
            time.sleep(0.3)
        # the role's label counts its tasks and clips: refresh it with the finished task
        yield (status_md(task_id), task_rows(svc.list_tasks(role_id)),
               gr.update(choices=task_choices(role_id), value=task_id), task_id,
               gr.update(choices=role_choices(svc), value=role_id))

    sweep_outputs = [c["sweep_status"], c["tasks"], c["r_task"], c["follow_id"], c["role"]]
    sweep_inputs = [c[k] for k in ("role", "task_name", "compare", "values", "grid_k", "grid_p", "grid_t",
                                   "gpt_values", "sovits_values", "gpt", "sovits", "ref_ids", "ref_categories",
                                   "aux_ids", "texts", "text_lang", "samples", "seed", "top_k", "top_p",
                                   "temperature", "repetition_penalty", "speed", "split", "pause", "noise_scale",
                                   "max_tokens", "lib_texts")]

    @user_errors
    def sweep(role_id, name, compare, values, grid_k, grid_p, grid_t, gpt_values, sovits_values, gpt, sovits,
              ref_ids, ref_categories, aux_ids, texts, text_lang, samples, seed, top_k, top_p, temperature,
              repetition_penalty, speed, split_method, pause, noise_scale, max_tokens, lib_texts=None,
              progress=gr.Progress()):
        rid = _role(role_id)
        vals = parse_values(compare, values, gpt_values or [], sovits_values or [],
                            {"top_k": grid_k, "top_p": grid_p, "temperature": grid_t})
        base = {"gpt_path": gpt, "sovits_path": sovits, "aux_refs": parse_ids(aux_ids, "auxiliary clip ids"),
                "top_k": top_k, "top_p": top_p, "temperature": temperature, "repetition_penalty": repetition_penalty,
                "speed": speed, "split_method": split_method, "pause": pause, "noise_scale": noise_scale,
                "max_tokens": int(max_tokens or 0) or None}
        lines = [(t.strip(), text_lang or "zh") for t in str(texts or "").splitlines() if t.strip()]
        lines += svc.text_pairs(lib_texts or [])
        spec = TaskSpec(role_id=rid, name=name or "", compare=compare, base=base, texts=lines, values=vals,
                        ref_clip_ids=parse_ids(ref_ids, "reference clip ids"), ref_categories=ref_categories or (),
                        samples=int(samples or 1), seed=int(seed) if seed not in (None, "") else None)
        task_id = svc.create_task(spec)
        svc.start_task(task_id)
        yield from follow(task_id, rid, progress)

    c["sweep_go"].click(sweep, sweep_inputs, sweep_outputs, api_name="refaudio_sweep")

    @user_errors
    def follow_task(role_id, task_id, progress=gr.Progress()):
        yield from follow(_one_id(task_id, "task"), role_id, progress)

    c["follow"].click(follow_task, [c["role"], c["follow_id"]], sweep_outputs, api_name="refaudio_task_status")

    @user_errors
    def start_again(role_id, task_id, progress=gr.Progress()):
        tid = _one_id(task_id, "task")
        svc.retry_failed(tid)
        svc.start_task(tid)
        yield from follow(tid, role_id, progress)

    c["start_again"].click(start_again, [c["role"], c["follow_id"]], sweep_outputs, api_name="refaudio_task_start")

    @user_errors
    def cancel(task_id):
        tid = _one_id(task_id, "task")
        if svc.cancel_task(tid):
            return say("Cancelling task {id}: it stops after the current batch (finished results are kept; Start "
                       "resumes).", "正在取消任务 {id}：当前批次结束后停止（已完成的结果会保留；点“继续运行”可接着跑）。",
                       id=tid)
        return say("Task {id} is not running.", "任务 {id} 没有在运行。", id=tid)

    c["sweep_cancel"].click(cancel, c["follow_id"], c["sweep_status"], api_name="refaudio_cancel",
                            concurrency_limit=None, queue=False)

    # -- results -----------------------------------------------------------------------------------------------
    def optional_float(value: Any, what: str) -> Optional[float]:
        if value in (None, "") or str(value).strip() == "":
            return None
        try:
            return float(value)
        except ValueError:
            raise RefAudioPageError(say("{what} must be a number, not {value!r}.", "{what}必须是数字，而不是 {value!r}。",
                                        what=_what(what), value=value)) from None

    def results_of(task_id, sort, desc, status, min_score, max_cer, min_sim, flagged, remark):
        tid = _one_id(task_id, "task")
        rows = svc.list_results(tid, status=None if status == "all" else status, sort=sort or "duration",
                                descending=bool(desc),
                                min_score=None if min_score in (None, -1, "-1") else int(min_score),
                                max_cer=optional_float(max_cer, "max CER"), min_sim=optional_float(min_sim, "min "
                                                                                                   "similarity"),
                                flagged=None if flagged in (None, "any") else flagged == "flagged",
                                remark=remark or "")
        return result_rows(rows)

    result_filters = [c[k] for k in ("r_task", "r_sort", "r_desc", "r_status", "r_min_score", "r_max_cer",
                                     "r_min_sim", "r_flagged", "r_remark")]
    c["r_show"].click(user_errors(results_of), result_filters, c["results"], api_name="refaudio_results")
    for key in ("r_task", "r_sort", "r_desc", "r_status"):
        c[key].input(user_errors(results_of), result_filters, c["results"])

    def show_result(item_id):
        iid = _one_id(item_id, "result")
        item = svc.result(iid)
        audio = served(svc.result_audio(iid)) if item["audio_file"] else None
        spec = served(svc.result_spectrogram(iid)) if item["spectrogram_file"] else None
        score = item["user_score"] if item["user_score"] is not None else -1
        return audio, spec, _metrics_md(item), score, item["remark"] or ""

    item_outputs = [c["item_audio"], c["item_spec"], c["item_info"], c["score"], c["remark"]]
    c["item_id"].submit(user_errors(show_result), c["item_id"], item_outputs, api_name="refaudio_result")

    @user_errors
    def pick_result(evt: gr.SelectData):
        iid = int(evt.row_value[0])
        return (iid, *show_result(iid))

    c["results"].select(pick_result, None, [c["item_id"], *item_outputs])

    @user_errors
    def set_score(item_id, score, *flt):
        iid = _one_id(item_id, "result")
        value = None if score in (None, -1, "-1") else int(score)
        item = svc.set_score(iid, value)
        note = (say("Score of result {id} saved: {score}", "结果 {id} 的评分已保存：{score}", id=iid,
                    score=item["user_score"]) if value is not None
                else say("Score of result {id} cleared.", "结果 {id} 的评分已清除。", id=iid))
        # the table shows it too; a refresh that fails (a filter that is not a number, a typed task label) must not
        # fail the event: Gradio would put the table into its error state, which hides it (blank) while the score
        # is saved (issue 19; reproducer in the issue note)
        try:
            table = results_of(*flt) if flt and flt[0] not in (None, "") else gr.skip()
        except Exception:  # noqa: BLE001 - the score is saved; the table keeps its rows
            table = gr.skip()
        return note, table

    c["score"].input(set_score, [c["item_id"], c["score"], *result_filters], [c["score_info"], c["results"]],
                     api_name="refaudio_score")

    @user_errors
    def set_remark(item_id, remark):
        iid = _one_id(item_id, "result")
        svc.set_score(iid, svc.result(iid)["user_score"], remark or "")
        return say("Remark of result {id} saved.", "结果 {id} 的备注已保存。", id=iid)

    c["remark"].submit(set_remark, [c["item_id"], c["remark"]], c["score_info"], api_name="refaudio_remark")
    c["remark"].blur(set_remark, [c["item_id"], c["remark"]], c["score_info"])

    c["ab_set_a"].click(lambda v: v, c["item_id"], c["ab_a"])
    c["ab_set_b"].click(lambda v: v, c["item_id"], c["ab_b"])

    @user_errors
    def compare(a_id, b_id):
        a, b = _one_id(a_id, "result A"), _one_id(b_id, "result B")
        out = svc.compare(a, b)

        def files(iid, item):
            return (served(svc.result_audio(iid)) if item["audio_file"] else None,
                    served(svc.result_spectrogram(iid)) if item["spectrogram_file"] else None)

        lines = ["| | A | B |", "|---|---|---|"]
        for k, (va, vb) in out["differences"].items():
            if k in ("gpt_path", "sovits_path"):
                va, vb = Path(str(va)).name, Path(str(vb)).name
            lines.append(say("| **{k}** (differs) | {a} | {b} |", "| **{k}**（不同） | {a} | {b} |", k=k, a=va, b=vb))
        for k, (va, vb) in out["metrics"].items():
            lines.append(f"| {k} | {_r(va)} | {_r(vb)} |")
        return (*files(a, out["a"]), *files(b, out["b"]),
                say("Result {a} (A) vs {b} (B)", "结果 {a}（A）对比 {b}（B）", a=a, b=b) + "\n\n" + "\n".join(lines))

    c["ab_go"].click(compare, [c["ab_a"], c["ab_b"]], [c["ab_audio_a"], c["ab_spec_a"], c["ab_audio_b"],
                                                       c["ab_spec_b"], c["ab_info"]], api_name="refaudio_compare")

    @user_errors
    def long_text(role_id, item_id, task_id, text, lang, progress=gr.Progress()):
        if not str(text or "").strip():
            raise RefAudioPageError(say("Type the long text to test.", "请输入要测试的长文本。"))
        iid = int(item_id) if item_id not in (None, "") and float(item_id) >= 1 else None
        tid = None if iid is not None else _one_id(task_id, "task or result")
        new_id = svc.long_text_task(text, lang or "zh", item_id=iid, task_id=tid)
        for status, tasks, task_update, _, _role in follow(new_id, role_id, progress):
            yield status, tasks, task_update, gr.skip()
        yield (status_md(new_id), task_rows(svc.list_tasks(role_id)),
               gr.update(choices=task_choices(role_id), value=new_id),
               result_rows(svc.list_results(new_id, status=None)))

    c["long_go"].click(long_text, [c["role"], c["item_id"], c["r_task"], c["long_text"], c["long_lang"]],
                       [c["long_info"], c["tasks"], c["r_task"], c["results"]], api_name="refaudio_long_text")

    # -- products ----------------------------------------------------------------------------------------------
    def products_view(role_id):
        rid = None if role_id in (None, "") else int(role_id)
        return product_rows(svc.list_products(rid)), gr.update(choices=product_choices(svc, rid))

    @user_errors
    def save_product(role_id, item_id, name, remark, overwrite):
        iid = _one_id(item_id, "result (Results tab)")
        pid = svc.product_from_result(iid, name, remark=remark or "", overwrite=bool(overwrite))
        return (say("Product **{name}** saved (id {pid}) from result {iid}. Load it in the TTS tab with "
                    "\"Load product\".",
                    "预设 **{name}** 已由结果 {iid} 保存（id {pid}）。可在语音合成页用“载入预设”载入。",
                    name=name, pid=pid, iid=iid), *products_view(role_id))

    c["p_save"].click(save_product, [c["role"], c["item_id"], c["p_name"], c["p_remark"], c["p_overwrite"]],
                      [c["p_info"], c["products"], c["p_pick"]], api_name="refaudio_product_save")

    @user_errors
    def export(ids, models):
        chosen = parse_ids(ids, "product ids")
        if not chosen:
            raise RefAudioPageError(say("Choose the products to export.", "请选择要导出的预设。"))
        path = svc.export_products(chosen, include_models=bool(models))
        return served(path), say("Exported {n} product(s) to `{name}`.", "已导出 {n} 个预设到 `{name}`。",
                                 n=len(chosen), name=path.name)

    c["p_export"].click(export, [c["p_pick"], c["p_models"]], [c["p_file"], c["p_info"]],
                        api_name="refaudio_product_export")

    @user_errors
    def import_products(role_id, zip_file, overwrite):
        if not zip_file:
            raise RefAudioPageError(say("Upload a product zip first.", "请先上传预设 zip。"))
        made = svc.import_products(zip_file, None, bool(overwrite))
        return (say("Imported product(s) {ids}.", "已导入预设 {ids}。", ids=", ".join(map(str, made))),
                *products_view(role_id),
                gr.update(choices=role_choices(svc)))

    c["p_import"].click(import_products, [c["role"], c["p_zip"], c["p_import_overwrite"]],
                        [c["p_info"], c["products"], c["p_pick"], c["role"]], api_name="refaudio_product_import")
