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

from .common import on_page_load, user_errors

STREAMING = shutil.which("ffmpeg") is not None
from .services import HISTORY_COLUMNS, LANG_LABELS, SPLIT_LABELS, Services

TAGS_HELP = """
**Inline tags** (see `docs/text-frontend.md`):

* `重[chong2]新` — the pinyin in brackets (tone digit 1–5) forces the reading of the character right before it.
* `[pause=0.8]` — 0.8 s of silence at that point (0–10 s).
* A user dictionary (`USER_DICT_PATH = "my_dict.txt"` in `my_config.py`, lines `word pinyin pinyin ...`) fixes the
  reading of whole words everywhere.

Malformed tags are reported with their position. **Reference text**: leave it empty for reference-free mode
(SoVITS v2, v2Pro and v2ProPlus; the timbre still comes from the audio, the prosody less so). SoVITS **v3/v4** always
need the reference text; they have **sample steps** (CFM sampling; "default" = 32 for v3, 8 for v4) and v3 offers
**super-sampling** to 48 kHz when the AP-BWE weights are installed; auxiliary references are not used by v3/v4. **Split method** decides where
long text is cut into fragments; each fragment *i* uses seed + *i*, so a sentence sounds the same alone or in a
paragraph. **A/B** synthesises the same text with the same reference and seed through a second model pair
(for example the baseline against your finetuned model).

**Batch CSV**: a header row with `id,text` and optionally `ref,ref_text,ref_lang,lang,top_k,top_p,temperature,
repetition_penalty,speed,seed,sample_steps,super_sampling` (any synthesis parameter) per row; empty cells take the values of this page. Output: `<id>.wav` and
`results.csv` (id, text, file, duration, RTF, seed, models, status, error), also as one zip. Running the same CSV
again into the same folder resumes; a failing line is recorded and the batch goes on.
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
        c["gpt"] = gr.Dropdown(_choices(gpts), value=_pick(gpts, None), label="GPT 模型 (A)", scale=3,
                               allow_custom_value=False)
        c["sovits"] = gr.Dropdown(_choices(sovitss), value=_pick(sovitss, None), label="SoVITS 模型 (A)", scale=3)
        c["refresh"] = gr.Button("Refresh 刷新", scale=1, size="sm")
    # a callable value is computed on every page load, so startup does not wait for reading the checkpoints
    c["models_info"] = gr.Markdown(lambda: services.no_models_message() or services.models_info(
        _pick(services.gpt_choices(), None), _pick(services.sovits_choices(), None)), elem_id="tts-models-info")

    # -- voice presets from the RefAudio tab -------------------------------------------------------------------
    with gr.Accordion("Load product 载入预设 (a voice preset saved in the RefAudio tab)", open=False):
        with gr.Row(equal_height=True):
            c["product"] = gr.Dropdown(_product_choices(services), label="product 预设", scale=3,
                                       elem_id="tts-product", allow_custom_value=True)
            c["product_refresh"] = gr.Button("Refresh", size="sm", scale=1)
            c["product_load"] = gr.Button("Load product 载入", scale=1, elem_id="tts-product-load")
        with gr.Row(equal_height=True):
            c["preset_zip"] = gr.File(label="…or a product zip 预设压缩包", file_types=[".zip"], type="filepath",
                                      height=80, scale=3, elem_id="tts-preset-zip")
            c["preset_load"] = gr.Button("Load zip 载入压缩包", scale=1, elem_id="tts-preset-load")
        c["product_info"] = gr.Markdown(elem_id="tts-product-info")

    # -- reference and text ------------------------------------------------------------------------------------
    with gr.Row():
        with gr.Column(scale=1):
            c["ref_audio"] = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                      label="参考音频 Reference audio (3–10 s)", elem_id="tts-ref-audio")
            c["ref_text"] = gr.Textbox(label="参考文本 Reference text (empty → reference-free, v2+)", lines=2,
                                       elem_id="tts-ref-text")
            with gr.Row(equal_height=True):
                c["ref_lang"] = gr.Dropdown([(v, k) for k, v in LANG_LABELS.items()], value=D["ref_lang"],
                                            label="Reference language", min_width=220, elem_id="tts-ref-lang")
                if services.asr is not None:
                    c["transcribe"] = gr.Button("Transcribe the reference with ASR 识别参考文本", size="sm",
                                                min_width=160)
            c["aux_refs"] = gr.File(file_count="multiple", type="filepath", file_types=["audio"],
                                    label="辅助参考 Auxiliary references (timbre averaged in; optional)", height=130,
                                    elem_id="tts-aux-refs")
        with gr.Column(scale=1):
            c["text"] = gr.Textbox(label="合成文本 Text to synthesise", lines=6, elem_id="tts-text",
                                   value="今天天气很好，我们去公园散步吧。")
            with gr.Row():
                c["text_lang"] = gr.Dropdown([(v, k) for k, v in LANG_LABELS.items()], value=D["text_lang"],
                                             label="Text language")
                c["split"] = gr.Dropdown([(v, k) for k, v in SPLIT_LABELS.items()], value=D["split_method"],
                                         label="Split method 切分")
            with gr.Accordion("Help: inline pinyin and pause tags, modes 帮助", open=False):
                gr.Markdown(TAGS_HELP)

    # -- parameters --------------------------------------------------------------------------------------------
    with gr.Accordion("Sampling and prosody 参数", open=True):
        with gr.Row():
            c["top_k"] = gr.Slider(1, 100, value=D["top_k"], step=1, label="top_k")
            c["top_p"] = gr.Slider(0.05, 1.0, value=D["top_p"], step=0.01, label="top_p")
            c["temperature"] = gr.Slider(0.0, 2.0, value=D["temperature"], step=0.01, label="temperature")
            c["repetition_penalty"] = gr.Slider(0.5, 2.0, value=D["repetition_penalty"], step=0.01,
                                                label="repetition penalty")
        with gr.Row():
            c["speed"] = gr.Slider(0.6, 1.65, value=D["speed"], step=0.05, label="speed 语速")
            c["pause"] = gr.Slider(0.0, 1.0, value=D["pause"], step=0.01, label="pause between fragments (s)")
            c["max_tokens"] = gr.Slider(0, 1500, value=D["max_tokens"] or 0, step=1, elem_id="tts-max-tokens",
                                        label="max semantic tokens per fragment (0 = model limit; 25 per second)")
        with gr.Row():
            c["seed"] = gr.Number(value=0, precision=0, label="seed", minimum=0, maximum=2**32 - 1)
            c["random_seed"] = gr.Checkbox(value=True, label="random seed each time 随机种子")
            c["seed_used"] = gr.Number(label="seed used 实际种子", interactive=False, precision=0)
    with gr.Accordion("Advanced 高级 (noise, batching)", open=False):
        with gr.Row():
            c["noise_scale"] = gr.Slider(0.0, 1.0, value=D["noise_scale"], step=0.01, label="noise scale 噪声",
                                         info="SoVITS sampling noise (upstream's default 0.5)")
            c["batch_size"] = gr.Slider(1, 32, value=D["batch_size"], step=1, label="batch size",
                                        info="fragments the GPT decodes together")
            c["parallel"] = gr.Checkbox(value=D["parallel"], label="parallel decoding 并行推理",
                                        info="decode fragments as a batch (upstream's parallel_infer)")
        with gr.Row():
            c["stream_mode"] = gr.Radio([("token-level 逐词元 (first audio soonest)", "tokens"),
                                         ("per fragment 逐片段", "fragments")], value="tokens",
                                        label="Stream mode 流式模式", elem_id="tts-stream-mode",
                                        info="token-level: audio every few GPT tokens; SoVITS v3/v4 stream per "
                                             "fragment")
            c["stream_chunk"] = gr.Slider(4, 100, value=24, step=1, label="stream chunk (tokens) 流式块大小",
                                          elem_id="tts-stream-chunk",
                                          info="25 tokens = 1 s of speech; the first piece comes after half")
    # SoVITS v3/v4 only: shown when the chosen SoVITS model is one (see _wire: sovits_options)
    with gr.Row():
        c["sample_steps"] = gr.Dropdown(_steps_choices((4, 8, 16, 32, 64, 128), 32), value=D["sample_steps"] or 0,
                                        label="sample steps 采样步数 (SoVITS v3/v4)", visible=False,
                                        allow_custom_value=True, elem_id="tts-sample-steps",
                                        info="CFM sampling steps: more is slower and cleaner")
        c["super_sampling"] = gr.Checkbox(value=D["super_sampling"], visible=False, elem_id="tts-super-sampling",
                                          label="super-sampling 超采样 24→48 kHz (SoVITS v3, AP-BWE)")

    # -- outputs -----------------------------------------------------------------------------------------------
    with gr.Row():
        c["go"] = gr.Button("合成 Synthesise", variant="primary", elem_id="tts-go")
        c["go_stream"] = gr.Button("流式 Stream", elem_id="tts-stream")
        c["go_ab"] = gr.Button("A/B 对比 Compare A and B", elem_id="tts-ab")
    with gr.Accordion("A/B: the B model pair (baseline vs finetuned)", open=False):
        with gr.Row():
            c["gpt_b"] = gr.Dropdown(_choices(gpts), value=_pick(gpts, None, 1), label="GPT 模型 (B)")
            c["sovits_b"] = gr.Dropdown(_choices(sovitss), value=_pick(sovitss, None, 1), label="SoVITS 模型 (B)")
        c["models_info_b"] = gr.Markdown()
    with gr.Row(equal_height=True):
        with gr.Column():
            c["audio_a"] = gr.Audio(label="A", type="filepath", interactive=False, buttons=["download"],
                                    elem_id="tts-audio-a")
            c["info_a"] = gr.Markdown(elem_id="tts-info-a")
        with gr.Column():
            c["audio_b"] = gr.Audio(label="B", type="filepath", interactive=False, buttons=["download"],
                                    elem_id="tts-audio-b")
            c["info_b"] = gr.Markdown(elem_id="tts-info-b")
    with gr.Row():
        # gradio encodes streamed audio with ffmpeg; without it the player shows the audio so far after each fragment
        c["stream_audio"] = gr.Audio(label="Streaming output 流式输出", streaming=STREAMING, autoplay=STREAMING,
                                     interactive=False, elem_id="tts-stream-audio")
        c["stream_info"] = gr.Markdown(elem_id="tts-stream-info")
    c["download"] = gr.File(label="Download the last take (wav)", interactive=False, height=60)

    # -- history -----------------------------------------------------------------------------------------------
    with gr.Accordion("History 历史 (last generations)", open=False):
        c["history"] = gr.Dataframe(headers=HISTORY_COLUMNS, value=_history_rows(services), interactive=False,
                                    wrap=True, elem_id="tts-history", max_height=360,
                                    column_widths=["13%", "7%", "20%", "18%", "8%", "7%", "6%", "21%"])
        with gr.Row():
            c["history_pick"] = gr.Dropdown(_history_ids(services), label="entry", scale=3)
            c["replay"] = gr.Button("▶ Replay", scale=1)
            c["reuse"] = gr.Button("Reuse parameters 复用参数", scale=1)
        c["history_audio"] = gr.Audio(label="Replay", type="filepath", interactive=False, buttons=["download"])
        c["history_info"] = gr.Markdown()

    # -- batch -------------------------------------------------------------------------------------------------
    with gr.Accordion("Batch export 批量导出 (CSV: id,text[,ref,ref_text])", open=False):
        with gr.Row():
            c["batch_csv"] = gr.File(label="CSV", file_types=[".csv"], type="filepath", elem_id="tts-batch-csv")
            with gr.Column():
                c["batch_go"] = gr.Button("Run batch 开始", variant="primary", elem_id="tts-batch-go")
                c["batch_cancel"] = gr.Button("Cancel 取消", variant="stop", elem_id="tts-batch-cancel")
        c["batch_info"] = gr.Markdown(elem_id="tts-batch-info")
        with gr.Row():
            c["batch_results"] = gr.File(label="results.csv", interactive=False)
            c["batch_zip"] = gr.File(label="wavs + results (zip)", interactive=False)
        c["batch_table"] = gr.Dataframe(interactive=False, wrap=True)

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
               ("super_sampling", "super_sampling"))


def _steps_choices(steps: Sequence[int], default: int) -> list[tuple[str, int]]:
    """The sample-steps dropdown of a v3/v4 model: 0 = the version's default, then upstream's choices."""
    return [(f"default 默认 ({default})", 0), *((str(n), n) for n in steps)]


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
    return fields, bool(named.get("random_seed"))


#: TTS form fields a product fills, in output order, with the request-value key each comes from
PRODUCT_FIELDS = tuple((k, f) for k, f in FORM_FIELDS
                       if f not in (None, "gpt_path", "sovits_path", "ref_audio", "aux_refs", "text", "seed"))


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
        note = (f"Loaded **{values.get('name', '')}** from {origin}: seed "
                f"{seed if seed >= 0 else 'random'}, {len(values.get('aux_refs') or [])} auxiliary reference(s).")
        if values.get("note"):
            note += f" ({values['note']})"
        return (model(services.gpt_choices(), values["gpt_path"], "GPT"),
                model(services.sovits_choices(), values["sovits_path"], "SoVITS"),
                values["ref_audio"], list(values.get("aux_refs") or []) or None, *field_values,
                seed if seed >= 0 else gr.skip(), seed < 0,
                services.models_info(values["gpt_path"], values["sovits_path"]), note)

    @user_errors
    def load_product(product_id):
        if product_id in (None, ""):
            raise GSVError("Choose a product first (save one in the RefAudio tab's Products, then press Refresh).")
        svc = services.refaudio
        values = svc.product_request_values(int(product_id))
        for key in ("ref_audio",):
            values[key] = str(svc.resolve_served(values[key]))
        values["aux_refs"] = [str(svc.resolve_served(a)) for a in values.get("aux_refs") or []]
        return fill(values, "the library")

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

    def make_req(*values, for_batch=False):
        fields, random_seed = form_values(values)
        return services.make_request(fields, random_seed=random_seed, for_batch=for_batch)

    def history_updates():
        ids = _history_ids(services)
        return _history_rows(services), gr.update(choices=ids, value=ids[0] if ids else None)

    # models
    @user_errors
    def refresh(gpt, sovits, gpt_b, sovits_b):
        gpts, sovitss = services.gpt_choices(), services.sovits_choices()
        note = services.no_models_message() or services.models_info(_pick(gpts, gpt), _pick(sovitss, sovits))
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
        return services.models_info(gpt, sovits) or services.no_models_message()

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

    # synthesis
    @user_errors
    def synthesize(*values, progress=gr.Progress()):
        req = make_req(*values)
        gen = services.synthesize(req, progress=_progress_cb(progress))
        _warn(gen)
        rows, pick = history_updates()
        return gen.entry.file, gen.summary(), gen.entry.file, gen.result.seed, rows, pick

    c["go"].click(synthesize, params, [c["audio_a"], c["info_a"], c["download"], c["seed_used"], c["history"],
                                      c["history_pick"]], api_name="tts", concurrency_id="engine")

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
        return (a.entry.file, "**A** · " + a.summary(), b.entry.file, "**B** · " + b.summary(), a.result.seed, rows,
                pick)

    c["go_ab"].click(synthesize_ab, params[:ab_at] + [c["gpt_b"], c["sovits_b"]] + params[ab_at:],
                     [c["audio_a"], c["info_a"], c["audio_b"], c["info_b"], c["seed_used"], c["history"],
                      c["history_pick"]], api_name="tts_ab", concurrency_id="engine")

    @user_errors
    def stream(*values):
        *values, mode, chunk_tokens = values
        req = make_req(*values)
        n, so_far, first = 0, [], None
        started = time.perf_counter()
        for chunk, done in services.stream(req, mode=mode or "tokens", chunk_tokens=int(chunk_tokens or 24)):
            if chunk is not None:
                n += 1
                first = first if first is not None else time.perf_counter() - started
                if not STREAMING:  # the whole audio so far, replacing the player's content
                    so_far.append(chunk[1])
                    chunk = (chunk[0], np.concatenate(so_far))
                yield (chunk, f"streaming… piece {n} · first audio after {first:.2f} s", req.seed, gr.skip(),
                       gr.skip(), gr.skip())
            else:
                _warn(done)
                rows, pick = history_updates()
                note = f"streamed {n} piece(s), first audio after {first or 0:.2f} s · " + done.summary()
                yield (None if STREAMING else done.entry.file, note, req.seed, done.entry.file, rows, pick)

    c["go_stream"].click(stream, params + [c["stream_mode"], c["stream_chunk"]],
                         [c["stream_audio"], c["stream_info"], c["seed_used"], c["download"],
                                          c["history"], c["history_pick"]], api_name="tts_stream",
                         concurrency_id="engine")

    # history
    @user_errors
    def replay(entry_id):
        e = services.history.get(entry_id)
        return e.file, f"{e.id} · seed {e.seed} · {e.duration:.2f} s · RTF {e.rtf:.3f} · {e.gpt} + {e.sovits}"

    c["replay"].click(replay, c["history_pick"], [c["history_audio"], c["history_info"]], api_name="history_replay")

    reuse_keys = [k for k, f in FORM_FIELDS if f not in (None, "ref_audio", "aux_refs")]

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
            raise gr.Error(f"The models of this entry are no longer in the weight folders: {', '.join(missing)}")
        ref = p.get("ref_audio")
        ref_update = ref if ref and Path(ref).is_file() else gr.skip()
        return (*values, False, ref_update, f"Parameters of {entry_id} restored (seed fixed to {p.get('seed')}).")

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
        return (outcome.summary(), str(outcome.results_csv), str(outcome.zip_path),
                gr.update(value=rows, headers=headers))

    c["batch_go"].click(batch, [c["batch_csv"]] + params,
                        [c["batch_info"], c["batch_results"], c["batch_zip"], c["batch_table"]], api_name="tts_batch",
                        concurrency_id="engine")

    def cancel(request: gr.Request):
        key = request.session_hash if request is not None and request.session_hash else "api"
        if services.cancel(key):
            return "Cancelling: the batch stops after the current line (run it again to resume)."
        return "No batch is running."

    c["batch_cancel"].click(cancel, None, c["batch_info"], api_name="tts_batch_cancel", concurrency_limit=None,
                            queue=False)

    if "transcribe" in c:
        @user_errors
        def transcribe(audio, lang):
            return services.transcribe_reference(audio, lang)

        c["transcribe"].click(transcribe, [c["ref_audio"], c["ref_lang"]], c["ref_text"], api_name="tts_transcribe_ref")
