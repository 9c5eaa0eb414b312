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

from .common import on_page_load, user_errors
from .services import LANG_LABELS, SPLIT_LABELS

CLIP_COLUMNS = ["id", "category", "name", "duration", "valid", "language", "transcript", "checked", "best score",
                "from clip"]
RESULT_COLUMNS = ["id", "cell", "reference", "text", "sample", "seed", "duration", "cer", "sim_ref", "sim_centroid",
                  "duration_z", "flags", "score", "remark", "status"]
TASK_COLUMNS = ["id", "name", "compare", "status", "done", "failed", "total", "note"]
PRODUCT_COLUMNS = ["id", "role", "name", "GPT", "SoVITS", "ref clip", "aux clips", "score", "params"]
SCORE_CHOICES = [("未评 none", -1)] + [(str(k), k) for k in range(6)]
LANGS = [(v, k) for k, v in LANG_LABELS.items()]
SPLITS = [(v, k) for k, v in SPLIT_LABELS.items()]

HELP = """
**Workflow** 1. *Library*: create a role (category + name), import a GPT-SoVITS `.list` (`audio|speaker|lang|text`;
upload the .list together with its audio files or a zip of both, or give a .list path on this machine), filter the
clips, re-label, split long clips, group speakers. 2. *Sweep*: choose what to compare (reference clips, top_k,
top_p, temperature, a kpt grid, models, ...), test texts and samples; every cell uses the same seeds, so cells
differ only by what varies. 3. *Results*: longest first by default; sort by any metric, listen, look at the
spectrogram, score 0-5 (saved at once), compare two results A/B, run a long text with the best settings.
4. *Products*: save a result's complete settings as a voice preset; export a zip (our `preset.json`, upstream
`api_v2.json` / `tts_infer.yaml`) or load it in the TTS tab ("Load product 载入预设").

**Values** of a single-variable sweep are comma-separated (`5, 15, 30`); `aux_refs` takes groups of clip ids
separated by `;` (`3 4; 5; ` — an empty group means none); `full` takes JSON (`{"top_k": [5, 15], "speed": [0.9,
1.1]}`). **Split regions**: one per line, `start end [transcript]` in seconds.
"""


# -- small parsers (pure; the errors they raise are shown in the page) ----------------------------------------------

class RefAudioPageError(GSVError):
    """A value typed into the RefAudio tab that cannot be used."""


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
            raise RefAudioPageError(f"{what}: {t!r} is not a number.") from None
        if f != int(f) or f < 1:
            raise RefAudioPageError(f"{what}: {t!r} is not an id (a whole number from 1).")
        if int(f) not in out:
            out.append(int(f))
    return out


def parse_list_values(text: Any, what: str) -> list[str]:
    values = [v.strip() for v in re.split(r"[,\n]+", str(text or "")) if v.strip()]
    if not values:
        raise RefAudioPageError(f"Give the {what} values to compare, separated by commas (e.g. 5, 15, 30).")
    return values


def parse_values(compare: str, text: str, gpt_values: Sequence[str], sovits_values: Sequence[str],
                 grid: dict[str, str]) -> Any:
    """The ``values`` of a TaskSpec from the form fields of the Sweep sub-tab."""
    if compare in ("none", "ref_audio"):
        return None
    if compare == "kpt":
        out = {k: parse_list_values(v, k) for k, v in grid.items() if str(v or "").strip()}
        if not out:
            raise RefAudioPageError("A kpt grid needs values for top_k, top_p and/or temperature.")
        return out
    if compare == "gpt_path":
        if not gpt_values:
            raise RefAudioPageError("Choose the GPT models to compare in 'GPT models to compare'.")
        return list(gpt_values)
    if compare == "sovits_path":
        if not sovits_values:
            raise RefAudioPageError("Choose the SoVITS models to compare in 'SoVITS models to compare'.")
        return list(sovits_values)
    if compare == "models":
        if not gpt_values or not sovits_values:
            raise RefAudioPageError("A models comparison pairs every chosen GPT with every chosen SoVITS model: "
                                    "choose at least one of each.")
        return [[g, s] for g in gpt_values for s in sovits_values]
    if compare == "aux_refs":
        groups = str(text or "").split(";")
        return [parse_ids(g, "aux_refs group") for g in groups]
    if compare == "full":
        try:
            values = json.loads(str(text or ""))
        except json.JSONDecodeError as exc:
            raise RefAudioPageError(f"A full comparison takes JSON like {{\"top_k\": [5, 15]}}: {exc}") from None
        if not isinstance(values, dict):
            raise RefAudioPageError("A full comparison takes a JSON object: setting -> list of values.")
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
            raise RefAudioPageError(f"Region line {no}: write 'start end [transcript]' in seconds, e.g. "
                                    "'0.5 4.2 今天天气很好'.")
        segments.append({"start": float(m.group(1)), "end": float(m.group(2)), "transcript": m.group(3).strip()})
    if not segments:
        raise RefAudioPageError("Give at least one region: 'start end [transcript]' per line, in seconds.")
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
    return [(f"{r['category']}/{r['name']} ({r['clips']} clips, {r['tasks']} tasks)", r["id"])
            for r in svc.list_roles()]


def product_choices(svc, role_id: Optional[int] = None) -> list[tuple[str, int]]:
    return [(f"{p['role_category']}/{p['role_name']} · {p['name']} (#{p['id']})", p["id"])
            for p in svc.list_products(role_id)]


def _role(role_id: Any) -> int:
    if role_id in (None, ""):
        raise RefAudioPageError("Choose a role first (or create one: category + name → Create role).")
    return int(role_id)


def _one_id(value: Any, what: str) -> int:
    if value in (None, "") or float(value) < 1:
        raise RefAudioPageError(f"Choose a {what} first (click its row in the table, or type its id).")
    return int(value)


def _metrics_md(item: dict) -> str:
    fields = [("duration", "s"), ("cer", ""), ("sim_ref", ""), ("sim_centroid", ""), ("duration_z", ""),
              ("sec_per_char", "s")]
    parts = [f"**{k}** {_r(item.get(k))}{u}" for k, u in fields if item.get(k) is not None]
    p = item["params"]
    settings = ", ".join(f"{k}={p.get(k)}" for k in ("top_k", "top_p", "temperature", "repetition_penalty",
                                                      "speed", "split_method") if k in p)
    text = (f"**Result {item['id']}** · task {item['task_id']} · cell *{item['cell_label']}* · reference clip "
            f"{item['clip_id']} ({item.get('ref_name') or '—'}) · seed {item['seed']} · sample {item['sample']}  \n"
            + (" · ".join(parts) or "no metrics yet") + "  \n"
            + f"settings: {settings} · GPT {Path(p.get('gpt_path', '')).name} · SoVITS "
              f"{Path(p.get('sovits_path', '')).name}")
    if item.get("flags"):
        text += f"  \n**flags:** {item['flags']}"
    if item.get("asr_text"):
        text += f"  \nASR: {item['asr_text']}"
    if item.get("error"):
        text += f"  \n**error:** {item['error']}"
    return text


# -- the tab --------------------------------------------------------------------------------------------------------

def build_refaudio_unavailable(services: Any, error: str) -> dict[str, Any]:
    """The RefAudio tab when its library cannot be opened: the reason, and a button that moves the damaged file
    aside (nothing is deleted) so the next start of the app begins a new library."""
    c: dict[str, Any] = {}
    c["error"] = gr.Markdown(f"**The RefAudio library is not available.** {error}", elem_id="ra-unavailable")
    c["move"] = gr.Button("Move the damaged library aside 移开损坏的资料库", variant="stop", elem_id="ra-move-aside")

    @user_errors
    def move():
        moved = services.move_refaudio_db_aside()
        return (f"Moved to `{Path(moved).name}`. Restart GSV Playground to start a new, empty RefAudio library "
                "(the other tabs keep working meanwhile).")

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

    with gr.Accordion("Help: workflow, values, regions 帮助", open=False):
        gr.Markdown(HELP)
    with gr.Row(equal_height=True):
        c["role"] = gr.Dropdown(roles, value=roles[0][1] if roles else None, label="角色 Role", scale=3, allow_custom_value=True,
                                elem_id="ra-role")
        c["role_category"] = gr.Textbox(label="new role: category 分类", scale=1, elem_id="ra-role-category")
        c["role_name"] = gr.Textbox(label="new role: name 名称", scale=1, elem_id="ra-role-name")
        c["create_role"] = gr.Button("Create role 创建角色", scale=1, elem_id="ra-create-role")
        c["refresh"] = gr.Button("Refresh 刷新", scale=1, size="sm", elem_id="ra-refresh")
    c["status"] = gr.Markdown(elem_id="ra-status")

    with gr.Tabs():
        # -- library ---------------------------------------------------------------------------------------------
        with gr.Tab("Library 素材库", id="ra-library"):
            with gr.Accordion("Import a .list 导入", open=True):
                with gr.Row():
                    c["import_files"] = gr.File(file_count="multiple", type="filepath", height=110,
                                                label=".list + its audio files, or a zip of both 上传",
                                                elem_id="ra-import-files")
                    with gr.Column():
                        c["import_path"] = gr.Textbox(label="…or a .list path on this machine",
                                                      elem_id="ra-import-path")
                        with gr.Row():
                            c["import_category"] = gr.Textbox(value="default", label="into category 分类")
                            c["import_update"] = gr.Checkbox(value=False, label="update transcripts of duplicates")
                        c["import_go"] = gr.Button("Import 导入", variant="primary", elem_id="ra-import-go")
                c["import_report"] = gr.Markdown(elem_id="ra-import-report")
            with gr.Row():
                c["f_categories"] = gr.Dropdown([], multiselect=True, label="categories 分类", scale=2,
                                               allow_custom_value=True)
                c["f_text"] = gr.Textbox(label="name / transcript contains 搜索", scale=2, elem_id="ra-f-text")
                c["f_valid"] = gr.Radio([("all", "all"), ("valid 3-10 s", "valid"), ("invalid", "invalid")],
                                        value="all", label="valid", scale=2)
                c["f_min"] = gr.Number(value=0, label="min s", scale=1)
                c["f_max"] = gr.Number(value=0, label="max s (0 = any)", scale=1)
                c["f_sort"] = gr.Dropdown(list(CLIP_SORTS), value="duration", label="sort", scale=1)
                c["f_desc"] = gr.Checkbox(value=True, label="descending", scale=1)
                c["search"] = gr.Button("Search 筛选", scale=1, elem_id="ra-search")
            c["clips"] = gr.Dataframe(headers=CLIP_COLUMNS, value=[], interactive=False, wrap=True, max_height=360,
                                      elem_id="ra-clips")
            with gr.Row(equal_height=True):
                c["selected"] = gr.Textbox(label="selected clip ids 已选 (click rows; editable)", scale=3,
                                           elem_id="ra-selected")
                c["clear_sel"] = gr.Button("Clear selection", size="sm", scale=1)
                c["relabel_to"] = gr.Textbox(label="category for the selection 新分类", scale=2,
                                             elem_id="ra-relabel-to")
                c["relabel"] = gr.Button("Relabel selected 重新分类", scale=1, elem_id="ra-relabel")
            with gr.Row():
                with gr.Column(scale=1):
                    c["clip_id"] = gr.Number(label="clip 片段 id", precision=0, elem_id="ra-clip-id")
                    c["clip_audio"] = gr.Audio(label="clip", type="filepath", interactive=False,
                                               elem_id="ra-clip-audio")
                    c["clip_text"] = gr.Textbox(label="transcript 文本", lines=2)
                    with gr.Row():
                        c["clip_lang"] = gr.Dropdown(LANGS, value="zh", label="language")
                        c["clip_checked"] = gr.Checkbox(label="manually checked 已校对")
                    c["clip_save"] = gr.Button("Save clip text 保存", size="sm")
                with gr.Column(scale=2):
                    c["clip_view"] = gr.Image(label="waveform + spectrogram 波形/频谱", type="filepath",
                                              interactive=False, elem_id="ra-clip-view")
                    with gr.Row():
                        c["regions"] = gr.Textbox(label="split regions: 'start end [transcript]' per line 切分",
                                                  lines=3, scale=3, elem_id="ra-regions")
                        with gr.Column(scale=1):
                            c["split_join"] = gr.Checkbox(label="join regions into one clip")
                            c["split_preview"] = gr.Button("Preview marks 预览", size="sm")
                            c["split_go"] = gr.Button("Split 切分", size="sm", elem_id="ra-split")
            with gr.Accordion("Speaker grouping 说话人分组", open=False):
                with gr.Row():
                    c["anchor"] = gr.Number(label="anchor clip id", precision=0)
                    c["threshold"] = gr.Slider(-1.0, 1.0, value=0.6, step=0.01, label="similarity threshold")
                    c["group_to"] = gr.Textbox(value="similar", label="move ≥ threshold into category")
                with gr.Row():
                    c["similar"] = gr.Button("Similarity histogram 相似度")
                    c["move_similar"] = gr.Button("Move similar clips 移动")
                    c["cluster"] = gr.Button("Cluster the role 聚类")
                    c["apply_clusters"] = gr.Button("Apply clusters as speaker_N 应用")
                with gr.Row():
                    c["histogram"] = gr.Image(label="histogram", type="filepath", interactive=False)
                    c["similar_table"] = gr.Dataframe(headers=["clip", "similarity"], value=[], interactive=False,
                                                      max_height=300)
                c["clusters_state"] = gr.State([])
                c["clusters"] = gr.Dataframe(headers=["cluster", "clips"], value=[], interactive=False)

        # -- sweep -----------------------------------------------------------------------------------------------
        with gr.Tab("Sweep 参数对比", id="ra-sweep"):
            with gr.Row():
                c["task_name"] = gr.Textbox(label="task name 任务名", elem_id="ra-task-name")
                c["compare"] = gr.Dropdown(list(COMPARE_TYPES), value="top_k", label="compare 对比项",
                                           elem_id="ra-compare")
                c["values"] = gr.Textbox(value="5, 15, 30", label="values (comma-separated; JSON for full)",
                                         elem_id="ra-values")
            # only the fields of the chosen compare type are shown (see sweep_fields_visibility)
            with gr.Row(visible=False) as c["grid_row"]:
                c["grid_k"] = gr.Textbox(value="5, 15", label="kpt grid: top_k")
                c["grid_p"] = gr.Textbox(value="0.8, 1.0", label="kpt grid: top_p")
                c["grid_t"] = gr.Textbox(value="0.8, 1.0", label="kpt grid: temperature")
            with gr.Row(visible=False) as c["models_row"]:
                c["gpt_values"] = gr.Dropdown(gpts, multiselect=True, label="GPT models to compare (gpt_path/models)")
                c["sovits_values"] = gr.Dropdown(sovitss, multiselect=True,
                                                 label="SoVITS models to compare (sovits_path/models)")
            with gr.Row():
                c["gpt"] = gr.Dropdown(gpts, value=gpts[0][1] if gpts else None, label="GPT 模型 (base)")
                c["sovits"] = gr.Dropdown(sovitss, value=sovitss[0][1] if sovitss else None,
                                          label="SoVITS 模型 (base)")
            with gr.Row():
                c["ref_ids"] = gr.Textbox(label="reference clip ids 参考片段 (or use the Library selection)",
                                          elem_id="ra-ref-ids")
                c["use_selection"] = gr.Button("← Library selection", size="sm")
                c["ref_categories"] = gr.Dropdown([], multiselect=True, allow_custom_value=True,
                                                 label="…and/or every valid clip of categories")
                c["aux_ids"] = gr.Textbox(label="auxiliary reference clip ids (base)")
            with gr.Row():
                c["texts"] = gr.Textbox(value="今天天气很好，我们去公园散步吧。", lines=3, scale=3,
                                        label="test texts 测试文本 (one per line)", elem_id="ra-texts")
                with gr.Column(scale=1):
                    c["text_lang"] = gr.Dropdown(LANGS, value="zh", label="text language")
                    c["samples"] = gr.Number(value=1, precision=0, minimum=1, maximum=50, label="samples per cell",
                                             elem_id="ra-samples")
                    c["seed"] = gr.Number(value=1234, precision=0, minimum=0, label="task seed")
            with gr.Accordion("Base parameters 基础参数", open=False):
                with gr.Row():
                    c["top_k"] = gr.Number(value=PARAM_DEFAULTS["top_k"], precision=0, label="top_k")
                    c["top_p"] = gr.Number(value=PARAM_DEFAULTS["top_p"], label="top_p")
                    c["temperature"] = gr.Number(value=PARAM_DEFAULTS["temperature"], label="temperature")
                    c["repetition_penalty"] = gr.Number(value=PARAM_DEFAULTS["repetition_penalty"],
                                                        label="repetition penalty")
                with gr.Row():
                    c["speed"] = gr.Number(value=PARAM_DEFAULTS["speed"], label="speed")
                    c["split"] = gr.Dropdown(SPLITS, value=PARAM_DEFAULTS["split_method"], label="split method")
                    c["pause"] = gr.Number(value=PARAM_DEFAULTS["pause"], label="pause (s)")
                    c["noise_scale"] = gr.Number(value=PARAM_DEFAULTS["noise_scale"], label="noise scale")
                    c["max_tokens"] = gr.Number(value=0, precision=0, minimum=0, elem_id="ra-max-tokens",
                                                label="max semantic tokens (0 = model limit)")
            with gr.Row():
                c["sweep_go"] = gr.Button("Create and start 创建并运行", variant="primary", elem_id="ra-sweep-go")
                c["sweep_cancel"] = gr.Button("Cancel 取消", variant="stop", elem_id="ra-sweep-cancel")
            c["sweep_status"] = gr.Markdown(elem_id="ra-sweep-status")
            with gr.Row():
                c["follow_id"] = gr.Number(label="task id", precision=0, scale=1)
                c["follow"] = gr.Button("Follow / status 查看进度", scale=1)
                c["start_again"] = gr.Button("Start (resume) 继续", scale=1)
            c["tasks"] = gr.Dataframe(headers=TASK_COLUMNS, value=[], interactive=False, max_height=260,
                                      elem_id="ra-tasks")

        # -- results ---------------------------------------------------------------------------------------------
        with gr.Tab("Results 结果", id="ra-results"):
            with gr.Row():
                c["r_task"] = gr.Dropdown([], label="task 任务", scale=3, elem_id="ra-r-task", allow_custom_value=True)
                c["r_sort"] = gr.Dropdown(list(RESULT_SORTS), value="duration", label="sort 排序", scale=1,
                                          elem_id="ra-r-sort")
                c["r_desc"] = gr.Checkbox(value=True, label="descending", scale=1)
                c["r_status"] = gr.Dropdown(["done", "failed", "pending", "all"], value="done", label="status",
                                            scale=1)
            with gr.Row():
                c["r_min_score"] = gr.Dropdown([("any", -1)] + [(str(k), k) for k in range(6)], value=-1,
                                               label="min score")
                c["r_max_cer"] = gr.Textbox(label="max CER (empty = any)")
                c["r_min_sim"] = gr.Textbox(label="min similarity (empty = any)")
                c["r_flagged"] = gr.Radio(["any", "flagged", "clean"], value="any", label="flags")
                c["r_remark"] = gr.Textbox(label="remark contains")
                c["r_show"] = gr.Button("Show 显示", elem_id="ra-r-show")
            c["results"] = gr.Dataframe(headers=RESULT_COLUMNS, value=[], interactive=False, wrap=True,
                                        max_height=360, elem_id="ra-results-table")
            with gr.Row():
                with gr.Column(scale=1):
                    c["item_id"] = gr.Number(label="result 结果 id", precision=0, elem_id="ra-item-id")
                    c["item_audio"] = gr.Audio(label="result", type="filepath", interactive=False,
                                               elem_id="ra-item-audio")
                    c["score"] = gr.Radio(SCORE_CHOICES, value=-1, label="评分 score 0-5 (saved at once)",
                                          elem_id="ra-score")
                    c["remark"] = gr.Textbox(label="remark 备注 (Enter saves)", elem_id="ra-remark")
                    c["score_info"] = gr.Markdown(elem_id="ra-score-info")
                with gr.Column(scale=2):
                    c["item_spec"] = gr.Image(label="spectrogram 频谱", type="filepath", interactive=False,
                                              elem_id="ra-item-spec")
                    c["item_info"] = gr.Markdown(elem_id="ra-item-info")
            with gr.Accordion("A/B compare 对比", open=False):
                with gr.Row():
                    c["ab_a"] = gr.Number(label="A result id", precision=0)
                    c["ab_b"] = gr.Number(label="B result id", precision=0)
                    c["ab_set_a"] = gr.Button("A ← current", size="sm")
                    c["ab_set_b"] = gr.Button("B ← current", size="sm")
                    c["ab_go"] = gr.Button("Compare 对比")
                with gr.Row():
                    with gr.Column():
                        c["ab_audio_a"] = gr.Audio(label="A", type="filepath", interactive=False)
                        c["ab_spec_a"] = gr.Image(label="A", type="filepath", interactive=False)
                    with gr.Column():
                        c["ab_audio_b"] = gr.Audio(label="B", type="filepath", interactive=False)
                        c["ab_spec_b"] = gr.Image(label="B", type="filepath", interactive=False)
                c["ab_info"] = gr.Markdown()
            with gr.Accordion("Long-text test 长文本测试", open=False):
                c["long_text"] = gr.Textbox(lines=4, label="long text (the current result's settings and seed; "
                                                           "no result chosen → the task's best-scored one)")
                with gr.Row():
                    c["long_lang"] = gr.Dropdown(LANGS, value="zh", label="language")
                    c["long_go"] = gr.Button("Run the long text 运行")
                c["long_info"] = gr.Markdown()

        # -- products --------------------------------------------------------------------------------------------
        with gr.Tab("Products 预设", id="ra-products"):
            with gr.Row(equal_height=True):
                c["p_name"] = gr.Textbox(label="product name 预设名 (from the current result)", scale=2,
                                         elem_id="ra-p-name")
                c["p_remark"] = gr.Textbox(label="remark", scale=2)
                c["p_overwrite"] = gr.Checkbox(label="overwrite", scale=1)
                c["p_save"] = gr.Button("Save product 保存预设", variant="primary", scale=1, elem_id="ra-p-save")
            c["p_info"] = gr.Markdown(elem_id="ra-p-info")
            c["products"] = gr.Dataframe(headers=PRODUCT_COLUMNS, value=[], interactive=False, wrap=True,
                                         max_height=300, elem_id="ra-products-table")
            with gr.Row():
                c["p_pick"] = gr.Dropdown([], multiselect=True, label="products to export", scale=3,
                                          allow_custom_value=True)
                c["p_models"] = gr.Checkbox(label="include model files", scale=1)
                c["p_export"] = gr.Button("Export zip 导出", scale=1)
                c["p_file"] = gr.File(label="export", interactive=False, height=80, scale=2)
            with gr.Row():
                c["p_zip"] = gr.File(label="product zip to import 导入", file_types=[".zip"], type="filepath",
                                     height=80, scale=3)
                c["p_import_overwrite"] = gr.Checkbox(label="overwrite same names", scale=1)
                c["p_import"] = gr.Button("Import 导入", scale=1)

    _wire(svc, services, c, served, TaskSpec)
    return c


def _wire(svc, services, c: dict[str, Any], served, TaskSpec) -> None:
    # -- role-wide refresh -------------------------------------------------------------------------------------
    def task_choices(role_id):
        if role_id in (None, ""):
            return []
        return [(f"#{t['id']} {t['name']} ({t['status']}, {t['done']}/{t['total']})", t["id"])
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
        return gr.update(choices=role_choices(svc), value=rid), f"Role **{category}/{name}** ready (id {rid})."

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
            name = next((Path(str(f)).name for f in files if str(f).lower().endswith(".list")), "the upload")
        elif str(path or "").strip():
            report = svc.import_server_list(rid, str(path).strip().strip('"'), **options)
            name = Path(str(path).strip()).name
        else:
            raise RefAudioPageError("Upload a .list with its audio (or a zip), or give a .list path.")
        lines = [f"**Import of {name}:** {report.summary()}"]
        for title, issues in (("rejected", report.errors), ("outside 3-10 s (imported as invalid)",
                                                             report.out_of_range), ("already present",
                                                                                    report.duplicates)):
            if issues:
                lines.append(f"\n**{title}:**")
                lines += [f"- line {i.line} `{i.path}`: {i.reason}" for i in issues[:50]]
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
            raise RefAudioPageError("Select clips first (click rows of the table, or type their ids).")
        n = svc.relabel(ids, category)
        cats = svc.categories(_role(role_id))
        return (f"{n} clip(s) moved to **{category}**.", clip_filter(role_id, *flt), gr.update(choices=cats),
                gr.update(choices=cats))

    c["relabel"].click(relabel, [c["role"], c["selected"], c["relabel_to"], *filters[1:]],
                       [c["status"], c["clips"], c["f_categories"], c["ref_categories"]], api_name="refaudio_relabel")

    @user_errors
    def save_clip(clip_id, text, lang, checked, *flt):
        cid = _one_id(clip_id, "clip")
        row = svc.update_clip(cid, transcript=text, language=lang, manual_checked=bool(checked))
        return f"Clip {cid} saved.", clip_filter(row["role_id"], *flt)

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
        return (f"Clip {cid} → new clip(s) {', '.join(map(str, made))}.", clip_filter(role_id, *flt))

    c["split_go"].click(split, [c["role"], c["clip_id"], c["regions"], c["split_join"], *filters[1:]],
                        [c["status"], c["clips"]], api_name="refaudio_split")

    @user_errors
    def similarity(anchor, threshold, categories, progress=gr.Progress()):
        out = svc.similarity(_one_id(anchor, "anchor clip"), categories or (), float(threshold),
                             progress=lambda f, m: progress(f, desc=m))
        rows = [[cid, round(s, 4)] for cid, s in out["scores"]]
        note = f"{len(rows)} clip(s) scored against clip {out['anchor']}"
        if out.get("errors"):
            note += "; without a vector: " + "; ".join(f"{k}: {v}" for k, v in list(out["errors"].items())[:10])
        return served(out["histogram_png"]), rows, note

    c["similar"].click(similarity, [c["anchor"], c["threshold"], c["f_categories"]],
                       [c["histogram"], c["similar_table"], c["status"]], api_name="refaudio_similarity")

    @user_errors
    def move_similar(role_id, anchor, threshold, target, categories, *flt):
        moved = svc.move_similar(_one_id(anchor, "anchor clip"), float(threshold), target, categories or ())
        return f"{len(moved)} clip(s) moved to **{target}**: {', '.join(map(str, moved))}", clip_filter(role_id, *flt)

    c["move_similar"].click(move_similar, [c["role"], c["anchor"], c["threshold"], c["group_to"], c["f_categories"],
                                           *filters[1:]], [c["status"], c["clips"]], api_name="refaudio_move_similar")

    @user_errors
    def cluster(role_id, threshold, categories):
        clusters = svc.cluster(_role(role_id), float(threshold), categories or ())
        rows = [[k, ", ".join(map(str, ids))] for k, ids in enumerate(clusters, 1)]
        return clusters, rows, f"{len(clusters)} cluster(s) at threshold {float(threshold):.2f}; press Apply to " \
                               "label them speaker_1, speaker_2, ..."

    c["cluster"].click(cluster, [c["role"], c["threshold"], c["f_categories"]],
                       [c["clusters_state"], c["clusters"], c["status"]], api_name="refaudio_cluster")

    @user_errors
    def apply_clusters(role_id, clusters, *flt):
        if not clusters:
            raise RefAudioPageError("Cluster the role first.")
        applied = svc.apply_clusters(clusters)
        cats = svc.categories(_role(role_id))
        return (f"Applied: {', '.join(f'{k} ({len(v)})' for k, v in applied.items())}", clip_filter(role_id, *flt),
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
        text = (f"**Task {task_id}** ({st['task']['name']}): {st['state']} · {n['done']}/{n['total']} done, "
                f"{n['failed']} failed · {st['fraction'] * 100:.0f}%")
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
            progress(st["fraction"], desc=(st["message"] or st["state"])[:120])
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
                                   "max_tokens")]

    @user_errors
    def sweep(role_id, name, compare, values, grid_k, grid_p, grid_t, gpt_values, sovits_values, gpt, sovits,
              ref_ids, ref_categories, aux_ids, texts, text_lang, samples, seed, top_k, top_p, temperature,
              repetition_penalty, speed, split_method, pause, noise_scale, max_tokens, progress=gr.Progress()):
        rid = _role(role_id)
        vals = parse_values(compare, values, gpt_values or [], sovits_values or [],
                            {"top_k": grid_k, "top_p": grid_p, "temperature": grid_t})
        base = {"gpt_path": gpt, "sovits_path": sovits, "aux_refs": parse_ids(aux_ids, "auxiliary clip ids"),
                "top_k": top_k, "top_p": top_p, "temperature": temperature, "repetition_penalty": repetition_penalty,
                "speed": speed, "split_method": split_method, "pause": pause, "noise_scale": noise_scale,
                "max_tokens": int(max_tokens or 0) or None}
        lines = [(t.strip(), text_lang or "zh") for t in str(texts or "").splitlines() if t.strip()]
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
            return f"Cancelling task {tid}: it stops after the current batch (finished results are kept; Start " \
                   "resumes)."
        return f"Task {tid} is not running."

    c["sweep_cancel"].click(cancel, c["follow_id"], c["sweep_status"], api_name="refaudio_cancel",
                            concurrency_limit=None, queue=False)

    # -- results -----------------------------------------------------------------------------------------------
    def optional_float(value: Any, what: str) -> Optional[float]:
        if value in (None, "") or str(value).strip() == "":
            return None
        try:
            return float(value)
        except ValueError:
            raise RefAudioPageError(f"{what} must be a number, not {value!r}.") from None

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
        note = (f"Score of result {iid} saved: {item['user_score']}" if value is not None
                else f"Score of result {iid} cleared.")
        table = results_of(*flt) if flt and flt[0] not in (None, "") else gr.skip()  # the table shows it too
        return note, table

    c["score"].input(set_score, [c["item_id"], c["score"], *result_filters], [c["score_info"], c["results"]],
                     api_name="refaudio_score")

    @user_errors
    def set_remark(item_id, remark):
        iid = _one_id(item_id, "result")
        svc.set_score(iid, svc.result(iid)["user_score"], remark or "")
        return f"Remark of result {iid} saved."

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
            lines.append(f"| **{k}** (differs) | {va} | {vb} |")
        for k, (va, vb) in out["metrics"].items():
            lines.append(f"| {k} | {_r(va)} | {_r(vb)} |")
        return (*files(a, out["a"]), *files(b, out["b"]), f"Result {a} (A) vs {b} (B)\n\n" + "\n".join(lines))

    c["ab_go"].click(compare, [c["ab_a"], c["ab_b"]], [c["ab_audio_a"], c["ab_spec_a"], c["ab_audio_b"],
                                                       c["ab_spec_b"], c["ab_info"]], api_name="refaudio_compare")

    @user_errors
    def long_text(role_id, item_id, task_id, text, lang, progress=gr.Progress()):
        if not str(text or "").strip():
            raise RefAudioPageError("Type the long text to test.")
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
        return (f"Product **{name}** saved (id {pid}) from result {iid}. Load it in the TTS tab with "
                "\"Load product 载入预设\".", *products_view(role_id))

    c["p_save"].click(save_product, [c["role"], c["item_id"], c["p_name"], c["p_remark"], c["p_overwrite"]],
                      [c["p_info"], c["products"], c["p_pick"]], api_name="refaudio_product_save")

    @user_errors
    def export(ids, models):
        chosen = parse_ids(ids, "product ids")
        if not chosen:
            raise RefAudioPageError("Choose the products to export.")
        path = svc.export_products(chosen, include_models=bool(models))
        return served(path), f"Exported {len(chosen)} product(s) to `{path.name}`."

    c["p_export"].click(export, [c["p_pick"], c["p_models"]], [c["p_file"], c["p_info"]],
                        api_name="refaudio_product_export")

    @user_errors
    def import_products(role_id, zip_file, overwrite):
        if not zip_file:
            raise RefAudioPageError("Upload a product zip first.")
        made = svc.import_products(zip_file, None, bool(overwrite))
        return (f"Imported product(s) {', '.join(map(str, made))}.", *products_view(role_id),
                gr.update(choices=role_choices(svc)))

    c["p_import"].click(import_products, [c["role"], c["p_zip"], c["p_import_overwrite"]],
                        [c["p_info"], c["products"], c["p_pick"], c["role"]], api_name="refaudio_product_import")
