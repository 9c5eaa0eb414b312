"""Reference audio -> what the models need from it, cached by the audio's content.

For each reference upstream computes (TTS.py): prompt semantic tokens (16 kHz audio + 0.6 s of zeros -> HuBERT ->
SoVITS ``extract_latent``), the linear spectrogram of the 32 kHz audio after its peak rule, and for v2Pro/v2ProPlus
the ERes2NetV2 embedding of that 32 kHz audio resampled to 16 kHz. SoVITS v3/v4 also use the decoded audio as it is
(mono, no peak rule, upstream's ``raw_audio``) resampled to the CFM's mel rate (24 kHz v3 / 32 kHz v4) for the prompt
mel, and the :class:`~gsv_core.engine.cfm_decode.CFMReference` built from it. The audio is decoded once; every derived feature
is cached under the hash of the decoded samples plus the model that produced it, so re-using a reference (the
common case in the UI, eval and sweeps) costs nothing, whatever its file name.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..audio import check_reference, is_silent, load_audio, peak_limit, resample
from ..errors import AudioError, ModelMismatchError
from ..features.spectrogram import linear_spectrogram

SOVITS_RATE = 32000
SSL_RATE = 16000
#: upstream appends int(32000 * 0.3) zero samples to the 16 kHz audio (0.6 s) before HuBERT
PROMPT_PAD_SAMPLES = int(SOVITS_RATE * 0.3)


@dataclass
class Reference:
    key: str  # content hash of the decoded audio
    name: str
    wav16: np.ndarray  # original audio resampled to 16 kHz (prompt-token path)
    wav32: np.ndarray  # 32 kHz after the peak rule (spectrogram and speaker paths)
    raw: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # decoded mono audio, native rate
    raw_sr: int = 0
    derived: dict = field(default_factory=dict)  # (feature, model id, device, dtype) -> tensor

    @property
    def seconds(self) -> float:
        return len(self.wav16) / SSL_RATE


class ReferenceCache:
    """Decoded references and their features; LRU over ``capacity`` references."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._refs: "OrderedDict[str, Reference]" = OrderedDict()
        self._by_source: dict[Any, str] = {}
        self._lock = threading.Lock()
        self.computed = 0  # number of features actually computed (not served from the cache)

    def reference(self, source: Any, check_duration: bool = True) -> Reference:
        """Decode (or recall) a reference. ``check_duration`` applies upstream's 3-10 s rule."""
        source_key = _source_key(source)
        with self._lock:
            key = self._by_source.get(source_key) if source_key is not None else None
            if key is not None and key in self._refs:
                self._refs.move_to_end(key)
                ref = self._refs[key]
                if check_duration:
                    check_reference(ref.wav16, SSL_RATE)
                return ref
        # a reference is seconds long: a huge file is refused from its header before it is decoded
        wav, sr = load_audio(source, max_seconds=60.0 if check_duration else 600.0)
        name = Path(str(source)).name if isinstance(source, (str, Path)) else "uploaded audio"
        if is_silent(wav):
            raise AudioError(f"The reference audio {name} is silent: it would give the voice nothing to copy.")
        key = hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes() + str(sr).encode()).hexdigest()
        with self._lock:
            ref = self._refs.get(key)
        if ref is None:
            wav32 = peak_limit(resample(wav, sr, SOVITS_RATE))
            raw = np.ascontiguousarray(wav, dtype=np.float32)
            if sr == SOVITS_RATE and np.array_equal(raw, wav32):
                raw = wav32  # the common case holds the samples once
            ref = Reference(key, name, resample(wav, sr, SSL_RATE), wav32, raw, int(sr))
        if check_duration:
            check_reference(ref.wav16, SSL_RATE)
        with self._lock:
            self._refs[key] = ref
            self._refs.move_to_end(key)
            if source_key is not None:
                self._by_source[source_key] = key
            while len(self._refs) > self.capacity:
                old, _ = self._refs.popitem(last=False)
                self._by_source = {s: k for s, k in self._by_source.items() if k != old}
        return ref

    def _feature(self, ref: Reference, name: str, model_id: Any, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = (name, model_id)
        value = ref.derived.get(key)
        if value is None:
            value = compute()
            ref.derived[key] = value
            with self._lock:
                self.computed += 1
        return value

    # -- features ----------------------------------------------------------------------------------------------

    def spectrogram(self, ref: Reference, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        def compute():
            wav = torch.from_numpy(ref.wav32)[None].to(device)
            return linear_spectrogram(wav).to(dtype)

        return self._feature(ref, "spec", (str(device), dtype), compute)

    def prompt_tokens(self, ref: Reference, hubert: Any, sovits: Any, sovits_id: str) -> torch.Tensor:
        """Semantic tokens of the reference under this SoVITS model's quantizer (1-D LongTensor)."""

        width, wanted = getattr(hubert, "hidden_size", None), sovits.ssl_proj.weight.shape[1]
        if width is not None and int(width) != int(wanted):
            raise ModelMismatchError(
                f"The HuBERT model gives {width}-dim features but {Path(sovits_id).name} expects {wanted} "
                f"(chinese-hubert-base gives 768): point HUBERT_DIR at the HuBERT folder this model was trained with.")

        def compute():
            with torch.inference_mode():
                wav = torch.from_numpy(ref.wav16)
                feats = hubert.prompt_features(wav, PROMPT_PAD_SAMPLES)
                p = sovits.ssl_proj.weight
                codes = sovits.extract_latent(feats.to(device=p.device, dtype=p.dtype))
            return codes[0, 0].clone()

        return self._feature(ref, "prompt", (sovits_id, id(hubert)), compute)

    def raw_at(self, ref: Reference, rate: int) -> np.ndarray:
        """The decoded audio without any peak rule (upstream's ``raw_audio``) at ``rate`` (the v3/v4 mel rate)."""

        def compute():
            return torch.from_numpy(ref.raw if ref.raw_sr == rate else resample(ref.raw, ref.raw_sr, rate))

        return self._feature(ref, "raw", rate, compute)

    def cfm_reference(self, ref: Reference, sovits: Any, sovits_id: str, prompt_tokens: torch.Tensor,
                      prompt_ids: torch.Tensor, spec: torch.Tensor, hubert_id: Any):
        """What every fragment of a v3/v4 synthesis shares (timbre and the cropped prompt features + mel), for this
        reference, SoVITS model and reference text (phone ids), built once with
        :func:`cfm_decode.prepare_reference` and cached like the prompt tokens."""
        from . import cfm_decode

        p = sovits.ssl_proj.weight
        key = (sovits_id, hubert_id, tuple(int(i) for i in prompt_ids.tolist()), str(p.device), p.dtype)

        def compute():
            spec_ = cfm_decode.spec_for(sovits.version)
            wav = self.raw_at(ref, spec_.mel_rate)
            with torch.inference_mode():
                return cfm_decode.prepare_reference(sovits, prompt_tokens.to(p.device)[None, None],
                                                    prompt_ids.to(p.device)[None], spec.to(p.device, p.dtype), wav)

        return self._feature(ref, "cfm", key, compute)

    def speaker_embedding(self, ref: Reference, speaker: Any) -> torch.Tensor:
        """ERes2NetV2 forward3 of the 32 kHz (peak-limited) audio resampled to 16 kHz: [1, 20480]."""

        def compute():
            wav16 = resample(ref.wav32, SOVITS_RATE, SSL_RATE)
            with torch.inference_mode():
                return speaker(torch.from_numpy(wav16)).clone()

        return self._feature(ref, "sv", id(speaker), compute)


def _source_key(source: Any) -> Optional[tuple]:
    """A cheap identity for a file source (path, size, mtime) so a path is decoded only once."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        try:
            st = p.stat()
        except OSError:
            return None
        return (str(p.resolve()), st.st_size, st.st_mtime_ns)
    return None
