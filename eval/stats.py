"""Bootstrap confidence intervals for comparing systems (percentile bootstrap, deterministic with a seed).

- :func:`bootstrap_ci`: mean of per-utterance values (MOS, similarity, RTF, ...) with its confidence interval;
- :func:`paired_bootstrap_diff`: mean of per-sentence differences ``a - b`` between two systems scored on the same
  sentences (sentences are resampled, pairs stay together);
- :func:`bootstrap_corpus_rate` / :func:`paired_bootstrap_corpus_diff`: the corpus-level CER/WER (total errors /
  total reference length, as :func:`eval.metrics.corpus_score`) and the difference between two systems, from
  resampled per-sentence counts, so long sentences weigh as much as they do in the corpus score;
- :func:`bootstrap_utterance_mean_rate` / :func:`rate_cis`: the *mean of per-utterance* rates (seed-tts-eval's WER)
  next to the corpus rate, each with its interval (:func:`eval.metrics.summarize_rates` names the two apart);
- :func:`mean_std`: mean ± sample standard deviation (ddof=1), the "mean ± std" of the length-bucket tables.

Every function returns a :class:`CI` ``(mean, lo, hi)``: the point estimate on the full sample and the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the bootstrap distribution. NaN values are
refused (drop failed utterances first) so a CI never silently covers fewer items than the table beside it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from gsv_core.errors import GSVError

_CHUNK = 256  # bootstrap replicates drawn per batch (bounds memory for large test sets)


class StatsError(GSVError):
    """Values that cannot be bootstrapped (empty, NaN, unequal lengths, bad settings)."""


class CI(NamedTuple):
    mean: float
    lo: float
    hi: float

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi


def _check(n: int, confidence: float) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise StatsError(f"the number of bootstrap resamples must be a positive integer, got {n!r}")
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _as_array(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name}: expected numbers ({exc})") from None
    if arr.ndim != 1:
        raise StatsError(f"{name}: expected a flat list of numbers, got shape {arr.shape}")
    if arr.size == 0:
        raise StatsError(f"{name}: no values to bootstrap")
    bad = np.nonzero(~np.isfinite(arr))[0]
    if bad.size:
        raise StatsError(f"{name}: {bad.size} value(s) are NaN or infinite (positions {bad[:10].tolist()}); "
                         "drop failed utterances before computing confidence intervals")
    return arr


def _bootstrap(columns: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], n: int, confidence: float,
               seed: int) -> CI:
    """Resample rows of ``columns`` jointly ``n`` times; ``statistic`` maps [reps, m] arrays to [reps] values."""
    _check(n, confidence)
    m = columns[0].size
    point = float(statistic(*(c[None, :] for c in columns))[0])
    rng = np.random.default_rng(seed)
    stats = np.empty(n)
    for start in range(0, n, _CHUNK):
        reps = min(_CHUNK, n - start)
        idx = rng.integers(0, m, size=(reps, m))
        stats[start:start + reps] = statistic(*(c[idx] for c in columns))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return CI(point, float(lo), float(hi))


def bootstrap_ci(values: Sequence[float], n: int = 2000, confidence: float = 0.95, seed: int = 0) -> CI:
    """Mean of ``values`` and its percentile-bootstrap confidence interval."""
    arr = _as_array(values, "bootstrap_ci")
    return _bootstrap([arr], lambda x: x.mean(axis=1), n, confidence, seed)


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n: int = 2000, confidence: float = 0.95,
                          seed: int = 0) -> CI:
    """Mean per-sentence difference ``a - b`` (same sentences, same order) with its bootstrap interval.

    An interval that excludes 0 means the systems differ at that confidence."""
    xa, xb = _as_array(a, "system A"), _as_array(b, "system B")
    if xa.size != xb.size:
        raise StatsError(f"paired comparison needs one value per sentence for both systems, "
                         f"got {xa.size} and {xb.size}")
    return bootstrap_ci(xa - xb, n=n, confidence=confidence, seed=seed)


def _counts(counts: Sequence[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(errors, reference lengths) from ErrorCounts or (errors, ref_len) pairs."""
    errors, lengths = [], []
    for i, c in enumerate(counts):
        if hasattr(c, "errors") and hasattr(c, "ref_len"):
            e, r = c.errors, c.ref_len
        else:
            try:
                e, r = c
            except (TypeError, ValueError):
                raise StatsError(f"{name}: item {i} is neither ErrorCounts nor an (errors, ref_len) pair") from None
        errors.append(e)
        lengths.append(r)
    err, ref = _as_array(errors, name), _as_array(lengths, name)
    if (err < 0).any() or (ref < 0).any():
        raise StatsError(f"{name}: error counts and reference lengths must not be negative")
    if ref.sum() <= 0:
        raise StatsError(f"{name}: every reference is empty, so no error rate can be computed")
    return err, ref


def _rate(err: np.ndarray, ref: np.ndarray) -> np.ndarray:
    total = ref.sum(axis=1)
    # a resample made only of empty references has no rate; count it as its errors per one token
    return err.sum(axis=1) / np.maximum(total, 1.0)


def bootstrap_corpus_rate(counts: Sequence[Any], n: int = 2000, confidence: float = 0.95, seed: int = 0) -> CI:
    """Corpus CER/WER (sum of errors / sum of reference lengths) with a bootstrap interval over sentences."""
    err, ref = _counts(counts, "corpus rate")
    return _bootstrap([err, ref], _rate, n, confidence, seed)


def paired_bootstrap_corpus_diff(counts_a: Sequence[Any], counts_b: Sequence[Any], n: int = 2000,
                                 confidence: float = 0.95, seed: int = 0) -> CI:
    """Corpus CER/WER of system A minus that of system B, resampling sentences jointly (paired)."""
    err_a, ref_a = _counts(counts_a, "system A")
    err_b, ref_b = _counts(counts_b, "system B")
    if err_a.size != err_b.size:
        raise StatsError(f"paired comparison needs counts for the same sentences in both systems, "
                         f"got {err_a.size} and {err_b.size}")
    return _bootstrap([err_a, ref_a, err_b, ref_b],
                      lambda ea, ra, eb, rb: _rate(ea, ra) - _rate(eb, rb), n, confidence, seed)


class MeanStd(NamedTuple):
    """Mean and sample standard deviation (ddof=1; NaN below two values) of ``n`` values."""

    mean: float
    std: float
    n: int

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``"12.300 ± 4.560"`` (``scale=100`` for percentages); ``"—"`` for the std of a single value."""
        if self.n == 0 or not np.isfinite(self.mean):
            return "—"
        std = f"{self.std * scale:.{digits}f}" if np.isfinite(self.std) else "—"
        return f"{self.mean * scale:.{digits}f} ± {std}"


def mean_std(values: Sequence[float]) -> MeanStd:
    """Mean ± sample standard deviation of the finite ``values`` (NaN/inf are dropped and not counted)."""
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return MeanStd(float("nan"), float("nan"), 0)
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return MeanStd(float(arr.mean()), std, int(arr.size))


def _utterance_rates(counts: Sequence[Any], name: str) -> np.ndarray:
    err, ref = _counts(counts, name)
    keep = ref > 0
    return err[keep] / ref[keep]


def bootstrap_utterance_mean_rate(counts: Sequence[Any], n: int = 2000, confidence: float = 0.95,
                                  seed: int = 0) -> CI:
    """Mean of per-utterance CER/WER (seed-tts-eval's aggregation) with a bootstrap interval; utterances with an
    empty reference are left out (as in :func:`eval.metrics.summarize_rates`)."""
    return bootstrap_ci(_utterance_rates(counts, "utterance mean rate"), n=n, confidence=confidence, seed=seed)


def paired_bootstrap_utterance_mean_diff(counts_a: Sequence[Any], counts_b: Sequence[Any], n: int = 2000,
                                         confidence: float = 0.95, seed: int = 0) -> CI:
    """Mean per-utterance rate of system A minus that of system B (same sentences, same order), paired."""
    err_a, ref_a = _counts(counts_a, "system A")
    err_b, ref_b = _counts(counts_b, "system B")
    if err_a.size != err_b.size:
        raise StatsError(f"paired comparison needs counts for the same sentences in both systems, "
                         f"got {err_a.size} and {err_b.size}")
    keep = (ref_a > 0) & (ref_b > 0)
    return paired_bootstrap_diff(err_a[keep] / ref_a[keep], err_b[keep] / ref_b[keep], n=n,
                                 confidence=confidence, seed=seed)


def rate_cis(counts: Sequence[Any], n: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, CI]:
    """``{"corpus": CI, "utterance_mean": CI}``: both aggregations of an error rate with their intervals."""
    return {"corpus": bootstrap_corpus_rate(counts, n=n, confidence=confidence, seed=seed),
            "utterance_mean": bootstrap_utterance_mean_rate(counts, n=n, confidence=confidence, seed=seed)}
