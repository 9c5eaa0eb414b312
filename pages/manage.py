"""Library management in the RefAudio tab (a "Manage" sub-tab) and the Finetune tab (delete an experiment): layout
and wiring only. Everything is a :class:`refaudio.service.RefAudioService` call (``gsv_core.finetune.manage`` for
experiments); every delete needs its confirmation box ticked (the service refuses otherwise, keyed
``library.confirm_delete``). Also the test-text pickers of the Sweep form and the long-text test."""
from __future__ import annotations

import functools
import json
from typing import Any, Optional

import gradio as gr

from gsv_core.errors import GSVError

from .common import on_page_load, text_language_choices, user_errors
from .i18n import T, error_text, say

TEXT_COLUMNS = ["id", "name", "language", "tags", "text", "note"]


class ManagePageError(GSVError):
    """A value typed into a management form that cannot be used."""


def act(button, fn, inputs, outputs, **kw) -> None:
    """``button.click`` whose refusals (a missing confirmation, a clip in use, a role not empty) are reported in
    the first output and as a warning, leaving the other outputs as they are: a failed action must not put its
    confirmation box into Gradio's error state, where it cannot be ticked until the error is dismissed."""
    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    n = len(outs)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as exc:
            cause = exc.__cause__
            if not isinstance(cause, GSVError):
                raise
            text = error_text(cause)
            gr.Warning(text)
            note = say("**Not done:** {text}", "**未执行：**{text}", text=text)
            return note if n == 1 else (note, *([gr.skip()] * (n - 1)))

    button.click(run, inputs, outputs, **kw)


def text_rows(texts: list[dict]) -> list[list[Any]]:
    return [[t["id"], t["name"], t["language"], t["tags"], t["text"], t["note"]] for t in texts]


def text_choices(svc) -> list[tuple[str, int]]:
    return [(f"{t['name']} [{t['language']}] {t['text'][:30]}", t["id"]) for t in svc.list_texts()]


def _pick(value: Any, what_en: str, what_zh: str) -> int:
    if value in (None, "") or (isinstance(value, (int, float)) and value < 1):
        raise ManagePageError(say(f"Choose a {what_en} first.", f"请先选择{what_zh}。"))
    return int(value)


# -- pickers placed in the Sweep form and the long-text test -----------------------------------------------------

def sweep_text_picker(svc, c: dict[str, Any]) -> None:
    """A multiselect of library texts in the Sweep form: each chosen text joins the typed ones, with its own
    language (``c["lib_texts"]``, an input of the sweep action)."""
    c["lib_texts"] = gr.Dropdown(text_choices(svc), multiselect=True, elem_id="ra-lib-texts",
                                 label=T("…and/or test texts from the library (Manage → Test texts)",
                                         "……以及/或测试文本库中的文本（管理 → 测试文本）"))
    on_page_load(lambda: gr.update(choices=text_choices(svc)), None, [c["lib_texts"]])


def long_text_picker(svc, c: dict[str, Any]) -> None:
    """A library text that fills the long-text box and its language."""
    c["long_pick"] = gr.Dropdown(text_choices(svc), label=T("fill from the test-text library",
                                                            "从测试文本库填入"), elem_id="ra-long-pick")
    on_page_load(lambda: gr.update(choices=text_choices(svc)), None, [c["long_pick"]])


def wire_long_text_picker(svc, c: dict[str, Any]) -> None:
    @user_errors
    def fill(text_id):
        if text_id in (None, ""):
            return gr.skip(), gr.skip()
        row = svc.texts.get(int(text_id))
        return row["text"], row["language"]

    c["long_pick"].input(fill, c["long_pick"], [c["long_text"], c["long_lang"]])


# -- the Manage sub-tab ------------------------------------------------------------------------------------------

def build_refaudio_manage(svc, c: dict[str, Any]) -> None:
    """The Manage sub-tab; call inside the RefAudio tab's ``gr.Tabs()`` after the components it refreshes exist."""
    from .refaudio import clip_rows, product_choices, product_rows, role_choices, task_rows

    m: dict[str, Any] = {}
    with gr.Tab(T("Manage", "管理"), id="ra-manage") as m["tab"]:
        m["info"] = gr.Markdown(elem_id="ma-info")
        with gr.Accordion(T("Clips", "片段"), open=True):
            with gr.Row(equal_height=True):
                m["clip_ids"] = gr.Textbox(label=T("clip ids to delete", "要删除的片段 id"), scale=3,
                                           elem_id="ma-clip-ids")
                m["clip_from_sel"] = gr.Button(T("← Library selection", "← 素材库中的选择"), size="sm", scale=1,
                                               elem_id="ma-clip-from-sel")
                m["clip_confirm"] = gr.Checkbox(label=T("yes, delete these clips and their audio",
                                                        "确认删除这些片段及其音频"), scale=2,
                                                elem_id="ma-clip-confirm")
                m["clip_delete"] = gr.Button(T("Delete clips", "删除片段"), variant="stop", scale=1,
                                             elem_id="ma-clip-delete")
        with gr.Accordion(T("Role", "角色"), open=True):
            with gr.Row(equal_height=True):
                m["export_kind"] = gr.Radio([(T("zip", "zip 压缩包"), "zip"), (T("folder", "文件夹"), "folder")],
                                            value="zip", label=T("export as", "导出为"), scale=1,
                                            elem_id="ma-export-kind")
                m["export_valid"] = gr.Checkbox(label=T("only clips of 3-10 s", "仅 3-10 秒的片段"), scale=1)
                m["export"] = gr.Button(T("Export the role's clips as .list + audio", "将角色片段导出为 .list + 音频"),
                                        scale=2, elem_id="ma-export")
                m["export_file"] = gr.File(label=T("export", "导出文件"), interactive=False, height=80, scale=2,
                                           elem_id="ma-export-file")
            with gr.Row(equal_height=True):
                m["role_force"] = gr.Checkbox(label=T("delete everything it holds (clips, tasks, results, products)",
                                                      "连同其内容一起删除（片段、任务、结果、预设）"), scale=3,
                                              elem_id="ma-role-force")
                m["role_confirm"] = gr.Checkbox(label=T("yes, delete this role", "确认删除此角色"), scale=2,
                                                elem_id="ma-role-confirm")
                m["role_delete"] = gr.Button(T("Delete role", "删除角色"), variant="stop", scale=1,
                                             elem_id="ma-role-delete")
        with gr.Accordion(T("Sweep tasks", "对比任务"), open=True):
            with gr.Row(equal_height=True):
                m["task"] = gr.Dropdown([], label=T("task", "任务"), scale=2, elem_id="ma-task")
                m["task_name"] = gr.Textbox(label=T("name", "名称"), scale=2, elem_id="ma-task-name")
                m["task_rename"] = gr.Button(T("Rename", "重命名"), scale=1, elem_id="ma-task-rename")
            with gr.Row(equal_height=True):
                m["task_note"] = gr.Textbox(label=T("note (what the comparison showed)", "备注（对比结论）"),
                                            lines=2, scale=4, elem_id="ma-task-note")
                m["task_note_save"] = gr.Button(T("Save note", "保存备注"), scale=1, elem_id="ma-task-note-save")
            with gr.Row(equal_height=True):
                m["task_confirm"] = gr.Checkbox(label=T("yes, delete this task, its results and their audio",
                                                        "确认删除此任务及其结果和音频"), scale=3,
                                                elem_id="ma-task-confirm")
                m["task_delete"] = gr.Button(T("Delete task", "删除任务"), variant="stop", scale=1,
                                             elem_id="ma-task-delete")
        with gr.Accordion(T("Products", "预设"), open=True):
            with gr.Row(equal_height=True):
                m["product"] = gr.Dropdown([], label=T("product", "预设"), scale=2, elem_id="ma-product")
                m["p_name"] = gr.Textbox(label=T("name", "名称"), scale=2, elem_id="ma-p-name")
                m["p_category"] = gr.Textbox(label=T("category", "分类"), scale=1, elem_id="ma-p-category")
                m["p_score"] = gr.Textbox(label=T("score (empty = none)", "评分（空 = 无）"), scale=1,
                                          elem_id="ma-p-score")
            with gr.Row(equal_height=True):
                m["p_remark"] = gr.Textbox(label=T("remark", "备注"), scale=2, elem_id="ma-p-remark")
                m["p_params"] = gr.Code(language="json", label=T("parameters (JSON)", "参数（JSON）"),
                                        elem_id="ma-p-params", scale=3)
            with gr.Row(equal_height=True):
                m["p_ref"] = gr.Number(label=T("reference clip id", "参考片段 id"), precision=0, scale=1,
                                       elem_id="ma-p-ref")
                m["p_aux"] = gr.Textbox(label=T("auxiliary clip ids", "辅助参考片段 id"), scale=2, elem_id="ma-p-aux")
                m["p_save"] = gr.Button(T("Save product", "保存预设"), variant="primary", scale=1,
                                        elem_id="ma-p-save")
            with gr.Row(equal_height=True):
                m["p_confirm"] = gr.Checkbox(label=T("yes, delete this product", "确认删除此预设"), scale=3,
                                             elem_id="ma-p-confirm")
                m["p_delete"] = gr.Button(T("Delete product", "删除预设"), variant="stop", scale=1,
                                          elem_id="ma-p-delete")
        with gr.Accordion(T("Test texts (shared by every role)", "测试文本（所有角色共用）"), open=True):
            m["texts"] = gr.Dataframe(headers=TEXT_COLUMNS, value=text_rows(svc.list_texts()), interactive=False,
                                      wrap=True, max_height=260, elem_id="ma-texts")
            with gr.Row(equal_height=True):
                m["t_id"] = gr.Number(label=T("text id (click a row; empty = new)", "文本 id（点击行；空 = 新建）"),
                                      precision=0, scale=1, elem_id="ma-t-id")
                m["t_name"] = gr.Textbox(label=T("name", "名称"), scale=2, elem_id="ma-t-name")
                m["t_lang"] = gr.Dropdown(text_language_choices(), value="zh", label=T("language", "语言"), scale=1,
                                          elem_id="ma-t-lang")
                m["t_tags"] = gr.Textbox(label=T("tags (comma-separated)", "标签（逗号分隔）"), scale=2,
                                         elem_id="ma-t-tags")
            m["t_text"] = gr.Textbox(label=T("text", "文本"), lines=3, elem_id="ma-t-text")
            with gr.Row(equal_height=True):
                m["t_note"] = gr.Textbox(label=T("note", "备注"), scale=3, elem_id="ma-t-note")
                m["t_add"] = gr.Button(T("Add as new", "新增"), scale=1, elem_id="ma-t-add")
                m["t_save"] = gr.Button(T("Save changes", "保存修改"), scale=1, elem_id="ma-t-save")
            with gr.Row(equal_height=True):
                m["t_confirm"] = gr.Checkbox(label=T("yes, delete this text", "确认删除此文本"), scale=3,
                                             elem_id="ma-t-confirm")
                m["t_delete"] = gr.Button(T("Delete text", "删除文本"), variant="stop", scale=1,
                                          elem_id="ma-t-delete")
    c.update({f"manage_{k}": v for k, v in m.items()})
    if "long_pick" in c:
        wire_long_text_picker(svc, c)

    # -- helpers -----------------------------------------------------------------------------------------------
    def rid_of(role_id) -> int:
        if role_id in (None, ""):
            raise ManagePageError(say("Choose a role first.", "请先选择角色。"))
        return int(role_id)

    def task_opts(role_id):
        if role_id in (None, ""):
            return []
        return [(f"#{t['id']} {t['name']} ({t['status']})", t["id"]) for t in svc.list_tasks(int(role_id))]

    def role_refresh(role_id):
        """The tables and lists the Manage actions change."""
        rid = None if role_id in (None, "") else int(role_id)
        tasks = task_opts(rid)
        results_tasks = [(f"#{t['id']} {t['name']} ({t['status']}, {t['done']}/{t['total']})", t["id"])
                         for t in (svc.list_tasks(rid) if rid else [])]
        return (clip_rows(svc.list_clips(rid)) if rid else [], task_rows(svc.list_tasks(rid)) if rid else [],
                gr.update(choices=results_tasks), product_rows(svc.list_products(rid)) if rid else [],
                gr.update(choices=product_choices(svc, rid) if rid else [], value=[]),
                gr.update(choices=tasks, value=None), gr.update(choices=product_choices(svc, rid) if rid else [],
                                                                value=None))

    refresh_outputs = [c["clips"], c["tasks"], c["r_task"], c["products"], c["p_pick"], m["task"], m["product"]]

    def lists(role_id):
        rid = None if role_id in (None, "") else int(role_id)
        return (gr.update(choices=task_opts(rid), value=None),
                gr.update(choices=product_choices(svc, rid) if rid else [], value=None),
                text_rows(svc.list_texts()))

    m["tab"].select(user_errors(lists), c["role"], [m["task"], m["product"], m["texts"]])
    c["role"].change(user_errors(lists), c["role"], [m["task"], m["product"], m["texts"]])
    c["refresh"].click(user_errors(lists), c["role"], [m["task"], m["product"], m["texts"]])

    # -- clips -------------------------------------------------------------------------------------------------
    m["clip_from_sel"].click(lambda s: s, c["selected"], m["clip_ids"])

    @user_errors
    def delete_clips(role_id, ids_text, confirm):
        from .refaudio import parse_ids

        ids = parse_ids(ids_text)
        if not ids:
            raise ManagePageError(say("Give the ids of the clips to delete.", "请填写要删除的片段 id。"))
        out = svc.delete_clips(ids, confirm=bool(confirm))
        lines = []
        if out["deleted"]:
            lines.append(say("Deleted clip(s) {ids}.", "已删除片段 {ids}。", ids=", ".join(map(str, out["deleted"]))))
        lines += [f"- {error_text(exc)}" for exc in out["refused"].values()]
        return ("\n".join(lines), False, *role_refresh(role_id))

    act(m["clip_delete"], delete_clips, [c["role"], m["clip_ids"], m["clip_confirm"]],
                           [m["info"], m["clip_confirm"], *refresh_outputs], api_name="refaudio_delete_clips")

    # -- role --------------------------------------------------------------------------------------------------
    @user_errors
    def export_role(role_id, kind, valid):
        path = svc.export_role(rid_of(role_id), as_zip=kind != "folder", valid_only=bool(valid))
        if kind == "folder":
            from .common import shown_path

            return None, say("Exported to the folder `{path}` (.list + audio/).",
                             "已导出到文件夹 `{path}`（.list + audio/）。", path=shown_path(path))
        return str(svc.resolve_served(path)), say("Exported `{name}` (.list + audio).", "已导出 `{name}`（.list + 音频）。",
                                                  name=path.name)

    m["export"].click(export_role, [c["role"], m["export_kind"], m["export_valid"]], [m["export_file"], m["info"]],
                      api_name="refaudio_export_role")

    @user_errors
    def delete_role(role_id, force, confirm):
        out = svc.delete_role(rid_of(role_id), confirm=bool(confirm), force=bool(force))
        roles = role_choices(svc)
        new = roles[0][1] if roles else None
        return (say("Deleted role {role} ({clips} clip(s), {tasks} task(s), {products} product(s)).",
                    "已删除角色 {role}（{clips} 个片段、{tasks} 个任务、{products} 个预设）。", **out),
                False, False, gr.update(choices=roles, value=new))

    act(m["role_delete"], delete_role, [c["role"], m["role_force"], m["role_confirm"]],
                           [m["info"], m["role_confirm"], m["role_force"], c["role"]], api_name="refaudio_delete_role")

    # -- tasks -------------------------------------------------------------------------------------------------
    @user_errors
    def show_task(task_id):
        if task_id in (None, ""):
            return "", ""
        t = svc.sweeps.task(int(task_id))
        return t["name"], t["conclusion"]

    m["task"].input(show_task, m["task"], [m["task_name"], m["task_note"]])

    @user_errors
    def rename_task(role_id, task_id, name):
        tid = _pick(task_id, "task", "任务")
        t = svc.rename_task(tid, name)
        return (say("Task {id} renamed to {name}.", "任务 {id} 已重命名为 {name}。", id=tid, name=t["name"]),
                *role_refresh(role_id)[:3], gr.update(choices=task_opts(role_id), value=tid))

    task_outputs = [m["info"], c["clips"], c["tasks"], c["r_task"], m["task"]]
    act(m["task_rename"], rename_task, [c["role"], m["task"], m["task_name"]], task_outputs,
                           api_name="refaudio_rename_task")

    @user_errors
    def note_task(role_id, task_id, note):
        tid = _pick(task_id, "task", "任务")
        svc.annotate_task(tid, note)
        return say("Note of task {id} saved.", "任务 {id} 的备注已保存。", id=tid)

    act(m["task_note_save"], note_task, [c["role"], m["task"], m["task_note"]], m["info"],
                              api_name="refaudio_note_task")

    @user_errors
    def delete_task(role_id, task_id, confirm):
        tid = _pick(task_id, "task", "任务")
        svc.delete_task(tid, confirm=bool(confirm))
        return (say("Deleted task {id}, its results and their audio.", "已删除任务 {id} 及其结果和音频。", id=tid),
                False, "", "", *role_refresh(role_id))

    act(m["task_delete"], delete_task, [c["role"], m["task"], m["task_confirm"]],
                           [m["info"], m["task_confirm"], m["task_name"], m["task_note"], *refresh_outputs],
                           api_name="refaudio_delete_task")

    # -- products ----------------------------------------------------------------------------------------------
    product_fields = [m["p_name"], m["p_category"], m["p_score"], m["p_remark"], m["p_params"], m["p_ref"],
                      m["p_aux"]]

    @user_errors
    def show_product(product_id):
        if product_id in (None, ""):
            return ("",) * 5 + (None, "")
        p = svc.products.product(int(product_id))
        return (p["name"], p["category"], "" if p["score"] is None else f"{p['score']:g}", p["remark"],
                json.dumps(p["params"], ensure_ascii=False, indent=1), p["ref_clip_id"],
                ", ".join(map(str, p["aux_clip_ids"])))

    m["product"].input(show_product, m["product"], product_fields)

    @user_errors
    def save_product(role_id, product_id, name, category, score, remark, params, ref, aux):
        from .refaudio import parse_ids

        pid = _pick(product_id, "product", "预设")
        try:
            values = json.loads(params) if str(params or "").strip() else None
        except json.JSONDecodeError as exc:
            raise ManagePageError(say("The parameters are not valid JSON: {error}", "参数不是有效的 JSON：{error}",
                                      error=str(exc))) from None
        fields: dict[str, Any] = {"name": name, "category": category or "", "remark": remark or "",
                                  "score": str(score or "").strip() or None, "params": values,
                                  "aux_clip_ids": parse_ids(aux, "auxiliary clip ids")}
        if ref not in (None, ""):
            fields["ref_clip_id"] = int(ref)
        p = svc.update_product(pid, **fields)
        return (say("Product {name} saved.", "预设 {name} 已保存。", name=p["name"]), *role_refresh(role_id)[3:5],
                gr.update(choices=product_choices(svc, None if role_id in (None, "") else int(role_id)), value=pid))

    act(m["p_save"], save_product, [c["role"], m["product"], *product_fields],
                      [m["info"], c["products"], c["p_pick"], m["product"]], api_name="refaudio_edit_product")

    @user_errors
    def delete_product(role_id, product_id, confirm):
        pid = _pick(product_id, "product", "预设")
        name = svc.products.product(pid)["name"]
        svc.delete_product(pid, confirm=bool(confirm))
        return (say("Deleted product {name}.", "已删除预设 {name}。", name=name), False, "", "", "", "", "", None, "",
                *role_refresh(role_id))

    act(m["p_delete"], delete_product, [c["role"], m["product"], m["p_confirm"]],
        [m["info"], m["p_confirm"], *product_fields, *refresh_outputs], api_name="refaudio_delete_product")

    # -- test texts --------------------------------------------------------------------------------------------
    def text_lists():
        choices = text_choices(svc)
        out = [text_rows(svc.list_texts())]
        for key in ("lib_texts", "long_pick"):
            if key in c:
                out.append(gr.update(choices=choices))
        return out

    text_outputs = [m["texts"], *(c[k] for k in ("lib_texts", "long_pick") if k in c)]
    text_fields = [m["t_name"], m["t_lang"], m["t_tags"], m["t_text"], m["t_note"]]

    @user_errors
    def pick_text(evt: gr.SelectData):
        row = svc.texts.get(int(evt.row_value[0]))
        return row["id"], row["name"], row["language"], row["tags"], row["text"], row["note"]

    m["texts"].select(pick_text, None, [m["t_id"], *text_fields])

    @user_errors
    def add_text(name, language, tags, text, note):
        tid = svc.add_text(name, text, language or "zh", tags or "", note or "")
        return (say("Test text {name} added (id {id}).", "已添加测试文本 {name}（id {id}）。", name=name, id=tid), tid,
                *text_lists())

    act(m["t_add"], add_text, text_fields, [m["info"], m["t_id"], *text_outputs], api_name="refaudio_add_text")

    @user_errors
    def save_text(text_id, name, language, tags, text, note):
        tid = _pick(text_id, "test text (click its row)", "测试文本（点击其所在行）")
        row = svc.update_text(tid, name=name, language=language, tags=tags or "", text=text, note=note or "")
        return (say("Test text {name} saved.", "测试文本 {name} 已保存。", name=row["name"]), *text_lists())

    act(m["t_save"], save_text, [m["t_id"], *text_fields], [m["info"], *text_outputs], api_name="refaudio_edit_text")

    @user_errors
    def delete_text(text_id, confirm):
        tid = _pick(text_id, "test text (click its row)", "测试文本（点击其所在行）")
        name = svc.texts.get(tid)["name"]
        svc.delete_text(tid, confirm=bool(confirm))
        return (say("Deleted test text {name}.", "已删除测试文本 {name}。", name=name), False, None, *text_lists())

    act(m["t_delete"], delete_text, [m["t_id"], m["t_confirm"]], [m["info"], m["t_confirm"], m["t_id"],
                                                                    *text_outputs], api_name="refaudio_delete_text")


# -- the Finetune tab: delete an experiment ----------------------------------------------------------------------

def build_finetune_manage(settings: Any, services: Any, c: dict[str, Any]) -> None:
    """An accordion of the Finetune tab that deletes the experiment named in ``c["name"]`` (its folder; its
    exported weights only when ticked), refused while a job trains it."""
    with gr.Accordion(T("Delete an experiment", "删除实验"), open=False):
        with gr.Row(equal_height=True):
            c["del_exports"] = gr.Checkbox(label=T("also delete its exported weights (the TTS tab's models)",
                                                   "同时删除其导出的权重（TTS 页的模型）"), scale=3,
                                           elem_id="ft-del-exports")
            c["del_confirm"] = gr.Checkbox(label=T("yes, delete this experiment", "确认删除此实验"), scale=2,
                                           elem_id="ft-del-confirm")
            c["del_go"] = gr.Button(T("Delete experiment", "删除实验"), variant="stop", scale=1, elem_id="ft-del-go")
        c["del_info"] = gr.Markdown(elem_id="ft-del-info")

    @user_errors
    def delete(name, exports, confirm):
        from gsv_core.finetune.manage import delete_experiment
        from gsv_core.finetune.pipeline import Experiment

        name = str(name or "").strip()
        if not name:
            raise ManagePageError(say("Choose the experiment to delete.", "请选择要删除的实验。"))
        jobs = getattr(services, "finetune_jobs", None)
        running: Optional[str] = None
        if jobs is not None and jobs.running():
            running = jobs.status().experiment
        out = delete_experiment(settings, name, confirm=bool(confirm), with_exports=bool(exports), running=running)
        names = Experiment.list_names(settings)
        text = say("Deleted experiment {name} ({mb:.1f} MB).", "已删除实验 {name}（{mb:.1f} MB）。", name=out["name"],
                   mb=out["bytes"] / 2**20)
        if exports:
            text += " " + say("Removed {n} exported weight file(s).", "已删除 {n} 个导出的权重文件。",
                              n=len(out["exports_removed"]))
        elif out["exports_kept"]:
            text += " " + say("Its {n} exported weight file(s) are kept.", "其 {n} 个导出的权重文件已保留。",
                              n=len(out["exports_kept"]))
        return text, False, gr.update(choices=names, value=names[0] if names else None)

    act(c["del_go"], delete, [c["name"], c["del_exports"], c["del_confirm"]],
                      [c["del_info"], c["del_confirm"], c["name"]], api_name="finetune_delete_experiment")
