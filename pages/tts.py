"""The TTS tab: layout and wiring only; everything else is in :mod:`pages.services` and gsv_core."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np

from gsv_core import weights
from gsv_core.engine.request import SynthesisRequest
from gsv_core.errors import GSVError

from gsv_core import languages
from gsv_core.messages import keyed

from .common import on_page_load, split_method_choices, text_language_choices, user_errors
from .i18n import T, error_text, lang, say

STREAMING = shutil.which("ffmpeg") is not None
from .services import HISTORY_COLUMNS, Services

TAGS_HELP_EN = """
**Inline tags** (see `docs/text-frontend.md`):

* `重[chong2]新` — the pinyin in brackets (tone digit 1–5) forces the reading of the character right before it.
* `[pause=0.8]` — 0.8 s of silence at that point (0–10 s).
* A user dictionary (`USER_DICT_PATH = "my_dict.txt"` in `my_config.py`, lines `word pinyin pinyin ...`) fixes the
  reading of whole words everywhere.

Malformed tags are reported with their position; **How the text will be read** shows the pieces, the language of
each segment, the phones and the pinyin as you type. **Reference text**: leave it empty for reference-free mode
(SoVITS v2, v2Pro and v2ProPlus; the timbre still comes from the audio, the prosody less so). SoVITS **v3/v4** always
need the reference text; they have **sample steps** (CFM sampling; "default" = 32 for v3, 8 for v4) and v3 offers
**super-sampling** to 48 kHz when the AP-BWE weights are installed; auxiliary references are not used by v3/v4.
**Split method** decides where long text is cut into fragments; each fragment *i* uses seed + *i*, so a sentence
sounds the same alone or in a paragraph. **A/B** synthesises the same text with the same reference and seed through
a second model pair (for example the baseline against your finetuned model).

**Freeze tokens** re-synthesises the semantic tokens of the last take without running the GPT again: change the
speed, the noise, the reference audio or the SoVITS model and hear the same rhythm and wording (keep the text and
the split method). The **speaker reference** (v2Pro/v2ProPlus) takes the voice's speaker embedding from another clip
than the prompt reference.

**Batch CSV**: a header row with `id,text` and optionally `ref,ref_text,ref_lang,lang,top_k,top_p,temperature,
repetition_penalty,speed,seed,sample_steps,super_sampling` (any synthesis parameter) per row; empty cells take the
values of this page. Output: `<id>.wav` and `results.csv` (id, text, file, duration, RTF, seed, models, status,
error), also as one zip. Running the same CSV again into the same folder resumes; a failing line is recorded and
the batch goes on.
"""

TAGS_HELP_ZH = """
**行内标记**（见 `docs/text-frontend.md`）：

* `重[chong2]新`：方括号里的拼音（声调数字 1–5）强制其前一个字的读音。
* `[pause=0.8]`：在此处插入 0.8 秒静音（0–10 秒）。
* 用户词典（在 `my_config.py` 中设置 `USER_DICT_PATH = "my_dict.txt"`，每行 `词 拼音 拼音 ...`）统一固定整词的读音。

格式错误的标记会报告其位置；**文本将如何朗读** 会在输入时显示切分后的片段、每段的语言、音素和拼音。**参考文本**：留空即为
无参考文本模式（SoVITS v2、v2Pro 和 v2ProPlus；音色仍来自参考音频，韵律则较少）。SoVITS **v3/v4** 始终需要参考文本；
它们有 **采样步数**（CFM 采样；“默认” 即 v3 为 32、v4 为 8），安装了 AP-BWE 权重时 v3 还可 **超采样** 到 48 kHz；
v3/v4 不使用辅助参考。**切分方式** 决定长文本在哪里切成片段；第 *i* 个片段使用种子 + *i*，因此一句话单独合成和在段落中
合成听起来一样。**A/B** 用相同的文本、参考和种子通过第二组模型合成（例如基础模型对比你微调的模型）。

**冻结 token** 会复用上一次合成的语义 token 重新合成，而不再运行 GPT：改变语速、噪声、参考音频或 SoVITS 模型，
听到的仍是同样的节奏和措辞（请保持文本和切分方式不变）。**说话人参考**（v2Pro/v2ProPlus）从另一段音频而不是提示参考
中提取说话人嵌入。

**批量 CSV**：表头为 `id,text`，每行还可以有 `ref,ref_text,ref_lang,lang,top_k,top_p,temperature,
repetition_penalty,speed,seed,sample_steps,super_sampling`（任意合成参数）；空单元格取本页的值。输出：`<id>.wav` 和
`results.csv`（id、文本、文件、时长、RTF、种子、模型、状态、错误），并打包成一个 zip。把同一个 CSV 再次运行到同一文件夹
会继续未完成的部分；失败的行会被记录，批处理继续进行。
"""


def _choices(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(label, value) for label, value in pairs]


def _pick(pairs: list[tuple[str, str]], current: Any, index: int = 0) -> Any:
    values = [v for _, v in pairs]
    if current in values:
        return current
    return values[min(index, len(values) - 1)] if values else None


def build_tts_tab(services: Services) -> dict[str, Any]:
    gpts, sovitss = services.gpt_choices(), services.sovits_choices()
    c: dict[str, Any] = {}
    D = SynthesisRequest.defaults()  # every widget default comes from the request schema

    # -- models ------------------------------------------------------------------------------------------------
    with gr.Row(equal_height=True):
        c["gpt"] = gr.Dropdown(_choices(gpts), value=_pick(gpts, None), label=T("GPT model (A)", "GPT 模型 (A)"),
                               scale=3, allow_custom_value=False, elem_id="tts-gpt")
        c["sovits"] = gr.Dropdown(_choices(sovitss), value=_pick(sovitss, None),
                                  label=T("SoVITS model (A)", "SoVITS 模型 (A)"), scale=3, elem_id="tts-sovits")
        c["refresh"] = gr.Button(T("Refresh", "刷新"), scale=1, size="sm", elem_id="tts-refresh")
    # a callable value is computed on every page load, so startup does not wait for reading the checkpoints
    c["models_info"] = gr.Markdown(lambda: services.no_models_message() or services.models_info(
        _pick(services.gpt_choices(), None), _pick(services.sovits_choices(), None), lang()),
        elem_id="tts-models-info")

    # -- voice presets from the RefAudio tab -------------------------------------------------------------------
    with gr.Accordion(T("Load product (a voice preset saved in the RefAudio tab)",
                        "载入预设（在 RefAudio 页保存的音色预设）"), open=False, elem_id="tts-product-accordion"):
        with gr.Row(equal_height=True):
            c["product"] = gr.Dropdown(_product_choices(services), label=T("Product", "预设"), scale=3,
                                       elem_id="tts-product", allow_custom_value=True)
            c["product_refresh"] = gr.Button(T("Refresh", "刷新"), size="sm", scale=1, elem_id="tts-product-refresh")
            c["product_load"] = gr.Button(T("Load product", "载入预设"), scale=1, elem_id="tts-product-load")
        with gr.Row(equal_height=True):
            c["preset_zip"] = gr.File(label=T("…or a product zip", "……或预设压缩包"), file_types=[".zip"],
                                      type="filepath", height=80, scale=3, elem_id="tts-preset-zip")
            c["preset_load"] = gr.Button(T("Load zip", "载入压缩包"), scale=1, elem_id="tts-preset-load")
        c["product_info"] = gr.Markdown(elem_id="tts-product-info")

    # -- reference and text ------------------------------------------------------------------------------------
    with gr.Row():
        with gr.Column(scale=1):
            c["ref_audio"] = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                      label=T("Reference audio (3–10 s)", "参考音频（3–10 秒）"), elem_id="tts-ref-audio")
            c["ref_text"] = gr.Textbox(label=T("Reference text (empty → reference-free, v2+)",
                                               "参考文本（留空 → 无参考文本模式，v2 及以上）"), lines=2,
                                       elem_id="tts-ref-text")
            with gr.Row(equal_height=True):
                c["ref_lang"] = gr.Dropdown(text_language_choices(), value=D["ref_lang"],
                                            label=T("Reference language", "参考语言"), min_width=220,
                                            elem_id="tts-ref-lang")
                if services.asr is not None:
                    c["transcribe"] = gr.Button(T("Transcribe the reference with ASR", "用 ASR 识别参考文本"),
                                                size="sm", min_width=160, elem_id="tts-transcribe")
            c["aux_refs"] = gr.File(file_count="multiple", type="filepath", file_types=["audio"],
                                    label=T("Auxiliary references (timbre averaged in; optional)",
                                            "辅助参考（音色取平均；可选）"), height=130, elem_id="tts-aux-refs")
        with gr.Column(scale=1):
            c["text"] = gr.Textbox(label=T("Text to synthesise", "合成文本"), lines=6, elem_id="tts-text",
                                   value="今天天气很好，我们去公园散步吧。")
            with gr.Row():
                c["text_lang"] = gr.Dropdown(text_language_choices(), value=D["text_lang"],
                                             label=T("Text language", "文本语言"), elem_id="tts-text-lang")
                c["split"] = gr.Dropdown(split_method_choices(), value=D["split_method"],
                                         label=T("Split method", "切分方式"), elem_id="tts-split")
            with gr.Accordion(T("How the text will be read (pieces, languages, phones, pinyin)",
                                "文本将如何朗读（片段、语言、音素、拼音）"), open=True, elem_id="tts-preview-accordion"):
                c["preview"] = gr.Markdown(elem_id="tts-text-preview")
            with gr.Accordion(T("Help: inline pinyin and pause tags, modes", "帮助：行内拼音与停顿标记、模式"),
                              open=False):
                gr.Markdown(T(TAGS_HELP_EN, TAGS_HELP_ZH))

    # -- parameters --------------------------------------------------------------------------------------------
    with gr.Accordion(T("Sampling and prosody", "采样与韵律"), open=True):
        with gr.Row():
            c["top_k"] = gr.Slider(1, 100, value=D["top_k"], step=1, label=T("top_k", "top_k"), elem_id="tts-top-k")
            c["top_p"] = gr.Slider(0.05, 1.0, value=D["top_p"], step=0.01, label=T("top_p", "top_p"),
                                   elem_id="tts-top-p")
            c["temperature"] = gr.Slider(0.0, 2.0, value=D["temperature"], step=0.01,
                                         label=T("temperature", "温度 temperature"), elem_id="tts-temperature")
            c["repetition_penalty"] = gr.Slider(0.5, 2.0, value=D["repetition_penalty"], step=0.01,
                                                label=T("repetition penalty", "重复惩罚"),
                                                elem_id="tts-repetition-penalty")
        with gr.Row():
            c["speed"] = gr.Slider(0.6, 1.65, value=D["speed"], step=0.05, label=T("speed", "语速"),
                                   elem_id="tts-speed")
            c["pause"] = gr.Slider(0.0, 1.0, value=D["pause"], step=0.01,
                                   label=T("pause between fragments (s)", "片段间停顿（秒）"), elem_id="tts-pause")
            c["max_tokens"] = gr.Slider(0, 1500, value=D["max_tokens"] or 0, step=1, elem_id="tts-max-tokens",
                                        label=T("max semantic tokens per fragment (0 = model limit; 25 per second)",
                                                "每个片段最多的语义 token 数（0 = 模型上限；每秒 25 个）"))
        with gr.Row():
            c["seed"] = gr.Number(value=0, precision=0, label=T("seed", "种子"), minimum=0, maximum=2**32 - 1,
                                  elem_id="tts-seed")
            c["random_seed"] = gr.Checkbox(value=True, label=T("random seed each time", "每次随机种子"),
                                           elem_id="tts-random-seed")
            c["seed_used"] = gr.Number(label=T("seed used", "实际种子"), interactive=False, precision=0,
                                       elem_id="tts-seed-used")
    with gr.Accordion(T("Advanced (noise, batching, speaker reference, take name, streaming)",
                        "高级（噪声、批处理、说话人参考、名称、流式）"), open=False, elem_id="tts-advanced"):
        with gr.Row():
            c["noise_scale"] = gr.Slider(0.0, 1.0, value=D["noise_scale"], step=0.01,
                                         label=T("noise scale", "噪声比例"), elem_id="tts-noise-scale",
                                         info=T("SoVITS sampling noise (upstream's default 0.5)",
                                                "SoVITS 采样噪声（上游默认 0.5）"))
            c["batch_size"] = gr.Slider(1, 32, value=D["batch_size"], step=1, label=T("batch size", "批大小"),
                                        elem_id="tts-batch-size",
                                        info=T("fragments the GPT decodes together", "GPT 一起解码的片段数"))
            c["parallel"] = gr.Checkbox(value=D["parallel"], label=T("parallel decoding", "并行推理"),
                                        elem_id="tts-parallel",
                                        info=T("decode fragments as a batch (upstream's parallel_infer)",
                                               "把片段作为一批解码（上游的 parallel_infer）"))
            c["split_bucket"] = gr.Checkbox(value=D["split_bucket"], label=T("split buckets", "数据分桶"),
                                            elem_id="tts-split-bucket",
                                            info=T("batch fragments of similar length together (less padding; "
                                                   "the same tokens)",
                                                   "把长度相近的片段放在同一批（更少填充；token 不变）"))
        with gr.Row():
            c["sv_ref"] = gr.Audio(sources=["upload", "microphone"], type="filepath", elem_id="tts-sv-ref",
                                   label=T("Speaker reference (v2Pro/v2ProPlus; empty: the reference audio)",
                                           "说话人参考（v2Pro/v2ProPlus；留空：使用参考音频）"))
            # the form sends the speaker reference through a session value: an API caller of an older form (no
            # such input) keeps working, the client requiring no value for it
            c["sv_ref_path"] = gr.State(None)
            c["take_id"] = gr.Textbox("", label=T("Take name (optional)", "本次合成名称（可选）"), elem_id="tts-take-id",
                                      info=T("names the history entry and its file", "用于历史记录条目和文件名"))
        with gr.Row():
            c["stream_mode"] = gr.Radio([(T("token-level (first audio soonest)", "逐 token（最快出声）"), "tokens"),
                                         (T("per fragment", "逐片段"), "fragments")], value="tokens",
                                        label=T("Stream mode", "流式模式"), elem_id="tts-stream-mode",
                                        info=T("token-level: audio every few GPT tokens; SoVITS v3/v4 stream per "
                                               "fragment", "逐 token：每隔几个 GPT token 输出音频；SoVITS v3/v4 "
                                                           "逐片段流式"))
            c["stream_chunk"] = gr.Slider(4, 100, value=24, step=1, label=T("stream chunk (tokens)", "流式块大小（token）"),
                                          elem_id="tts-stream-chunk",
                                          info=T("25 tokens = 1 s of speech; the first piece comes after half",
                                                 "25 个 token = 1 秒语音；第一块在一半时输出"))
    # SoVITS v3/v4 only: shown when the chosen SoVITS model is one (see _wire: sovits_options)
    with gr.Row():
        c["sample_steps"] = gr.Dropdown(_steps_choices((4, 8, 16, 32, 64, 128), 32), value=D["sample_steps"] or 0,
                                        label=T("sample steps (SoVITS v3/v4)", "采样步数（SoVITS v3/v4）"),
                                        visible=False, allow_custom_value=True, elem_id="tts-sample-steps",
                                        info=T("CFM sampling steps: more is slower and cleaner",
                                               "CFM 采样步数：越多越慢、越干净"))
        c["super_sampling"] = gr.Checkbox(value=D["super_sampling"], visible=False, elem_id="tts-super-sampling",
                                          label=T("super-sampling 24→48 kHz (SoVITS v3, AP-BWE)",
                                                  "超采样 24→48 kHz（SoVITS v3，AP-BWE）"))

    # -- outputs -----------------------------------------------------------------------------------------------
    with gr.Row():
        c["go"] = gr.Button(T("Synthesise", "合成"), variant="primary", elem_id="tts-go")
        c["go_stream"] = gr.Button(T("Stream", "流式"), elem_id="tts-stream")
        c["go_ab"] = gr.Button(T("Compare A and B", "A/B 对比"), elem_id="tts-ab")
    with gr.Row():
        c["freeze"] = gr.Checkbox(value=False, elem_id="tts-freeze",
                                  label=T("Freeze tokens: re-synthesise the last take's semantic tokens (no GPT run)",
                                          "冻结 token：复用上一次合成的语义 token 重新合成（不运行 GPT）"),
                                  info=T("change speed, noise, reference or SoVITS model; keep the text and split",
                                         "可改语速、噪声、参考或 SoVITS 模型；请保持文本和切分方式"))
        # the semantic tokens of this session's last take (per fragment), what Freeze re-synthesises
        c["frozen_tokens"] = gr.State(None)
    with gr.Accordion(T("A/B: the B model pair (baseline vs finetuned)", "A/B：B 组模型（基础模型对比微调模型）"),
                      open=False, elem_id="tts-ab-accordion"):
        with gr.Row():
            c["gpt_b"] = gr.Dropdown(_choices(gpts), value=_pick(gpts, None, 1), label=T("GPT model (B)", "GPT 模型 (B)"),
                                     elem_id="tts-gpt-b")
            c["sovits_b"] = gr.Dropdown(_choices(sovitss), value=_pick(sovitss, None, 1),
                                        label=T("SoVITS model (B)", "SoVITS 模型 (B)"), elem_id="tts-sovits-b")
        c["models_info_b"] = gr.Markdown(elem_id="tts-models-info-b")
    with gr.Row(equal_height=True):
        with gr.Column():
            c["audio_a"] = gr.Audio(label=T("A", "A"), type="filepath", interactive=False, buttons=["download"],
                                    elem_id="tts-audio-a")
            c["info_a"] = gr.Markdown(elem_id="tts-info-a")
        with gr.Column():
            c["audio_b"] = gr.Audio(label=T("B", "B"), type="filepath", interactive=False, buttons=["download"],
                                    elem_id="tts-audio-b")
            c["info_b"] = gr.Markdown(elem_id="tts-info-b")
    with gr.Row():
        # gradio encodes streamed audio with ffmpeg; without it the player shows the audio so far after each fragment
        c["stream_audio"] = gr.Audio(label=T("Streaming output", "流式输出"), streaming=STREAMING, autoplay=STREAMING,
                                     interactive=False, elem_id="tts-stream-audio")
        c["stream_info"] = gr.Markdown(elem_id="tts-stream-info")
    c["download"] = gr.File(label=T("Download the last take (wav)", "下载最近一次合成（wav）"), interactive=False,
                            height=60, elem_id="tts-download")

    # -- history -----------------------------------------------------------------------------------------------
    with gr.Accordion(T("History (last generations)", "历史（最近的合成）"), open=False, elem_id="tts-history-accordion"):
        c["history"] = gr.Dataframe(headers=HISTORY_COLUMNS, value=_history_rows(services), interactive=False,
                                    wrap=True, elem_id="tts-history", max_height=360,
                                    column_widths=["13%", "7%", "20%", "18%", "8%", "7%", "6%", "21%"])
        with gr.Row():
            c["history_pick"] = gr.Dropdown(_history_ids(services), label=T("entry", "条目"), scale=3,
                                            elem_id="tts-history-pick")
            c["replay"] = gr.Button(T("▶ Replay", "▶ 回放"), scale=1, elem_id="tts-replay")
            c["reuse"] = gr.Button(T("Reuse parameters", "复用参数"), scale=1, elem_id="tts-reuse")
        c["history_audio"] = gr.Audio(label=T("Replay", "回放"), type="filepath", interactive=False,
                                      buttons=["download"], elem_id="tts-history-audio")
        c["history_info"] = gr.Markdown(elem_id="tts-history-info")

    # -- batch -------------------------------------------------------------------------------------------------
    with gr.Accordion(T("Batch export (CSV: id,text[,ref,ref_text])", "批量导出（CSV：id,text[,ref,ref_text]）"),
                      open=False, elem_id="tts-batch-accordion"):
        with gr.Row():
            c["batch_csv"] = gr.File(label=T("CSV", "CSV"), file_types=[".csv"], type="filepath",
                                     elem_id="tts-batch-csv")
            with gr.Column():
                c["batch_go"] = gr.Button(T("Run batch", "开始批量合成"), variant="primary", elem_id="tts-batch-go")
                c["batch_cancel"] = gr.Button(T("Cancel", "取消"), variant="stop", elem_id="tts-batch-cancel")
        c["batch_info"] = gr.Markdown(elem_id="tts-batch-info")
        with gr.Row():
            c["batch_results"] = gr.File(label=T("results.csv", "results.csv"), interactive=False,
                                         elem_id="tts-batch-results")
            c["batch_zip"] = gr.File(label=T("wavs + results (zip)", "wav + 结果（zip）"), interactive=False,
                                     elem_id="tts-batch-zip")
        c["batch_table"] = gr.Dataframe(interactive=False, wrap=True, elem_id="tts-batch-table")

    _wire(services, c)
    _wire_products(services, c)
    return c


def _product_choices(services: Services) -> list[tuple[str, int]]:
    from .refaudio import product_choices

    if services.refaudio_error():
        return []  # the RefAudio tab says why
    return product_choices(services.refaudio)


#: the form's inputs of a synthesis, in the order of the /tts API (new parameters are appended at the end), with
#: the request field each one fills (None: not a request field)
FORM_FIELDS = (("gpt", "gpt_path"), ("sovits", "sovits_path"), ("ref_audio", "ref_audio"), ("ref_text", "ref_text"),
               ("ref_lang", "ref_lang"), ("aux_refs", "aux_refs"), ("text", "text"), ("text_lang", "text_lang"),
               ("split", "split_method"), ("top_k", "top_k"), ("top_p", "top_p"), ("temperature", "temperature"),
               ("repetition_penalty", "repetition_penalty"), ("speed", "speed"), ("pause", "pause"),
               ("seed", "seed"), ("random_seed", None), ("max_tokens", "max_tokens"), ("noise_scale", "noise_scale"),
               ("batch_size", "batch_size"), ("parallel", "parallel"), ("sample_steps", "sample_steps"),
               ("super_sampling", "super_sampling"), ("sv_ref_path", "sv_ref"), ("split_bucket", "split_bucket"),
               ("take_id", "id"), ("freeze", None), ("frozen_tokens", "semantic_tokens"))
#: form fields "Reuse parameters" restores from a history entry (the reference clips are files it checks apart,
#: the frozen tokens belong to the session's last take)
REUSE_KEYS = tuple(k for k, f in FORM_FIELDS if f not in (None, "ref_audio", "aux_refs", "sv_ref", "semantic_tokens"))


def _steps_choices(steps: Sequence[int], default: int) -> list[tuple[Any, int]]:
    """The sample-steps dropdown of a v3/v4 model: 0 = the version's default, then upstream's choices."""
    return [(T(f"default ({default})", f"默认（{default}）"), 0), *((str(n), n) for n in steps)]


def sovits_form_options(services: Services, sovits: Any, steps: Any, super_sampling: Any) -> tuple[Any, Any]:
    """Updates of the sample-steps dropdown (shown for v3/v4, with that version's choices) and the super-sampling
    checkbox (shown for v3 when the AP-BWE weights are installed; unticked when hidden) for a SoVITS file."""
    try:
        opts = weights.sovits_options(services.settings, sovits) if sovits else None
    except (GSVError, OSError):
        opts = None
    if not opts or not opts["cfm"]:
        return gr.update(visible=False), gr.update(visible=False, value=False)
    choices = _steps_choices(opts["sample_steps"], opts["default_sample_steps"])
    try:
        current = int(steps or 0)
    except (TypeError, ValueError):
        current = 0
    value = current if current in [v for _, v in choices] else 0
    return (gr.update(visible=True, choices=choices, value=value),
            gr.update(visible=opts["super_sampling"], value=bool(super_sampling) and opts["super_sampling"]))


def form_values(values: Sequence[Any]) -> tuple[dict[str, Any], bool]:
    """(request values, random seed?) of the form's inputs in FORM_FIELDS order (inputs appended later may be
    missing from an older API caller's list: they keep their defaults)."""
    named = dict(zip((k for k, _ in FORM_FIELDS), values))
    fields = {f: named.get(k) for k, f in FORM_FIELDS if f is not None}
    fields["aux_refs"] = [str(a) for a in (fields.get("aux_refs") or []) if a]
    # Freeze: the session's last tokens go into the request; unticked, they stay out of it
    if not named.get("freeze"):
        fields["semantic_tokens"] = None
    elif not fields.get("semantic_tokens"):
        raise keyed(GSVError, "tts.freeze_nothing")
    return fields, bool(named.get("random_seed"))


#: TTS form fields a product fills, in output order, with the request-value key each comes from
PRODUCT_FIELDS = tuple((k, f) for k, f in FORM_FIELDS
                       if f not in (None, "gpt_path", "sovits_path", "ref_audio", "aux_refs", "text", "seed",
                                    "sv_ref", "id", "semantic_tokens"))


def _wire_products(services: Services, c: dict[str, Any]) -> None:
    """"Load product": fill the form from a RefAudio product (library) or an exported product zip."""
    outputs = [c["gpt"], c["sovits"], c["ref_audio"], c["aux_refs"], *(c[k] for k, _ in PRODUCT_FIELDS), c["seed"],
               c["random_seed"], c["models_info"], c["product_info"]]

    def fill(values: dict, origin: str):
        def model(pairs, path, kind):
            pairs, value = list(pairs), services.model_choice(path, kind)  # a listed file: its label
            if value not in [v for _, v in pairs]:  # e.g. a model imported with a product: offer it as well
                pairs.append((f"{Path(path).parent.name}/{Path(path).name}", value))
            return gr.update(choices=pairs, value=value)

        seed = int(values.get("seed", -1) if values.get("seed") is not None else -1)
        field_values = []
        for key, src in PRODUCT_FIELDS:
            v = values.get(src)
            field_values.append(0 if key in ("max_tokens", "sample_steps") and not v else (gr.skip() if v is None else v))
        note = say("Loaded **{name}** from {origin}: seed {seed}, {aux} auxiliary reference(s).",
                   "已从{origin}载入 **{name}**：种子 {seed}，{aux} 个辅助参考。", name=values.get("name", ""),
                   origin=origin, seed=seed if seed >= 0 else say("random", "随机"),
                   aux=len(values.get("aux_refs") or []))
        if values.get("note"):
            note += f" ({values['note']})"
        return (model(services.gpt_choices(), values["gpt_path"], "GPT"),
                model(services.sovits_choices(), values["sovits_path"], "SoVITS"),
                values["ref_audio"], list(values.get("aux_refs") or []) or None, *field_values,
                seed if seed >= 0 else gr.skip(), seed < 0,
                services.models_info(values["gpt_path"], values["sovits_path"], lang()), note)

    @user_errors
    def load_product(product_id):
        if product_id in (None, ""):
            raise gr.Error(say("Choose a product first (save one in the RefAudio tab's Products, then press Refresh).",
                               "请先选择一个预设（在 RefAudio 页的“预设”中保存，然后点“刷新”）。"),
                           print_exception=False)
        svc = services.refaudio
        values = svc.product_request_values(int(product_id))
        for key in ("ref_audio",):
            values[key] = str(svc.resolve_served(values[key]))
        values["aux_refs"] = [str(svc.resolve_served(a)) for a in values.get("aux_refs") or []]
        return fill(values, say("the library", "素材库"))

    c["product_load"].click(load_product, c["product"], outputs, api_name="tts_load_product")

    @user_errors
    def load_zip(zip_file):
        values = services.refaudio.preset_from_zip(zip_file)
        return fill(values, Path(str(zip_file)).name)

    c["preset_load"].click(load_zip, c["preset_zip"], outputs, api_name="tts_load_preset")

    def refresh_products():
        return gr.update(choices=_product_choices(services))

    c["product_refresh"].click(refresh_products, None, c["product"], api_name="tts_products")
    on_page_load(refresh_products, None, [c["product"]])


PREVIEW_MAX_PIECES = 40


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip() or "·"


def preview_markdown(outcome: Any) -> str:
    """The TTS tab's text preview (a :class:`pages.services.PreviewOutcome`) as Markdown in the request's language:
    one table row per language segment of each piece, with its phones (Mandarin: pinyin) and the pause after it."""
    if outcome.problem is not None:
        return "⚠ " + error_text(outcome.problem)
    p = outcome.preview
    if p is None:
        return say("*Type a text to see how it will be cut and read.*", "*输入文本即可查看它将如何切分和朗读。*")
    lines = [say("**{n} piece(s)**, {phones} phones · {method} · {version} symbols",
                 "**{n} 个片段**，{phones} 个音素 · {method} · {version} 符号集", n=len(p.pieces), phones=p.phones,
                 method=p.split_method, version=p.version), "",
             say("| # | text (normalised) | language | reading (pinyin / phones) | pause after |",
                 "| # | 文本（规范化后） | 语言 | 读音（拼音 / 音素） | 之后停顿 |"),
             "|---|---|---|---|---|"]
    for n, piece in enumerate(p.pieces[:PREVIEW_MAX_PIECES], 1):
        for i, seg in enumerate(piece.segments):
            reading = " ".join(seg.pinyin) if seg.pinyin else " ".join(seg.phones)
            last = i == len(piece.segments) - 1
            lines.append(f"| {n if i == 0 else ''} | {_cell(seg.norm_text)} | {seg.lang} | {_cell(reading)} | "
                         f"{f'{piece.pause_after:g} s' if last else ''} |")
    if len(p.pieces) > PREVIEW_MAX_PIECES:
        lines.append("")
        lines.append(say("…and {n} more piece(s).", "……还有 {n} 个片段。", n=len(p.pieces) - PREVIEW_MAX_PIECES))
    return "\n".join(lines)


def _warn(gen: Any, prefix: str = "") -> None:
    """A toast for a take that is probably wrong (token cap reached, implausibly long): the summary says it too."""
    for w in gen.warnings[:3]:
        gr.Warning(prefix + w, duration=15)


def _history_rows(services: Services) -> list[list[Any]]:
    return [e.row() for e in services.history.entries()]


def _history_ids(services: Services) -> list[str]:
    return [e.id for e in services.history.entries()]


def _progress_cb(progress):
    return lambda frac, desc: progress(frac, desc=desc)


def _wire(services: Services, c: dict[str, Any]) -> None:
    params = [c[k] for k, _ in FORM_FIELDS]

    freeze_at = [k for k, _ in FORM_FIELDS].index("freeze")

    def make_req(*values, for_batch=False):
        if for_batch and len(values) > freeze_at:  # every CSV line has its own text: nothing to freeze
            values = (*values[:freeze_at], False, *values[freeze_at + 1:])
        fields, random_seed = form_values(values)
        return services.make_request(fields, random_seed=random_seed, for_batch=for_batch)

    def history_updates():
        ids = _history_ids(services)
        return _history_rows(services), gr.update(choices=ids, value=ids[0] if ids else None)

    # models
    @user_errors
    def refresh(gpt, sovits, gpt_b, sovits_b):
        gpts, sovitss = services.gpt_choices(), services.sovits_choices()
        note = services.no_models_message() or services.models_info(_pick(gpts, gpt), _pick(sovitss, sovits), lang())
        return (gr.update(choices=gpts, value=_pick(gpts, gpt)), gr.update(choices=sovitss, value=_pick(sovitss, sovits)),
                gr.update(choices=gpts, value=_pick(gpts, gpt_b, 1)),
                gr.update(choices=sovitss, value=_pick(sovitss, sovits_b, 1)), note)

    c["refresh"].click(refresh, [c["gpt"], c["sovits"], c["gpt_b"], c["sovits_b"]],
                       [c["gpt"], c["sovits"], c["gpt_b"], c["sovits_b"], c["models_info"]], api_name="tts_refresh_models")
    on_page_load(refresh, [c["gpt"], c["sovits"], c["gpt_b"], c["sovits_b"]],
                 [c["gpt"], c["sovits"], c["gpt_b"], c["sovits_b"], c["models_info"]])
    on_page_load(history_updates, None, [c["history"], c["history_pick"]])

    @user_errors
    def models_info(gpt, sovits):
        return services.models_info(gpt, sovits, lang()) or services.no_models_message()

    for key in ("gpt", "sovits"):
        c[key].change(models_info, [c["gpt"], c["sovits"]], c["models_info"], api_name=f"tts_info_{key}")
    for key in ("gpt_b", "sovits_b"):
        c[key].change(models_info, [c["gpt_b"], c["sovits_b"]], c["models_info_b"], api_name=f"tts_info_{key}")

    def sovits_options(sovits, steps, super_sampling):
        return sovits_form_options(services, sovits, steps, super_sampling)

    v34 = [c["sample_steps"], c["super_sampling"]]
    c["sovits"].change(sovits_options, [c["sovits"], *v34], v34, api_name="tts_sovits_options",
                       show_progress="hidden")
    on_page_load(sovits_options, [c["sovits"], *v34], v34)

    # the live text preview: pieces, language per segment, phones, pinyin (the engine's own front end)
    def preview(text, text_lang, split, sovits, pause):
        return preview_markdown(services.text_preview(text, text_lang, split, sovits, pause))

    preview_inputs = [c["text"], c["text_lang"], c["split"], c["sovits"], c["pause"]]
    for key in ("text", "text_lang", "split", "sovits"):
        c[key].change(preview, preview_inputs, c["preview"], api_name="tts_preview" if key == "text" else None,
                      api_visibility="public" if key == "text" else "private", show_progress="hidden",
                      trigger_mode="always_last", concurrency_limit=None)
    on_page_load(preview, preview_inputs, [c["preview"]])

    def keep_sv_ref(audio):
        return audio or None

    c["sv_ref"].change(keep_sv_ref, c["sv_ref"], c["sv_ref_path"], api_visibility="private", queue=False,
                       show_progress="hidden")

    # synthesis
    @user_errors
    def synthesize(*values, progress=gr.Progress()):
        req = make_req(*values)
        gen = services.synthesize(req, progress=_progress_cb(progress))
        _warn(gen)
        rows, pick = history_updates()
        return (gen.entry.file, gen.summary(lang()), gen.entry.file, gen.result.seed, rows, pick,
                gen.result.semantic_tokens)

    c["go"].click(synthesize, params, [c["audio_a"], c["info_a"], c["download"], c["seed_used"], c["history"],
                                      c["history_pick"], c["frozen_tokens"]], api_name="tts", concurrency_id="engine")

    # /tts_ab takes the B pair right after the inputs the form had when it was published; inputs added to the
    # form later (FORM_FIELDS from sample_steps on) follow the B pair, so older API calls keep their meaning
    ab_at = [k for k, _ in FORM_FIELDS].index("sample_steps")

    @user_errors
    def synthesize_ab(*values, progress=gr.Progress()):
        gpt_b, sovits_b = values[ab_at], values[ab_at + 1]
        req = make_req(*values[:ab_at], *values[ab_at + 2:])
        a, b = services.synthesize_ab(req, gpt_b, sovits_b, progress=_progress_cb(progress))
        _warn(a, "A: ")
        _warn(b, "B: ")
        rows, pick = history_updates()
        return (a.entry.file, "**A** · " + a.summary(lang()), b.entry.file, "**B** · " + b.summary(lang()),
                a.result.seed, rows, pick, a.result.semantic_tokens)

    c["go_ab"].click(synthesize_ab, params[:ab_at] + [c["gpt_b"], c["sovits_b"]] + params[ab_at:],
                     [c["audio_a"], c["info_a"], c["audio_b"], c["info_b"], c["seed_used"], c["history"],
                      c["history_pick"], c["frozen_tokens"]], api_name="tts_ab", concurrency_id="engine")

    # /tts_stream takes stream mode and chunk size right after the inputs the form had when it was published;
    # inputs added to the form later (FORM_FIELDS from sv_ref_path on) follow them, so older API calls keep working
    stream_at = [k for k, _ in FORM_FIELDS].index("sv_ref_path")

    @user_errors
    def stream(*values):
        mode, chunk_tokens = values[stream_at], values[stream_at + 1]
        req = make_req(*values[:stream_at], *values[stream_at + 2:])
        n, so_far, first = 0, [], None
        started = time.perf_counter()
        for chunk, done in services.stream(req, mode=mode or "tokens", chunk_tokens=int(chunk_tokens or 24)):
            if chunk is not None:
                n += 1
                first = first if first is not None else time.perf_counter() - started
                if not STREAMING:  # the whole audio so far, replacing the player's content
                    so_far.append(chunk[1])
                    chunk = (chunk[0], np.concatenate(so_far))
                yield (chunk, say("streaming… piece {n} · first audio after {first:.2f} s",
                                  "流式输出中…… 第 {n} 块 · 首段音频用时 {first:.2f} 秒", n=n, first=first),
                       req.seed, gr.skip(), gr.skip(), gr.skip(), gr.skip())
            else:
                _warn(done)
                rows, pick = history_updates()
                note = say("streamed {n} piece(s), first audio after {first:.2f} s · ",
                           "已流式输出 {n} 块，首段音频用时 {first:.2f} 秒 · ", n=n, first=first or 0)
                yield (None if STREAMING else done.entry.file, note + done.summary(lang()), req.seed,
                       done.entry.file, rows, pick, done.result.semantic_tokens)

    c["go_stream"].click(stream, params[:stream_at] + [c["stream_mode"], c["stream_chunk"]] + params[stream_at:],
                         [c["stream_audio"], c["stream_info"], c["seed_used"], c["download"],
                          c["history"], c["history_pick"], c["frozen_tokens"]], api_name="tts_stream",
                         concurrency_id="engine")

    # history
    @user_errors
    def replay(entry_id):
        e = services.history.get(entry_id)
        return e.file, say("{id} · seed {seed} · {duration:.2f} s · RTF {rtf:.3f} · {gpt} + {sovits}",
                           "{id} · 种子 {seed} · {duration:.2f} 秒 · RTF {rtf:.3f} · {gpt} + {sovits}", id=e.id,
                           seed=e.seed, duration=e.duration, rtf=e.rtf, gpt=e.gpt, sovits=e.sovits)

    c["replay"].click(replay, c["history_pick"], [c["history_audio"], c["history_info"]], api_name="history_replay")

    reuse_keys = list(REUSE_KEYS)

    @user_errors
    def reuse(entry_id):
        p = services.history.get(entry_id).params
        field_of = dict(FORM_FIELDS)
        values = []
        for k in reuse_keys:
            v = p.get(field_of[k])
            if k in ("gpt", "sovits") and v:  # the history keeps files; the dropdowns hold labels
                v = services.model_choice(v, "GPT" if k == "gpt" else "SoVITS")
            values.append(gr.skip() if v is None and k not in ("max_tokens", "sample_steps")
                          else (v or 0) if k in ("max_tokens", "sample_steps") else v)
        gpts, sovitss = [v for _, v in services.gpt_choices()], [v for _, v in services.sovits_choices()]
        missing = [Path(v).name for v, kind, have in ((p.get("gpt_path"), "GPT", gpts),
                                                       (p.get("sovits_path"), "SoVITS", sovitss))
                   if services.model_choice(v, kind) not in have]
        if missing:
            raise gr.Error(say("The models of this entry are no longer in the weight folders: {names}",
                               "此条目的模型已不在权重文件夹中：{names}", names=", ".join(missing)),
                           print_exception=False)
        ref = p.get("ref_audio")
        ref_update = ref if ref and Path(ref).is_file() else gr.skip()
        return (*values, False, ref_update, say("Parameters of {id} restored (seed fixed to {seed}).",
                                                "已恢复 {id} 的参数（种子固定为 {seed}）。", id=entry_id,
                                                seed=p.get("seed")))

    c["reuse"].click(reuse, c["history_pick"], [c[k] for k in reuse_keys] + [c["random_seed"], c["ref_audio"],
                                                                             c["history_info"]],
                     api_name="history_reuse")

    def history_list():
        return history_updates()

    c["history_pick"].focus(history_list, None, [c["history"], c["history_pick"]], api_name="history_list")

    # batch
    @user_errors
    def batch(request: gr.Request, csv_file, *values, progress=gr.Progress()):
        req = make_req(*values, for_batch=True)
        key = request.session_hash if request is not None and request.session_hash else "api"
        outcome = services.run_batch(req, csv_file, key=key, progress=_progress_cb(progress))
        headers = list(outcome.rows[0]) if outcome.rows else ["id"]
        rows = [[r.get(k, "") for k in headers] for r in outcome.rows]
        return (outcome.summary(lang()), str(outcome.results_csv), str(outcome.zip_path),
                gr.update(value=rows, headers=headers))

    c["batch_go"].click(batch, [c["batch_csv"]] + params,
                        [c["batch_info"], c["batch_results"], c["batch_zip"], c["batch_table"]], api_name="tts_batch",
                        concurrency_id="engine")

    def cancel(request: gr.Request):
        key = request.session_hash if request is not None and request.session_hash else "api"
        if services.cancel(key):
            return say("Cancelling: the batch stops after the current line (run it again to resume).",
                       "正在取消：批处理将在当前行完成后停止（再次运行即可继续）。")
        return say("No batch is running.", "没有正在运行的批处理。")

    c["batch_cancel"].click(cancel, None, c["batch_info"], api_name="tts_batch_cancel", concurrency_limit=None,
                            queue=False)

    if "transcribe" in c:
        @user_errors
        def transcribe(audio, ref_lang):
            return services.transcribe_reference(audio, ref_lang)

        c["transcribe"].click(transcribe, [c["ref_audio"], c["ref_lang"]], c["ref_text"], api_name="tts_transcribe_ref")
