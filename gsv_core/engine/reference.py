"""Reference audio -> what the models need from it, cached by the audio's content.

For each reference upstream computes (TTS.py): prompt semantic tokens (16 kHz audio + 0.6 s of zeros -> HuBERT ->
SoVITS ``extract_latent``), the linear spectrogram of the 32 kHz audio after its peak rule, and for v2Pro/v2ProPlus
the ERes2NetV2 embedding of that 32 kHz audio resampled to 16 kHz. The audio is decoded once; every derived feature
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
from ..errors import AudioError
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
        wav, sr = load_audio(source)
        name = Path(str(source)).name if isinstance(source, (str, Path)) else "uploaded audio"
        if is_silent(wav):
            raise AudioError(f"The reference audio {name} is silent: it would give the voice nothing to copy.")
        key = hashlib.sha1(np.ascontiguousarray(wav, dtype=np.float32).tobytes() + str(sr).encode()).hexdigest()
        with self._lock:
            ref = self._refs.get(key)
        if ref is None:
            ref = Reference(key, name, resample(wav, sr, SSL_RATE), peak_limit(resample(wav, sr, SOVITS_RATE)))
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

        def compute():
            with torch.inference_mode():
                wav = torch.from_numpy(ref.wav16)
                feats = hubert.prompt_features(wav, PROMPT_PAD_SAMPLES)
                p = sovits.ssl_proj.weight
                codes = sovits.extract_latent(feats.to(device=p.device, dtype=p.dtype))
            return codes[0, 0].clone()

        return self._feature(ref, "prompt", (sovits_id, id(hubert)), compute)

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
