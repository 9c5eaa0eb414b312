"""Cutting long recordings into clips at their silences, with the parameters and results of GPT-SoVITS' slicer
(``tools/slicer2.py`` driven by ``tools/slice_audio.py``), in our own numpy code.

How a recording is cut (all lengths in frames of ``hop_size_ms``):

1. a frame's loudness is the RMS of a window of ``min(min_interval, 4 hops)`` samples centred on it (the signal is
   zero-padded by half a window on both sides); a frame is silent when that RMS is below ``10^(threshold_db/20)``;
2. walking through the frames, a run of silent frames ending at a loud frame becomes a cut when it is at least
   ``min_interval`` long and the clip that it ends is at least ``min_length`` long, or when it is a leading
   silence longer than ``max_sil_kept``;
3. the cut keeps at most ``max_sil_kept`` of silence on each side: a short run is cut at a single point (its
   quietest frame); a run up to twice ``max_sil_kept`` is removed between the quietest frame near its start and
   the quietest near its end (with its overall quietest frame as a bound); a longer run is removed between the
   quietest frame of its first ``max_sil_kept`` frames and that of its last ``max_sil_kept`` frames;
4. a trailing silence of at least ``min_interval`` is cut at its quietest frame within ``max_sil_kept``.

Chunks are written as 16-bit WAV at 32 kHz after upstream's loudness mix: with ``p`` the chunk's peak (a chunk
peaking above 1 is first divided by ``p``), ``out = chunk / p * (normalize_max * alpha) + (1 - alpha) * chunk``,
samples scaled by 32767 and truncated. Names are ``{stem}_{start:010d}_{end:010d}.wav`` with ``start``/``end`` in
samples at 32 kHz (upstream puts the whole input file name, extension included, before the positions; we use the
stem and fall back to the whole name only when two inputs share a stem).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gsv_core.audio import load_audio, save_wav
from gsv_core.errors import AudioError, GSVError

from .layout import disk_guard

SLICE_SAMPLE_RATE = 32000
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".wma",
                              ".aiff", ".aif", ".webm", ".mp4", ".mkv", ".caf", ".w64"})


class SlicerError(GSVError):
    """Slicer parameters that break its constraints, or a folder with nothing that can be sliced."""


class SliceCancelled(SlicerError):
    """The user stopped slicing; the chunks written so far stay on disk."""


@dataclass(frozen=True)
class SlicerParams:
    """Upstream's WebUI defaults. Constraints: ``min_length >= min_interval >= hop_size`` and
    ``max_sil_kept >= hop_size``; ``0 < normalize_max <= 1``, ``0 <= alpha <= 1``."""

    threshold_db: float = -34.0
    min_length_ms: int = 4000
    min_interval_ms: int = 300
    hop_size_ms: int = 10
    max_sil_kept_ms: int = 500
    normalize_max: float = 0.9
    alpha: float = 0.25
    sample_rate: int = SLICE_SAMPLE_RATE

    def validate(self) -> "SlicerParams":
        if self.hop_size_ms <= 0:
            raise SlicerError(f"slicer hop_size must be a positive number of ms, got {self.hop_size_ms}")
        if not self.min_length_ms >= self.min_interval_ms >= self.hop_size_ms:
            raise SlicerError(
                "slicer settings must satisfy min_length >= min_interval >= hop_size "
                f"(got {self.min_length_ms} ms, {self.min_interval_ms} ms, {self.hop_size_ms} ms)")
        if not self.max_sil_kept_ms >= self.hop_size_ms:
            raise SlicerError(
                f"slicer settings must satisfy max_sil_kept >= hop_size (got {self.max_sil_kept_ms} ms < "
                f"{self.hop_size_ms} ms)")
        if not 0.0 < self.normalize_max <= 1.0:
            raise SlicerError(f"slicer normalize_max must be in (0, 1], got {self.normalize_max}")
        if not 0.0 <= self.alpha <= 1.0:
            raise SlicerError(f"slicer alpha (loudness mix) must be in [0, 1], got {self.alpha}")
        if not self.threshold_db < 0:
            raise SlicerError(f"slicer threshold must be below 0 dB, got {self.threshold_db}")
        if self.sample_rate <= 0:
            raise SlicerError(f"slicer sample rate must be positive, got {self.sample_rate}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Frames:
    """The parameters turned into samples/frames for one sample rate."""

    hop: int
    win: int
    threshold: float
    min_length: int
    min_interval: int
    max_sil_kept: int

    @classmethod
    def of(cls, p: SlicerParams, sr: int) -> "_Frames":
        hop = round(sr * p.hop_size_ms / 1000)
        interval_samples = sr * p.min_interval_ms / 1000
        return cls(hop=hop, win=min(round(interval_samples), 4 * hop), threshold=10 ** (p.threshold_db / 20.0),
                   min_length=round(sr * p.min_length_ms / 1000 / hop), min_interval=round(interval_samples / hop),
                   max_sil_kept=round(sr * p.max_sil_kept_ms / 1000 / hop))


def centred_rms(y: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """RMS of ``frame_length`` windows centred on every ``hop``-th sample (zero padding of half a window)."""
    half = frame_length // 2
    padded = np.pad(np.asarray(y, dtype=np.float64), (half, half))
    n = 1 + (padded.size - frame_length) // hop
    windows = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop][:n]
    return np.sqrt(np.mean(windows ** 2, axis=1))


def _argmin(rms: np.ndarray, lo: int, hi: int) -> int:
    """Index of the quietest frame in ``rms[lo:hi]`` (the first one on ties)."""
    return lo + int(np.argmin(rms[lo:hi]))


def _silences(rms: np.ndarray, f: _Frames) -> list[tuple[int, int]]:
    """Frame ranges ``(left, right)`` to remove; ``left == right`` is a single cut point."""
    cuts: list[tuple[int, int]] = []
    quiet_from: int | None = None
    clip_from = 0
    keep = f.max_sil_kept
    for i, level in enumerate(rms):
        if level < f.threshold:
            if quiet_from is None:
                quiet_from = i
            continue
        if quiet_from is None:
            continue
        s = quiet_from
        quiet_from = None
        leading = s == 0 and i > keep
        long_enough = i - s >= f.min_interval and i - clip_from >= f.min_length
        if not (leading or long_enough):
            continue
        length = i - s
        if length <= keep:
            point = _argmin(rms, s, i + 1)
            cuts.append((0, point) if s == 0 else (point, point))
            clip_from = point
        elif length <= 2 * keep:
            middle = _argmin(rms, i - keep, s + keep + 1)
            left = _argmin(rms, s, s + keep + 1)
            right = _argmin(rms, i - keep, i + 1)
            if s == 0:
                cuts.append((0, right))
                clip_from = right
            else:
                cuts.append((min(left, middle), max(right, middle)))
                clip_from = max(right, middle)
        else:
            left = _argmin(rms, s, s + keep + 1)
            right = _argmin(rms, i - keep, i + 1)
            cuts.append((0, right) if s == 0 else (left, right))
            clip_from = right
    total = rms.shape[0]
    if quiet_from is not None and total - quiet_from >= f.min_interval:
        end = min(total, quiet_from + keep)
        cuts.append((_argmin(rms, quiet_from, end + 1), total + 1))
    return cuts


def find_chunks(wav: np.ndarray, sr: int, params: SlicerParams = SlicerParams()) -> list[tuple[int, int]]:
    """Sample ranges ``(start, end)`` of the chunks of a mono recording, as upstream reports them (``end`` may
    pass the last sample by less than a hop; slicing with it is still correct)."""
    params.validate()
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1:
        raise SlicerError(f"the slicer needs a mono waveform, got shape {x.shape}")
    f = _Frames.of(params, int(sr))
    if f.hop <= 0:
        raise SlicerError(f"hop_size {params.hop_size_ms} ms is shorter than one sample at {sr} Hz")
    if x.shape[0] <= f.min_length:
        return [(0, int(x.shape[0]))]
    return plan_chunks(centred_rms(x, f.win, f.hop), int(x.shape[0]), sr, params)


def frames_of(params: SlicerParams, sr: int) -> tuple[int, int]:
    """``(hop, window)`` in samples of the loudness frames at ``sr`` (what :func:`centred_rms` takes)."""
    f = _Frames.of(params.validate(), int(sr))
    if f.hop <= 0:
        raise SlicerError(f"hop_size {params.hop_size_ms} ms is shorter than one sample at {sr} Hz")
    return f.hop, f.win


def plan_chunks(rms: np.ndarray, n_samples: int, sr: int, params: SlicerParams = SlicerParams()
                ) -> list[tuple[int, int]]:
    """The chunks of :func:`find_chunks` from frame loudness computed elsewhere (the dataset flow computes it
    while streaming a long recording, so the recording never has to be in memory)."""
    f = _Frames.of(params, int(sr))
    if n_samples <= f.min_length:
        return [(0, int(n_samples))]
    rms = np.asarray(rms, dtype=np.float64)
    total = rms.shape[0]
    cuts = _silences(rms, f)
    if not cuts:
        return [(0, total * f.hop)]
    bounds: list[tuple[int, int]] = []
    if cuts[0][0] > 0:
        bounds.append((0, cuts[0][0]))
    for (_, a), (b, _) in zip(cuts, cuts[1:]):
        bounds.append((a, b))
    if cuts[-1][1] < total:
        bounds.append((cuts[-1][1], total))
    return [(a * f.hop, b * f.hop) for a, b in bounds]


def normalize_chunk(chunk: np.ndarray, normalize_max: float, alpha: float) -> np.ndarray:
    """Upstream's loudness mix (see the module docstring); an all-zero chunk is returned unchanged."""
    peak = float(np.max(np.abs(chunk))) if np.size(chunk) else 0.0
    return mix_with_peak(chunk, peak, normalize_max, alpha)


def mix_with_peak(chunk: np.ndarray, peak: float, normalize_max: float, alpha: float) -> np.ndarray:
    """:func:`normalize_chunk` with the chunk's peak given (elementwise, so a chunk mixed piece by piece, as the
    streaming slicer of gsv_core.dataset writes it, equals the chunk mixed whole)."""
    out = np.array(chunk, dtype=np.float32, copy=True)
    if peak <= 0.0:
        return out
    if peak > 1.0:
        out /= np.float32(peak)
    # as upstream: the mix divides by the original peak even after the division above
    return (out / np.float32(peak) * np.float32(normalize_max * alpha) + np.float32(1.0 - alpha) * out).astype(
        np.float32)


def pcm16(chunk: np.ndarray) -> np.ndarray:
    return np.clip(np.trunc(chunk.astype(np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def save_wav_guarded(path: Path, wav: np.ndarray, sr: int, what: str) -> Path:
    """:func:`gsv_core.audio.save_wav`, with a full disk reported as :class:`DiskFullError`."""
    import errno

    with disk_guard(what):
        try:
            return save_wav(path, wav, sr)
        except AudioError as exc:
            cause = exc.__context__
            if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                raise cause from exc
            raise


def chunk_name(stem: str, start: int, end: int) -> str:
    return f"{stem}_{start:010d}_{end:010d}.wav"


def slice_file(path: str | os.PathLike, out_dir: str | os.PathLike, params: SlicerParams = SlicerParams(),
               stem: str | None = None) -> list[Path]:
    """Slice one recording into ``out_dir``; returns the written chunk files in order."""
    params.validate()
    path = Path(path)
    wav, sr = load_audio(path, sr=params.sample_rate, mono=True)
    stem = stem or path.stem
    out = Path(out_dir)
    written: list[Path] = []
    for start, end in find_chunks(wav, sr, params):
        piece = wav[start:min(wav.shape[0], end)]
        if piece.size == 0:
            continue
        target = out / chunk_name(stem, start, end)
        save_wav_guarded(target, pcm16(normalize_chunk(piece, params.normalize_max, params.alpha)), sr,
                         f"writing the slice {target.name}")
        written.append(target)
    return written


class SlicedFiles(list):
    """The written chunk paths (a list) plus ``failed``: ``(input file, reason)`` for inputs that could not be read."""

    def __init__(self, paths=(), failed=()):
        super().__init__(paths)
        self.failed: list[tuple[Path, str]] = list(failed)


def collect_recordings(src: str | os.PathLike) -> list[Path]:
    src = Path(src).expanduser()
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise SlicerError(f"{src}: no such file or folder to slice")
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise SlicerError(f"{src}: the folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return files


def slice_folder(src: str | os.PathLike, out_dir: str | os.PathLike, params: SlicerParams = SlicerParams(), *,
                 progress: Callable[[float, str], None] | None = None,
                 cancel: Callable[[], bool] | None = None) -> SlicedFiles:
    """Slice every audio file of a folder (sorted by name; or one file) into ``out_dir`` for transcription.

    Inputs that cannot be decoded are skipped and listed in the result's ``failed``; the call fails only when no
    input could be sliced. A cancel request stops between files (:class:`SliceCancelled`)."""
    params.validate()
    files = collect_recordings(src)
    stems = [p.stem for p in files]
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for k, path in enumerate(files):
        if cancel is not None and cancel():
            raise SliceCancelled(f"slicing stopped after {k} of {len(files)} files; {len(written)} chunks written "
                                 f"to {out_dir}")
        if progress is not None:
            progress(k / len(files), f"slicing {path.name} ({k + 1}/{len(files)})")
        stem = path.stem if stems.count(path.stem) == 1 else path.name
        try:
            written.extend(slice_file(path, out_dir, params, stem=stem))
        except AudioError as exc:
            failed.append((path, str(exc)))
    if progress is not None:
        progress(1.0, f"sliced {len(files) - len(failed)} file(s) into {len(written)} chunks")
    if not written:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in failed[:5])
        raise SlicerError(f"nothing could be sliced from {src}" + (f" ({reasons})" if reasons else ""))
    return SlicedFiles(written, failed)
