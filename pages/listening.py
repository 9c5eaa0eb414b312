"""Blind listening tests (MOS, SMOS, A/B, CMOS) inside the caller's tab: layout and wiring only, the logic is in
:mod:`eval.listening`. Audio is sent as samples (no file names), so nothing on the page tells which system played."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from eval import listening as L

from .common import on_page_load, user_errors
from .i18n import T, say

KIND_CHOICES = [(T("MOS (naturalness)", "MOS（自然度）"), "mos"), (T("SMOS (similarity)", "SMOS（音色相似度）"), "smos"),
                (T("A/B preference", "A/B 偏好"), "ab"), (T("CMOS (-3..+3)", "CMOS（-3..+3）"), "cmos")]
#: the instruction of each test kind: (English, Chinese), said in the request's language
INSTRUCTIONS = {
    "mos": ("Listen to the sample and rate how **natural** it sounds (1 bad … 5 excellent).",
            "听样本，评价它听起来有多**自然**（1 很差 … 5 极好）。"),
    "smos": ("Listen to the reference and the sample and rate how **similar the voices** are (1 … 5).",
             "听参考音频和样本，评价两者的**音色有多相似**（1 … 5）。"),
    "ab": ("Listen to A and B and choose the one that sounds **better** (or no preference).",
           "听 A 和 B，选出听起来**更好**的一个（或无偏好）。"),
    "cmos": ("Listen to A and B and rate **B against A**: −3 A much better … 0 the same … +3 B much better.",
             "听 A 和 B，评价 **B 相对 A**：−3 A 好得多 … 0 差不多 … +3 B 好得多。"),
}
#: Chinese names of the test kinds and of the answer scales of :mod:`eval.listening` (its English ones are shown as
#: they are)
KIND_LABELS_ZH = {"mos": "MOS（自然度 1-5）", "smos": "SMOS（与参考音频的音色相似度 1-5）", "ab": "A/B 偏好",
                  "cmos": "CMOS（-3..+3）"}
MOS_SCALE_ZH = {1: "1 很差", 2: "2 较差", 3: "3 一般", 4: "4 良好", 5: "5 极好"}
CMOS_SCALE_ZH = {-3: "-3 A 好得多", -2: "-2 A 更好", -1: "-1 A 略好", 0: "0 差不多", 1: "+1 B 略好", 2: "+2 B 更好",
                 3: "+3 B 好得多"}


def _answer_choices(kind: str) -> list[tuple[str, str]]:
    if kind in ("mos", "smos"):
        return [(say(label, MOS_SCALE_ZH.get(v, label)), str(v)) for v, label in L.MOS_SCALE.items()]
    if kind == "cmos":
        return [(say(label, CMOS_SCALE_ZH.get(v, label)), str(v)) for v, label in L.CMOS_SCALE.items()]
    return [("A", "A"), ("B", "B"), (say("No preference", "无偏好"), "tie")]


def run_folders(settings) -> list[str]:
    """Evaluation run folders (with results.jsonl) under the reports folder, newest first."""
    root = Path(getattr(settings, "reports_dir", "reports")).expanduser()
    if not root.is_dir():
        return []
    runs = [p.parent for p in root.glob("*/results.jsonl")]
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]  # names, no server paths


def _run_dir(settings, value: Any) -> Path:
    """A run folder chosen in the page: a name (or path) inside the reports folder, nothing else (tests are written
    into it)."""
    from gsv_core.paths import check_inside

    return check_inside(Path(getattr(settings, "reports_dir", "reports")).expanduser(), value, "run folder")


def _audio(path) -> Any:
    if path is None:
        return None
    from gsv_core.audio import load_audio

    wav, sr = load_audio(str(path))
    return (int(sr), wav)


def build_listening_ui(settings) -> dict[str, Any]:
    c: dict[str, Any] = {}
    runs = run_folders(settings)
    with gr.Row(equal_height=True):
        c["run_dir"] = gr.Dropdown(runs, value=runs[0] if runs else None, allow_custom_value=True, scale=4,
                                   label=T("Run folder (RUN_DIR with results.jsonl)",
                                           "评测目录（含 results.jsonl 的 RUN_DIR）"))
        c["refresh"] = gr.Button(T("Refresh", "刷新"), size="sm", scale=1)
    with gr.Row(equal_height=True):
        c["kind"] = gr.Radio(KIND_CHOICES, value="mos", label=T("Test kind", "测试类型"), scale=3)
        c["test_name"] = gr.Textbox(label=T("Test name (empty = the kind; an existing test is resumed)",
                                            "测试名（留空 = 用测试类型命名；同名的已有测试会继续）"), scale=2)
        c["systems"] = gr.Textbox(label=T("Systems (comma-separated; empty = all, or the first two for A/B and CMOS)",
                                          "参评系统（逗号分隔；留空 = 全部，A/B 和 CMOS 取前两个）"), scale=2)
    with gr.Row(equal_height=True):
        c["rater"] = gr.Textbox(label=T("Rater name", "评分人"), scale=3)
        c["start"] = gr.Button(T("Start / resume", "开始 / 继续"), variant="primary", scale=1)
    c["status"] = gr.Markdown(T("Choose a run folder and a test kind, enter your name and press Start.",
                                "选择评测目录和测试类型，填写你的名字，然后点“开始 / 继续”。"))
    c["state"] = gr.State({})
    with gr.Group(visible=False) as c["item_box"]:
        c["progress"] = gr.Markdown(elem_id="listening-progress")
        c["text"] = gr.Markdown()
        c["ref"] = gr.Audio(label=T("Reference", "参考音频"), interactive=False, visible=False)
        with gr.Row():
            c["left"] = gr.Audio(label=T("Sample", "样本"), interactive=False)
            c["right"] = gr.Audio(label=T("B", "B"), interactive=False, visible=False)
        c["answer"] = gr.Radio([], label=T("Your answer", "你的评分"))
        with gr.Row():
            c["prev"] = gr.Button(T("◀ Previous", "◀ 上一个"))
            c["next"] = gr.Button(T("Save and next ▶", "保存并下一个 ▶"), variant="primary")
    with gr.Row():
        c["show_results"] = gr.Button(T("Results", "结果"))
    c["results"] = gr.Markdown()
    _wire(settings, c)
    return c


def _wire(settings, c: dict[str, Any]) -> None:
    item_outputs = [c["state"], c["status"], c["item_box"], c["progress"], c["text"], c["ref"], c["left"],
                    c["right"], c["answer"]]

    def _test(state: dict) -> L.ListeningTest:
        if not state.get("test_dir"):
            raise L.ListeningError(say("press Start first (choose a run folder, a test kind and your name)",
                                       "请先点“开始 / 继续”（选择评测目录、测试类型并填写你的名字）"))
        return L.ListeningTest(Path(state["test_dir"]))

    def show(test: L.ListeningTest, state: dict, position: int, note: str = ""):
        t = test.trial(state["rater"], position)
        state = dict(state, position=position)
        done = test.answered(state["rater"])
        paired = test.paired
        progress = say("### Item {n} of {total}  ·  answered {done} of {total}",
                       "### 第 {n} 项，共 {total} 项  ·  已答 {done} 项", n=position + 1, total=t.total, done=done)
        kind = say(L.KIND_LABELS[test.kind], KIND_LABELS_ZH.get(test.kind, L.KIND_LABELS[test.kind]))
        status = (say("Test **{name}** — {kind}, rater **{rater}**. ", "测试 **{name}** — {kind}，评分人 **{rater}**。",
                      name=test.name, kind=kind, rater=state["rater"])
                  + say(*INSTRUCTIONS[test.kind]) + (f"\n\n{note}" if note else ""))
        text = say("**Text:** {text}", "**文本：** {text}", text=t.text) if t.text else ""
        return (state, status, gr.update(visible=True), progress, text,
                gr.update(value=_audio(t.ref), visible=t.ref is not None),
                gr.update(value=_audio(t.left), label="A" if paired else say("Sample", "样本")),
                gr.update(value=_audio(t.right), visible=paired),
                gr.update(choices=_answer_choices(test.kind), value=None if t.answer is None else str(t.answer)))

    @user_errors
    def refresh(current):
        runs = run_folders(settings)
        return gr.update(choices=runs, value=current if current else (runs[0] if runs else None))

    c["refresh"].click(refresh, c["run_dir"], c["run_dir"], api_name="listening_refresh_runs")
    on_page_load(refresh, [c["run_dir"]], [c["run_dir"]])

    @user_errors
    def start(run_dir, kind, name, systems, rater):
        if not run_dir:
            raise L.ListeningError(say("choose a run folder first", "请先选择评测目录"))
        rater = L.check_rater(rater)
        names = [s for s in (systems or "").split(",") if s.strip()] or None
        test = L.open_or_create(_run_dir(settings, run_dir), kind, name=(name or "").strip() or None, systems=names)
        state = dict(test_dir=str(test.dir), rater=rater)
        pos = test.resume_position(rater)
        note = (say("Welcome back: resuming at item {n}.", "欢迎回来：从第 {n} 项继续。", n=pos + 1)
                if test.answered(rater) else "")
        if test.answered(rater) == len(test):
            note = say("You have answered every item; you can go back and change answers.",
                       "所有项目都已作答；可以返回修改答案。")
        return show(test, state, pos, note)

    c["start"].click(start, [c["run_dir"], c["kind"], c["test_name"], c["systems"], c["rater"]], item_outputs,
                     api_name="listening_start")

    @user_errors
    def next_item(state, answer):
        test = _test(state)
        if answer in (None, ""):
            raise L.ListeningError(say("choose an answer before going on", "请先选择答案再继续"))
        test.answer(state["rater"], state["position"], answer)
        pos = state["position"]
        if pos + 1 >= len(test):
            left = len(test) - test.answered(state["rater"])
            note = (say("**Thank you — every item is answered.**", "**谢谢——所有项目都已作答。**") if left == 0
                    else say("Saved. {left} item(s) still unanswered; go back with Previous.",
                             "已保存。还有 {left} 项未作答；用“上一个”返回。", left=left))
            return show(test, state, pos, note)
        return show(test, state, pos + 1, say("Saved.", "已保存。"))

    c["next"].click(next_item, [c["state"], c["answer"]], item_outputs, api_name="listening_next")

    @user_errors
    def prev_item(state, answer):
        test = _test(state)
        note = ""
        if answer not in (None, ""):
            test.answer(state["rater"], state["position"], answer)
            note = say("Saved.", "已保存。")
        return show(test, state, max(0, state["position"] - 1), note)

    c["prev"].click(prev_item, [c["state"], c["answer"]], item_outputs, api_name="listening_previous")

    @user_errors
    def results(state, run_dir):
        if state.get("test_dir"):
            test = _test(state)
            run = test.dir.parent.parent
        elif run_dir:
            run = _run_dir(settings, run_dir)
        else:
            raise L.ListeningError(say("choose a run folder first", "请先选择评测目录"))
        index = L.write_listening_summary(run)
        if index is None:
            raise L.ListeningError(say("{run} has no listening test yet", "{run} 还没有听测", run=run))
        import json

        summary = json.loads((index.parent / "summary.json").read_text(encoding="utf-8"))
        return "\n\n".join(L.results_markdown(r) for r in summary) + say(
            "\n\nSaved: `{folder}` (index.html, results.json/.csv per test)",
            "\n\n已保存：`{folder}`（index.html，每个测试一份 results.json/.csv）", folder=index.parent)

    c["show_results"].click(results, [c["state"], c["run_dir"]], c["results"], api_name="listening_results")
