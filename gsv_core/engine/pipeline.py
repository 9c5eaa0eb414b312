"""TTSEngine: text + reference -> speech, the whole GPT-SoVITS pipeline in process.

Stages, timed separately: reference (decode, prompt tokens, spectrogram, speaker embedding; cached), frontend
(split, normalise, g2p), bert (phone-level features), s1 (GPT semantic tokens, batched), s2 (SoVITS decode),
post (peak guard, pauses, joining).

Determinism: fragment ``i`` of a request with seed ``s`` samples its GPT tokens from its own generator seeded with
``s + i`` and draws its SoVITS noise from another seeded with ``s + i``, so a sentence comes out the same whether it
is synthesised alone, in a batch, in a multi-request batch or streamed (up to float rounding from batch padding).
"""
from __future__ import annotations

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
from ..versions import is_pro
from ..loading import check_pairing
from ..models.s1 import MAX_DECODE_STEPS, fixed_length_hook
from ..models.sampling import SamplingParams
from .reference import SOVITS_RATE, ReferenceCache
from .registry import ModelRegistry
from .request import AudioChunk, FragmentInfo, RequestError, SynthesisRequest, SynthesisResult
from .textfeatures import TextFeaturizer, TextUnit
from .tts_log import TTSLog

Progress = Callable[[float, str], None]


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

    @property
    def s1_group_key(self) -> tuple:
        r = self.request
        prompt = None if self.prompt_tokens is None else tuple(self.prompt_tokens.tolist())
        return (id(self.gpt), prompt, r.top_k, r.top_p, r.temperature, r.repetition_penalty, r.parallel, r.max_tokens)


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
                for frag in job.fragments:
                    _check(cancel)
                    self._decode(job, frag)
                    step("synthesising audio")
            return [self._finish(job) for job in jobs]

    def stream(self, request: SynthesisRequest, cancel: Optional[threading.Event] = None) -> Iterator[AudioChunk]:
        """Yield each fragment's audio (followed by its pause) as soon as it is decoded.

        GPT batches are the same groups of consecutive fragments as in :meth:`synthesize`, so the streamed audio is
        the same audio; set ``batch_size=1`` for the lowest first-audio latency."""
        with torch.inference_mode():
            job = self._prepare(request)
            size = request.batch_size if request.parallel else 1
            index = 0
            for start in range(0, len(job.fragments), size):
                group = job.fragments[start : start + size]
                _check(cancel)
                self._run_s1(job, group)
                for frag in group:
                    _check(cancel)
                    self._decode(job, frag)
                    chunk = _with_pause(_peak_guard(frag.audio), frag.pause_after)
                    info = self._fragment_info(frag)
                    last = index == len(job.fragments) - 1
                    yield AudioChunk(SOVITS_RATE, chunk, index, last, info)
                    index += 1
            self._finish(job)

    # -- preparation -------------------------------------------------------------------------------------------

    def _prepare(self, req: SynthesisRequest) -> _Job:
        req.validate()
        started = time.perf_counter()
        timings = dict.fromkeys(("reference", "frontend", "bert", "s1", "s2", "post"), 0.0)
        gpt, gpt_info = self.registry.gpt(req.gpt_path or self.gpt_path)
        sovits, sovits_info = self.registry.sovits(req.sovits_path or self.sovits_path)
        check_pairing(gpt_info, sovits_info)
        version, symbols = sovits_info.version, sovits_info.symbol_version
        if req.ref_free and version == "v1":
            raise RequestError("SoVITS v1 models need the reference text (reference-free mode starts with v2).")

        with _timed(timings, "reference"):
            ref = self.refs.reference(req.ref_audio)
            aux = [self.refs.reference(a, check_duration=False) for a in req.aux_refs if a not in (None, "")]
            device, dtype = self.registry.device, self.registry.dtype
            specs = [self.refs.spectrogram(r, device, dtype) for r in [ref, *aux]]
            sv = None
            if is_pro(version):
                speaker = self.registry.speaker(self.sv_path)
                sv = [self.refs.speaker_embedding(r, speaker).to(device, dtype) for r in [ref, *aux]]
            prompt_tokens = None
            if not req.ref_free:
                hubert = self.registry.hubert(self.hubert_dir)
                prompt_tokens = self.refs.prompt_tokens(ref, hubert, sovits, str(sovits_info.path))

        prompt_ids = prompt_bert = None
        if not req.ref_free:
            prompt_unit = self.text.prompt_unit(req.ref_text, req.ref_lang, symbols, timings)
            prompt_ids = torch.as_tensor(prompt_unit.ids, dtype=torch.long)
            prompt_bert = self.text.bert_for(prompt_unit, timings)

        seed = req.seed if req.seed >= 0 else secrets.randbelow(2**32 - 1024)
        fragments = []
        for piece, pause_after in self.text.fragments(req.text, req.text_lang, req.split_method, symbols,
                                                      req.pause, timings):
            bert = self.text.bert_for(piece[1], timings)
            fragments.append(_Fragment(piece[0], piece[1], bert, (seed + len(fragments)) % 2**32, pause_after))
        if not fragments:
            raise RequestError("Nothing to synthesise: the text has no speakable content after normalisation.")
        return _Job(req, gpt, gpt_info, sovits, sovits_info, seed, prompt_ids, prompt_bert, prompt_tokens, specs,
                    sv, fragments, timings, started)

    # -- GPT ---------------------------------------------------------------------------------------------------

    def _semantic(self, jobs: list[_Job], cancel, step: Callable[[str], None]) -> None:
        groups: dict[tuple, list[tuple[_Job, _Fragment]]] = {}
        for job in jobs:
            for frag in job.fragments:
                groups.setdefault(job.s1_group_key, []).append((job, frag))
        for members in groups.values():
            size = members[0][0].request.batch_size if members[0][0].request.parallel else 1
            for start in range(0, len(members), size):
                _check(cancel)
                batch = members[start : start + size]
                self._run_s1_mixed(batch)
                for _ in batch:
                    step("predicting semantic tokens")

    def _run_s1(self, job: _Job, fragments: list[_Fragment]) -> None:
        self._run_s1_mixed([(job, f) for f in fragments])

    def _run_s1_mixed(self, batch: list[tuple[_Job, _Fragment]]) -> None:
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
                                   parallel=r.parallel, logits_hook=hook)
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
        audio = job.sovits.decode(codes, text, job.specs, noise_scale=r.noise_scale, speed=r.speed,
                                  sv_emb=job.sv, generator=gen)
        frag.audio = audio[0, 0].float().cpu().numpy()
        job.timings["s2"] += time.perf_counter() - t0

    # -- assembly ----------------------------------------------------------------------------------------------

    def _fragment_info(self, frag: _Fragment) -> FragmentInfo:
        return FragmentInfo(frag.text, frag.unit.norm_text, len(frag.unit.ids), int(frag.tokens.numel()), frag.seed,
                            len(frag.audio) / SOVITS_RATE, frag.pause_after, frag.hit_limit)

    def _finish(self, job: _Job) -> SynthesisResult:
        t0 = time.perf_counter()
        pieces = [_with_pause(_peak_guard(f.audio), f.pause_after) for f in job.fragments]
        audio = np.concatenate(pieces).astype(np.float32)
        job.timings["post"] += time.perf_counter() - t0
        wall = time.perf_counter() - job.started
        result = SynthesisResult(
            sample_rate=SOVITS_RATE, audio=audio, seed=job.seed,
            fragments=[self._fragment_info(f) for f in job.fragments], timings=dict(job.timings), wall=wall,
            gpt=job.gpt_info.name, sovits=job.sovits_info.name, version=job.sovits_info.version, request=job.request,
        )
        self.log.append(result, device=str(self.registry.device), dtype=str(self.registry.dtype).replace("torch.", ""))
        return result


def _peak_guard(audio: np.ndarray) -> np.ndarray:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio / peak if peak > 1.0 else audio


def _with_pause(audio: np.ndarray, seconds: float) -> np.ndarray:
    if seconds <= 0:
        return audio.astype(np.float32)
    return np.concatenate([audio, np.zeros(int(SOVITS_RATE * seconds), dtype=np.float32)]).astype(np.float32)


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
