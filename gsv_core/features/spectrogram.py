"""Linear and mel spectrograms with GPT-SoVITS' STFT conventions.

The STFT is not centred: the waveform is reflect-padded by (n_fft - hop) / 2 on both sides instead, so a signal of
L samples gives floor(L / hop) frames (L >= hop). Magnitudes carry a +1e-8 inside the square root. The mel
filterbank is librosa's default (Slaney mel scale, Slaney area normalisation), computed here without librosa.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..constants import ConstantCache

_WINDOWS = ConstantCache("hann windows")
_MEL_BASES = ConstantCache("mel filterbanks")


def _hann(win: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _WINDOWS.get((win, str(device), dtype),
                        lambda: torch.hann_window(win, periodic=True, device=device, dtype=dtype))


def linear_spectrogram(wav: torch.Tensor, n_fft: int = 2048, hop: int = 640, win: int = 2048) -> torch.Tensor:
    """Waveform [B, T] (or [T]) -> magnitude spectrogram [B, n_fft // 2 + 1, frames], in the input's dtype.

    Half-precision input is transformed in float32 (the FFT of a 2048-point frame loses too much in fp16).
    """
    squeeze = wav.dim() == 1
    if squeeze:
        wav = wav[None]
    out_dtype = wav.dtype
    x = wav if wav.dtype in (torch.float32, torch.float64) else wav.float()
    pad = (n_fft - hop) // 2
    x = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win, window=_hann(win, x.device, x.dtype),
                      center=False, normalized=False, onesided=True, return_complex=True)
    spec = torch.view_as_real(spec)
    mag = torch.sqrt(spec.pow(2).sum(-1) + 1e-8).to(out_dtype)
    return mag[0] if squeeze else mag


# -------------------------------------------------------------------------------------------------------------
# mel

_SLANEY_LINEAR_HZ = 200.0 / 3  # Hz per mel below 1 kHz
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOG_STEP = math.log(6.4) / 27.0  # above 1 kHz: 27 mels per factor 6.4


def hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _SLANEY_LINEAR_HZ
    with np.errstate(divide="ignore"):
        log = _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ + np.log(np.maximum(hz, 1e-300) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, log, linear)


def slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ
    return np.where(mel >= break_mel, _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel - break_mel)),
                    mel * _SLANEY_LINEAR_HZ)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32 triangular filters, equal to ``librosa.filters.mel`` with its defaults.

    Band edges are n_mels + 2 points evenly spaced on the Slaney mel scale; each filter is scaled by
    2 / (upper edge - lower edge) in Hz so that it has unit area.
    """
    fmax = sr / 2.0 if fmax is None else float(fmax)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)  # centre frequency of each STFT bin
    edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(fmin), hz_to_slaney_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lo) / (mid - lo)
    falling = (hi - bins[None]) / (hi - mid)
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    # librosa rounds the triangles to float32 before applying the (float64) area normalisation
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def spec_to_mel(spec: torch.Tensor, n_fft: int = 2048, num_mels: int = 128, sr: int = 32000, fmin: float = 0.0,
                fmax: float | None = None) -> torch.Tensor:
    """Magnitude spectrogram [B, n_fft // 2 + 1, T] -> log mel [B, num_mels, T] (log of max(mel, 1e-5))."""
    key = (sr, n_fft, num_mels, fmin, fmax, str(spec.device), spec.dtype)
    basis = _MEL_BASES.get(key, lambda: torch.from_numpy(mel_filterbank(sr, n_fft, num_mels, fmin, fmax)).to(
        device=spec.device, dtype=spec.dtype))
    return torch.log(torch.clamp(basis @ spec, min=1e-5))


def mel_spectrogram(wav: torch.Tensor, n_fft: int = 2048, num_mels: int = 128, sr: int = 32000, hop: int = 640,
                    win: int = 2048, fmin: float = 0.0, fmax: float | None = None) -> torch.Tensor:
    """Waveform [B, T] -> log mel [B, num_mels, frames] (the training loss' mel of generated audio)."""
    return spec_to_mel(linear_spectrogram(wav, n_fft, hop, win), n_fft, num_mels, sr, fmin, fmax)
