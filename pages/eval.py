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

from eval.run import PATH_PARAMS
from gsv_core import languages, paths

from .common import on_page_load, shown_path, text_language_choices, user_errors
from .i18n import T, say

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
PROTOCOLS = [(T("gsv (ours)", "gsv（本项目）"), "gsv"),
             (T("gsv + seed-tts-eval compatible (seed_wer)", "gsv + 兼容 seed-tts-eval（seed_wer）"), "seed-tts-eval")]
NUMERALS = [(T("off (25 ≠ 二十五)", "关闭（25 ≠ 二十五）"), "off"),
            (T("zh: digits → Chinese numerals", "zh：阿拉伯数字 → 中文数字"), "zh"),
            (T("digits: Chinese numerals → digits", "digits：中文数字 → 阿拉伯数字"), "digits")]
BUCKET_UNITS = [(T("tokens (CJK chars + words)", "token（汉字 + 单词）"), "tokens"), (T("characters", "字符"), "chars"),
                (T("audio seconds", "音频秒数"), "seconds")]
#: Chinese labels and help lines of the engine parameters (the English ones are the parameter names and
#: gsv_core.engine.request.PARAMETERS' help)
PARAM_ZH = {
    "text_lang": ("文本语言", "文本的语言（zh、all_zh、en、ja、ko、yue、auto 等）"),
    "ref_lang": ("参考文本语言", "参考音频转写文本的语言"),
    "aux_refs": ("辅助参考音频", "额外的参考音频，其音色会被平均进来（CSV 中用 ';' 分隔）"),
    "sv_ref": ("说话人嵌入参考", "SoVITS v2Pro/v2ProPlus：用于说话人嵌入的参考音频（留空 = 使用提示参考音频）"),
    "split_method": ("切分方式", "长文本切分为片段的方式（cut0..cut5）"),
    "top_k": ("top_k", "从概率最高的 k 个 token 中采样"),
    "top_p": ("top_p", "核采样阈值 (0, 1]"),
    "temperature": ("温度", "采样温度"),
    "repetition_penalty": ("重复惩罚", "对已生成 token 的惩罚"),
    "speed": ("语速", "语速倍率"),
    "noise_scale": ("噪声系数", "SoVITS 噪声系数"),
    "pause": ("片段间停顿", "每个片段之后的静音秒数"),
    "seed": ("随机种子", "-1：随机；实际使用的种子会被记录"),
    "batch_size": ("批大小", "GPT（以及 v3/v4 CFM）一起解码的片段数"),
    "parallel": ("并行解码", "GPT 批量解码"),
    "split_bucket": ("按长度分批", "把长度相近的片段放在同一批（减少填充）"),
    "max_tokens": ("最大 token 数", "每个片段最多的语义 token 数（每秒 25 个；0 = 模型上限）"),
    "sample_steps": ("采样步数", "SoVITS v3/v4：CFM 采样步数（0 = 该版本默认：v3 为 32，v4 为 8）"),
    "super_sampling": ("超采样", "SoVITS v3：把 24 kHz 输出超采样到 48 kHz（AP-BWE）"),
    "semantic_tokens": ("语义 token", "固定：沿用先前结果中每个片段的语义 token"),
}
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
    return {n: (None if n in PATH_PARAMS or isinstance(d[n], tuple) else 0 if d[n] is None else d[n])
            for n in param_names()}


def _param_control(name: str, system: str):
    """One form control for an engine parameter, from its default's type and its help line."""
    from gsv_core.engine.request import PARAMETERS, SPLIT_METHODS, SynthesisRequest

    default = SynthesisRequest.defaults()[name]
    label_zh, help_zh = PARAM_ZH.get(name, (name, PARAMETERS[name].help))
    label_zh = label_zh if label_zh == name else f"{label_zh}（{name}）"  # the name is also the CSV/API field
    kw = dict(label=T(name, label_zh), info=T(PARAMETERS[name].help, help_zh),
              elem_id=f"eval-{system}-{name.replace('_', '-')}")
    choices = {"split_method": list(SPLIT_METHODS), "text_lang": TEXT_LANGS, "ref_lang": TEXT_LANGS}
    if name in choices:
        return gr.Dropdown(choices[name], value=default, **kw)
    if name in PATH_PARAMS:  # one audio file (empty: not set)
        kw.pop("info")
        return gr.File(file_count="single", type="filepath", height=90, **kw)
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
ASR_LANGS = [*(lang.whisper for lang in languages.LANGUAGES.values()), (T("auto", "自动检测"), "auto")]
TEXT_LANGS = text_language_choices()

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
HELP_ZH = """
**测试集 CSV**：表头为 `id,text`，可选 `ref_audio,ref_text,lang` 列（音频的相对路径以 CSV 所在文件夹为准）。没有自带参考的
行使用下面的参考音频。每个系统用各自的引擎参数把每一行合成 *每条文本的样本数* 次，并记录随机种子；每条输出都由所选的
faster-whisper 模型转写并打分（中文计算字错率 CER，英文计算词错率 WER，替换、删除 = 吞字、插入 = 重复分别报告），另外还有
音色相似度、实时率 RTF、时长、停顿、与参考音频及系统 A（基线）的 F0 / 能量对齐，以及各种标记。

**已有音频**：`audio:NAME` 列存放系统 NAME 的音频文件（上游 GPT-SoVITS、其他引擎或真人录音）；每个这样的列都会成为一个
不经合成、直接打分的系统（上面的系统名称都留空时只评这些）。转写结果按音频内容缓存，同样的文件再次打分不会重新转写。

**打分**：错误率给出两种：`error_rate_corpus`（整个测试集合并统计）和 `error_rate_utt`（逐句错误率的均值 ± 标准差，即
seed-tts-eval 所说的 WER）。*gsv + 兼容 seed-tts-eval* 另外给出 `seed_wer_percent`，按 seed-tts-eval 自己的文本归一化打分。
*数字写法*：`zh` / `digits` 会把两边文本中的 25 和 二十五 统一。*相似度模型*：eres2netv2（192 维说话人验证嵌入，默认）、
eres2netv2-forward3（SoVITS v2Pro 所用的条件向量，会偏向 v2Pro）或 wavlm-sv（WavLMForXVector 模型文件夹，如
microsoft/wavlm-base-plus-sv，放在预训练模型文件夹下）。**句长分桶** 按所选单位和边界（如 `15,40`）把句子分为短 / 中 / 长；
*重建报告* 可以把新的分桶设置用到旧的评测上。

**重新生成**：错误率高于阈值或相似度低于阈值的句子会换一个种子重新生成，最多 *最多尝试次数* 次（每次尝试都会保留）。
**标点变体** 把每句话按原文、去掉标点、去掉逗号、多加逗号、全角和半角各跑一遍，报告每种变体的 CER / 时长 / 停顿变化。
评测文件夹（在报告文件夹下）保存 config.json、results.jsonl、音频和报告；在同一文件夹上以相同配置再次开始，会从中断处继续。
"""
#: Chinese descriptions of the similarity models (eval.similarity.SIMILARITY_MODELS holds the English ones)
SIMILARITY_ZH = {
    "eres2netv2": "ERes2NetV2 192 维说话人验证嵌入（默认）",
    "eres2netv2-forward3": "ERes2NetV2 forward3，SoVITS v2Pro 所用的 20480 维条件向量（并非公平的相似度："
                           "它偏向照搬条件的模型）",
    "wavlm-sv": "WavLM 说话人验证（从本地文件夹加载 transformers WavLMForXVector）",
}
#: eval.similarity.WAVLM_SV_HELP in Chinese
WAVLM_SV_HELP_ZH = (
    "WavLM 说话人验证打分器需要一个 transformers WavLMForXVector 文件夹（config.json、preprocessor_config.json、"
    "model.safetensors 或 pytorch_model.bin），例如 Hugging Face 上的 microsoft/wavlm-base-plus-sv"
    "（`hf download microsoft/wavlm-base-plus-sv --local-dir DIR`）。注意：公开的 seed-tts-eval SIM 使用 WavLM-large + "
    "ECAPA-TDNN（UniSpeech wavlm_large_finetune.pth），本打分器不加载它，所以两者的数值同类但不能直接比较。")


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


def _progress_text(message: str) -> str:
    """A progress line of the eval runner in the request's language ("3/10: baseline s1" stays as it is)."""
    message = message or ""
    if message == "starting":
        return say("starting", "正在开始")
    m = re.fullmatch(r"(\d+)/(\d+) utterances already done", message)
    if m:
        return say("{done}/{total} utterances already done", "已完成 {done}/{total} 句", done=m[1], total=m[2])
    m = re.fullmatch(r"starting (\d+) engines on (.*)", message)
    if m:
        return say("starting {n} engines on {devices}", "正在 {devices} 上启动 {n} 个引擎", n=m[1], devices=m[2])
    return message


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

    with gr.Accordion(T("Help: the test CSV, metrics, re-roll, run folders", "帮助：测试集 CSV、指标、重新生成、评测文件夹"),
                      open=False):
        gr.Markdown(T(HELP, HELP_ZH))
    with gr.Row():
        c["csv_file"] = gr.File(label=T("Test CSV (id,text[,ref_audio,ref_text,lang])",
                                        "测试集 CSV（id,text[,ref_audio,ref_text,lang]）"), file_types=[".csv"],
                                type="filepath", height=90, elem_id="eval-csv")
        c["csv_path"] = gr.Textbox(label=T("…or a CSV path on this machine", "…或本机上的 CSV 路径"),
                                   elem_id="eval-csv-path")
        c["text_lang"] = gr.Dropdown(TEXT_LANGS, value="zh", label=T("default text language (rows without lang)",
                                                                     "默认文本语言（用于没有 lang 的行）"))

    def param_block(system: str) -> None:
        from gsv_core.engine.request import SynthesisRequest

        defaults_ = SynthesisRequest.defaults()
        uploads = [n for n in param_names() if isinstance(defaults_[n], tuple)]  # audio lists: their own last row
        fields = [n for n in param_names() if n not in uploads]
        rows = [fields[i:i + 4] for i in range(0, len(fields), 4)] + ([uploads] if uploads else [])
        with gr.Accordion(T(f"System {system.upper()}: engine parameters ({len(param_names())})",
                            f"系统 {system.upper()}：引擎参数（{len(param_names())} 项）"),
                          open=False, elem_id=f"eval-params-{system}"):
            for row in rows:
                with gr.Row():
                    for name in row:
                        c[f"{system}_{name}"] = _param_control(name, system)

    with gr.Row(equal_height=True):
        # A = "baseline": the official base model when present; B = "finetuned": the newest finetuned export
        (g_base, g_tuned), (s_base, s_tuned) = defaults()
        c["name_a"] = gr.Textbox(value="baseline", label=T("System A name (the baseline; empty = none)",
                                                           "系统 A 名称（基线；留空 = 不评）"), scale=1)
        c["gpt_a"] = gr.Dropdown(gpts, value=g_base, label=T("GPT (A)", "GPT 模型（A）"), scale=3)
        c["sovits_a"] = gr.Dropdown(sovitss, value=s_base, label=T("SoVITS (A)", "SoVITS 模型（A）"), scale=3)
    param_block("a")
    with gr.Row(equal_height=True):
        c["name_b"] = gr.Textbox(value="finetuned", label=T("System B name (empty = A only)",
                                                            "系统 B 名称（留空 = 只评 A）"), scale=1)
        c["gpt_b"] = gr.Dropdown(gpts, value=g_tuned, label=T("GPT (B)", "GPT 模型（B）"), scale=3)
        c["sovits_b"] = gr.Dropdown(sovitss, value=s_tuned, label=T("SoVITS (B)", "SoVITS 模型（B）"), scale=3)
    param_block("b")
    c["refresh"] = gr.Button(T("Refresh model, ASR and run lists", "刷新模型、ASR 模型和评测列表"), size="sm")
    with gr.Row():
        c["ref_audio"] = gr.Audio(sources=["upload"], type="filepath", label=T("Reference audio", "参考音频"),
                                  elem_id="eval-ref-audio")
        with gr.Column():
            c["ref_text"] = gr.Textbox(label=T("Reference text", "参考文本"), lines=2, elem_id="eval-ref-text")
            c["ref_lang"] = gr.Dropdown(TEXT_LANGS, value="zh", label=T("Reference language", "参考文本语言"))
    with gr.Row():
        models = asr_models()
        whisper_dir = shown_path(settings.whisper_dir)
        c["asr_model"] = gr.Dropdown(models, value=models[0] if models else None, allow_custom_value=True,
                                     label=T("ASR model folder (faster-whisper)", "ASR 模型文件夹（faster-whisper）"),
                                     scale=3, info=T(f"folders under {whisper_dir}; or type a path",
                                                     f"{whisper_dir} 下的文件夹；也可以输入路径"))
        c["asr_lang"] = gr.Dropdown(ASR_LANGS, value="zh", label=T("ASR language", "识别语言"), scale=1)
        c["asr_beam"] = gr.Number(value=5, precision=0, minimum=1, maximum=20,
                                  label=T("ASR beam size", "ASR 束搜索宽度"), scale=1)
        c["asr_vad"] = gr.Checkbox(value=False, label=T("ASR VAD filter", "ASR VAD 过滤（跳过静音）"), scale=1)
        c["asr_max_tokens"] = gr.Number(value=0, precision=0, minimum=0,
                                        label=T("ASR max tokens (0 = no cap)", "ASR 最大 token 数（0 = 不限）"), scale=1)
    with gr.Row():
        c["samples"] = gr.Number(value=1, precision=0, minimum=1, label=T("samples per text", "每条文本的样本数"),
                                 elem_id="eval-samples")
        c["seed"] = gr.Number(value=1234, precision=0, minimum=0, maximum=2**32 - 1,
                              label=T("base seed", "基础随机种子"))
        # text boxes, not numbers: a browser number field turns "empty" into 0, and 0 is a real threshold here
        c["max_error"] = gr.Textbox(value="", label=T("re-roll when error rate > (empty = never)",
                                                      "错误率高于此值时重新生成（留空 = 从不）"),
                                    placeholder=T("e.g. 0.1", "如 0.1"), elem_id="eval-max-error")
        c["min_sim"] = gr.Textbox(value="", label=T("re-roll when similarity < (empty = never)",
                                                    "相似度低于此值时重新生成（留空 = 从不）"),
                                  placeholder=T("e.g. 0.6", "如 0.6"), elem_id="eval-min-sim")
        c["max_tries"] = gr.Number(value=1, precision=0, minimum=1, maximum=20,
                                   label=T("max tries (1 = no re-roll)", "最多尝试次数（1 = 不重新生成）"),
                                   elem_id="eval-max-tries")
        shown_reports = shown_path(reports_dir)
        c["run_name"] = gr.Textbox(label=T(f"run folder name (under {shown_reports}; empty = eval_DATE_TIME)",
                                           f"评测文件夹名称（位于 {shown_reports} 下；留空 = eval_日期_时间）"),
                                   elem_id="eval-run-name")
    with gr.Accordion(T("Scoring, similarity and length buckets", "评分、相似度与句长分桶"), open=True,
                      elem_id="eval-scoring"):
        with gr.Row():
            c["protocol"] = gr.Dropdown(PROTOCOLS, value="gsv", label=T("scoring protocol", "评分协议"),
                                        elem_id="eval-protocol",
                                        info=T("seed-tts-eval's numbers are reported next to ours",
                                               "seed-tts-eval 的结果与本项目的结果并列给出"))
            c["numerals"] = gr.Dropdown(NUMERALS, value="off", label=T("numerals", "数字写法"), elem_id="eval-numerals",
                                        info=T("unify digits and Chinese numerals in both texts (cn2an)",
                                               "在两边文本中统一阿拉伯数字和中文数字（cn2an）"))
            c["drop_interjections"] = gr.Checkbox(value=False, label=T("drop interjections (嗯 啊 uh um)",
                                                                       "去掉语气词（嗯、啊、uh、um）"),
                                                  elem_id="eval-drop-interjections")
        with gr.Row():
            from eval.similarity import SIMILARITY_MODELS

            c["similarity_model"] = gr.Dropdown([(T(f"{k}: {v}", f"{k}：{SIMILARITY_ZH.get(k, v)}"), k)
                                                 for k, v in SIMILARITY_MODELS.items()],
                                                value="eres2netv2", label=T("similarity model", "相似度模型"),
                                                elem_id="eval-similarity-model", scale=1)
            c["wavlm_dir"] = gr.Textbox(label=T("WavLM SV folder (for wavlm-sv)", "WavLM SV 文件夹（用于 wavlm-sv）"),
                                        elem_id="eval-wavlm-dir", scale=1,
                                        placeholder=shown_path(Path(settings.pretrained_dir) / "wavlm-base-plus-sv"),
                                        info=T("a WavLMForXVector folder inside the app's folders",
                                               "应用文件夹内的 WavLMForXVector 模型文件夹"))
        with gr.Row():
            c["bucket_by"] = gr.Dropdown(BUCKET_UNITS, value="tokens", label=T("length buckets by", "句长分桶单位"),
                                         elem_id="eval-bucket-by", scale=1)
            c["bucket_edges"] = gr.Textbox(label=T("bucket edges (empty = default for the unit)",
                                                   "分桶边界（留空 = 该单位的默认值）"), scale=1,
                                           placeholder=T("tokens 15,40 · chars 20,60 · seconds 4,10",
                                                         "token 15,40 · 字符 20,60 · 秒 4,10"),
                                           elem_id="eval-bucket-edges")
    with gr.Row():
        c["run"] = gr.Button(T("Run evaluation", "开始评测"), variant="primary", elem_id="eval-run")
        c["run_variants"] = gr.Button(T("Run punctuation variants", "运行标点变体测试"), elem_id="eval-run-variants")
        c["cancel"] = gr.Button(T("Cancel", "取消"), variant="stop", elem_id="eval-cancel")
    c["status"] = gr.Markdown(elem_id="eval-status")
    c["summary"] = gr.Dataframe(headers=[SUMMARY_HEADERS.get(k, k) for k in SUMMARY_COLUMNS], interactive=False,
                                wrap=True, column_widths=[f"{SUMMARY_WIDTHS.get(k, 4)}%" for k in SUMMARY_COLUMNS],
                                label=T("Per system · S/D/I: substitutions, deletions (swallowed words), insertions "
                                        "(repetition) · N: reference tokens · seed WER %: seed-tts-eval's procedure",
                                        "各系统 · S/D/I：替换、删除（吞字）、插入（重复） · N：参考文本 token 数 · "
                                        "seed WER %：按 seed-tts-eval 的流程计算"),
                                elem_id="eval-summary")
    c["prosody"] = gr.Dataframe(headers=["system", *(PROSODY_HEADERS[k] for k in PROSODY_COLUMNS)],
                                interactive=False, wrap=True, elem_id="eval-prosody",
                                label=T("F0 / energy vs reference audio and vs system A (semitones, dB; mean ± std)",
                                        "韵律对齐：F0 / 能量与参考音频及系统 A 的差异（半音、dB；均值 ± 标准差）"))
    c["buckets"] = gr.Dataframe(headers=BUCKET_HEADERS, interactive=False, wrap=True, elem_id="eval-buckets",
                                label=T("Per length bucket: mean ± std [bootstrap 95% CI] (n)",
                                        "按句长分桶：均值 ± 标准差 [bootstrap 95% 置信区间] (n)"))
    c["pairwise"] = gr.Dataframe(headers=PAIRWISE_COLUMNS, interactive=False, wrap=True,
                                 label=T("Pairwise: B − A with bootstrap 95% CI",
                                         "两两比较：B − A，附 bootstrap 95% 置信区间"), elem_id="eval-pairwise")
    c["variants"] = gr.Dataframe(headers=VARIANT_HEADERS, interactive=False, wrap=True, elem_id="eval-variants",
                                 label=T("Punctuation variants: variant − original per system",
                                         "标点变体：各系统的 变体 − 原文"))
    c["files"] = gr.File(label=T("Report files (HTML, JSON, CSVs)", "报告文件（HTML、JSON、CSV）"),
                         file_count="multiple", interactive=False, elem_id="eval-files")
    c["report"] = gr.HTML(elem_id="eval-report")
    with gr.Accordion(T("Rebuild the report of an existing run", "重建已有评测的报告"), open=False):
        with gr.Row():
            c["rebuild_dir"] = gr.Dropdown(run_folders(), allow_custom_value=True, label=T("run folder", "评测文件夹"),
                                           scale=4, elem_id="eval-rebuild-dir")
            c["rebuild"] = gr.Button(T("Rebuild report", "重建报告"), scale=1, elem_id="eval-rebuild")
    if importlib.util.find_spec("pages.listening") is not None:
        from .listening import build_listening_ui

        with gr.Accordion(T("Listening tests (MOS, A/B)", "听测（MOS、A/B）"), open=False):
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
        frame = (f"<p><a href='{html.escape(url)}' target='_blank'>"
                 f"{say('Open report.html in a new tab', '在新标签页中打开 report.html')}</a> · "
                 f"<code>{html.escape(str(html_path))}</code></p>"
                 f"<iframe src='{html.escape(url)}' title='{say('Evaluation report', '评测报告')}' "
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
                raise EvalError(say("bucket edges must be numbers separated by commas, not {text!r}",
                                    "分桶边界必须是用逗号分隔的数字，而不是 {text!r}", text=text)) from None
        from eval.buckets import LengthBuckets
        from eval.metrics import MetricsError

        try:
            LengthBuckets(out["by"], tuple(out["edges"]) if "edges" in out else None)
        except MetricsError as exc:
            raise EvalError(say("length buckets: {exc}", "句长分桶：{exc}", exc=exc)) from None
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
            raise EvalError(say("choose a test CSV (upload one or type its path)", "请选择测试集 CSV（上传或输入路径）"))
        check_audio = lambda p, what: paths.check_readable(settings, p, what)  # noqa: E731 - audio the CSV names
        read_test_csv(csv_src, default_lang=text_lang or "zh", check_path=check_audio)  # lists the bad rows
        if not asr_model:
            raise EvalError(say("choose an ASR model folder (none found under {folder})",
                                "请选择 ASR 模型文件夹（{folder} 下一个也没有找到）", folder=settings.whisper_dir))
        asr_model = str(paths.check_readable(settings, asr_mod.resolve_model(settings.whisper_dir, asr_model),
                                             "ASR model folder", kind="dir"))
        name = (run_name or "").strip() or time.strftime("eval_%Y%m%d_%H%M%S")
        if variants and not name.endswith("_variants"):
            name += "_variants"  # its own folder: a variants run never resumes (or blocks) the plain run
        if not re.fullmatch(r"[\w\-.]+", name) or name in (".", ".."):
            raise EvalError(say("run folder name {name!r} may only hold letters, digits, '_', '-' and '.'",
                                "评测文件夹名称 {name!r} 只能包含字母、数字、'_'、'-' 和 '.'", name=name))
        systems = []
        for k, name_k, gpt, sovits in (("a", name_a, gpt_a, sovits_a), ("b", name_b, gpt_b, sovits_b)):
            if not (name_k or "").strip():
                continue
            # a list label (what the dropdowns send) or a path -> the absolute file the run config records
            gpt = services.check_model_path(gpt, "GPT") if gpt else gpt
            sovits = services.check_model_path(sovits, "SoVITS") if sovits else sovits
            params = dict(_system_params(v, k), ref_lang=ref_lang or "zh")
            for key in PATH_PARAMS:  # audio a system names: the one path policy, as for the reference
                if params.get(key):
                    params[key] = str(paths.check_readable(settings, params[key], key))
            if params.get("aux_refs"):
                params["aux_refs"] = [str(paths.check_readable(settings, a, "aux_refs")) for a in params["aux_refs"]]
            systems.append(dict(name=name_k.strip(), gpt=gpt, sovits=sovits, ref_audio=ref_audio or "",
                                ref_text=ref_text or "", **params))
        if not variants:  # every audio:NAME column of the CSV is a system scored from its files (not synthesised)
            for ext in external_systems(csv_src, [s["name"] for s in systems]):
                systems.append(dict(ext, ref_audio=ref_audio or ""))
        if not systems:
            raise EvalError(say("name at least one system (A or B), or give the test CSV audio:NAME columns of "
                                "existing audio to score",
                                "请至少为一个系统（A 或 B）命名，或在测试集 CSV 中加入 audio:NAME 列，对已有音频打分"))
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

                raise EvalError(say("the wavlm-sv similarity model needs its folder. {help}",
                                    "wavlm-sv 相似度模型需要它的模型文件夹。{help_zh}", help=WAVLM_SV_HELP,
                                    help_zh=WAVLM_SV_HELP_ZH))
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
            gr.Warning(say("The test CSV has problems: see the list on the page.", "测试集 CSV 有问题：请看页面上的列表。"))
            lines = str(exc).splitlines()
            body = "\n".join(f"- {html.escape(line)}" for line in lines[1:])
            return empty(say("**Malformed test CSV:** {first}\n\n{body}", "**测试集 CSV 格式有误：** {first}\n\n{body}",
                             first=html.escape(lines[0]), body=body))
        key = "eval:" + (getattr(request, "session_hash", None) or "api")
        cancel = threading.Event()
        cancels[key] = cancel
        runner = EvalRunner(services.engine, services.asr or asr_mod.ASRService.from_settings(settings), settings)
        t0 = time.perf_counter()
        try:
            progress(0.0, desc=say("starting", "正在开始"))
            runner.run(config, run_dir, progress=lambda f, m: progress(f, desc=_progress_text(m)), cancel=cancel)
        except EvalCancelled as exc:
            from eval.run import load_results

            note = say("**Cancelled.** {exc} ({n} utterances done in `{run_dir}`)",
                       "**已取消。** 已完成的句子会保留，再次运行即可继续（`{run_dir}` 中已完成 {n} 句）",
                       exc=exc, n=len(load_results(run_dir)), run_dir=run_dir)
            if load_results(run_dir):
                return show(run_dir, note + say("; the report below covers the finished ones.",
                                                "；下面的报告只包含已完成的句子。"))
            return empty(note)
        finally:
            cancels.pop(key, None)
        from eval.run import load_results

        n = len(load_results(run_dir))
        seconds = time.perf_counter() - t0
        if variants:
            note = say("**Done:** {n} utterances (every sentence × punctuation variant) in {s:.1f} s → `{run_dir}`",
                       "**完成：** {n} 句（每句 × 每种标点变体），用时 {s:.1f} 秒 → `{run_dir}`",
                       n=n, s=seconds, run_dir=run_dir)
        else:
            note = say("**Done:** {n} utterances in {s:.1f} s → `{run_dir}`",
                       "**完成：** {n} 句，用时 {s:.1f} 秒 → `{run_dir}`", n=n, s=seconds, run_dir=run_dir)
        return show(run_dir, note)

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
            return say("No evaluation is running.", "没有正在运行的评测。")
        event.set()
        return say("Cancelling: the run stops after the current batch (finished utterances are kept; run it again to "
                   "resume).", "正在取消：评测会在当前批次结束后停止（已完成的句子会保留；再次运行即可继续）。")

    c["cancel"].click(cancel_run, None, c["status"], api_name="eval_cancel", concurrency_limit=None, queue=False)

    @user_errors
    def rebuild(run_dir, bucket_by=None, bucket_edges=None):
        if not run_dir:
            raise EvalError(say("choose a run folder", "请选择评测文件夹"))
        path = paths.check_inside(reports_dir, run_dir, "run folder")  # a run under REPORTS_DIR, nothing else
        buckets = buckets_of(bucket_by, bucket_edges) if bucket_by else None  # the form's buckets (a view only)
        return show(path, say("**Report rebuilt** from `{path}`", "**报告已重建**，来自 `{path}`", path=path), buckets)

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


_THRESHOLD_ZH = {"error rate": "错误率", "similarity": "相似度"}


def _threshold(raw: Any, what: str, low: float, high: Optional[float]) -> Optional[float]:
    from eval.run import EvalError

    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise EvalError(say("the re-roll {what} threshold must be a number or empty, not {text!r}",
                            "重新生成的{what_zh}阈值必须是数字或留空，而不是 {text!r}", what=what,
                            what_zh=_THRESHOLD_ZH.get(what, what), text=text)) from None
    if value < low or (high is not None and value > high):
        raise EvalError(say("the re-roll {what} threshold must be between {low} and {high}, not {value}",
                            "重新生成的{what_zh}阈值必须在 {low} 和 {high_zh} 之间，而不是 {value}", what=what,
                            what_zh=_THRESHOLD_ZH.get(what, what), low=low, value=value,
                            high=high if high is not None else "any", high_zh=high if high is not None else "任意值"))
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
        raise EvalError(say("{run_dir} holds a run of different test rows; choose a new run folder name (or the same "
                            "CSV to resume)", "{run_dir} 中已有一次用不同测试行的评测；请换一个评测文件夹名称（或用同一个 "
                            "CSV 继续那次评测）", run_dir=run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(buf.getvalue(), encoding="utf-8")
    config.test_csv = str(out)
    return config
