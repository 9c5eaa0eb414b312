"""Frame-level signal analysis in numpy: frame RMS, silence masks and a YIN pitch tracker with a voicing decision.

These are the pure signal helpers shared by the evaluation metrics (``eval.audio_metrics``: frame RMS and silence)
and the finetuning data stage (``gsv_core.finetune.data``: all of them). Frames are 25 ms long every 10 ms.
The YIN tracker stays here for the data stage (fast, numpy only, no numba start-up); the evaluation's F0 is
librosa's pYIN refined by YIN (``eval.prosody``), which gsv_core does not depend on.

- **frame RMS**: ``10 log10(mean(x^2) + 1e-10)`` per frame, in dBFS; the signal is zero-padded at the end so every
  sample lies in a frame.
- **silent frame** (:func:`silent_frames`): RMS below ``max(floor_db, loudest frame - rel_db)`` (defaults -50 dBFS
  and 40 dB).
- **F0** (:func:`f0_contour`): YIN (de Cheveigné & Kawahara 2002) on the 16 kHz signal: cumulative-mean-normalised
  difference function, absolute threshold (0.15), walk to the local minimum, parabolic interpolation, 50-600 Hz.
  A frame is *voiced* when its dip is below the threshold and the frame is not silent; unvoiced frames are NaN.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gsv_core.errors import AudioError

FRAME_S = 0.025
HOP_S = 0.010
SILENCE_DB = -50.0
SILENCE_REL_DB = 40.0
F0_SR = 16000
F0_MIN_HZ = 50.0
F0_MAX_HZ = 600.0
YIN_THRESHOLD = 0.15

EPS = 1e-10


def as_mono(wav: Any, name: str = "audio") -> np.ndarray:
    """A finite, non-empty float32 ``[T]`` waveform (``[T, C]`` or ``[C, T]`` with few channels are averaged)."""
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] <= 8 else x.mean(axis=0)
    if x.ndim != 1:
        raise AudioError(f"{name}: expected a mono waveform [T] or [T, channels], got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{name}: the waveform is empty")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{name}: the waveform contains NaN or infinite samples")
    return x


def frame_view(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """``[n_frames, frame]`` view; the signal is zero-padded so every sample lies in a frame."""
    if x.size < frame:
        x = np.pad(x, (0, frame - x.size))
    n = 1 + int(math.ceil((x.size - frame) / hop))
    x = np.pad(x, (0, (n - 1) * hop + frame - x.size))
    return np.lib.stride_tricks.sliding_window_view(x, frame)[::hop][:n]


def frame_rms_db(wav: Any, sr: int) -> np.ndarray:
    """Frame RMS in dBFS (25 ms frames, 10 ms hop)."""
    x = as_mono(wav)
    frames = frame_view(x, max(1, round(FRAME_S * sr)), max(1, round(HOP_S * sr)))
    return 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + EPS)


def silent_frames(rms_db: np.ndarray, floor_db: float = SILENCE_DB, rel_db: float = SILENCE_REL_DB) -> np.ndarray:
    """Boolean mask of frames below ``max(floor_db, loudest frame - rel_db)``."""
    if rms_db.size == 0:
        return np.zeros(0, dtype=bool)
    threshold = max(floor_db, float(rms_db.max()) - rel_db)
    return rms_db < threshold


def yin_frames(frames: np.ndarray, sr: int, fmin: float, fmax: float, threshold: float):
    """YIN over ``[n, W + max_tau]`` frames -> (f0 Hz, dip value) per frame (f0 NaN where no dip under threshold)."""
    min_tau = max(2, int(math.floor(sr / fmax)))
    max_tau = int(math.ceil(sr / fmin))
    w = frames.shape[1] - max_tau
    x = frames.astype(np.float64)
    size = 1 << int(math.ceil(math.log2(frames.shape[1] + w)))
    fx = np.fft.rfft(x, size, axis=1)
    fw = np.fft.rfft(x[:, :w], size, axis=1)
    # cross[t] = sum_j x[j] * x[j + t] for j < w
    cross = np.fft.irfft(fx * np.conj(fw), size, axis=1)[:, :max_tau + 1]
    energy = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x ** 2, axis=1)], axis=1)
    e_shift = energy[:, w:w + max_tau + 1] - energy[:, :max_tau + 1]  # sum_{j=t}^{t+w-1} x_j^2
    d = e_shift[:, :1] + e_shift - 2.0 * cross
    d[:, 0] = 0.0
    d = np.maximum(d, 0.0)
    taus = np.arange(max_tau + 1)
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, EPS)

    f0 = np.full(x.shape[0], np.nan)
    dips = np.ones(x.shape[0])
    for i in range(x.shape[0]):
        row = cmnd[i]
        below = np.nonzero(row[min_tau:max_tau] < threshold)[0]
        if below.size == 0:
            dips[i] = float(row[min_tau:max_tau].min())
            continue
        tau = int(below[0]) + min_tau
        while tau + 1 < max_tau and row[tau + 1] < row[tau]:  # walk down to the local minimum
            tau += 1
        dips[i] = float(row[tau])
        a, b, c = row[tau - 1], row[tau], row[tau + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if abs(denom) > EPS else 0.0
        f0[i] = sr / (tau + float(np.clip(shift, -1.0, 1.0)))
    return f0, dips


def f0_contour(wav: Any, sr: int, fmin: float = F0_MIN_HZ, fmax: float = F0_MAX_HZ,
               threshold: float = YIN_THRESHOLD, floor_db: float = SILENCE_DB,
               rel_db: float = SILENCE_REL_DB) -> tuple[np.ndarray, np.ndarray]:
    """YIN pitch track: (frame times in s, F0 in Hz with NaN for unvoiced/silent frames), one frame per 10 ms.
    ``floor_db``/``rel_db`` set the silence rule that marks frames unvoiced (see :func:`silent_frames`)."""
    from gsv_core.audio import resample

    if not 0 < fmin < fmax:
        raise AudioError(f"F0 range must satisfy 0 < fmin < fmax, got {fmin}..{fmax} Hz")
    x = as_mono(wav)
    x16 = resample(x, int(sr), F0_SR) if int(sr) != F0_SR else x
    hop = round(HOP_S * F0_SR)
    max_tau = int(math.ceil(F0_SR / fmin))
    win = max(round(FRAME_S * F0_SR), max_tau)
    # the YIN integration window of frame i starts at i * hop, like the RMS frame that decides silence
    padded = np.pad(x16, (0, win + max_tau))
    n = max(1, int(math.ceil(x16.size / hop)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, win + max_tau)[::hop][:n]
    f0, _ = yin_frames(frames, F0_SR, fmin, fmax, threshold)
    rms = frame_rms_db(x16, F0_SR)[:n]
    rms = np.pad(rms, (0, n - rms.size), constant_values=-200.0)
    f0[silent_frames(rms, floor_db, rel_db)] = np.nan
    return np.arange(n) * HOP_S, f0
