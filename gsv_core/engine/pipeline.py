"""TTSEngine: text + reference -> speech, the whole GPT-SoVITS pipeline in process.

Stages, timed separately: reference (decode, prompt tokens, spectrogram, speaker embedding; cached), frontend
(split, normalise, g2p), bert (phone-level features), s1 (GPT semantic tokens, batched), s2 (SoVITS decode),
post (peak guard, pauses, joining, v3 super-sampling).

SoVITS v3/v4 decode through :mod:`.cfm_decode`: the reference's CFM prompt (timbre, prompt features and mel) is built
once per reference, model and reference text and cached; the fragments of a request are decoded together so the CFM
steps run batched across fragments (``batch_size`` per call; a fragment's audio does not depend on its batch); the
vocoder's rate (24 kHz v3, 48 kHz v4; 48 kHz for v3 super-sampled with AP-BWE) is the result's rate, and pauses are
sized at that rate.

Streaming (:meth:`TTSEngine.stream`): ``mode="tokens"`` (default) emits SoVITS audio every few semantic tokens
while the GPT is still decoding (:mod:`.streaming`; v1/v2/v2Pro/v2ProPlus), ``mode="fragments"`` one fragment at a
time (the only mode for v3/v4, as upstream).

Freeze: a request carrying ``semantic_tokens`` (one token list per fragment, e.g. ``result.semantic_tokens`` of an
earlier take) skips the GPT and its BERT features; SoVITS decodes those tokens with the request's speed, noise,
references and model (upstream's "if_freeze"). ``split_bucket`` orders a GPT batch group by phone count before it is
cut into batches. ``sv_ref`` (v2Pro/v2ProPlus) gives the main reference's speaker embedding from another clip.

Determinism: fragment ``i`` of a request with seed ``s`` samples its GPT tokens from its own generator seeded with
``s + i`` and draws its SoVITS noise from another seeded with ``s + i`` (frame by frame, so that the token stream uses
the same noise), so a sentence comes out the same whether it is synthesised alone, in a batch, in a multi-request
batch or streamed per fragment (up to float rounding from batch padding); the token-level stream differs from it
only at the joins of its pieces (tested bounds in tests/test_streaming.py).
"""
from __future__ import annotations

import queue
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..errors import GSVError
from ..messages import keyed
from ..versions import VERSIONS, is_cfm, is_pro
from ..loading import check_pairing
from ..models.s1 import MAX_DECODE_STEPS, fixed_length_hook
from ..models.sampling import SamplingParams
from . import cfm_decode
from .reference import ReferenceCache
from .registry import ModelRegistry
from .request import AudioChunk, FragmentInfo, RequestError, SynthesisRequest, SynthesisResult, _token_lists
from .streaming import ChunkDecoder, StreamPlan, frame_noise
from .textfeatures import TextFeaturizer, TextUnit
from .tts_log import TTSLog

Progress = Callable[[float, str], None]
#: how :meth:`TTSEngine.stream` cuts the audio: pieces of fragments while the GPT decodes, or whole fragments
STREAM_MODES = ("tokens", "fragments")


class Cancelled(GSVError):
    """The caller cancelled the job."""


@dataclass
class _Fragment:
    text: str
    unit: TextUnit
    bert: torch.Tensor  # [1024, n_phones]
    seed: int
    pause_after: float
    tokens: Optional[torch.Tensor] = None
    audio: Optional[np.ndarray] = None
    hit_limit: bool = False


@dataclass
class _Job:
    request: SynthesisRequest
    gpt: Any
    gpt_info: Any
    sovits: Any
    sovits_info: Any
    seed: int
    prompt_ids: Optional[torch.Tensor]
    prompt_bert: Optional[torch.Tensor]
    prompt_tokens: Optional[torch.Tensor]
    specs: list
    sv: Optional[list]
    fragments: list[_Fragment]
    timings: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    rate: int = 32000  # sample rate of the decoded fragments
    cfm_ref: Any = None  # v3/v4: the reference's CFMReference
    vocoder: Any = None  # v3/v4
    super_sampler: Any = None  # v3 with super_sampling: the AP-BWE model applied to the joined audio
    condition: Any = None  # v1/v2/Pro: the references' ReferenceCondition, computed once per request
    frozen: bool = False  # the request brought its semantic tokens ("freeze"): no GPT run

    @property
    def pending(self) -> list["_Fragment"]:
        """The fragments whose semantic tokens the GPT still has to predict (none for a frozen request)."""
        return [] if self.frozen else self.fragments

    @property
    def s1_group_key(self) -> tuple:
        r = self.request
        prompt = None if self.prompt_tokens is None else tuple(self.prompt_tokens.tolist())
        return (id(self.gpt), prompt, r.top_k, r.top_p, r.temperature, r.repetition_penalty, r.parallel, r.max_tokens,
                r.split_bucket)


class TTSEngine:
    """Thread-safe: one engine serves every tab and job; models come from its :class:`ModelRegistry`."""

    def __init__(self, registry: ModelRegistry, bert_dir: Any = None, hubert_dir: Any = None, sv_path: Any = None,
                 log_path: Any = "settings"):
        self.registry = registry
        self.settings = self.registry.settings
        self.refs = ReferenceCache()
        self.bert_dir, self.hubert_dir, self.sv_path = bert_dir, hubert_dir, sv_path
        self.text = self._new_text_featurizer()
        self.log = TTSLog(self.settings.tts_log_csv if log_path == "settings" else log_path)
        #: Benchmarks only: fragment text -> exact number of semantic tokens to generate (EOS forced after it, as
        #: the shared workload prescribes so that both implementations do identical work). None in normal use.
        self.fixed_token_count: Optional[Callable[[str], int]] = None
        self.gpt_path: Optional[Path] = None
        self.sovits_path: Optional[Path] = None
        self._lock = threading.Lock()

    def _new_text_featurizer(self) -> TextFeaturizer:
        options = dict(use_g2pw=bool(getattr(self.settings, "use_g2pw", True)),
                       user_dict_path=getattr(self.settings, "user_dict_path", None))
        return TextFeaturizer(lambda: self.registry.bert(self.bert_dir), self.registry.dtype, options)

    def clear_caches(self) -> None:
        """Forget decoded references and text features (models stay loaded)."""
        self.refs = ReferenceCache()
        self.text = self._new_text_featurizer()

    # -- model selection ---------------------------------------------------------------------------------------

    def set_models(self, gpt_path: Any = None, sovits_path: Any = None) -> None:
        """Choose the default GPT and/or SoVITS weights; the other models (BERT, HuBERT, SV) stay loaded."""
        if gpt_path is not None:
            self.registry.gpt(gpt_path)
            self.gpt_path = Path(gpt_path)
        if sovits_path is not None:
            self.registry.sovits(sovits_path)
            self.sovits_path = Path(sovits_path)

    # -- public API --------------------------------------------------------------------------------------------

    def synthesize(self, request: SynthesisRequest, progress: Optional[Progress] = None,
                   cancel: Optional[threading.Event] = None) -> SynthesisResult:
        return self.synthesize_many([request], progress=progress, cancel=cancel)[0]

    def synthesize_many(self, requests: Sequence[SynthesisRequest], progress: Optional[Progress] = None,
                        cancel: Optional[threading.Event] = None) -> list[SynthesisResult]:
        """Several requests; fragments of requests that share GPT, prompt and sampling settings are decoded in
        the same GPT batches. Results come back in request order."""
        report = progress or (lambda *_: None)
        with torch.inference_mode():
            jobs = []
            for n, req in enumerate(requests):
                _check(cancel)
                report(0.1 * n / max(1, len(requests)), "preparing text and reference")
                jobs.append(self._prepare(req))
            total = sum(len(j.fragments) for j in jobs)
            done = 0

            def step(what: str) -> None:
                nonlocal done
                done += 1
                report(0.1 + 0.9 * done / max(1, 2 * total), what)

            self._semantic(jobs, cancel, step)
            for job in jobs:
                if job.cfm_ref is not None:  # v3/v4: the CFM steps of batch_size fragments run together
                    size = job.request.batch_size
                    for start in range(0, len(job.fragments), size):
                        _check(cancel)
                        group = job.fragments[start : start + size]
                        self._decode_cfm(job, group)
                        for _ in group:
                            step("synthesising audio")
                    continue
                for frag in job.fragments:
                    _check(cancel)
                    self._decode(job, frag)
                    step("synthesising audio")
            return [self._finish(job) for job in jobs]

    def stream(self, request: SynthesisRequest, cancel: Optional[threading.Event] = None, mode: str = "tokens",
               plan: Optional[StreamPlan] = None) -> Iterator[AudioChunk]:
        """Yield the audio as it is made: ``mode="tokens"`` pieces of a fragment every ``plan.chunk_tokens`` semantic
        tokens while the GPT still decodes it (first audio after ``plan.first_chunk_tokens``); ``mode="fragments"``
        each fragment (with its pause) once it is decoded, GPT batches as in :meth:`synthesize` (``batch_size=1``
        for the lowest latency). SoVITS v3/v4 always stream by fragment (their CFM decodes whole fragments).
        A fragment's last piece carries its :class:`FragmentInfo` and its pause; the very last piece has ``last``.
        Closing the iterator or setting ``cancel`` stops the work within one GPT step."""
        if mode not in STREAM_MODES:
            raise RequestError(f"unknown stream mode {mode!r}; use one of {', '.join(STREAM_MODES)}")
        with torch.inference_mode():
            job = self._prepare(request)
        if mode == "fragments" or job.cfm_ref is not None or job.frozen:  # frozen tokens: no GPT to stream from
            yield from self._stream_fragments(job, cancel)
        else:
            yield from self._stream_tokens(job, cancel, plan or StreamPlan())
        self._finish(job)

    def _stream_fragments(self, job: _Job, cancel: Optional[threading.Event]) -> Iterator[AudioChunk]:
        size = job.request.batch_size if job.request.parallel else 1
        index = 0
        for start in range(0, len(job.fragments), size):
            group = job.fragments[start : start + size]
            _check(cancel)
            if not job.frozen:
                with torch.inference_mode():  # not held across a yield: the consumer's code runs outside it
                    self._run_s1(job, group)
            for frag in group:
                _check(cancel)
                with torch.inference_mode():
                    if job.cfm_ref is not None:
                        self._decode_cfm(job, [frag])
                    else:
                        self._decode(job, frag)
                    chunk = _with_pause(_peak_guard(frag.audio), frag.pause_after, job.rate)
                    rate = job.rate
                    if job.super_sampler is not None:  # as upstream's streaming mode: each piece on its own
                        chunk, rate = self._super_sample(job, chunk)
                info = self._fragment_info(job, frag)
                yield AudioChunk(rate, chunk, index, index == len(job.fragments) - 1, info)
                index += 1

    def _stream_tokens(self, job: _Job, cancel: Optional[threading.Event], plan: StreamPlan) -> Iterator[AudioChunk]:
        """The GPT and the SoVITS pieces run one after the other in a worker thread (no two compete for the
        cores); its pieces come through a queue, so this generator yields while the worker goes on decoding."""
        pieces: "queue.Queue[Any]" = queue.Queue()
        stop = threading.Event()
        done = object()

        def stopped() -> bool:
            return stop.is_set() or (cancel is not None and cancel.is_set())

        def work() -> None:
            try:
                with torch.inference_mode():
                    for n, frag in enumerate(job.fragments):
                        if stopped():
                            raise Cancelled("Synthesis was cancelled.")
                        self._stream_fragment(job, frag, plan, stopped,
                                              lambda audio, info, n=n: pieces.put((audio, info, n)))
                pieces.put(done)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                pieces.put(exc)

        worker = threading.Thread(target=work, name="gsv-stream", daemon=True)
        worker.start()
        index, last_fragment = 0, len(job.fragments) - 1
        try:
            while True:
                item = pieces.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                audio, info, n = item
                yield AudioChunk(job.rate, audio, index, info is not None and n == last_fragment, info)
                index += 1
        finally:
            stop.set()
            worker.join()

    def _stream_fragment(self, job: _Job, frag: _Fragment, plan: StreamPlan, stopped: Callable[[], bool],
                         emit: Callable[[np.ndarray, Optional[FragmentInfo]], None]) -> None:
        """One fragment, token-level: GPT steps with SoVITS pieces decoded in between (see :mod:`.streaming`)."""
        r = job.request
        device = self.registry.device
        limit = job.gpt.config.early_stop_num if r.max_tokens is None else min(job.gpt.config.early_stop_num,
                                                                                r.max_tokens - 1)
        text_ids = torch.as_tensor(frag.unit.ids, dtype=torch.long, device=device)
        decoder = ChunkDecoder(job.sovits, text_ids, job.condition,
                               noise_scale=r.noise_scale, speed=r.speed,
                               generator=torch.Generator(device=device).manual_seed(frag.seed),
                               max_tokens=min(limit + 1, MAX_DECODE_STEPS), plan=plan)
        drawn: list[int] = []
        kept: list[np.ndarray] = []
        decode_time = 0.0

        def piece(tokens: torch.Tensor, final: bool) -> None:
            nonlocal decode_time
            t0 = time.perf_counter()
            audio = np.clip(decoder.push(tokens, final), -1.0, 1.0)
            decode_time += time.perf_counter() - t0
            kept.append(audio)
            if final:
                frag.audio = np.concatenate(kept).astype(np.float32)
                emit(_with_pause(audio, frag.pause_after, job.rate), self._fragment_info(job, frag))
            elif audio.size:
                emit(audio, None)

        def on_token(step: int, rows: list, chosen: torch.Tensor) -> None:
            if stopped():
                raise Cancelled("Synthesis was cancelled.")
            drawn.append(int(chosen[0]))
            # the newest token may still be dropped (it can be EOS, or the step that ends the row): decode the
            # ones before it
            if decoder.due(len(drawn) - 1):
                piece(torch.as_tensor(drawn[:-1], dtype=torch.long, device=device), final=False)

        self._run_s1_mixed([(job, frag)], token_hook=on_token)
        job.timings["s1"] -= decode_time  # _run_s1_mixed timed the pieces decoded inside it as GPT time
        piece(frag.tokens, final=True)
        job.timings["s2"] += decode_time

    # -- preparation -------------------------------------------------------------------------------------------

    def _prepare(self, req: SynthesisRequest) -> _Job:
        req.validate()
        frozen = _token_lists(req.semantic_tokens)
        max_chars = int(getattr(self.settings, "max_text_chars", 0) or 0)
        if max_chars and len(req.text) > max_chars:
            raise RequestError(f"The text has {len(req.text)} characters; one request takes at most {max_chars} "
                               "(MAX_TEXT_CHARS in my_config.py). Split it, or synthesise it line by line with a "
                               "batch CSV.")
        started = time.perf_counter()
        timings = dict.fromkeys(("reference", "frontend", "bert", "s1", "s2", "post"), 0.0)
        gpt, gpt_info = self.registry.gpt(req.gpt_path or self.gpt_path)
        sovits, sovits_info = self.registry.sovits(req.sovits_path or self.sovits_path)
        check_pairing(gpt_info, sovits_info)
        version, symbols = sovits_info.version, sovits_info.symbol_version
        if req.ref_free and version == "v1":
            raise RequestError("SoVITS v1 models need the reference text (reference-free mode starts with v2).")
        cfm = is_cfm(version)
        vocoder = super_sampler = None
        rate = VERSIONS[version].sample_rate if version in VERSIONS else 32000
        if cfm:
            if req.ref_free:  # as upstream: the CFM continues the reference's own mel, aligned by its text
                raise RequestError(f"SoVITS {version} models need the reference text: reference-free mode is for "
                                   "v2, v2Pro and v2ProPlus. Type (or transcribe) what the reference says.")
            vocoder = self.registry.vocoder(version)  # a missing vocoder is named before any work
            rate = cfm_decode.spec_for(version).out_rate
            if req.super_sampling and VERSIONS[version].super_sampling_rate:
                super_sampler = self.registry.super_sampler()

        with _timed(timings, "reference"):
            ref = self.refs.reference(req.ref_audio)
            # v3/v4 take the timbre from the main reference only (upstream ignores auxiliary references there)
            aux = [] if cfm else [self.refs.reference(a, check_duration=False) for a in req.aux_refs
                                  if a not in (None, "")]
            device, dtype = self.registry.device, self.registry.dtype
            specs = [self.refs.spectrogram(r, device, dtype) for r in [ref, *aux]]
            sv = None
            if is_pro(version):
                speaker = self.registry.speaker(self.sv_path)
                # the speaker embedding of the main reference comes from sv_ref when one is given (a clip chosen
                # for the timbre, apart from the prompt whose text and prosody the GPT continues)
                sv_source = ref
                if req.sv_ref is not None and not (isinstance(req.sv_ref, str) and not req.sv_ref.strip()):
                    sv_source = self.refs.reference(req.sv_ref, check_duration=False)
                sv = [self.refs.speaker_embedding(r, speaker).to(device, dtype) for r in [sv_source, *aux]]
            prompt_tokens = hubert = None
            if not req.ref_free:
                hubert = self.registry.hubert(self.hubert_dir)
                prompt_tokens = self.refs.prompt_tokens(ref, hubert, sovits, str(sovits_info.path))

        prompt_ids = prompt_bert = None
        if not req.ref_free:
            prompt_unit = self.text.prompt_unit(req.ref_text, req.ref_lang, symbols, timings)
            prompt_ids = torch.as_tensor(prompt_unit.ids, dtype=torch.long)
            if frozen is None:  # BERT features feed only the GPT
                prompt_bert = self.text.bert_for(prompt_unit, timings)
        cfm_ref = None
        if cfm:
            with _timed(timings, "reference"):
                cfm_ref = self.refs.cfm_reference(ref, sovits, str(sovits_info.path), prompt_tokens, prompt_ids,
                                                  specs[0], id(hubert))

        seed = req.seed if req.seed >= 0 else secrets.randbelow(2**32 - 1024)
        max_fragments = int(getattr(self.settings, "max_fragments", 0) or 0)
        fragments = []
        for piece, pause_after in self.text.fragments(req.text, req.text_lang, req.split_method, symbols,
                                                      req.pause, timings):
            if max_fragments and len(fragments) >= max_fragments:
                raise RequestError(f"The text is cut into more than {max_fragments} pieces (MAX_FRAGMENTS in "
                                   "my_config.py); split it, or use a split method that makes longer pieces.")
            bert = self.text.bert_for(piece[1], timings) if frozen is None else None
            fragments.append(_Fragment(piece[0], piece[1], bert, (seed + len(fragments)) % 2**32, pause_after))
        if not fragments:
            raise RequestError("Nothing to synthesise: the text has no speakable content after normalisation.")
        if frozen is not None:  # "freeze": the tokens of an earlier take, fragment by fragment; no GPT run
            if len(frozen) != len(fragments):
                raise keyed(RequestError, "tts.freeze_mismatch", tokens=len(frozen), fragments=len(fragments))
            for frag, tokens in zip(fragments, frozen):
                frag.tokens = torch.as_tensor(tokens, dtype=torch.long)
        condition = None
        if not cfm:
            with _timed(timings, "reference"):
                condition = sovits.reference_condition(specs, sv)
        return _Job(req, gpt, gpt_info, sovits, sovits_info, seed, prompt_ids, prompt_bert, prompt_tokens, specs,
                    sv, fragments, timings, started, rate, cfm_ref, vocoder, super_sampler, condition,
                    frozen=frozen is not None)

    # -- GPT ---------------------------------------------------------------------------------------------------

    def _semantic(self, jobs: list[_Job], cancel, step: Callable[[str], None]) -> None:
        groups: dict[tuple, list[tuple[_Job, _Fragment]]] = {}
        for job in jobs:
            for frag in job.pending:
                groups.setdefault(job.s1_group_key, []).append((job, frag))
            for _ in range(len(job.fragments) - len(job.pending)):  # frozen: the request brought its tokens
                step("reusing the frozen semantic tokens")
        for members in groups.values():
            size = members[0][0].request.batch_size if members[0][0].request.parallel else 1
            if members[0][0].request.split_bucket and size > 1:
                # fragments of similar phone counts in the same batch (less padding); each fragment keeps its own
                # seed, so its tokens are the same in any batch
                members = sorted(members, key=lambda m: len(m[1].unit.ids))
            for start in range(0, len(members), size):
                _check(cancel)
                batch = members[start : start + size]
                self._run_s1_mixed(batch)
                for _ in batch:
                    step("predicting semantic tokens")

    def _run_s1(self, job: _Job, fragments: list[_Fragment]) -> None:
        self._run_s1_mixed([(job, f) for f in fragments])

    def _run_s1_mixed(self, batch: list[tuple[_Job, _Fragment]], token_hook: Optional[Callable] = None) -> None:
        job0 = batch[0][0]
        r = job0.request
        phones, berts = [], []
        for job, frag in batch:
            ids = torch.as_tensor(frag.unit.ids, dtype=torch.long)
            if job.prompt_ids is not None:
                ids = torch.cat([job.prompt_ids, ids])
                bert = torch.cat([job.prompt_bert, frag.bert], dim=1)
            else:
                bert = frag.bert
            phones.append(ids.to(self.registry.device))
            berts.append(bert.to(self.registry.device, job0.gpt.bert_proj.weight.dtype))  # int8 mode runs in bf16
        generators = [torch.Generator().manual_seed(frag.seed) for _, frag in batch]
        params = SamplingParams(top_k=r.top_k, top_p=r.top_p, temperature=r.temperature,
                                repetition_penalty=r.repetition_penalty)
        t0 = time.perf_counter()
        prompt = None if job0.prompt_tokens is None else job0.prompt_tokens.to(self.registry.device)
        limit = job0.gpt.config.early_stop_num
        if r.max_tokens is not None:  # a row stops once it has more than early_stop_num tokens
            limit = min(limit, r.max_tokens - 1)
        hook = None
        if self.fixed_token_count is not None:
            hook = fixed_length_hook([self.fixed_token_count(frag.text) for _, frag in batch], job0.gpt.config.eos)
        tokens = job0.gpt.generate(phones, berts, prompt, params, early_stop_num=limit, generator=generators,
                                   parallel=r.parallel, logits_hook=hook, token_hook=token_hook)
        elapsed = time.perf_counter() - t0
        for (job, frag), tok in zip(batch, tokens):
            frag.tokens = tok
            # a row that ends on EOS has at most `limit` tokens; the caps leave limit + 1 (or the step maximum)
            frag.hit_limit = hook is None and (int(tok.numel()) > limit or int(tok.numel()) >= MAX_DECODE_STEPS)
            job.timings["s1"] += elapsed * len(frag.unit.ids) / max(1, sum(len(f.unit.ids) for _, f in batch))

    # -- SoVITS ------------------------------------------------------------------------------------------------

    def _decode(self, job: _Job, frag: _Fragment) -> None:
        r = job.request
        t0 = time.perf_counter()
        device = self.registry.device
        codes = frag.tokens.to(device)[None, None]
        text = torch.as_tensor(frag.unit.ids, dtype=torch.long, device=device)[None]
        gen = torch.Generator(device=device).manual_seed(frag.seed)
        frames = 2 * codes.shape[-1] if r.speed == 1 else int(2 * codes.shape[-1] / r.speed) + 1
        # drawn frame by frame, the same numbers the token-level stream of this fragment uses (.streaming)
        noise = frame_noise(gen, frames, job.sovits.enc_p.out_channels, device, job.sovits.ssl_proj.weight.dtype)
        audio = job.sovits.decode(codes, text, noise_scale=r.noise_scale, speed=r.speed, condition=job.condition,
                                  noise=noise)
        frag.audio = audio[0, 0].float().cpu().numpy()
        job.timings["s2"] += time.perf_counter() - t0

    def _decode_cfm(self, job: _Job, fragments: list[_Fragment]) -> None:
        """SoVITS v3/v4: these fragments through the CFM (steps batched across them) and the vocoder; each draws
        its noise from its own generator seeded with the fragment's seed."""
        r = job.request
        t0 = time.perf_counter()
        device = self.registry.device
        dtype = job.cfm_ref.mel.dtype
        steps = r.sample_steps or VERSIONS[job.sovits_info.version].default_sample_steps
        noises = [cfm_decode.generator_noise(torch.Generator(device=device).manual_seed(f.seed), device, dtype)
                  for f in fragments]
        frags = [(f.tokens.to(device)[None, None], torch.as_tensor(f.unit.ids, dtype=torch.long, device=device)[None])
                 for f in fragments]
        audios = cfm_decode.decode_fragments(job.sovits, job.vocoder, job.cfm_ref, frags, steps=steps, speed=r.speed,
                                             noises=noises, max_batch=r.batch_size)
        for frag, audio in zip(fragments, audios):
            frag.audio = audio.float().cpu().numpy()
        job.timings["s2"] += time.perf_counter() - t0

    def _super_sample(self, job: _Job, audio: np.ndarray) -> tuple[np.ndarray, int]:
        """v3 super-sampling (AP-BWE 24 -> 48 kHz) of joined audio, peak-limited afterwards as upstream does."""
        t0 = time.perf_counter()
        out, rate = job.super_sampler(audio, job.rate)
        job.timings["post"] += time.perf_counter() - t0
        return _peak_guard(out).astype(np.float32), rate

    # -- assembly ----------------------------------------------------------------------------------------------

    def _fragment_info(self, job: _Job, frag: _Fragment) -> FragmentInfo:
        return FragmentInfo(frag.text, frag.unit.norm_text, len(frag.unit.ids), int(frag.tokens.numel()), frag.seed,
                            len(frag.audio) / job.rate, frag.pause_after, frag.hit_limit,
                            tuple(int(t) for t in frag.tokens.tolist()))

    def _finish(self, job: _Job) -> SynthesisResult:
        t0 = time.perf_counter()
        pieces = [_with_pause(_peak_guard(f.audio), f.pause_after, job.rate) for f in job.fragments]
        audio = np.concatenate(pieces).astype(np.float32)
        job.timings["post"] += time.perf_counter() - t0
        rate = job.rate
        if job.super_sampler is not None:  # after joining, as upstream's audio_postprocess
            audio, rate = self._super_sample(job, audio)
        wall = time.perf_counter() - job.started
        result = SynthesisResult(
            sample_rate=rate, audio=audio, seed=job.seed,
            fragments=[self._fragment_info(job, f) for f in job.fragments], timings=dict(job.timings), wall=wall,
            gpt=job.gpt_info.name, sovits=job.sovits_info.name, version=job.sovits_info.version, request=job.request,
        )
        self.log.append(result, device=str(self.registry.device), dtype=str(self.registry.dtype).replace("torch.", ""))
        return result


def _peak_guard(audio: np.ndarray) -> np.ndarray:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio / peak if peak > 1.0 else audio


def _with_pause(audio: np.ndarray, seconds: float, rate: int) -> np.ndarray:
    """The fragment followed by ``seconds`` of silence at its own rate (upstream sizes the v3/v4 pause with 32 kHz,
    a bug we do not copy)."""
    if seconds <= 0:
        return audio.astype(np.float32)
    return np.concatenate([audio, np.zeros(int(rate * seconds), dtype=np.float32)]).astype(np.float32)


def _check(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Synthesis was cancelled.")


@contextmanager
def _timed(timings: dict, stage: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] += time.perf_counter() - t0
