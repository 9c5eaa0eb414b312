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

from gsv_core import languages, paths

from .common import on_page_load, shown_path, user_errors

SUMMARY_COLUMNS = ["system", "metric", "utterances", "error_rate_corpus", "error_rate_utt", "seed_wer_percent",
                   "substitutions", "deletions", "insertions", "ref_len", "similarity_mean", "similarity_model",
                   "rtf_mean", "duration_mean", "pause_s_mean", "tries", "rerolled", "failed_threshold", "asr_failed",
                   "flags"]
#: what the summary table shows as column headers (short, with spaces so they wrap at words)
SUMMARY_HEADERS = {"utterances": "utts", "error_rate_corpus": "error rate corpus",
                   "error_rate_utt": "error rate utt mean ± std", "seed_wer_percent": "seed WER %",
                   "substitutions": "S", "deletions": "D", "insertions": "I", "ref_len": "N",
                   "similarity_mean": "sim", "similarity_model": "sim model", "rtf_mean": "RTF",
                   "duration_mean": "dur s", "pause_s_mean": "pause s", "rerolled": "re-rolled",
                   "failed_threshold": "failed", "asr_failed": "ASR err"}
#: relative widths of the summary columns (Gradio sizes columns by their content, which squeezes headers of short
#: numbers into one letter per line)
SUMMARY_WIDTHS = {"system": 8, "metric": 4, "utterances": 4, "error_rate_corpus": 6, "error_rate_utt": 9,
                  "seed_wer_percent": 5, "substitutions": 3, "deletions": 3, "insertions": 3, "ref_len": 3,
                  "similarity_mean": 6, "similarity_model": 8, "rtf_mean": 5, "duration_mean": 5, "pause_s_mean": 4,
                  "tries": 4, "rerolled": 5, "failed_threshold": 4, "asr_failed": 4, "flags": 7}
#: F0 / energy alignment per system (report summary fields "<name>_mean" / "_std"), shown as mean ± std
PROSODY_COLUMNS = ["vs_ref_f0_mean_diff_st", "vs_ref_f0_std_diff_st", "vs_ref_energy_w1_db",
                   "vs_base_f0_mean_diff_st", "vs_base_f0_contour_dtw_st", "vs_base_voicing_agreement",
                   "vs_base_energy_w1_db"]
#: the metrics of the tab's bucket table (report.html and buckets.csv hold every one)
BUCKET_METRICS = ["error_rate", "error_rate_corpus", "seed_wer", "similarity", "duration", "pause_s"]
BUCKET_HEADERS = ["system", "bucket", "error_rate", "error_rate_corpus", "similarity", "duration"]
PROSODY_HEADERS = {"vs_ref_f0_mean_diff_st": "F0 level vs ref (st)", "vs_ref_f0_std_diff_st": "F0 range vs ref (st)",
                   "vs_ref_energy_w1_db": "energy W1 vs ref (dB)", "vs_base_f0_mean_diff_st": "F0 level vs A (st)",
                   "vs_base_f0_contour_dtw_st": "F0 contour DTW vs A (st)",
                   "vs_base_voicing_agreement": "voicing agreement vs A", "vs_base_energy_w1_db": "energy W1 vs A (dB)"}
VARIANT_HEADERS = ["system", "variant", "delta_error_rate", "delta_duration", "delta_pause_s", "ratio_duration"]
PAIRWISE_COLUMNS = ["a", "b", "metric", "n", "diff_b_minus_a", "ci_low", "ci_high", "verdict"]
#: scoring protocols offered (seed-tts-eval's numbers come next to ours, never instead of them)
PROTOCOLS = [("gsv (ours)", "gsv"), ("gsv + seed-tts-eval compatible (seed_wer)", "seed-tts-eval")]
NUMERALS = [("off (25 ≠ 二十五)", "off"), ("zh: digits → Chinese numerals", "zh"), ("digits: Chinese numerals → digits",
                                                                                       "digits")]
BUCKET_UNITS = [("tokens (CJK chars + words)", "tokens"), ("characters", "chars"), ("audio seconds", "seconds")]
#: the form's inputs of a run, in order (the per-system engine parameters follow: a_<name>..., b_<name>...)
BASE_INPUTS = ["csv_file", "csv_path", "text_lang", "name_a", "gpt_a", "sovits_a", "name_b", "gpt_b", "sovits_b",
               "ref_audio", "ref_text", "ref_lang", "asr_model", "asr_lang", "asr_beam", "asr_vad", "asr_max_tokens",
               "samples", "seed", "max_error", "min_sim", "max_tries", "run_name", "protocol", "numerals",
               "drop_interjections", "similarity_model", "wavlm_dir", "bucket_by", "bucket_edges"]


def param_names() -> list[str]:
    """The engine parameters a system sets in the tab: every one an eval system may carry
    (:data:`eval.run.SYSTEM_PARAMS`, from the shared request conversion) but the reference language, which the
    reference block sets for both systems."""
    from eval.run import SYSTEM_PARAMS

    return [n for n in SYSTEM_PARAMS if n != "ref_lang"]


def run_input_names() -> list[str]:
    """Names of the inputs of ``/eval_run`` and ``/eval_run_variants``, in order (API clients build their call
    from it)."""
    return BASE_INPUTS + [f"{k}_{n}" for k in ("a", "b") for n in param_names()]


def param_defaults() -> dict[str, Any]:
    """The form value of every engine parameter at its default (None: 0 = the model's own; a list: nothing)."""
    from gsv_core.engine.request import SynthesisRequest

    d = SynthesisRequest.defaults()
    return {n: (0 if d[n] is None else None if isinstance(d[n], tuple) else d[n]) for n in param_names()}


def _param_control(name: str, system: str):
    """One form control for an engine parameter, from its default's type and its help line."""
    from gsv_core.engine.request import PARAMETERS, SPLIT_METHODS, SynthesisRequest

    default = SynthesisRequest.defaults()[name]
    kw = dict(label=name, info=PARAMETERS[name].help, elem_id=f"eval-{system}-{name.replace('_', '-')}")
    choices = {"split_method": list(SPLIT_METHODS), "text_lang": TEXT_LANGS, "ref_lang": TEXT_LANGS}
    if name in choices:
        return gr.Dropdown(choices[name], value=default, **kw)
    if isinstance(default, bool):
        return gr.Checkbox(value=default, **kw)
    if isinstance(default, int):
        return gr.Number(value=default, precision=0, **kw)
    if isinstance(default, float):
        return gr.Number(value=default, **kw)
    if default is None:  # an optional count: 0 = the model's own
        return gr.Number(value=0, precision=0, minimum=0, **kw)
    if isinstance(default, tuple):  # a list of audio files
        kw.pop("info")
        return gr.File(file_count="multiple", type="filepath", height=90, **kw)
    return gr.Textbox(value=str(default), **kw)


def _system_params(values: dict[str, Any], system: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in param_names():
        v = values.get(f"{system}_{name}")
        if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, tuple)) and not v):
            continue
        out[name] = [str(x) for x in v] if isinstance(v, (list, tuple)) else v
    return out
#: from the one language table
ASR_LANGS = [*(lang.whisper for lang in languages.LANGUAGES.values()), "auto"]
TEXT_LANGS = languages.choices()

HELP = """
**Test CSV**: a header row `id,text` and optionally `ref_audio,ref_text,lang` (relative audio paths are taken from
the CSV's folder). Rows without their own reference use the reference below. Every system synthesises every row
*samples* times with recorded seeds, with its own engine parameters; each output is transcribed by the chosen
faster-whisper model and scored (CER for Chinese, WER for English, with substitutions, deletions = swallowed words
and insertions = repetition reported separately), plus speaker similarity, RTF, duration, pauses, F0/energy
alignment to the reference audio and to system A (the baseline), and flags.

**Existing audio**: a column `audio:NAME` holds audio files of a system NAME (upstream GPT-SoVITS, another engine,
recordings); every such column becomes a system that is scored without synthesis (empty system names above: only
those). Transcripts are cached per audio content, so scoring the same files again never re-transcribes them.

**Scoring**: error rates are reported twice: `error_rate_corpus` (errors pooled over the corpus) and
`error_rate_utt` (mean ± std of per-utterance rates, what seed-tts-eval calls WER). *gsv + seed-tts-eval* adds
`seed_wer_percent`, scored with seed-tts-eval's own normalisation. *Numerals*: `zh`/`digits` unify 25 and 二十五 in
both texts. *Similarity model*: eres2netv2 (192-d speaker-verification embedding, default), eres2netv2-forward3 (the
vector SoVITS v2Pro is conditioned on; flatters v2Pro) or wavlm-sv (a WavLMForXVector folder, e.g.
microsoft/wavlm-base-plus-sv, under the pretrained-models folder). **Length buckets** group sentences as short /
medium / long by the chosen unit and edges (e.g. `15,40`); *Rebuild* applies new bucket settings to an old run.

**Re-roll**: an utterance whose error rate is above the threshold or whose similarity is below it is generated again
with a new seed, up to *max tries* (every try is kept). **Punctuation variants** runs every sentence as written and
without punctuation, without commas, with extra commas, full-width and half-width, and reports the CER / duration /
pause deltas per variant. The run folder (under the reports folder) holds config.json, results.jsonl, the audio and
the report; starting the same configuration again on the same folder resumes where it stopped.
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


def _stat(r: Optional[dict]) -> str:
    """"mean ± std [lo, hi] (n)" of a bucket/variant table row."""
    if not r or not r.get("n"):
        return ""
    ci = f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if r.get("ci_low") is not None and r.get("ci_high") is not None \
        else ""
    return f"{r.get('mean_std') or r.get('mean')}{ci} n={r['n']}"


def prosody_rows(data: dict) -> list[list[Any]]:
    """Per system: the F0 / energy alignment means as "mean ± std" (empty where not measured)."""
    out = []
    for s in data["summary"]:
        row = [s["system"]]
        for key in PROSODY_COLUMNS:
            m, sd = s.get(f"{key}_mean"), s.get(f"{key}_std")
            row.append("" if m is None else f"{m:.3f}" + ("" if sd is None else f" ± {sd:.3f}"))
        out.append(row)
    return out


def bucket_frame(data: dict):
    """The report's length-bucket table as rows (system, bucket) x metrics, for the tab."""
    import pandas as pd

    table = (data.get("buckets") or {}).get("table") or []
    if not table:
        return pd.DataFrame([], columns=BUCKET_HEADERS)
    definition = data["buckets"]["definition"]
    ranges = definition.get("ranges") or {}
    metrics = [m for m in BUCKET_METRICS if any(r["metric"] == m for r in table)]
    order = [b for b in [*definition["labels"], "all"] if any(r["bucket"] == b for r in table)]
    rows = []
    for system in data["systems"]:
        for b in order:
            sub = {r["metric"]: r for r in table if r.get("system") == system and r["bucket"] == b}
            if sub:
                rows.append([system, f"{b} ({ranges[b]})" if b in ranges else b, *(_stat(sub.get(m)) for m in metrics)])
    return pd.DataFrame(rows, columns=["system", "bucket", *metrics])


def variant_frame(data: dict):
    """The punctuation-variant deltas as rows (system, variant) x delta metrics, for the tab (empty: no variants)."""
    import pandas as pd

    summary = (data.get("variants") or {}).get("summary") or []
    if not summary:
        return pd.DataFrame([], columns=VARIANT_HEADERS)
    metrics = list(dict.fromkeys(r["metric"] for r in summary))
    keys = list(dict.fromkeys((r.get("system"), r.get("variant")) for r in summary))
    rows = [[system, variant, *(_stat(next((r for r in summary if r.get("system") == system
                                             and r.get("variant") == variant and r["metric"] == m), None))
                                for m in metrics)] for system, variant in keys]
    return pd.DataFrame(rows, columns=["system", "variant", *metrics])


def file_url(path: Path) -> str:
    """The URL under which Gradio serves a file of an allowed folder."""
    return "/gradio_api/file=" + str(Path(path).resolve())


def _pick(pairs: list[tuple[str, str]], index: int = 0) -> Optional[str]:
    values = [v for _, v in pairs]
    return values[min(index, len(values) - 1)] if values else None


def build_eval_tab(settings: Any, services: Any) -> dict[str, Any]:
    from gsv_core import asr as asr_mod
    from eval.run import CSVFormatError, EvalError, RunConfig, external_systems, read_test_csv
    from eval.variants import VARIANT_KINDS

    reports_dir = Path(settings.reports_dir).expanduser().resolve()
    reports_dir.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths(paths=[reports_dir])  # report.html and its audio are served from the run folder
    gpts, sovitss = services.gpt_choices(), services.sovits_choices()
    cancels: dict[str, threading.Event] = {}
    c: dict[str, Any] = {}

    def asr_models() -> list[str]:
        return asr_mod.model_names(settings.whisper_dir)  # names under WHISPER_DIR (no server paths in the page)

    def defaults():
        from gsv_core.weights import default_comparison

        return tuple(tuple(services.model_choice(p, kind) for p in default_comparison(settings, kind))
                     for kind in ("GPT", "SoVITS"))

    def run_folders() -> list[str]:
        return sorted((p.parent.name for p in reports_dir.glob("*/config.json")), reverse=True)  # names, no paths

    with gr.Accordion("Help: the test CSV, metrics, re-roll, run folders 帮助", open=False):
        gr.Markdown(HELP)
    with gr.Row():
        c["csv_file"] = gr.File(label="Test CSV 测试集 (id,text[,ref_audio,ref_text,lang])", file_types=[".csv"],
                                type="filepath", height=90, elem_id="eval-csv")
        c["csv_path"] = gr.Textbox(label="…or a CSV path on this machine", elem_id="eval-csv-path")
        c["text_lang"] = gr.Dropdown(TEXT_LANGS, value="zh", label="default text language (rows without lang)")

    def param_block(system: str) -> None:
        from gsv_core.engine.request import SynthesisRequest

        defaults_ = SynthesisRequest.defaults()
        uploads = [n for n in param_names() if isinstance(defaults_[n], tuple)]  # audio lists: their own last row
        fields = [n for n in param_names() if n not in uploads]
        rows = [fields[i:i + 4] for i in range(0, len(fields), 4)] + ([uploads] if uploads else [])
        with gr.Accordion(f"System {system.upper()}: engine parameters 引擎参数 ({len(param_names())})",
                          open=False, elem_id=f"eval-params-{system}"):
            for row in rows:
                with gr.Row():
                    for name in row:
                        c[f"{system}_{name}"] = _param_control(name, system)

    with gr.Row(equal_height=True):
        # A = "baseline": the official base model when present; B = "finetuned": the newest finetuned export
        (g_base, g_tuned), (s_base, s_tuned) = defaults()
        c["name_a"] = gr.Textbox(value="baseline", label="System A name (the baseline; empty = none)", scale=1)
        c["gpt_a"] = gr.Dropdown(gpts, value=g_base, label="GPT (A)", scale=3)
        c["sovits_a"] = gr.Dropdown(sovitss, value=s_base, label="SoVITS (A)", scale=3)
    param_block("a")
    with gr.Row(equal_height=True):
        c["name_b"] = gr.Textbox(value="finetuned", label="System B name (empty = A only)", scale=1)
        c["gpt_b"] = gr.Dropdown(gpts, value=g_tuned, label="GPT (B)", scale=3)
        c["sovits_b"] = gr.Dropdown(sovitss, value=s_tuned, label="SoVITS (B)", scale=3)
    param_block("b")
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
                                     info=f"folders under {shown_path(settings.whisper_dir)}; or type a path")
        c["asr_lang"] = gr.Dropdown(ASR_LANGS, value="zh", label="ASR language", scale=1)
        c["asr_beam"] = gr.Number(value=5, precision=0, minimum=1, maximum=20, label="ASR beam size", scale=1)
        c["asr_vad"] = gr.Checkbox(value=False, label="ASR VAD filter", scale=1)
        c["asr_max_tokens"] = gr.Number(value=0, precision=0, minimum=0, label="ASR max tokens (0 = no cap)",
                                        scale=1)
    with gr.Row():
        c["samples"] = gr.Number(value=1, precision=0, minimum=1, label="samples per text", elem_id="eval-samples")
        c["seed"] = gr.Number(value=1234, precision=0, minimum=0, maximum=2**32 - 1, label="base seed")
        # text boxes, not numbers: a browser number field turns "empty" into 0, and 0 is a real threshold here
        c["max_error"] = gr.Textbox(value="", label="re-roll when error rate > (empty = never)", placeholder="e.g. 0.1",
                                    elem_id="eval-max-error")
        c["min_sim"] = gr.Textbox(value="", label="re-roll when similarity < (empty = never)", placeholder="e.g. 0.6",
                                  elem_id="eval-min-sim")
        c["max_tries"] = gr.Number(value=1, precision=0, minimum=1, maximum=20, label="max tries (1 = no re-roll)",
                                   elem_id="eval-max-tries")
        c["run_name"] = gr.Textbox(label=f"run folder name (under {shown_path(reports_dir)}; empty = eval_DATE_TIME)",
                                   elem_id="eval-run-name")
    with gr.Accordion("Scoring, similarity and length buckets 评分与分桶", open=True, elem_id="eval-scoring"):
        with gr.Row():
            c["protocol"] = gr.Dropdown(PROTOCOLS, value="gsv", label="scoring protocol", elem_id="eval-protocol",
                                        info="seed-tts-eval's numbers are reported next to ours")
            c["numerals"] = gr.Dropdown(NUMERALS, value="off", label="numerals", elem_id="eval-numerals",
                                        info="unify digits and Chinese numerals in both texts (cn2an)")
            c["drop_interjections"] = gr.Checkbox(value=False, label="drop interjections (嗯 啊 uh um)",
                                                  elem_id="eval-drop-interjections")
        with gr.Row():
            from eval.similarity import SIMILARITY_MODELS

            c["similarity_model"] = gr.Dropdown([(f"{k}: {v}", k) for k, v in SIMILARITY_MODELS.items()],
                                                value="eres2netv2", label="similarity model",
                                                elem_id="eval-similarity-model", scale=1)
            c["wavlm_dir"] = gr.Textbox(label="WavLM SV folder (for wavlm-sv)", elem_id="eval-wavlm-dir", scale=1,
                                        placeholder=shown_path(Path(settings.pretrained_dir) / "wavlm-base-plus-sv"),
                                        info="a WavLMForXVector folder inside the app's folders")
        with gr.Row():
            c["bucket_by"] = gr.Dropdown(BUCKET_UNITS, value="tokens", label="length buckets by",
                                         elem_id="eval-bucket-by", scale=1)
            c["bucket_edges"] = gr.Textbox(label="bucket edges (empty = default for the unit)", scale=1,
                                           placeholder="tokens 15,40 · chars 20,60 · seconds 4,10",
                                           elem_id="eval-bucket-edges")
    with gr.Row():
        c["run"] = gr.Button("Run evaluation 开始评测", variant="primary", elem_id="eval-run")
        c["run_variants"] = gr.Button("Run punctuation variants 标点变体测试", elem_id="eval-run-variants")
        c["cancel"] = gr.Button("Cancel 取消", variant="stop", elem_id="eval-cancel")
    c["status"] = gr.Markdown(elem_id="eval-status")
    c["summary"] = gr.Dataframe(headers=[SUMMARY_HEADERS.get(k, k) for k in SUMMARY_COLUMNS], interactive=False,
                                wrap=True, column_widths=[f"{SUMMARY_WIDTHS.get(k, 4)}%" for k in SUMMARY_COLUMNS], label="Per system 每个系统 · S/D/I: substitutions, deletions (swallowed "
                                                 "words), insertions (repetition) · N: reference tokens · seed WER %: "
                                                 "seed-tts-eval's procedure",
                                elem_id="eval-summary")
    c["prosody"] = gr.Dataframe(headers=["system", *(PROSODY_HEADERS[k] for k in PROSODY_COLUMNS)],
                                interactive=False, wrap=True,
                                elem_id="eval-prosody", label="F0 / energy vs reference audio and vs system A "
                                                              "(semitones, dB; mean ± std) 韵律对齐")
    c["buckets"] = gr.Dataframe(headers=BUCKET_HEADERS, interactive=False, wrap=True, elem_id="eval-buckets",
                                label="Per length bucket 按句长: mean ± std [bootstrap 95% CI] (n)")
    c["pairwise"] = gr.Dataframe(headers=PAIRWISE_COLUMNS, interactive=False, wrap=True,
                                 label="Pairwise: B − A with bootstrap 95% CI 两两比较", elem_id="eval-pairwise")
    c["variants"] = gr.Dataframe(headers=VARIANT_HEADERS, interactive=False, wrap=True, elem_id="eval-variants",
                                 label="Punctuation variants: variant − original per system 标点变体")
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

    def show(run_dir: Path, note: str, buckets: Optional[dict] = None):
        from eval.report import write_report

        html_path = write_report(run_dir, buckets=buckets)
        data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
        files = [str(run_dir / n) for n in ("report.html", "report.json", "summary.csv", "pairwise.csv",
                                            "buckets.csv", "prosody.csv", "variants.csv", "variant_deltas.csv",
                                            "sentences.csv", "utterances.csv", "config.json")
                 if (run_dir / n).is_file()]
        url = file_url(html_path)
        frame = (f"<p><a href='{html.escape(url)}' target='_blank'>Open report.html in a new tab</a> · "
                 f"<code>{html.escape(str(html_path))}</code></p>"
                 f"<iframe src='{html.escape(url)}' title='Evaluation report' "
                 "style='width:100%;height:900px;border:1px solid #ccc'></iframe>")
        summary = {"headers": [SUMMARY_HEADERS.get(k, k) for k in SUMMARY_COLUMNS],
                   "data": _rows(data["summary"], SUMMARY_COLUMNS)}
        prosody = {"headers": ["system", *(PROSODY_HEADERS[k] for k in PROSODY_COLUMNS)], "data": prosody_rows(data)}
        return (note, summary, prosody, bucket_frame(data),
                _rows(data["pairwise"], PAIRWISE_COLUMNS), variant_frame(data), files, frame,
                gr.update(choices=run_folders(), value=Path(run_dir).name))

    def empty(note: str):
        return note, [], [], None, [], None, None, "", gr.update()

    def buckets_of(bucket_by, bucket_edges) -> dict:
        out: dict[str, Any] = {"by": bucket_by or "tokens"}
        text = (bucket_edges or "").strip()
        if text:
            try:
                out["edges"] = [float(x) for x in re.split(r"[,\s;，]+", text) if x]
            except ValueError:
                raise EvalError(f"bucket edges must be numbers separated by commas, not {text!r}") from None
        from eval.buckets import LengthBuckets
        from eval.metrics import MetricsError

        try:
            LengthBuckets(out["by"], tuple(out["edges"]) if "edges" in out else None)
        except MetricsError as exc:
            raise EvalError(f"length buckets: {exc}") from None
        return out

    def build_config(v: dict[str, Any], variants: bool = False):
        csv_file, csv_path, text_lang = v["csv_file"], v["csv_path"], v["text_lang"]
        name_a, gpt_a, sovits_a, name_b, gpt_b, sovits_b = (v[k] for k in ("name_a", "gpt_a", "sovits_a", "name_b",
                                                                           "gpt_b", "sovits_b"))
        ref_audio, ref_text, ref_lang, asr_model, asr_lang = (v[k] for k in ("ref_audio", "ref_text", "ref_lang",
                                                                             "asr_model", "asr_lang"))
        run_name = v["run_name"]
        csv_src = csv_file or (csv_path or "").strip()
        if csv_src:  # the one path policy: a typed server path must lie in the app's folders or a data folder
            csv_src = str(paths.check_readable(settings, csv_src, "test CSV"))
        if not csv_src:
            raise EvalError("choose a test CSV (upload one or type its path)")
        check_audio = lambda p, what: paths.check_readable(settings, p, what)  # noqa: E731 - audio the CSV names
        read_test_csv(csv_src, default_lang=text_lang or "zh", check_path=check_audio)  # lists the bad rows
        if not asr_model:
            raise EvalError(f"choose an ASR model folder (none found under {settings.whisper_dir})")
        asr_model = str(paths.check_readable(settings, asr_mod.resolve_model(settings.whisper_dir, asr_model),
                                             "ASR model folder", kind="dir"))
        name = (run_name or "").strip() or time.strftime("eval_%Y%m%d_%H%M%S")
        if variants and not name.endswith("_variants"):
            name += "_variants"  # its own folder: a variants run never resumes (or blocks) the plain run
        if not re.fullmatch(r"[\w\-.]+", name) or name in (".", ".."):
            raise EvalError(f"run folder name {name!r} may only hold letters, digits, '_', '-' and '.'")
        systems = []
        for k, name_k, gpt, sovits in (("a", name_a, gpt_a, sovits_a), ("b", name_b, gpt_b, sovits_b)):
            if not (name_k or "").strip():
                continue
            # a list label (what the dropdowns send) or a path -> the absolute file the run config records
            gpt = services.check_model_path(gpt, "GPT") if gpt else gpt
            sovits = services.check_model_path(sovits, "SoVITS") if sovits else sovits
            params = dict(_system_params(v, k), ref_lang=ref_lang or "zh")
            systems.append(dict(name=name_k.strip(), gpt=gpt, sovits=sovits, ref_audio=ref_audio or "",
                                ref_text=ref_text or "", **params))
        if not variants:  # every audio:NAME column of the CSV is a system scored from its files (not synthesised)
            for ext in external_systems(csv_src, [s["name"] for s in systems]):
                systems.append(dict(ext, ref_audio=ref_audio or ""))
        if not systems:
            raise EvalError("name at least one system (A or B), or give the test CSV audio:NAME columns of existing "
                            "audio to score")
        asr = dict(vad_filter=bool(v["asr_vad"]), beam_size=int(v["asr_beam"] or 5))
        if v["asr_max_tokens"]:
            asr["max_new_tokens"] = int(v["asr_max_tokens"])
        reroll = dict(max_error_rate=_threshold(v["max_error"], "error rate", 0.0, None),
                      min_similarity=_threshold(v["min_sim"], "similarity", -1.0, 1.0),
                      max_tries=int(v["max_tries"] or 1))
        similarity_model = v["similarity_model"] or "eres2netv2"
        wavlm_dir = None
        if similarity_model == "wavlm-sv":
            if not (v["wavlm_dir"] or "").strip():
                from eval.similarity import WAVLM_SV_HELP

                raise EvalError("the wavlm-sv similarity model needs its folder. " + WAVLM_SV_HELP)
            wavlm_dir = str(paths.check_readable(settings, v["wavlm_dir"], "WavLM model folder", kind="dir"))
        config = RunConfig.from_dict(dict(
            test_csv=str(csv_src), systems=systems, asr_model=str(asr_model), asr_language=asr_lang or "zh",
            samples=int(v["samples"] or 1), seed=int(v["seed"] or 0), reroll=reroll, asr=asr,
            numerals=v["numerals"] or "off", seed_compatible=v["protocol"] == "seed-tts-eval",
            drop_interjections=bool(v["drop_interjections"]), similarity_model=similarity_model,
            wavlm_dir=wavlm_dir, buckets=buckets_of(v["bucket_by"], v["bucket_edges"]),
            variants=list(VARIANT_KINDS) if variants else []))
        # the run folder keeps its own copy of the test rows (default language filled in, audio paths absolute), so
        # an uploaded CSV (a temporary file) still resumes and the folder is reproducible
        config = _copy_test_csv(config, text_lang or "zh", reports_dir / name)
        return config, reports_dir / name

    names = run_input_names()
    c["run_input_names"] = names
    inputs = [c[k] for k in names]
    outputs = [c[k] for k in ("status", "summary", "prosody", "buckets", "pairwise", "variants", "files", "report",
                              "rebuild_dir")]

    def start(values: tuple, request, progress, variants: bool):
        from eval.run import EvalCancelled, EvalRunner

        v = dict(zip(names, values))
        try:
            config, run_dir = build_config(v, variants=variants)
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
        what = "utterances (every sentence × punctuation variant)" if variants else "utterances"
        return show(run_dir, f"**Done:** {n} {what} in {time.perf_counter() - t0:.1f} s → `{run_dir}`")

    # explicit leading parameters: gradio passes the gr.Request (needed to pair Cancel with this run) and the
    # progress tracker only to named positional parameters; the form's values follow in run_input_names() order
    @user_errors
    def run(request: gr.Request, progress=gr.Progress(), *values):
        return start(values, request, progress, variants=False)

    @user_errors
    def run_variants(request: gr.Request, progress=gr.Progress(), *values):
        return start(values, request, progress, variants=True)

    c["run"].click(run, inputs, outputs, api_name="eval_run", concurrency_id="engine")
    c["run_variants"].click(run_variants, inputs, outputs, api_name="eval_run_variants", concurrency_id="engine")

    def cancel_run(request: gr.Request):
        key = "eval:" + (getattr(request, "session_hash", None) or "api")
        event = cancels.get(key)
        if event is None:
            return "No evaluation is running."
        event.set()
        return "Cancelling: the run stops after the current batch (finished utterances are kept; run it again to resume)."

    c["cancel"].click(cancel_run, None, c["status"], api_name="eval_cancel", concurrency_limit=None, queue=False)

    @user_errors
    def rebuild(run_dir, bucket_by=None, bucket_edges=None):
        if not run_dir:
            raise EvalError("choose a run folder")
        path = paths.check_inside(reports_dir, run_dir, "run folder")  # a run under REPORTS_DIR, nothing else
        buckets = buckets_of(bucket_by, bucket_edges) if bucket_by else None  # the form's buckets (a view only)
        return show(path, f"**Report rebuilt** from `{path}`", buckets)

    c["rebuild"].click(rebuild, [c["rebuild_dir"], c["bucket_by"], c["bucket_edges"]], outputs,
                       api_name="eval_rebuild_report")

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
    audio_systems = list(dict.fromkeys(name for it in items for name in it.audio))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "text", "ref_audio", "ref_text", "lang", *(f"audio:{n}" for n in audio_systems)])
    for it in items:
        w.writerow([it.id, it.text, it.ref_audio, it.ref_text, it.lang, *(it.audio.get(n, "") for n in audio_systems)])
    out = run_dir / "test.csv"
    if out.is_file() and (run_dir / "config.json").is_file() and out.read_text(encoding="utf-8") != buf.getvalue():
        raise EvalError(f"{run_dir} holds a run of different test rows; choose a new run folder name (or the same "
                        "CSV to resume)")
    run_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(buf.getvalue(), encoding="utf-8")
    config.test_csv = str(out)
    return config
