"""The one way into the engine for every front end: the app's tabs, eval, refaudio, the CLIs and the benchmarks.

    from gsv_core.api import Engine

    engine = Engine.open(settings, device="cpu")            # models load lazily, once, shared by every caller
    req = engine.request({"text": "你好。", "ref_audio": "ref.wav", "ref_text": "参考。",
                          "gpt_path": gpt, "sovits_path": sovits, "top_k": "15"})   # untyped values are fine
    result = engine.synthesize(req)                          # or synthesize_many / stream
    engine.list_weights("SoVITS"); engine.check_model_path(path, "GPT"); engine.model_info(path)
    engine.speaker_embedding("clip.wav", kind="segment")

Nothing outside gsv_core builds a ``TTSEngine`` or ``ModelRegistry`` (a test enforces it); what a front end needs
from the engine is a method here. Settings are passed in explicitly; this module never reads ``config.settings``.
"""
from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from . import weights
from .engine.pipeline import Cancelled, TTSEngine
from .engine.registry import ModelRegistry
from .engine.request import AudioChunk, RequestError, SynthesisRequest, SynthesisResult
from .errors import GSVError
from .loading import ModelInfo
from .pool import EnginePool, PoolError, job_devices

Progress = Callable[[float, str], None]

__all__ = ["AudioChunk", "Cancelled", "Engine", "EnginePool", "ModelInfo", "PoolError", "RequestError",
           "SynthesisRequest", "SynthesisResult", "job_devices"]


class Engine:
    """A synthesis engine bound to one set of settings: one model registry, one reference cache, one text cache.

    Thread-safe; one instance serves every tab and background job of the app."""

    def __init__(self, pipeline: TTSEngine):
        self._pipeline = pipeline
        self.settings = pipeline.settings

    # -- construction --------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Any, *, device: Optional[str] = None, precision: Optional[str] = None,
             bert_dir: Any = None, hubert_dir: Any = None, sv_path: Any = None, log_path: Any = "settings",
             memory_budget_gb: Optional[float] = None) -> "Engine":
        """An engine for ``settings`` (a :class:`config.Settings`); the keyword arguments override the settings'
        device, precision, feature-model locations, synthesis log (None: no log) and model memory budget."""
        if settings is None:
            raise GSVError("Engine.open needs the settings (config.load_settings() or the app's settings)")
        overrides = {k: v for k, v in (("bert_dir", bert_dir), ("hubert_dir", hubert_dir), ("sv_path", sv_path))
                     if v not in (None, "")}
        if overrides:
            settings = dataclasses.replace(settings, **{k: Path(v) for k, v in overrides.items()})
        from . import checkpoints
        from .text import configure as configure_text

        configure_text(settings)  # G2PW and the language detector where these settings point
        checkpoints.MAX_XZ_BYTES = int(getattr(settings, "max_unpacked_mb", 2048)) * 2**20
        registry = ModelRegistry(settings, device=device, precision=precision, budget_gb=memory_budget_gb)
        return cls(TTSEngine(registry, log_path=log_path))

    def pool(self, devices: Sequence[str]) -> EnginePool:
        """One engine per device in worker processes (``gsv_core.pool``), opened like this one (settings,
        precision, feature models, memory budget); their syntheses go to this engine's log. Long jobs (eval runs,
        RefAudio sweeps) spread their items over it; close it (or use ``with``) when the job ends."""
        registry = self._pipeline.registry
        options = dict(precision=str(registry.precision), log_path=None,
                       memory_budget_gb=registry.budget_bytes / 2**30)
        log = self._pipeline.log
        return EnginePool(self.settings, devices, options,
                          log=lambda result, device, dtype: log.append(result, device=device, dtype=dtype))

    # -- properties ----------------------------------------------------------------------------------------------
    @property
    def device(self):
        return self._pipeline.registry.device

    @property
    def dtype(self):
        return self._pipeline.registry.dtype

    # -- requests and synthesis -------------------------------------------------------------------------------------
    @staticmethod
    def request(values: Mapping[str, Any] | SynthesisRequest | None = None, base: Optional[SynthesisRequest] = None,
                where: str = "", **fields: Any) -> SynthesisRequest:
        """A :class:`SynthesisRequest` from a request, or from untyped values (form, CSV row, YAML, sweep cell)
        plus keyword fields; bad or unknown fields raise one :class:`RequestError` naming them."""
        if isinstance(values, SynthesisRequest):
            return values.replace(**fields) if fields else values
        merged = {**dict(values or {}), **fields}
        return SynthesisRequest.from_mapping(merged, base, where=where)

    def synthesize(self, request: SynthesisRequest | Mapping[str, Any], progress: Optional[Progress] = None,
                   cancel: Optional[threading.Event] = None) -> SynthesisResult:
        return self._pipeline.synthesize(self.request(request), progress=progress, cancel=cancel)

    def synthesize_many(self, requests: Sequence[SynthesisRequest | Mapping[str, Any]],
                        progress: Optional[Progress] = None,
                        cancel: Optional[threading.Event] = None) -> list[SynthesisResult]:
        """Several requests; fragments sharing GPT, prompt and sampling settings are decoded in the same batches."""
        return self._pipeline.synthesize_many([self.request(r) for r in requests], progress=progress, cancel=cancel)

    def stream(self, request: SynthesisRequest | Mapping[str, Any], cancel: Optional[threading.Event] = None,
               mode: str = "tokens", chunk_tokens: Optional[int] = None) -> Iterator[AudioChunk]:
        """Audio as it is made: ``mode="tokens"`` every ``chunk_tokens`` semantic tokens (default 24, the first
        piece after half as many) while the GPT decodes; ``mode="fragments"`` fragment by fragment (v3/v4 always).
        Close the iterator (or set ``cancel``) to stop the work."""
        from .engine.streaming import StreamPlan

        return self._pipeline.stream(self.request(request), cancel=cancel, mode=mode,
                                     plan=StreamPlan.with_chunk(chunk_tokens))

    def preview_text(self, text: str, lang: str = "zh", split_method: str = "cut1", version: str = "v2",
                     pause: Optional[float] = None):
        """How a request with this text, language and split method will be cut and read, before synthesising:
        a :class:`gsv_core.engine.preview.TextPreview` (pieces, language per segment, normalised text, phones,
        Mandarin pinyin, pauses) from the engine's own front end, for a model of symbol ``version`` (v1 or v2+).
        No model is loaded; unreadable text raises the front end's TextError (a GSVError)."""
        from .engine.request import _mode, _split

        try:
            lang, split_method = _mode(lang), _split(split_method)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        pause = SynthesisRequest.defaults()["pause"] if pause is None else float(pause)
        return self._pipeline.text.preview(text, lang, split_method, version, pause)

    def precision_warning(self) -> Optional[str]:
        """The sentence to show when the settings ask this CPU for bf16 it only emulates (with the slowdown
        measured here, once per machine); None when the precision is fine (see gsv_core.device)."""
        from .device import reduced_precision_warning

        registry = self._pipeline.registry
        return reduced_precision_warning(str(registry.precision), bool(getattr(registry.settings, "gpt_int8", False)),
                                         registry.device)

    def set_models(self, gpt_path: Any = None, sovits_path: Any = None) -> None:
        """Default GPT/SoVITS for requests that name none (loaded now, so errors surface here)."""
        self._pipeline.set_models(gpt_path, sovits_path)

    # -- models ----------------------------------------------------------------------------------------------------
    def model_info(self, path: Any, kind: Optional[str] = None) -> ModelInfo:
        """Version, symbol table and name of a GPT (.ckpt) or SoVITS (.pth) file (loads it into the registry,
        where it stays for the next synthesis)."""
        kind = kind or ("GPT" if str(path).lower().endswith(weights.GPT_SUFFIXES) else "SoVITS")
        registry = self._pipeline.registry
        return (registry.gpt(path) if kind == "GPT" else registry.sovits(path))[1]

    def speaker_encoder(self, path: Any = None):
        """The ERes2NetV2 speaker model (``path`` or the settings' SV_PATH), shared with synthesis."""
        return self._pipeline.registry.speaker(path)

    def speaker_embedding(self, audio: Any, kind: str = "forward3", path: Any = None):
        """Speaker vector of an audio file or (rate, samples): ``forward3`` (what v2Pro SoVITS is conditioned on)
        or ``segment`` (the model's 192-d verification embedding), on the CPU as float32."""
        import torch

        from .audio import load_audio

        encoder = self.speaker_encoder(path)
        wav16, _ = load_audio(audio, 16000)

        with torch.inference_mode(False), torch.no_grad():
            return encoder.embed(torch.as_tensor(wav16), kind=kind)[0].float().cpu()

    def loaded_models(self) -> list[tuple[str, str, int]]:
        """(kind, path, bytes) of every model in memory, least recently used first."""
        return self._pipeline.registry.loaded()

    def unload(self, kind: Optional[str] = None) -> None:
        self._pipeline.registry.unload(kind)

    # -- weights and the model-folder rule -------------------------------------------------------------------------
    def list_weights(self, kind: str) -> list[weights.WeightFile]:
        return weights.list_weights(self.settings, kind)

    def check_model_path(self, path: Any, kind: str) -> str:
        return weights.check_model_path(self.settings, path, kind)

    def sovits_options(self, path: Any) -> dict[str, Any]:
        """What a form offers for a SoVITS file (version; v3/v4 sample-step choices and default; whether v3
        super-sampling is available), without loading the model; the path must pass the model-folder rule."""
        return weights.sovits_options(self.settings, path)

    def check_request_models(self, request: SynthesisRequest) -> SynthesisRequest:
        """The request with its model paths checked against the model folders and made absolute (list labels
        resolved); front ends taking paths from users or API callers call this before synthesising."""
        found = {}
        for key, kind in (("gpt_path", "GPT"), ("sovits_path", "SoVITS")):
            path = getattr(request, key)
            if path not in (None, ""):
                found[key] = self.check_model_path(path, kind)
        return request.replace(**found) if found else request

    # -- benchmarks ------------------------------------------------------------------------------------------------
    def fix_token_counts(self, counts: Optional[Callable[[str], int]]) -> None:
        """Benchmarks and tests: make each fragment emit exactly ``counts(fragment_text)`` semantic tokens (the shared
        workload's rule, so two implementations do identical work); None restores normal decoding."""
        self._pipeline.fixed_token_count = counts

    def clear_caches(self) -> None:
        """Forget decoded references and text features (benchmarks of the uncached path)."""
        self._pipeline.clear_caches()
