"""Blind listening tests (MOS, SMOS, A/B, CMOS) inside the caller's tab: layout and wiring only, the logic is in
:mod:`eval.listening`. Audio is sent as samples (no file names), so nothing on the page tells which system played."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from eval import listening as L

from .common import on_page_load, user_errors

KIND_CHOICES = [("MOS (naturalness)", "mos"), ("SMOS (similarity)", "smos"), ("A/B preference", "ab"),
                ("CMOS (-3..+3)", "cmos")]
INSTRUCTIONS = {
    "mos": "Listen to the sample and rate how **natural** it sounds (1 bad … 5 excellent).",
    "smos": "Listen to the reference and the sample and rate how **similar the voices** are (1 … 5).",
    "ab": "Listen to A and B and choose the one that sounds **better** (or no preference).",
    "cmos": "Listen to A and B and rate **B against A**: −3 A much better … 0 the same … +3 B much better.",
}


def _answer_choices(kind: str) -> list[tuple[str, str]]:
    if kind in ("mos", "smos"):
        return [(label, str(v)) for v, label in L.MOS_SCALE.items()]
    if kind == "cmos":
        return [(label, str(v)) for v, label in L.CMOS_SCALE.items()]
    return [("A", "A"), ("B", "B"), ("No preference", "tie")]


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
                                   label="Run folder 评测目录 (RUN_DIR with results.jsonl)")
        c["refresh"] = gr.Button("Refresh 刷新", size="sm", scale=1)
    with gr.Row(equal_height=True):
        c["kind"] = gr.Radio(KIND_CHOICES, value="mos", label="Test kind 测试类型", scale=3)
        c["test_name"] = gr.Textbox(label="Test name (empty = the kind; an existing test is resumed)", scale=2)
        c["systems"] = gr.Textbox(label="Systems (comma-separated; empty = all, or the first two for A/B and CMOS)",
                                  scale=2)
    with gr.Row(equal_height=True):
        c["rater"] = gr.Textbox(label="Rater name 评分人", scale=3)
        c["start"] = gr.Button("Start / resume 开始", variant="primary", scale=1)
    c["status"] = gr.Markdown("Choose a run folder and a test kind, enter your name and press Start.")
    c["state"] = gr.State({})
    with gr.Group(visible=False) as c["item_box"]:
        c["progress"] = gr.Markdown(elem_id="listening-progress")
        c["text"] = gr.Markdown()
        c["ref"] = gr.Audio(label="Reference 参考", interactive=False, visible=False)
        with gr.Row():
            c["left"] = gr.Audio(label="Sample", interactive=False)
            c["right"] = gr.Audio(label="B", interactive=False, visible=False)
        c["answer"] = gr.Radio([], label="Your answer 评分")
        with gr.Row():
            c["prev"] = gr.Button("◀ Previous 上一个")
            c["next"] = gr.Button("Save and next 保存并下一个 ▶", variant="primary")
    with gr.Row():
        c["show_results"] = gr.Button("Results 结果")
    c["results"] = gr.Markdown()
    _wire(settings, c)
    return c


def _wire(settings, c: dict[str, Any]) -> None:
    item_outputs = [c["state"], c["status"], c["item_box"], c["progress"], c["text"], c["ref"], c["left"],
                    c["right"], c["answer"]]

    def _test(state: dict) -> L.ListeningTest:
        if not state.get("test_dir"):
            raise L.ListeningError("press Start first (choose a run folder, a test kind and your name)")
        return L.ListeningTest(Path(state["test_dir"]))

    def show(test: L.ListeningTest, state: dict, position: int, note: str = ""):
        t = test.trial(state["rater"], position)
        state = dict(state, position=position)
        done = test.answered(state["rater"])
        paired = test.paired
        progress = f"### Item {position + 1} of {t.total}  ·  answered {done} of {t.total}"
        status = (f"Test **{test.name}** — {L.KIND_LABELS[test.kind]}, rater **{state['rater']}**. "
                  f"{INSTRUCTIONS[test.kind]}" + (f"\n\n{note}" if note else ""))
        return (state, status, gr.update(visible=True), progress, f"**Text:** {t.text}" if t.text else "",
                gr.update(value=_audio(t.ref), visible=t.ref is not None),
                gr.update(value=_audio(t.left), label="A" if paired else "Sample"),
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
            raise L.ListeningError("choose a run folder first")
        rater = L.check_rater(rater)
        names = [s for s in (systems or "").split(",") if s.strip()] or None
        test = L.open_or_create(_run_dir(settings, run_dir), kind, name=(name or "").strip() or None, systems=names)
        state = dict(test_dir=str(test.dir), rater=rater)
        pos = test.resume_position(rater)
        note = (f"Welcome back: resuming at item {pos + 1}." if test.answered(rater) else "")
        if test.answered(rater) == len(test):
            note = "You have answered every item; you can go back and change answers."
        return show(test, state, pos, note)

    c["start"].click(start, [c["run_dir"], c["kind"], c["test_name"], c["systems"], c["rater"]], item_outputs,
                     api_name="listening_start")

    @user_errors
    def next_item(state, answer):
        test = _test(state)
        if answer in (None, ""):
            raise L.ListeningError("choose an answer before going on")
        test.answer(state["rater"], state["position"], answer)
        pos = state["position"]
        if pos + 1 >= len(test):
            left = len(test) - test.answered(state["rater"])
            note = ("**Thank you — every item is answered.**" if left == 0
                    else f"Saved. {left} item(s) still unanswered; go back with Previous.")
            return show(test, state, pos, note)
        return show(test, state, pos + 1, "Saved.")

    c["next"].click(next_item, [c["state"], c["answer"]], item_outputs, api_name="listening_next")

    @user_errors
    def prev_item(state, answer):
        test = _test(state)
        note = ""
        if answer not in (None, ""):
            test.answer(state["rater"], state["position"], answer)
            note = "Saved."
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
            raise L.ListeningError("choose a run folder first")
        index = L.write_listening_summary(run)
        if index is None:
            raise L.ListeningError(f"{run} has no listening test yet")
        import json

        summary = json.loads((index.parent / "summary.json").read_text(encoding="utf-8"))
        return "\n\n".join(L.results_markdown(r) for r in summary) + f"\n\nSaved: `{index.parent}` (index.html, " \
                                                                     "results.json/.csv per test)"

    c["show_results"].click(results, [c["state"], c["run_dir"]], c["results"], api_name="listening_results")
