"""The Eval tab: layout and wiring only. The loop is eval/run.py (EvalRunner), the report eval/report.py; the tab
shares the app's TTS engine and ASR service (pages/services.Services)."""
from __future__ import annotations

import html
import importlib.util
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from gsv_core import languages

from .common import on_page_load, user_errors

SUMMARY_COLUMNS = ["system", "utterances", "error_rate", "substitutions", "deletions", "insertions", "ref_len",
                   "similarity_mean", "rtf_mean", "duration_mean", "tries", "rerolled", "failed_threshold",
                   "asr_failed", "flags"]
PAIRWISE_COLUMNS = ["a", "b", "metric", "n", "diff_b_minus_a", "ci_low", "ci_high", "verdict"]
#: from the one language table
ASR_LANGS = [*(lang.whisper for lang in languages.LANGUAGES.values()), "auto"]
TEXT_LANGS = languages.choices()

HELP = """
**Test CSV**: a header row `id,text` and optionally `ref_audio,ref_text,lang` (relative audio paths are taken from
the CSV's folder). Rows without their own reference use the reference below. Every system synthesises every row
*samples* times with recorded seeds; each output is transcribed by the chosen faster-whisper model and scored
(CER for Chinese, WER for English, with substitutions, deletions = swallowed words and insertions = repetition
reported separately), plus speaker similarity, RTF, duration, F0 and flags. **Re-roll**: an utterance whose error
rate is above the threshold or whose similarity is below it is generated again with a new seed, up to *max tries*
(every try is kept). The run folder (under the reports folder) holds config.json, results.jsonl, the audio and the
report; starting the same configuration again on the same folder resumes where it stopped.
"""


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items()) or ""
    if isinstance(v, list):
        return ", ".join(str(_fmt(x)) for x in v)
    return "" if v is None else v


def _rows(items: list[dict], columns: list[str]) -> list[list[Any]]:
    return [[_fmt(r.get(c)) for c in columns] for r in items]


def file_url(path: Path) -> str:
    """The URL under which Gradio serves a file of an allowed folder."""
    return "/gradio_api/file=" + str(Path(path).resolve())


def _pick(pairs: list[tuple[str, str]], index: int = 0) -> Optional[str]:
    values = [v for _, v in pairs]
    return values[min(index, len(values) - 1)] if values else None


def build_eval_tab(settings: Any, services: Any) -> dict[str, Any]:
    from gsv_core import asr as asr_mod
    from eval.run import CSVFormatError, EvalError, RerollRule, RunConfig, SystemConfig, read_test_csv

    reports_dir = Path(settings.reports_dir).expanduser().resolve()
    reports_dir.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths(paths=[reports_dir])  # report.html and its audio are served from the run folder
    gpts, sovitss = services.gpt_choices(), services.sovits_choices()
    cancels: dict[str, threading.Event] = {}
    c: dict[str, Any] = {}

    def asr_models() -> list[str]:
        return asr_mod.list_models(settings.whisper_dir)

    def defaults():
        from gsv_core.weights import default_comparison

        return default_comparison(settings, "GPT"), default_comparison(settings, "SoVITS")

    def run_folders() -> list[str]:
        return sorted((str(p.parent) for p in reports_dir.glob("*/config.json")), reverse=True)

    with gr.Accordion("Help: the test CSV, metrics, re-roll, run folders 帮助", open=False):
        gr.Markdown(HELP)
    with gr.Row():
        c["csv_file"] = gr.File(label="Test CSV 测试集 (id,text[,ref_audio,ref_text,lang])", file_types=[".csv"],
                                type="filepath", height=90, elem_id="eval-csv")
        c["csv_path"] = gr.Textbox(label="…or a CSV path on this machine", elem_id="eval-csv-path")
        c["text_lang"] = gr.Dropdown(TEXT_LANGS, value="zh", label="default text language (rows without lang)")
    with gr.Row(equal_height=True):
        # A = "baseline": the official base model when present; B = "finetuned": the newest finetuned export
        (g_base, g_tuned), (s_base, s_tuned) = defaults()
        c["name_a"] = gr.Textbox(value="baseline", label="System A name", scale=1)
        c["gpt_a"] = gr.Dropdown(gpts, value=g_base, label="GPT (A)", scale=3)
        c["sovits_a"] = gr.Dropdown(sovitss, value=s_base, label="SoVITS (A)", scale=3)
    with gr.Row(equal_height=True):
        c["name_b"] = gr.Textbox(value="finetuned", label="System B name (empty = A only)", scale=1)
        c["gpt_b"] = gr.Dropdown(gpts, value=g_tuned, label="GPT (B)", scale=3)
        c["sovits_b"] = gr.Dropdown(sovitss, value=s_tuned, label="SoVITS (B)", scale=3)
    c["refresh"] = gr.Button("Refresh model, ASR and run lists 刷新", size="sm")
    with gr.Row():
        c["ref_audio"] = gr.Audio(sources=["upload"], type="filepath", label="参考音频 Reference audio",
                                  elem_id="eval-ref-audio")
        with gr.Column():
            c["ref_text"] = gr.Textbox(label="参考文本 Reference text", lines=2, elem_id="eval-ref-text")
            c["ref_lang"] = gr.Dropdown(TEXT_LANGS, value="zh", label="Reference language")
    with gr.Row():
        models = asr_models()
        c["asr_model"] = gr.Dropdown(models, value=models[0] if models else None, allow_custom_value=True,
                                     label="ASR model folder (faster-whisper)", scale=3,
                                     info=f"folders under {settings.whisper_dir}; or type a path")
        c["asr_lang"] = gr.Dropdown(ASR_LANGS, value="zh", label="ASR language", scale=1)
        c["asr_beam"] = gr.Number(value=5, precision=0, minimum=1, maximum=20, label="ASR beam size", scale=1)
        c["asr_vad"] = gr.Checkbox(value=False, label="ASR VAD filter", scale=1)
        c["asr_max_tokens"] = gr.Number(value=0, precision=0, minimum=0, label="ASR max tokens (0 = no cap)",
                                        scale=1)
    with gr.Row():
        c["samples"] = gr.Number(value=1, precision=0, minimum=1, label="samples per text", elem_id="eval-samples")
        c["seed"] = gr.Number(value=1234, precision=0, minimum=0, maximum=2**32 - 1, label="base seed")
        c["top_k"] = gr.Number(value=15, precision=0, minimum=1, maximum=100, label="top_k")
        c["temperature"] = gr.Number(value=1.0, minimum=0.0, maximum=2.0, label="temperature")
        c["max_tokens"] = gr.Number(value=0, precision=0, minimum=0, label="max semantic tokens (0 = model limit)",
                                    elem_id="eval-max-tokens")
    with gr.Row():
        # text boxes, not numbers: a browser number field turns "empty" into 0, and 0 is a real threshold here
        c["max_error"] = gr.Textbox(value="", label="re-roll when error rate > (empty = never)", placeholder="e.g. 0.1",
                                    elem_id="eval-max-error")
        c["min_sim"] = gr.Textbox(value="", label="re-roll when similarity < (empty = never)", placeholder="e.g. 0.6",
                                  elem_id="eval-min-sim")
        c["max_tries"] = gr.Number(value=1, precision=0, minimum=1, maximum=20, label="max tries (1 = no re-roll)",
                                   elem_id="eval-max-tries")
        c["run_name"] = gr.Textbox(label=f"run folder name (under {reports_dir}; empty = eval_DATE_TIME)",
                                   elem_id="eval-run-name")
    with gr.Row():
        c["run"] = gr.Button("Run evaluation 开始评测", variant="primary", elem_id="eval-run")
        c["cancel"] = gr.Button("Cancel 取消", variant="stop", elem_id="eval-cancel")
    c["status"] = gr.Markdown(elem_id="eval-status")
    c["summary"] = gr.Dataframe(headers=SUMMARY_COLUMNS, interactive=False, wrap=True, label="Per system 每个系统",
                                elem_id="eval-summary")
    c["pairwise"] = gr.Dataframe(headers=PAIRWISE_COLUMNS, interactive=False, wrap=True,
                                 label="Pairwise: B − A with bootstrap 95% CI 两两比较", elem_id="eval-pairwise")
    c["files"] = gr.File(label="Report files (HTML, JSON, CSVs)", file_count="multiple", interactive=False,
                         elem_id="eval-files")
    c["report"] = gr.HTML(elem_id="eval-report")
    with gr.Accordion("Rebuild the report of an existing run 重建报告", open=False):
        with gr.Row():
            c["rebuild_dir"] = gr.Dropdown(run_folders(), allow_custom_value=True, label="run folder", scale=4,
                                           elem_id="eval-rebuild-dir")
            c["rebuild"] = gr.Button("Rebuild report 重建", scale=1, elem_id="eval-rebuild")
    if importlib.util.find_spec("pages.listening") is not None:
        from .listening import build_listening_ui

        with gr.Accordion("Listening tests 听测 (MOS, A/B)", open=False):
            build_listening_ui(settings)

    # -- actions -----------------------------------------------------------------------------------------------

    def show(run_dir: Path, note: str):
        from eval.report import write_report

        html_path = write_report(run_dir)
        data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
        files = [str(run_dir / n) for n in ("report.html", "report.json", "summary.csv", "pairwise.csv",
                                            "sentences.csv", "utterances.csv", "config.json")
                 if (run_dir / n).is_file()]
        url = file_url(html_path)
        frame = (f"<p><a href='{html.escape(url)}' target='_blank'>Open report.html in a new tab</a> · "
                 f"<code>{html.escape(str(html_path))}</code></p>"
                 f"<iframe src='{html.escape(url)}' title='Evaluation report' "
                 "style='width:100%;height:900px;border:1px solid #ccc'></iframe>")
        return (note, _rows(data["summary"], SUMMARY_COLUMNS), _rows(data["pairwise"], PAIRWISE_COLUMNS), files,
                frame, gr.update(choices=run_folders(), value=str(run_dir)))

    def empty(note: str):
        return note, [], [], None, "", gr.update()

    def build_config(csv_file, csv_path, text_lang, name_a, gpt_a, sovits_a, name_b, gpt_b, sovits_b, ref_audio,
                     ref_text, ref_lang, asr_model, asr_lang, asr_beam, asr_vad, asr_max_tokens, samples, seed,
                     top_k, temperature, max_tokens, max_error, min_sim, max_tries, run_name):
        csv_src = csv_file or (csv_path or "").strip()
        if not csv_src:
            raise EvalError("choose a test CSV (upload one or type its path)")
        read_test_csv(csv_src, default_lang=text_lang or "zh")  # raises CSVFormatError listing the bad rows
        if not asr_model:
            raise EvalError(f"choose an ASR model folder (none found under {settings.whisper_dir})")
        name = (run_name or "").strip() or time.strftime("eval_%Y%m%d_%H%M%S")
        if not re.fullmatch(r"[\w\-.]+", name) or name in (".", ".."):
            raise EvalError(f"run folder name {name!r} may only hold letters, digits, '_', '-' and '.'")
        params: dict[str, Any] = dict(top_k=int(top_k or 15), temperature=float(1.0 if temperature is None
                                                                                  else temperature),
                                      ref_lang=ref_lang or "zh")
        if max_tokens:
            params["max_tokens"] = int(max_tokens)
        for what, path in (("GPT", gpt_a), ("SoVITS", sovits_a)) + (
                (("GPT", gpt_b), ("SoVITS", sovits_b)) if (name_b or "").strip() else ()):
            if path:
                services.check_model_path(path, what)
        systems = [dict(name=(name_a or "").strip(), gpt=gpt_a, sovits=sovits_a, ref_audio=ref_audio or "",
                        ref_text=ref_text or "", **params)]
        if (name_b or "").strip():
            systems.append(dict(name=name_b.strip(), gpt=gpt_b, sovits=sovits_b, ref_audio=ref_audio or "",
                                ref_text=ref_text or "", **params))
        asr = dict(vad_filter=bool(asr_vad), beam_size=int(asr_beam or 5))
        if asr_max_tokens:
            asr["max_new_tokens"] = int(asr_max_tokens)
        reroll = dict(max_error_rate=_threshold(max_error, "error rate", 0.0, None),
                      min_similarity=_threshold(min_sim, "similarity", -1.0, 1.0), max_tries=int(max_tries or 1))
        config = RunConfig.from_dict(dict(test_csv=str(csv_src), systems=systems, asr_model=str(asr_model),
                                          asr_language=asr_lang or "zh", samples=int(samples or 1),
                                          seed=int(seed or 0), reroll=reroll, asr=asr))
        # the run folder keeps its own copy of the test rows (default language filled in, audio paths absolute), so
        # an uploaded CSV (a temporary file) still resumes and the folder is reproducible
        config = _copy_test_csv(config, text_lang or "zh", reports_dir / name)
        return config, reports_dir / name

    inputs = [c[k] for k in ("csv_file", "csv_path", "text_lang", "name_a", "gpt_a", "sovits_a", "name_b", "gpt_b",
                             "sovits_b", "ref_audio", "ref_text", "ref_lang", "asr_model", "asr_lang", "asr_beam",
                             "asr_vad", "asr_max_tokens", "samples", "seed", "top_k", "temperature", "max_tokens",
                             "max_error", "min_sim", "max_tries", "run_name")]
    outputs = [c[k] for k in ("status", "summary", "pairwise", "files", "report", "rebuild_dir")]

    @user_errors
    def run(csv_file, csv_path, text_lang, name_a, gpt_a, sovits_a, name_b, gpt_b, sovits_b, ref_audio, ref_text,
            ref_lang, asr_model, asr_lang, asr_beam, asr_vad, asr_max_tokens, samples, seed, top_k, temperature,
            max_tokens, max_error, min_sim, max_tries, run_name, request: gr.Request, progress=gr.Progress()):
        # explicit parameters: gradio only passes the gr.Request (needed to pair Cancel with this run) to a named one
        from eval.run import EvalCancelled, EvalRunner

        try:
            config, run_dir = build_config(csv_file, csv_path, text_lang, name_a, gpt_a, sovits_a, name_b, gpt_b,
                                           sovits_b, ref_audio, ref_text, ref_lang, asr_model, asr_lang, asr_beam,
                                           asr_vad, asr_max_tokens, samples, seed, top_k, temperature, max_tokens,
                                           max_error, min_sim, max_tries, run_name)
        except CSVFormatError as exc:
            gr.Warning("The test CSV has problems: see the list on the page.")
            lines = str(exc).splitlines()
            body = "\n".join(f"- {html.escape(line)}" for line in lines[1:])
            return empty(f"**Malformed test CSV:** {html.escape(lines[0])}\n\n{body}")
        key = "eval:" + (getattr(request, "session_hash", None) or "api")
        cancel = threading.Event()
        cancels[key] = cancel
        runner = EvalRunner(services.engine, services.asr or asr_mod.ASRService.from_settings(settings), settings)
        t0 = time.perf_counter()
        try:
            progress(0.0, desc="starting")
            runner.run(config, run_dir, progress=lambda f, m: progress(f, desc=m), cancel=cancel)
        except EvalCancelled as exc:
            from eval.run import load_results

            note = f"**Cancelled.** {exc} ({len(load_results(run_dir))} utterances done in `{run_dir}`)"
            if load_results(run_dir):
                return show(run_dir, note + "; the report below covers the finished ones.")
            return empty(note)
        finally:
            cancels.pop(key, None)
        from eval.run import load_results

        n = len(load_results(run_dir))
        return show(run_dir, f"**Done:** {n} utterances in {time.perf_counter() - t0:.1f} s → `{run_dir}`")

    c["run"].click(run, inputs, outputs, api_name="eval_run", concurrency_id="engine")

    def cancel_run(request: gr.Request):
        key = "eval:" + (getattr(request, "session_hash", None) or "api")
        event = cancels.get(key)
        if event is None:
            return "No evaluation is running."
        event.set()
        return "Cancelling: the run stops after the current batch (finished utterances are kept; run it again to resume)."

    c["cancel"].click(cancel_run, None, c["status"], api_name="eval_cancel", concurrency_limit=None, queue=False)

    @user_errors
    def rebuild(run_dir):
        if not run_dir:
            raise EvalError("choose a run folder")
        path = Path(str(run_dir)).expanduser()
        if not path.is_absolute() and not path.exists():
            path = reports_dir / path
        return show(path, f"**Report rebuilt** from `{path}`")

    c["rebuild"].click(rebuild, c["rebuild_dir"], outputs, api_name="eval_rebuild_report")

    @user_errors
    def refresh(gpt_a, sovits_a, gpt_b, sovits_b, asr_model):
        g, s, m = services.gpt_choices(), services.sovits_choices(), asr_models()

        def keep(pairs, cur, i):
            return cur if cur in [v for _, v in pairs] else _pick(pairs, i)

        return (gr.update(choices=g, value=keep(g, gpt_a, 0)), gr.update(choices=s, value=keep(s, sovits_a, 0)),
                gr.update(choices=g, value=keep(g, gpt_b, 1)), gr.update(choices=s, value=keep(s, sovits_b, 1)),
                gr.update(choices=m, value=asr_model or (m[0] if m else None)), gr.update(choices=run_folders()))

    c["refresh"].click(refresh, [c["gpt_a"], c["sovits_a"], c["gpt_b"], c["sovits_b"], c["asr_model"]],
                       [c["gpt_a"], c["sovits_a"], c["gpt_b"], c["sovits_b"], c["asr_model"], c["rebuild_dir"]],
                       api_name="eval_refresh")

    def on_load():
        (g_base, g_tuned), (s_base, s_tuned) = defaults()
        g, s, m = services.gpt_choices(), services.sovits_choices(), asr_models()
        return (gr.update(choices=g, value=g_base), gr.update(choices=s, value=s_base),
                gr.update(choices=g, value=g_tuned), gr.update(choices=s, value=s_tuned),
                gr.update(choices=m, value=m[0] if m else None), gr.update(choices=run_folders()))

    on_page_load(on_load, None, [c["gpt_a"], c["sovits_a"], c["gpt_b"], c["sovits_b"], c["asr_model"],
                                 c["rebuild_dir"]])
    return c


def _threshold(raw: Any, what: str, low: float, high: Optional[float]) -> Optional[float]:
    from eval.run import EvalError

    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise EvalError(f"the re-roll {what} threshold must be a number or empty, not {text!r}") from None
    if value < low or (high is not None and value > high):
        raise EvalError(f"the re-roll {what} threshold must be between {low} and {high if high is not None else 'any'}"
                        f", not {value}")
    return value


def _copy_test_csv(config, lang: str, run_dir: Path):
    """Write the test rows to RUN_DIR/test.csv and point the config at it; a folder that already holds different
    rows is refused (its results belong to those rows)."""
    import csv
    import io

    from eval.run import EvalError, read_test_csv

    items = read_test_csv(config.test_csv, default_lang=lang)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "text", "ref_audio", "ref_text", "lang"])
    for it in items:
        w.writerow([it.id, it.text, it.ref_audio, it.ref_text, it.lang])
    out = run_dir / "test.csv"
    if out.is_file() and (run_dir / "config.json").is_file() and out.read_text(encoding="utf-8") != buf.getvalue():
        raise EvalError(f"{run_dir} holds a run of different test rows; choose a new run folder name (or the same "
                        "CSV to resume)")
    run_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(buf.getvalue(), encoding="utf-8")
    config.test_csv = str(out)
    return config
