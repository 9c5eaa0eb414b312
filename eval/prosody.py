"""Prosody of an utterance and its alignment to a reference: F0 (pYIN), energy, DTW, plots.

**Tracks** (:func:`analyze_prosody` -> :class:`ProsodyTrack`), one frame every 10 ms on the 16 kHz signal, frame
``k`` centred at ``k * 10 ms``:

- **F0**: librosa's pYIN (Mauch & Dixon 2014) between ``fmin`` and ``fmax`` (50-600 Hz), 64 ms frames,
  pitch grid ``PYIN_RESOLUTION`` (0.25 semitone; the Viterbi decoding costs the square of the grid size). pYIN
  decides voicing and the pitch path (its HMM removes octave jumps); the value of a voiced frame is then refined
  with librosa's YIN estimate of the same frame (parabolic interpolation, not quantised) when that lies within
  ``REFINE_TOLERANCE_ST`` (0.5 semitone) of the path. Silent frames (below) are unvoiced. Unvoiced = NaN.
- **energy**: frame RMS (librosa, 25 ms) in dBFS, ``10 log10(mean(x^2) + 1e-10)``;
  **silent** frames lie below ``max(-50 dBFS, loudest frame - 40 dB)`` (the rule of :mod:`gsv_core.signal`).
- **MFCC** (13 coefficients, 40 mel bands, 25 ms): only used to align two utterances of the same text.

Long audio is analysed in windows of ``window_s`` (20 s) with 0.5 s of context on each side, so memory stays
bounded (pYIN's observation matrix grows with duration); frames are stitched seamlessly at window centres.
The first pYIN call of a process compiles numba code (a few seconds, longer on a fresh install).

**Comparison** with a reference (:func:`compare_prosody` -> :class:`ProsodyComparison`; "reference" is the
prompt audio, a ground-truth recording or a baseline system's utterance of the same sentence). Semitones are
``12 log2(f0 / 55 Hz)`` over voiced frames; every difference is *system minus reference*:

- ``f0_mean_diff_st``, ``f0_std_diff_st`` (standard deviation of the semitone contour: pitch range),
  ``f0_var_ratio`` (variance ratio), ``voiced_ratio_diff``;
- ``f0_contour_dtw_st``: RMS distance of the two *mean-removed* voiced semitone contours along their DTW path
  (librosa.sequence.dtw): the contour *shape* apart from its level (the level is ``f0_mean_diff_st``);
- ``f0_aligned_rmse_st`` and ``voicing_agreement``: the two utterances aligned by DTW on MFCCs (c1-c12), then the
  RMS semitone difference over aligned frame pairs that are both voiced (level included), and the fraction of
  aligned pairs that agree on voiced / unvoiced. These two need the *same text* (a baseline or a recording);
- ``energy_w1_db``: 1-D Wasserstein distance between the distributions of non-silent frame energies (dB);
  ``energy_w1_centered_db`` the same after removing each distribution's median (dynamics apart from loudness);
  ``energy_mean_diff_db``, ``energy_std_diff_db``.

DTW inputs longer than ``max_dtw_frames`` (1500) are decimated evenly first (the cost matrix is n x m).

:func:`prosody_summary` tabulates comparisons per system (and length bucket) as mean ± std with bootstrap CIs;
:func:`plot_f0_contours`, :func:`plot_energy_distributions` and :func:`plot_metric_by_system` return matplotlib
figures, :func:`figure_png` turns one into PNG bytes.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from gsv_core.errors import AudioError

SR = 16000
HOP = 160  # 10 ms
HOP_S = HOP / SR
PYIN_FRAME = 1024  # 64 ms: two periods of 50 Hz fit the YIN integration window
RMS_FRAME = 400  # 25 ms
N_FFT_MFCC = 512
F0_MIN_HZ = 50.0
F0_MAX_HZ = 600.0
PYIN_RESOLUTION = 0.25
REFINE_TOLERANCE_ST = 0.5
SEMITONE_REF_HZ = 55.0
SILENCE_DB = -50.0
SILENCE_REL_DB = 40.0
WINDOW_S = 20.0
CONTEXT_S = 0.5
MAX_DTW_FRAMES = 1500
_EPS = 1e-10


def _librosa():
    import librosa

    return librosa


def hz_to_semitones(f0_hz: Any) -> np.ndarray:
    """``12 log2(f / 55 Hz)``; NaN stays NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 12.0 * np.log2(np.asarray(f0_hz, dtype=np.float64) / SEMITONE_REF_HZ)


@dataclass
class ProsodyTrack:
    """Frame tracks of one utterance (10 ms hop, frame ``k`` centred at ``times[k]``)."""

    times: np.ndarray
    f0_hz: np.ndarray  # NaN where unvoiced or silent
    voiced_prob: np.ndarray
    rms_db: np.ndarray
    silent: np.ndarray
    mfcc: np.ndarray = field(repr=False)  # [13, frames]
    duration: float = 0.0

    @property
    def voiced(self) -> np.ndarray:
        return np.isfinite(self.f0_hz)

    @property
    def semitones(self) -> np.ndarray:
        return hz_to_semitones(self.f0_hz)

    def voiced_semitones(self) -> np.ndarray:
        st = self.semitones
        return st[np.isfinite(st)]

    def energy_db(self) -> np.ndarray:
        """Frame energies of the non-silent frames (dB)."""
        return self.rms_db[~self.silent]

    def stats(self) -> dict[str, float]:
        """F0 (Hz and semitones) and energy statistics of this utterance alone."""
        st = self.voiced_semitones()
        f0 = self.f0_hz[self.voiced]
        en = self.energy_db()
        nan = float("nan")
        return dict(f0_mean_hz=float(f0.mean()) if f0.size else nan,
                    f0_std_hz=float(f0.std()) if f0.size else nan,
                    f0_mean_st=float(st.mean()) if st.size else nan,
                    f0_std_st=float(st.std()) if st.size else nan,
                    voiced_ratio=float(self.voiced.mean()) if self.f0_hz.size else nan,
                    energy_db_mean=float(en.mean()) if en.size else nan,
                    energy_db_std=float(en.std()) if en.size else nan)


def _segments(n_samples: int, n_frames: int, window_frames: int, context_frames: int):
    """(first sample, end sample, first kept frame, end kept frame) of each analysis window."""
    start = 0
    while start < n_frames:
        end = min(n_frames, start + window_frames)
        a = max(0, start - context_frames) * HOP
        b = n_samples if end == n_frames else min(n_samples, (end + context_frames) * HOP)
        yield a, b, start, end
        start = end


def analyze_prosody(wav: Any, sr: int, fmin: float = F0_MIN_HZ, fmax: float = F0_MAX_HZ,
                    resolution: float = PYIN_RESOLUTION, window_s: float = WINDOW_S,
                    floor_db: float = SILENCE_DB, rel_db: float = SILENCE_REL_DB) -> ProsodyTrack:
    """F0 (pYIN refined by YIN), energy and MFCC tracks of a waveform at any rate (see the module docstring)."""
    from gsv_core.audio import resample
    from gsv_core.signal import as_mono

    if not 0 < fmin < fmax:
        raise AudioError(f"F0 range must satisfy 0 < fmin < fmax, got {fmin}..{fmax} Hz")
    if fmax >= SR / 2:
        raise AudioError(f"fmax must lie below {SR // 2} Hz, got {fmax}")
    sr = int(sr)
    if sr <= 0:
        raise AudioError(f"sample rate must be positive, got {sr}")
    x = as_mono(wav)
    x16 = resample(x, sr, SR) if sr != SR else x
    x16 = np.ascontiguousarray(x16, dtype=np.float32)
    n_samples = x16.size
    n_frames = 1 + n_samples // HOP
    if n_samples < PYIN_FRAME:  # librosa needs a full frame; pad, then keep the frames of the real signal
        x16 = np.pad(x16, (0, PYIN_FRAME - n_samples))
    librosa = _librosa()
    window_frames = max(1, int(round(window_s / HOP_S)))
    context_frames = int(round(CONTEXT_S / HOP_S))
    f0 = np.full(n_frames, np.nan)
    prob = np.zeros(n_frames)
    rms_db = np.full(n_frames, -100.0)
    mfcc = np.zeros((13, n_frames))
    for a, b, keep_lo, keep_hi in _segments(n_samples, n_frames, window_frames, context_frames):
        seg = x16[a:b]
        if seg.size < PYIN_FRAME:
            seg = np.pad(seg, (0, PYIN_FRAME - seg.size))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p_f0, _, p_prob = librosa.pyin(seg, fmin=fmin, fmax=fmax, sr=SR, frame_length=PYIN_FRAME,
                                           hop_length=HOP, resolution=resolution, center=True)
            y_f0 = librosa.yin(seg, fmin=fmin, fmax=fmax, sr=SR, frame_length=PYIN_FRAME, hop_length=HOP,
                               center=True)
            rms = librosa.feature.rms(y=seg, frame_length=RMS_FRAME, hop_length=HOP, center=True)[0]
            mf = librosa.feature.mfcc(y=seg, sr=SR, n_mfcc=13, n_fft=N_FFT_MFCC, win_length=RMS_FRAME,
                                      hop_length=HOP, n_mels=40, center=True)
        first = a // HOP
        lo, hi = keep_lo - first, keep_hi - first
        with np.errstate(divide="ignore", invalid="ignore"):
            close = np.abs(12.0 * np.log2(y_f0[lo:hi] / p_f0[lo:hi])) <= REFINE_TOLERANCE_ST
        f0[keep_lo:keep_hi] = np.where(close, y_f0[lo:hi], p_f0[lo:hi])
        prob[keep_lo:keep_hi] = np.nan_to_num(p_prob[lo:hi])
        rms_db[keep_lo:keep_hi] = 10.0 * np.log10(rms[lo:hi].astype(np.float64) ** 2 + _EPS)
        mfcc[:, keep_lo:keep_hi] = mf[:, lo:hi]
    threshold = max(floor_db, float(rms_db.max()) - rel_db)
    silent = rms_db < threshold
    f0[silent] = np.nan
    return ProsodyTrack(times=np.arange(n_frames) * HOP_S, f0_hz=f0, voiced_prob=prob, rms_db=rms_db,
                        silent=silent, mfcc=mfcc, duration=n_samples / SR)


def f0_contour(wav: Any, sr: int, fmin: float = F0_MIN_HZ, fmax: float = F0_MAX_HZ, floor_db: float = SILENCE_DB,
               rel_db: float = SILENCE_REL_DB) -> tuple[np.ndarray, np.ndarray]:
    """(frame times in s, F0 in Hz with NaN for unvoiced/silent frames), one frame per 10 ms (pYIN + YIN)."""
    track = analyze_prosody(wav, sr, fmin=fmin, fmax=fmax, floor_db=floor_db, rel_db=rel_db)
    return track.times, track.f0_hz


# ------------------------------------------------------------------------------------------------------ comparison

def _decimate_index(n: int, limit: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def dtw_path(a: np.ndarray, b: np.ndarray, max_frames: int = MAX_DTW_FRAMES) -> np.ndarray:
    """DTW alignment of two feature sequences ``[d, n]`` and ``[d, m]`` (euclidean cost, librosa): an array of
    ``(i, j)`` index pairs in time order, in the frames of the inputs (inputs longer than ``max_frames`` are
    decimated evenly first)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[1] == 0 or b.shape[1] == 0:
        return np.zeros((0, 2), dtype=int)
    ia, ib = _decimate_index(a.shape[1], max_frames), _decimate_index(b.shape[1], max_frames)
    _, wp = _librosa().sequence.dtw(X=a[:, ia], Y=b[:, ib], metric="euclidean")
    wp = wp[::-1]
    return np.stack([ia[wp[:, 0]], ib[wp[:, 1]]], axis=1)


@dataclass(frozen=True)
class ProsodyComparison:
    """A system utterance against a reference (every difference = system - reference; see the module docstring)."""

    f0_mean_diff_st: float
    f0_std_diff_st: float
    f0_var_ratio: float
    f0_contour_dtw_st: float
    f0_aligned_rmse_st: float
    voicing_agreement: float
    voiced_ratio_diff: float
    energy_w1_db: float
    energy_w1_centered_db: float
    energy_mean_diff_db: float
    energy_std_diff_db: float
    n_voiced: int
    n_voiced_ref: int

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        return {prefix + k: v for k, v in asdict(self).items()}


#: the comparison fields summarised by default (all floats of :class:`ProsodyComparison`)
PROSODY_FIELDS: tuple[str, ...] = ("f0_mean_diff_st", "f0_std_diff_st", "f0_var_ratio", "f0_contour_dtw_st",
                                   "f0_aligned_rmse_st", "voicing_agreement", "voiced_ratio_diff", "energy_w1_db",
                                   "energy_w1_centered_db", "energy_mean_diff_db", "energy_std_diff_db")


def _wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    if u.size == 0 or v.size == 0:
        return float("nan")
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(u, v))


def compare_prosody(track: ProsodyTrack, ref: ProsodyTrack, max_dtw_frames: int = MAX_DTW_FRAMES,
                    min_voiced: int = 5) -> ProsodyComparison:
    """Compare a system utterance's track with a reference track. F0 numbers are NaN when either side has fewer
    than ``min_voiced`` voiced frames; energy numbers NaN when either side is all silent."""
    nan = float("nan")
    st, st_ref = track.voiced_semitones(), ref.voiced_semitones()
    f0_ok = st.size >= min_voiced and st_ref.size >= min_voiced
    if f0_ok:
        mean_diff = float(st.mean() - st_ref.mean())
        std_diff = float(st.std() - st_ref.std())
        var_ref = float(st_ref.var())
        var_ratio = float(st.var() / var_ref) if var_ref > 0 else nan
        path = dtw_path((st - st.mean())[None, :], (st_ref - st_ref.mean())[None, :], max_dtw_frames)
        d = (st - st.mean())[path[:, 0]] - (st_ref - st_ref.mean())[path[:, 1]]
        contour = float(np.sqrt(np.mean(d ** 2)))
    else:
        mean_diff = std_diff = var_ratio = contour = nan

    # content alignment over all frames (MFCC without c0, which follows loudness)
    path = dtw_path(track.mfcc[1:], ref.mfcc[1:], max_dtw_frames)
    if path.size:
        va, vb = track.voiced[path[:, 0]], ref.voiced[path[:, 1]]
        agreement = float(np.mean(va == vb))
        both = va & vb
        if f0_ok and both.sum() >= min_voiced:
            diff = track.semitones[path[both, 0]] - ref.semitones[path[both, 1]]
            aligned = float(np.sqrt(np.mean(diff ** 2)))
        else:
            aligned = nan
    else:
        agreement = aligned = nan

    en, en_ref = track.energy_db(), ref.energy_db()
    if en.size and en_ref.size:
        w1 = _wasserstein(en, en_ref)
        w1c = _wasserstein(en - np.median(en), en_ref - np.median(en_ref))
        e_mean, e_std = float(en.mean() - en_ref.mean()), float(en.std() - en_ref.std())
    else:
        w1 = w1c = e_mean = e_std = nan
    vr = float(track.voiced.mean() - ref.voiced.mean()) if track.f0_hz.size and ref.f0_hz.size else nan
    return ProsodyComparison(f0_mean_diff_st=mean_diff, f0_std_diff_st=std_diff, f0_var_ratio=var_ratio,
                             f0_contour_dtw_st=contour, f0_aligned_rmse_st=aligned, voicing_agreement=agreement,
                             voiced_ratio_diff=vr, energy_w1_db=w1, energy_w1_centered_db=w1c,
                             energy_mean_diff_db=e_mean, energy_std_diff_db=e_std, n_voiced=int(st.size),
                             n_voiced_ref=int(st_ref.size))


def compare_audio(wav: Any, sr: int, ref_wav: Any, ref_sr: int, **kwargs) -> ProsodyComparison:
    """:func:`compare_prosody` of two waveforms (analyse the reference once with :func:`analyze_prosody` and call
    :func:`compare_prosody` yourself when it is shared by many utterances)."""
    return compare_prosody(analyze_prosody(wav, sr), analyze_prosody(ref_wav, ref_sr), **kwargs)


def prosody_summary(rows: Any, fields: Sequence[str] = PROSODY_FIELDS, group_by: Sequence[str] = ("system",),
                    buckets=None, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0, prefix: str = ""):
    """Mean ± std and bootstrap CIs of comparison fields per system (and length bucket): the long pandas table of
    :func:`eval.buckets.bucket_table`. ``rows`` are dicts (or a DataFrame) holding the fields (with ``prefix``,
    e.g. ``"vs_ref_"``) plus ``system``/``text``/``id``; without ``buckets`` everything is one bucket ``"all"``."""
    from eval.buckets import LengthBuckets, bucket_table

    metrics = [prefix + f for f in fields]
    if buckets is None:
        table = bucket_table(rows, metrics=metrics, buckets=LengthBuckets(), group_by=group_by, include_all=True,
                             corpus_rate=False, n_boot=n_boot, confidence=confidence, seed=seed)
        return table[table["bucket"] == "all"].reset_index(drop=True)
    return bucket_table(rows, metrics=metrics, buckets=buckets, group_by=group_by, corpus_rate=False,
                        n_boot=n_boot, confidence=confidence, seed=seed)


# ------------------------------------------------------------------------------------------------------------ plots

def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_f0_contours(tracks: Mapping[str, ProsodyTrack], title: str = "", semitones: bool = False,
                     figsize: tuple[float, float] = (6.0, 2.6)):
    """F0 contours of several utterances (label -> track) over time, in Hz or semitones (re 55 Hz)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    for label, track in tracks.items():
        ax.plot(track.times, track.semitones if semitones else track.f0_hz, label=str(label), lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("F0 (semitones re 55 Hz)" if semitones else "F0 (Hz)")
    if title:
        ax.set_title(title)
    if tracks:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_energy_distributions(tracks: Mapping[str, ProsodyTrack], title: str = "", bins: int = 40,
                              figsize: tuple[float, float] = (6.0, 2.6)):
    """Histograms (densities) of the non-silent frame energies (dBFS) of several utterances or systems."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    values = [t.energy_db() for t in tracks.values()]
    finite = np.concatenate([v for v in values if v.size]) if any(v.size for v in values) else np.zeros(0)
    edges = np.linspace(finite.min(), finite.max() + 1e-6, bins + 1) if finite.size else bins
    for label, v in zip(tracks, values):
        if v.size:
            ax.hist(v, bins=edges, density=True, histtype="step", label=str(label))
    ax.set_xlabel("frame energy (dBFS)")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    if tracks:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_metric_by_system(rows: Any, metric: str, group: str = "system", title: str = "",
                          figsize: tuple[float, float] = (6.0, 2.8)):
    """Box plot of one per-utterance metric (e.g. ``f0_mean_diff_st``) per system."""
    import pandas as pd

    plt = _pyplot()
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    fig, ax = plt.subplots(figsize=figsize)
    labels, data = [], []
    if metric in df and group in df:
        for name, g in df.groupby(group, sort=False):
            v = pd.to_numeric(g[metric], errors="coerce").to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if v.size:
                labels.append(str(name))
                data.append(v)
    if data:
        ax.boxplot(data, tick_labels=labels) if _boxplot_has_tick_labels(ax) else ax.boxplot(data, labels=labels)
        ax.ticklabel_format(axis="y", useOffset=False)  # nearly equal values: plain numbers, not "1e-5 + 14.95"
    ax.set_ylabel(metric)
    ax.set_title(title or metric)
    fig.tight_layout()
    return fig


def _boxplot_has_tick_labels(ax) -> bool:
    import inspect

    return "tick_labels" in inspect.signature(ax.boxplot).parameters


def figure_png(fig, dpi: int = 100, close: bool = True) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards unless ``close=False``)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    if close:
        _pyplot().close(fig)
    return buf.getvalue()


def pause_stats(wav: Any, sr: int, min_pause_s: float = 0.15, floor_db: float = SILENCE_DB,
                rel_db: float = SILENCE_REL_DB) -> dict[str, float | int]:
    """Pauses inside an utterance: silent runs of at least ``min_pause_s`` between the first and the last
    non-silent frame (the silence rule of :mod:`gsv_core.signal`, 25 ms frames every 10 ms). Returns
    ``n_pauses``, ``pause_s`` (their total), ``longest_pause_s``, ``leading_silence_s``, ``trailing_silence_s``."""
    from gsv_core.signal import HOP_S as SIG_HOP_S, frame_rms_db, silent_frames

    rms = frame_rms_db(wav, int(sr))
    silent = silent_frames(rms, floor_db, rel_db)
    loud = np.nonzero(~silent)[0]
    if loud.size == 0:
        total = float(len(rms) * SIG_HOP_S)
        return dict(n_pauses=0, pause_s=0.0, longest_pause_s=0.0, leading_silence_s=total, trailing_silence_s=0.0)
    inner = silent[loud[0]:loud[-1] + 1]
    runs, count = [], 0
    for s in inner:
        if s:
            count += 1
        elif count:
            runs.append(count)
            count = 0
    pauses = [r * SIG_HOP_S for r in runs if r * SIG_HOP_S >= min_pause_s - 1e-9]
    return dict(n_pauses=len(pauses), pause_s=float(sum(pauses)), longest_pause_s=float(max(pauses, default=0.0)),
                leading_silence_s=float(loud[0] * SIG_HOP_S),
                trailing_silence_s=float((len(rms) - 1 - loud[-1]) * SIG_HOP_S))
