"""PNG pictures for the workbench: a result's spectrogram, a clip's waveform + spectrogram with split marks, and
a similarity histogram. matplotlib's object API (no pyplot state), Agg canvas, written atomically."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from gsv_core.fileio import write_bytes_atomic

N_FFT = 1024
HOP = 256


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes_atomic(path, buf.getvalue())


def spectrogram_db(wav: np.ndarray, sr: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Magnitude spectrogram in dB (80 dB range below the peak), [freq bins, frames]."""
    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = np.hanning(n_fft).astype(np.float32)
    mag = np.abs(np.fft.rfft(x[idx] * window, axis=1)).T
    db = 20 * np.log10(np.maximum(mag, 1e-8))
    return np.maximum(db, db.max() - 80.0)


def _draw_spectrogram(ax, wav: np.ndarray, sr: int) -> None:
    db = spectrogram_db(wav, sr)
    seconds = len(wav) / sr
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=(0, max(seconds, 1e-3), 0, sr / 2000))
    ax.set_ylabel("kHz")
    ax.set_xlabel("seconds")


#: the widest spectrogram image written (about 10 s of 32 kHz audio at HOP); longer results are pooled in time
MAX_SPECTROGRAM_COLUMNS = 1200


def spectrogram_png(wav: np.ndarray, sr: int, path: Path, title: str = "") -> Path:
    """The result's spectrogram as a plain image (low frequencies at the bottom, one pixel per bin and per frame
    up to ``MAX_SPECTROGRAM_COLUMNS`` columns; longer results take the maximum over groups of frames, so a minute of
    audio is not squashed into a strip); fast enough to write one per result. ``title`` goes into the PNG's
    metadata."""
    from matplotlib.image import imsave

    db = spectrogram_db(wav, sr, n_fft=512, hop=HOP)
    if db.shape[1] > MAX_SPECTROGRAM_COLUMNS:  # a long result: pool frames so the picture keeps a usable shape
        factor = int(np.ceil(db.shape[1] / MAX_SPECTROGRAM_COLUMNS))
        cols = db.shape[1] // factor * factor
        pooled = db[:, :cols].reshape(db.shape[0], -1, factor).max(axis=2)
        db = pooled if cols == db.shape[1] else np.concatenate([pooled, db[:, cols:].max(axis=1, keepdims=True)], 1)
    buf = io.BytesIO()
    imsave(buf, db[::-1], cmap="magma", format="png", metadata={"Title": title} if title else None)
    return write_bytes_atomic(Path(path), buf.getvalue())


def clip_view_png(wav: np.ndarray, sr: int, path: Path, marks: Sequence[float] = (),
                  regions: Sequence[tuple[float, float]] = (), title: str = "") -> Path:
    """Waveform above spectrogram, sharing a time axis, with vertical lines at ``marks`` (split points) and
    shaded ``regions`` (chosen sub-clips)."""
    fig = _figure(10, 4.2)
    ax_w = fig.add_subplot(2, 1, 1)
    ax_s = fig.add_subplot(2, 1, 2, sharex=ax_w)
    t = np.arange(len(wav)) / sr
    step = max(1, len(wav) // 20000)
    ax_w.plot(t[::step], np.asarray(wav)[::step], linewidth=0.5, color="#1f77b4")
    ax_w.set_ylim(-1.05, 1.05)
    ax_w.set_ylabel("amplitude")
    _draw_spectrogram(ax_s, wav, sr)
    for ax in (ax_w, ax_s):
        for m in marks:
            ax.axvline(float(m), color="#d62728", linewidth=1.0)
        for a, b in regions:
            ax.axvspan(float(a), float(b), color="#2ca02c", alpha=0.2)
    ax_w.set_xlim(0, max(len(wav) / sr, 1e-3))
    if title:
        ax_w.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(path))


def histogram_png(counts: Sequence[int], edges: Sequence[float], path: Path, threshold: Optional[float] = None,
                  title: str = "") -> Path:
    fig = _figure(7, 3)
    ax = fig.add_subplot(1, 1, 1)
    edges = np.asarray(edges, dtype=float)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4c72b0", edgecolor="white")
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", linewidth=1.2)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("clips")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(path))
