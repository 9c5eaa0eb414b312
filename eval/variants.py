"""Punctuation / pause sensitivity: deterministic punctuation variants of a sentence, and the deltas they cause.

:func:`punctuation_variants` rewrites one sentence in the ways users (and LLM-written scripts) vary punctuation;
every variant is a pure function of the text, so a test set built from it is reproducible:

================  ===========================================================================================
``original``      the sentence as given
``no_punct``      every punctuation mark (Unicode ``P*``) removed, except inside words and numbers (3.5,
                  1,000, don't); a space is kept between two Latin words
``no_commas``     only the pause marks inside a sentence removed (，,、；;：: and the dashes), the end kept
``extra_commas``  a comma inserted after every ``every`` units (CJK characters or Latin words) of a stretch
                  without punctuation, at a word boundary (jieba for Chinese), never leaving fewer than
                  ``min_tail`` units after it; ``，`` in Chinese context, ``,`` + space in Latin context
``fullwidth``     ASCII punctuation -> full-width / Chinese marks (, -> ，  . -> 。  ? -> ？  ...); dots, commas
                  and apostrophes inside words and numbers (3.5, U.S., don't) are kept; the space after a
                  converted mark is dropped
``halfwidth``     full-width / Chinese marks -> ASCII (，-> ,  。-> .  、-> ,  “” -> " ...)
================  ===========================================================================================

A variant identical to the original is still returned, with ``same_as_original=True`` (drop it or keep it as a
control). :func:`expand_variants` turns ``(id, text)`` items into test rows (``id = <id>__<variant>``).

After the lead's run, :func:`variant_deltas` takes per-variant results (one row per system x sentence x variant
with e.g. ``error_rate``, ``duration``, ``pause_s``) and subtracts each sentence's ``original`` values;
:func:`variant_summary` gives mean ± std and a bootstrap CI of every delta per system and variant.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from eval.metrics import CJK_CHARS, MetricsError

VARIANT_KINDS: tuple[str, ...] = ("original", "no_punct", "no_commas", "extra_commas", "fullwidth", "halfwidth")
#: deltas computed by default (present columns only); ``pause_s`` comes from :func:`eval.prosody.pause_stats`
DEFAULT_DELTA_METRICS: tuple[str, ...] = ("error_rate", "duration", "pause_s", "n_pauses", "similarity")

_CJK_RE = re.compile(f"[{CJK_CHARS}]")
_PAUSE_MARKS = set("，,、；;：:—–‒―")
_TO_FULL = {",": "，", ".": "。", "?": "？", "!": "！", ":": "：", ";": "；", "(": "（", ")": "）", "[": "【",
            "]": "】", "~": "～"}
_TO_HALF = {"，": ",", "。": ".", "？": "?", "！": "!", "：": ":", "；": ";", "（": "(", "）": ")", "【": "[",
            "】": "]", "～": "~", "、": ",", "“": '"', "”": '"', "‘": "'", "’": "'", "《": '"', "》": '"',
            "「": '"', "」": '"', "『": '"', "』": '"', "…": "...", "—": "-", "｡": ".", "､": ","}


@dataclass(frozen=True)
class Variant:
    name: str
    text: str
    same_as_original: bool = False


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _is_latin_word_char(ch: str) -> bool:
    return bool(ch) and ch.isalnum() and not _CJK_RE.match(ch)


def _join_removed(text: str, keep) -> str:
    """Drop characters for which ``keep(i, ch)`` is False; keep one space where two Latin words would touch."""
    out: list[str] = []
    pending_space = False
    for i, ch in enumerate(text):
        if keep(i, ch):
            if pending_space and out and _is_latin_word_char(out[-1]) and _is_latin_word_char(ch):
                out.append(" ")
            pending_space = False
            out.append(ch)
        else:
            pending_space = True
    return re.sub(r"[ \t]{2,}", " ", "".join(out)).strip()


def _inside_word(text: str, i: int) -> bool:
    """A mark between two Latin letters/digits (3.5, U.S., don't, e-mail) is part of the word."""
    prev_ch = text[i - 1] if i > 0 else ""
    next_ch = text[i + 1] if i + 1 < len(text) else ""
    return _is_latin_word_char(prev_ch) and _is_latin_word_char(next_ch)


def no_punct(text: str) -> str:
    """Every punctuation mark removed, except those inside words and numbers (``3.5``, ``1,000``, ``don't``,
    ``e-mail``), which are not pauses."""
    return _join_removed(text, lambda i, ch: not _is_punct(ch) or _inside_word(text, i))


def no_commas(text: str) -> str:
    """The pause marks inside a sentence removed (not inside numbers/words); sentence ends kept."""
    return _join_removed(text, lambda i, ch: ch not in _PAUSE_MARKS or _inside_word(text, i))


def to_fullwidth(text: str) -> str:
    """ASCII punctuation -> full-width / Chinese marks, except inside words and numbers. Straight double quotes
    alternate “ and ”; the space after a converted mark is dropped (Chinese typesetting)."""
    out: list[str] = []
    quote_open = True
    i = 0
    while i < len(text):
        ch = text[i]
        initialism_dot = ch == "." and i >= 2 and text[i - 2] == "." and _is_latin_word_char(text[i - 1])
        if ch in _TO_FULL and not _inside_word(text, i) and not initialism_dot:
            out.append(_TO_FULL[ch])
            if i + 1 < len(text) and text[i + 1] == " ":
                i += 1
        elif ch == '"':
            out.append("“" if quote_open else "”")
            quote_open = not quote_open
        else:
            out.append(ch)
        i += 1
    return "".join(out).strip()


def to_halfwidth(text: str) -> str:
    """Full-width / Chinese marks -> ASCII; a space is added after a mark followed by a Latin word."""
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch in _TO_HALF:
            out.append(_TO_HALF[ch])
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if _is_latin_word_char(nxt) and _TO_HALF[ch] in ",.?!:;)":
                out.append(" ")
        else:
            out.append(ch)
    return "".join(out).strip()


def _units(piece: str, segmenter: str) -> list[tuple[str, int]]:
    """A stretch without punctuation as (chunk, units) in order: jieba words / characters for CJK, words for Latin."""
    chunks: list[tuple[str, int]] = []
    for m in re.finditer(f"[{CJK_CHARS}]+|[^{CJK_CHARS}]+", piece):
        part = m.group(0)
        if _CJK_RE.match(part):
            words = None
            if segmenter == "jieba":
                try:
                    import jieba_fast

                    jieba_fast.setLogLevel(60)
                    words = jieba_fast.lcut(part, HMM=False)
                except ImportError:
                    words = None
            for w in (words or list(part)):
                chunks.append((w, len(w)))
        else:
            for w in re.findall(r"\s+|\S+", part):
                chunks.append((w, 0 if w.isspace() else 1))
    return chunks


def extra_commas(text: str, every: int = 5, min_tail: int = 2, segmenter: str = "jieba") -> str:
    """Insert commas inside long stretches without punctuation (see the module docstring). ``segmenter`` is
    ``"jieba"`` (word boundaries in Chinese) or ``"chars"`` (any character boundary)."""
    if every < 1 or min_tail < 0:
        raise MetricsError(f"extra_commas needs every >= 1 and min_tail >= 0, got {every} and {min_tail}")
    if segmenter not in ("jieba", "chars"):
        raise MetricsError(f"segmenter must be 'jieba' or 'chars', got {segmenter!r}")
    out: list[str] = []
    for m in re.finditer(r"[^\W_]+(?:[\s'’.\-][^\W_]+)*|[\W_]+", text):
        piece = m.group(0)
        if not any(ch.isalnum() for ch in piece):
            out.append(piece)
            continue
        chunks = _units(piece, segmenter)
        total = sum(u for _, u in chunks)
        done = since = 0
        for k, (chunk, units) in enumerate(chunks):
            out.append(chunk)
            done += units
            since += units
            if units and since >= every and total - done >= max(1, min_tail):
                nxt = next((c for c, u in chunks[k + 1:] if u), "")
                cjk_side = bool(_CJK_RE.match(chunk[-1])) or bool(_CJK_RE.match(nxt[:1]))
                if cjk_side:
                    out.append("，")
                else:
                    out.append(",")
                since = 0
    return "".join(out)


def punctuation_variants(text: str, kinds: Sequence[str] = VARIANT_KINDS, every: int = 5, min_tail: int = 2,
                         segmenter: str = "jieba") -> list[Variant]:
    """The variants of ``text`` named in ``kinds`` (order kept; see the module docstring)."""
    makers = {"original": lambda t: t, "no_punct": no_punct, "no_commas": no_commas,
              "extra_commas": lambda t: extra_commas(t, every, min_tail, segmenter), "fullwidth": to_fullwidth,
              "halfwidth": to_halfwidth}
    out = []
    for kind in kinds:
        if kind not in makers:
            raise MetricsError(f"unknown punctuation variant {kind!r}: use any of {', '.join(VARIANT_KINDS)}")
        new = makers[kind](text)
        out.append(Variant(kind, new, same_as_original=(kind != "original" and new == text)))
    return out


def expand_variants(items: Iterable[tuple[str, str] | Mapping[str, Any]], kinds: Sequence[str] = VARIANT_KINDS,
                    skip_unchanged: bool = False, **options) -> list[dict[str, Any]]:
    """Test rows for every item x variant: ``id`` (``<id>__<variant>``), ``base_id``, ``variant``, ``text``,
    ``same_as_original`` plus the item's other fields (ref_audio, lang ...). Items are ``(id, text)`` pairs or
    dicts with ``id`` and ``text``."""
    rows = []
    for item in items:
        base = dict(item) if isinstance(item, Mapping) else {"id": item[0], "text": item[1]}
        for v in punctuation_variants(base["text"], kinds, **options):
            if skip_unchanged and v.same_as_original:
                continue
            rows.append({**base, "id": f"{base['id']}__{v.name}", "base_id": base["id"], "variant": v.name,
                         "text": v.text, "same_as_original": v.same_as_original})
    return rows


def variant_deltas(results: Any, metrics: Sequence[str] = DEFAULT_DELTA_METRICS, baseline: str = "original",
                   keys: Sequence[str] = ("system", "base_id"), variant_col: str = "variant"):
    """Per-row differences to the same sentence's ``baseline`` variant: a pandas table with ``keys``,
    ``variant``, each metric and ``delta_<metric>`` (variant - baseline), plus ``ratio_duration`` when
    ``duration`` is present. Rows whose sentence has no baseline row get NaN deltas. ``results`` are dicts or a
    DataFrame; a result without ``base_id`` but with an ``id`` like ``x__variant`` gets ``base_id = x``."""
    import numpy as np
    import pandas as pd

    df = results.copy() if isinstance(results, pd.DataFrame) else pd.DataFrame(list(results))
    if "base_id" in keys and "base_id" not in df and "id" in df:
        df["base_id"] = df["id"].astype(str).str.rsplit("__", n=1).str[0]
    if variant_col not in df:
        if "id" not in df:
            raise MetricsError("variant results need a 'variant' column (or ids like 'x__variant')")
        df[variant_col] = df["id"].astype(str).str.rsplit("__", n=1).str[-1]
    keys = [k for k in keys if k in df]
    present = [m for m in metrics if m in df]
    for m in present:
        df[m] = pd.to_numeric(df[m], errors="coerce").astype(float)
    base = df[df[variant_col] == baseline]
    if base.duplicated(subset=keys).any():
        raise MetricsError(f"more than one {baseline!r} row for some {keys}: give one result per sentence")
    base = base[keys + present].rename(columns={m: f"_base_{m}" for m in present})
    merged = df.merge(base, on=keys, how="left") if keys else df.assign(**{f"_base_{m}": np.nan for m in present})
    for m in present:
        merged[f"delta_{m}"] = merged[m] - merged[f"_base_{m}"]
    if "duration" in present:
        with np.errstate(divide="ignore", invalid="ignore"):
            merged["ratio_duration"] = merged["duration"] / merged["_base_duration"]
    return merged.drop(columns=[f"_base_{m}" for m in present])


def variant_summary(deltas: Any, group_by: Sequence[str] = ("system", "variant"), n_boot: int = 2000,
                    confidence: float = 0.95, seed: int = 0):
    """Mean ± std and bootstrap CI of every ``delta_*`` / ``ratio_*`` column per system and variant (long table:
    ``*group_by, metric, n, mean, std, ci_low, ci_high, mean_std``)."""
    import numpy as np
    import pandas as pd

    from eval.stats import bootstrap_ci, mean_std

    cols = [c for c in deltas.columns if c.startswith(("delta_", "ratio_"))]
    groups = [g for g in group_by if g in deltas]
    rows = []
    for key, g in deltas.groupby(groups, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for c in cols:
            v = pd.to_numeric(g[c], errors="coerce").to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            ms = mean_std(v)
            lo = hi = float("nan")
            if v.size:
                ci = bootstrap_ci(v, n=n_boot, confidence=confidence, seed=seed)
                lo, hi = ci.lo, ci.hi
            rows.append(dict(zip(groups, key), metric=c, n=ms.n, mean=ms.mean, std=ms.std, ci_low=lo, ci_high=hi,
                             mean_std=ms.format()))
    return pd.DataFrame(rows)
