"""The slicer of :mod:`gsv_core.finetune.slicer` over a streamed recording, so a recording of hours is cut in
bounded memory with the same cut points and the same chunk files.

Pass 1 reads the recording once and keeps only its frame loudness (the centred RMS the slicer uses, one float per
hop: about 9 MB for three hours at the default 10 ms hop) and each hop's peak; the cut points come from
:func:`gsv_core.finetune.slicer.plan_chunks` on that loudness. Pass 2 reads the recording again and writes every
chunk as it streams by, scaled with upstream's loudness mix (the chunk's peak is known from pass 1), as 16-bit WAV
at 32 kHz named ``{stem}_{start:010d}_{end:010d}.wav``. For a 32 kHz input the files are byte-identical to
:func:`gsv_core.finetune.slicer.slice_file`; other rates go through a streaming resampler whose samples may differ
from a one-shot resampling in the last bits.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from gsv_core.finetune.slicer import (SLICE_SAMPLE_RATE, SlicerError, SlicerParams, chunk_name, frames_of,
                                      mix_with_peak, pcm16, plan_chunks)

from .audiostream import AudioStream, CancelFn, ProgressFn, StreamCancelled, part_path


@dataclass
class LoudnessScan:
    """What pass 1 keeps of a recording: frame RMS (centred windows), per-hop peaks and the sample count."""

    rms: np.ndarray
    peaks: np.ndarray
    samples: int
    sr: int
    hop: int

    @property
    def seconds(self) -> float:
        return self.samples / self.sr


def scan_loudness(stream: AudioStream, params: SlicerParams, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelFn] = None, what: str = "measuring") -> LoudnessScan:
    """Frame RMS exactly as :func:`gsv_core.finetune.slicer.centred_rms` computes it on the whole recording (the
    same windows, the same float64 mean), and the peak of every hop, in one streaming pass."""
    hop, win = frames_of(params, stream.sr)
    half = win // 2
    expected = max(1, stream.expected_samples)
    buf = np.zeros(half, dtype=np.float64)  # the leading half window of zero padding
    buf_start = 0  # index in the padded signal of buf[0]
    next_frame = 0  # frame i covers padded[i*hop : i*hop + win]
    rms_parts: list[np.ndarray] = []
    peak_parts: list[np.ndarray] = []
    peak_carry = np.zeros(0, dtype=np.float32)
    n = 0

    def frames_from(buffer: np.ndarray, start: int) -> tuple[np.ndarray, int]:
        first = next_frame
        last = (start + buffer.shape[0] - win) // hop  # the last frame fully inside
        if last < first:
            return np.zeros(0), first
        offset = first * hop - start
        view = np.lib.stride_tricks.sliding_window_view(buffer[offset:], win)[::hop][:last - first + 1]
        return np.sqrt(np.mean(view ** 2, axis=1)), last + 1

    blocks = stream.blocks()
    for block in blocks:
        if cancel is not None and cancel():
            raise StreamCancelled(f"{what} stopped at {n / stream.sr:.0f} s of {stream.path.name}")
        if progress is not None:
            progress(min(0.999, n / expected), f"{what} {stream.path.name}: {n / stream.sr / 60:.1f} min")
        n += block.shape[0]
        x = np.concatenate([peak_carry, np.abs(block)])
        whole = x.shape[0] // hop * hop
        if whole:
            peak_parts.append(x[:whole].reshape(-1, hop).max(axis=1))
        peak_carry = x[whole:]
        buf = np.concatenate([buf, block.astype(np.float64)])
        values, next_frame = frames_from(buf, buf_start)
        if values.size:
            rms_parts.append(values)
        drop = next_frame * hop - buf_start
        if drop > 0:
            buf = buf[drop:]
            buf_start += drop
    if n == 0:
        raise SlicerError(f"{stream.path.name}: the recording has no samples")
    if peak_carry.size:
        peak_parts.append(np.array([peak_carry.max()], dtype=np.float32))
    buf = np.concatenate([buf, np.zeros(half, dtype=np.float64)])  # the trailing half window of padding
    total = 1 + (n + 2 * half - win) // hop  # frames of the whole padded signal, as centred_rms counts them
    values, end_frame = frames_from(buf, buf_start)
    if values.size:
        rms_parts.append(values[:max(0, total - (end_frame - values.size))])
    rms = np.concatenate(rms_parts) if rms_parts else np.zeros(0)
    return LoudnessScan(rms=rms[:total], peaks=np.concatenate(peak_parts).astype(np.float32), samples=n,
                        sr=stream.sr, hop=hop)


def plan(scan: LoudnessScan, params: SlicerParams) -> list[tuple[int, int]]:
    """The slicer's chunks ``(start, end)`` in samples from a loudness scan."""
    return plan_chunks(scan.rms, scan.samples, scan.sr, params)


def chunk_peak(scan: LoudnessScan, start: int, end: int) -> float:
    a = start // scan.hop
    b = -(-min(end, scan.samples) // scan.hop)
    return float(scan.peaks[a:b].max()) if b > a else 0.0


def slice_stream(path: str | os.PathLike, out_dir: str | os.PathLike, params: SlicerParams = SlicerParams(), *,
                 stem: Optional[str] = None, max_seconds: Optional[float] = None,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelFn] = None) -> list[Path]:
    """Slice one recording into ``out_dir`` in two streaming passes; returns the chunk files in order. A chunk
    file appears only when complete (written as ``.part.wav`` and renamed)."""
    import soundfile as sf

    params.validate()
    sr = params.sample_rate or SLICE_SAMPLE_RATE
    stem = stem or Path(path).stem
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def part(lo: float, hi: float):
        if progress is None:
            return None
        return lambda f, m: progress(lo + (hi - lo) * f, m)

    scan = scan_loudness(AudioStream(path, sr, max_seconds=max_seconds), params, part(0.0, 0.5), cancel,
                         what="measuring")
    chunks = plan(scan, params)
    written: list[Path] = []
    k = 0  # the chunk being written
    current = None  # (SoundFile, target path, gain peak)
    pos = 0
    try:
        for block in AudioStream(path, sr).blocks():
            if cancel is not None and cancel():
                raise StreamCancelled(f"slicing stopped at {pos / sr:.0f} s of {Path(path).name}")
            if progress is not None:
                progress(0.5 + 0.5 * min(0.999, pos / max(1, scan.samples)),
                         f"cutting {Path(path).name}: {len(written)} clips")
            b_start, b_end = pos, pos + block.shape[0]
            pos = b_end
            while k < len(chunks):
                start, end = chunks[k]
                stop = min(end, scan.samples)
                if start >= b_end:
                    break
                if current is None:
                    target = out / chunk_name(stem, start, end)
                    f = sf.SoundFile(str(part_path(target)), mode="w", samplerate=sr, channels=1, subtype="PCM_16",
                                     format="WAV")
                    current = (f, target, chunk_peak(scan, start, end))
                lo, hi = max(start, b_start), min(stop, b_end)
                if hi > lo:
                    current[0].write(pcm16(mix_with_peak(block[lo - b_start:hi - b_start], current[2],
                                                 params.normalize_max, params.alpha)))
                if stop <= b_end:
                    current[0].close()
                    if stop > start:
                        os.replace(part_path(current[1]), current[1])
                        written.append(current[1])
                    else:
                        part_path(current[1]).unlink(missing_ok=True)
                    current = None
                    k += 1
                    continue
                break
    finally:
        if current is not None:
            current[0].close()
            part_path(current[1]).unlink(missing_ok=True)
    if progress is not None:
        progress(1.0, f"cut {Path(path).name} into {len(written)} clips")
    return written


def envelope(scan: LoudnessScan, points: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """``(times in s, peak)`` of the recording reduced to about ``points`` columns (the waveform preview)."""
    peaks = scan.peaks
    group = max(1, -(-peaks.shape[0] // points))
    cols = -(-peaks.shape[0] // group)
    padded = np.zeros(cols * group, dtype=np.float32)
    padded[:peaks.shape[0]] = peaks
    env = padded.reshape(cols, group).max(axis=1)
    times = (np.arange(cols) * group + group / 2) * scan.hop / scan.sr
    return times, env


def preview_figure(scan: LoudnessScan, chunks: list[tuple[int, int]], params: SlicerParams, title: str = ""):
    """A matplotlib figure: the waveform's envelope, the chunks as shaded spans with their cut points, and the
    frame loudness against the silence threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, env = envelope(scan)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ax.fill_between(times, -env, env, color="#4a6fa5", linewidth=0)
    for i, (a, b) in enumerate(chunks):
        ax.axvspan(a / scan.sr, min(b, scan.samples) / scan.sr, color=("#f5b041" if i % 2 else "#58d68d"),
                   alpha=0.25, linewidth=0)
        ax.axvline(a / scan.sr, color="#c0392b", linewidth=0.7)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("amplitude")
    lengths = [(min(b, scan.samples) - a) / scan.sr for a, b in chunks]
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}{len(chunks)} clips, {min(lengths):.1f}-{max(lengths):.1f} s "
                 f"(recording {scan.seconds:.1f} s); red lines = cut points", fontsize=9)
    frame_t = np.arange(scan.rms.shape[0]) * scan.hop / scan.sr
    step = max(1, scan.rms.shape[0] // 4000)
    db = 20 * np.log10(np.maximum(scan.rms[::step], 1e-6))
    ax2.plot(frame_t[::step], db, color="#566573", linewidth=0.6)
    ax2.axhline(params.threshold_db, color="#c0392b", linestyle="--", linewidth=0.8,
                label=f"threshold {params.threshold_db:g} dB")
    floor = min(float(db.min()) if db.size else -90.0, float(params.threshold_db))
    ax2.set_ylim(max(-100.0, floor - 6), 3)
    ax2.set_ylabel("dB")
    ax2.set_xlabel("time (s)")
    ax2.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


__all__ = ["LoudnessScan", "chunk_peak", "envelope", "plan", "preview_figure", "scan_loudness", "slice_stream"]
