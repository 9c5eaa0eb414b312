"""Length buckets: short / medium / long sentences reported apart, as mean ± std with bootstrap CIs per system.

A sentence's bucket depends on the sentence only, never on the system, so every system is compared on the same
sentences in each bucket:

- ``by="tokens"`` (default): scoring tokens of the text (:func:`text_length`: each CJK character is one, each
  Latin word / number is one); edges :data:`DEFAULT_TOKEN_EDGES` (short ≤ 15 < medium ≤ 40 < long);
- ``by="chars"``: characters of the normalised text without spaces (CJK characters + Latin letters and digits);
  edges :data:`DEFAULT_CHAR_EDGES`;
- ``by="seconds"``: audio duration, averaged over the systems that spoke the sentence (so one sentence has one
  duration); edges :data:`DEFAULT_SECONDS_EDGES` (short ≤ 4 s < medium ≤ 10 s < long).

Bucket ``i`` holds values ``edges[i-1] < v <= edges[i]``; any number of edges works (labels one more than edges).

:func:`bucket_table` gives a long pandas table (one row per system × bucket × metric: n, mean, std, CI) for
report.json/CSV; :func:`bucket_pivot` turns it into a wide "mean ± std" table for HTML. Error rates come twice:
``error_rate`` (mean ± std of per-utterance rates, CI by bootstrap over utterances) and ``error_rate_corpus``
(pooled errors / pooled reference tokens, CI by :func:`eval.stats.bootstrap_corpus_rate`, no std).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from eval.metrics import MetricsError

DEFAULT_LABELS: tuple[str, ...] = ("short", "medium", "long")
DEFAULT_TOKEN_EDGES: tuple[float, ...] = (15, 40)
DEFAULT_CHAR_EDGES: tuple[float, ...] = (20, 60)
DEFAULT_SECONDS_EDGES: tuple[float, ...] = (4.0, 10.0)
BUCKET_UNITS = ("tokens", "chars", "seconds")
_DEFAULT_EDGES = {"tokens": DEFAULT_TOKEN_EDGES, "chars": DEFAULT_CHAR_EDGES, "seconds": DEFAULT_SECONDS_EDGES}
#: per-utterance metrics tabulated by default (present ones only)
DEFAULT_METRICS: tuple[str, ...] = ("error_rate", "similarity", "rtf", "duration", "speaking_rate")
_COUNT_KEYS = ("substitutions", "deletions", "insertions", "hits", "ref_len")


def text_length(text: str | None, unit: str = "tokens") -> int:
    """Length of ``text`` for bucketing: scoring tokens (``"tokens"``) or characters without spaces (``"chars"``)
    of the scoring-normalised text."""
    from eval.metrics import normalize_text, tokenize

    norm = normalize_text(text)
    if unit == "tokens":
        return len(tokenize(norm, "mixed", normalized=True))
    if unit == "chars":
        return len(norm.replace(" ", ""))
    raise MetricsError(f"text_length unit must be 'tokens' or 'chars', got {unit!r}")


@dataclass(frozen=True)
class LengthBuckets:
    """Bucket edges and labels for one length unit (see the module docstring)."""

    by: str = "tokens"
    edges: tuple[float, ...] | None = None
    labels: tuple[str, ...] = DEFAULT_LABELS

    def __post_init__(self):
        if self.by not in BUCKET_UNITS:
            raise MetricsError(f"length buckets go by one of {', '.join(BUCKET_UNITS)}, got {self.by!r}")
        edges = tuple(float(e) for e in (self.edges if self.edges is not None else _DEFAULT_EDGES[self.by]))
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise MetricsError(f"bucket edges must increase strictly, got {list(edges)}")
        if len(self.labels) != len(edges) + 1:
            raise MetricsError(f"{len(edges)} edge(s) make {len(edges) + 1} buckets, got {len(self.labels)} "
                               f"label(s) {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise MetricsError(f"bucket labels must differ, got {list(self.labels)}")

    def label(self, value: float) -> str | None:
        """The bucket of a length (None for NaN / missing)."""
        if value is None or not math.isfinite(float(value)):
            return None
        for edge, name in zip(self.edges, self.labels):
            if value <= edge:
                return name
        return self.labels[-1]

    def describe(self) -> dict[str, str]:
        """Human-readable ranges, e.g. ``{"short": "≤ 15 tokens", "medium": "15–40 tokens", "long": "> 40 tokens"}``."""
        unit = {"tokens": "tokens", "chars": "chars", "seconds": "s"}[self.by]
        fmt = (lambda x: f"{x:g}")
        out = {}
        for i, name in enumerate(self.labels):
            if i == 0:
                out[name] = f"≤ {fmt(self.edges[0])} {unit}"
            elif i == len(self.edges):
                out[name] = f"> {fmt(self.edges[-1])} {unit}"
            else:
                out[name] = f"{fmt(self.edges[i - 1])}–{fmt(self.edges[i])} {unit}"
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by, "edges": list(self.edges), "labels": list(self.labels), "ranges": self.describe()}


def _frame(data) -> "Any":
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data.copy()
    return pd.DataFrame(list(data))


def assign_buckets(data: "Iterable[Mapping[str, Any]] | Any", buckets: LengthBuckets = LengthBuckets(),
                   text_col: str = "text", duration_col: str = "duration",
                   sentence_cols: Sequence[str] = ("id", "sample")) -> "Any":
    """A copy of ``data`` (results.jsonl rows or a DataFrame) with columns ``length`` and ``bucket``.

    ``by="seconds"``: the length of a sentence (rows sharing ``sentence_cols``) is the mean of ``duration_col``
    over its rows, so every system's utterance of it lands in the same bucket."""
    df = _frame(data)
    if df.empty:
        df["length"], df["bucket"] = [], []
        return df
    if buckets.by == "seconds":
        if duration_col not in df:
            raise MetricsError(f"bucketing by seconds needs a {duration_col!r} column")
        keys = [c for c in sentence_cols if c in df]
        durations = df[duration_col].astype(float)
        df["length"] = durations.groupby([df[k] for k in keys]).transform("mean") if keys else durations
    else:
        if text_col not in df:
            raise MetricsError(f"bucketing by {buckets.by} needs a {text_col!r} column")
        cache: dict[str, int] = {}
        df["length"] = [cache.setdefault(t, text_length(t, buckets.by)) for t in df[text_col].fillna("").astype(str)]
    df["bucket"] = [buckets.label(v) for v in df["length"]]
    return df


def _num_column(df, col: str):
    import pandas as pd

    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _count_pairs(g) -> list[tuple[int, int]]:
    """(errors, ref_len) of the rows whose error rate is finite and whose counts are all present."""
    import numpy as np

    rate = _num_column(g, "error_rate").to_numpy()
    cols = {k: _num_column(g, k).to_numpy() for k in _COUNT_KEYS}
    ok = np.isfinite(rate) & np.all([np.isfinite(v) for v in cols.values()], axis=0)
    errors = cols["substitutions"] + cols["deletions"] + cols["insertions"]
    return [(int(e), int(r)) for e, r in zip(errors[ok], cols["ref_len"][ok])]


def bucket_table(data: "Iterable[Mapping[str, Any]] | Any", metrics: Sequence[str] = DEFAULT_METRICS,
                 buckets: LengthBuckets = LengthBuckets(), group_by: Sequence[str] = ("system",),
                 include_all: bool = True, corpus_rate: bool = True, n_boot: int = 2000,
                 confidence: float = 0.95, seed: int = 0, text_col: str = "text",
                 duration_col: str = "duration") -> "Any":
    """Long table of per-bucket statistics: columns ``*group_by, bucket, metric, n, mean, std, ci_low, ci_high,
    mean_std`` (``mean_std`` is the formatted "mean ± std"). Missing / NaN / infinite values of a metric are left
    out of that metric's row. ``include_all`` adds a bucket ``"all"``; ``corpus_rate`` adds ``error_rate_corpus``
    rows when the count columns are present. Buckets keep the label order, then ``all``."""
    import pandas as pd

    from eval.stats import bootstrap_ci, bootstrap_corpus_rate, mean_std

    df = assign_buckets(data, buckets, text_col=text_col, duration_col=duration_col)
    groups = [g for g in group_by if g in df]
    present = [m for m in metrics if m in df]
    order = list(buckets.labels) + (["all"] if include_all else [])
    rows: list[dict[str, Any]] = []
    if df.empty:
        return pd.DataFrame(columns=[*groups, "bucket", "metric", "n", "mean", "std", "ci_low", "ci_high",
                                     "mean_std"])
    parts = [("all", df)] if include_all else []
    parts = [(b, df[df["bucket"] == b]) for b in buckets.labels] + parts
    for bucket, sub in parts:
        grouped = sub.groupby(groups, sort=False, dropna=False) if groups else [((), sub)]
        for key, g in grouped:
            key = key if isinstance(key, tuple) else (key,)
            base = dict(zip(groups, key))
            for metric in present:
                vals = _num_column(g, metric)
                vals = vals[vals.map(math.isfinite)]
                ms = mean_std(vals.to_numpy())
                lo = hi = float("nan")
                if ms.n:
                    ci = bootstrap_ci(vals.to_numpy(), n=n_boot, confidence=confidence, seed=seed)
                    lo, hi = ci.lo, ci.hi
                rows.append(dict(base, bucket=bucket, metric=metric, n=ms.n, mean=ms.mean, std=ms.std,
                                 ci_low=lo, ci_high=hi, mean_std=ms.format()))
            if corpus_rate and "error_rate" in present and all(k in g for k in _COUNT_KEYS):
                pairs = _count_pairs(g)
                if pairs and sum(r for _, r in pairs) > 0:
                    ci = bootstrap_corpus_rate(pairs, n=n_boot, confidence=confidence, seed=seed)
                    rows.append(dict(base, bucket=bucket, metric="error_rate_corpus", n=len(pairs), mean=ci.mean,
                                     std=float("nan"), ci_low=ci.lo, ci_high=ci.hi, mean_std=f"{ci.mean:.3f}"))
    out = pd.DataFrame(rows)
    if not out.empty:
        out["bucket"] = pd.Categorical(out["bucket"], categories=order, ordered=True)
    return out


def bucket_pivot(table: "Any", value: str = "mean_std", group_by: Sequence[str] = ("system",)) -> "Any":
    """Wide table for HTML: one row per group (system), columns ``(metric, bucket)``, cells ``value``."""
    groups = [g for g in group_by if g in table]
    if table.empty:
        return table
    return table.pivot_table(index=groups or None, columns=["metric", "bucket"], values=value,
                             aggfunc="first", observed=True)


def bucket_counts(data: "Iterable[Mapping[str, Any]] | Any", buckets: LengthBuckets = LengthBuckets(),
                  sentence_cols: Sequence[str] = ("id", "sample"), text_col: str = "text",
                  duration_col: str = "duration") -> dict[str, int]:
    """Number of distinct sentences per bucket (label order)."""
    df = assign_buckets(data, buckets, text_col=text_col, duration_col=duration_col,
                        sentence_cols=sentence_cols)
    keys = [c for c in sentence_cols if c in df]
    uniq = df.drop_duplicates(subset=keys) if keys else df
    return {b: int((uniq["bucket"] == b).sum()) for b in buckets.labels}
