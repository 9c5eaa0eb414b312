"""Intelligibility scoring: CER (Chinese, mixed Chinese-English) and WER (English) with the error kinds apart.

Both texts go through the same normalisation, Chinese is split into characters, English into words, and jiwer
aligns the token lists (the recipe of seed-tts-eval's ``run_wer.py``; its exact procedure, quirks included, is
:mod:`eval.seedtts`, selected with ``protocol="seed-tts-eval"`` in :func:`score_with_protocol`). Substitutions,
deletions and insertions are kept separately because users name two of them: an **insertion** is what they call
*repetition* (复读, the model says more than the text) and a **deletion** is a *swallowed word* (吞字, the model
skips part of the text).

Aggregation (:func:`summarize_rates`) reports both numbers, named apart, because they differ by as much as a
normalisation change does:

- the **corpus rate** (``corpus_rate``, pooled or "micro"): errors summed over utterances / reference tokens
  summed (:func:`corpus_score`); long sentences weigh more;
- the **mean of per-utterance rates** (``utterance_mean_rate``, "macro"): what seed-tts-eval's ``average_wer.py``
  reports as WER (every utterance weighs the same; empty references are left out and counted).

:func:`score_fields` gives one utterance's record fields (optionally with the seed-tts-eval numbers) and
:func:`aggregate_fields` a system's summary fields (``error_rate_corpus``, ``error_rate_utt_mean``, ...).
docs/eval-metrics.md explains every decision below with examples.

Normalisation for scoring (:func:`normalize_text`), in this order (docs/eval-metrics.md has the full table):

1. ``ʼ`` (modifier apostrophe) becomes ``'``; every punctuation (Unicode ``P*``) or symbol (``S*``) character whose
   compatibility form holds a letter or digit is removed *before* NFKC, so a symbol never turns into letters
   (``™`` is removed, not "tm"; ``℃``/``㎏`` vanish like ``%``);
2. Unicode NFKC (full-width letters, digits and punctuation become their ASCII forms, ``½`` becomes ``1⁄2``,
   ``²`` becomes ``2``, compatibility ideographs are unified);
3. Traditional -> Simplified Chinese with OpenCC ``t2s`` (so 說話 and 说话 score the same);
4. case folding (``str.casefold``);
5. optionally, numerals converted with cn2an (``numerals="zh"``: ``25.5`` -> 二十五点五; ``numerals="digits"``:
   二十五点五 -> ``25.5``), the same for both texts; off by default;
6. punctuation and symbols removed (``P*``/``S*``). Inside a word some of them join instead of breaking:

   - an apostrophe between letters or digits is deleted (``don't`` -> ``dont``, ``90's`` -> ``90s``);
   - ``.`` ``,`` ``/`` ``⁄`` between two digits are deleted (``3.5`` -> ``35``, ``1,000`` -> ``1000``,
     ``1/2`` and ``½`` -> ``12``);
   - dots of an initialism (single letters with dots) are deleted (``U.S.`` -> ``us``, ``e.g.`` -> ``eg``);
   - a hyphen after a one-letter prefix is deleted (``e-mail`` -> ``email``, ``x-ray`` -> ``xray``);

   every other one is a word break (``well-known`` -> ``well known``, ``hello,world`` -> ``hello world``,
   ``example.com`` -> ``example com``);
7. optionally, interjections dropped (``drop_interjections=True``; off by default, so a model that adds or
   swallows an 嗯 or an "um" is scored for it): the English words in :data:`EN_INTERJECTIONS` are dropped as
   whole words, the Chinese interjections in :data:`ZH_INTERJECTIONS` wherever they occur (Chinese has no word
   breaks; the list holds only characters that are almost never part of a word, plus doubled laughs such as 哈哈);
8. whitespace collapsed: in the normalised text a single space separates Latin words; CJK characters carry no
   spaces around them.

Tokenisation (:func:`tokenize`) by language: ``zh`` (also ``yue``, ``ja``, ``ko``): every non-space character is
one token; ``en`` and ``mixed`` (``zh-en``): each CJK character is one token and each run of other letters /
digits is one word, so a Chinese character inside an English hypothesis is one wrong word and never glues the
words around it (``hello 大 world`` against ``hello big world``: one substitution, WER 1/3). ``auto`` picks
``mixed`` when the reference has both CJK characters (all CJK blocks, Extension B and later included) and Latin
words, else ``zh`` or ``en``. The metric is CER for ``zh``/``mixed`` (character level) and WER for ``en``.
"""
from __future__ import annotations

import math
import re
import statistics
import unicodedata
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from gsv_core import languages
from gsv_core.errors import GSVError


class MetricsError(GSVError):
    """Bad input to the scoring functions (an unknown language, a malformed list of counts)."""


#: user-facing names of the error kinds (insertions are heard as repetition, deletions as swallowed words)
ERROR_LABELS: dict[str, str] = {
    "substitutions": "substitutions",
    "deletions": "swallowed words",
    "insertions": "repetition",
}

#: English interjections / fillers dropped as whole words when ``drop_interjections=True``
EN_INTERJECTIONS: frozenset[str] = frozenset({
    "uh", "uhh", "um", "umm", "uhm", "erm", "er", "ah", "ahh", "eh", "oh", "ooh", "hmm", "hm", "mm", "mhm",
    "huh", "uh-huh", "uhhuh", "ha", "haha", "hahaha", "wow", "whoa", "oops", "ugh",
})
#: Chinese interjections dropped wherever they occur when ``drop_interjections=True``: doubled laughs first, then
#: single characters that are (nearly) only ever interjections or sentence-final exclamations
ZH_INTERJECTIONS: tuple[str, ...] = (
    "哈哈", "呵呵", "嘿嘿", "嘻嘻", "哼哼",
    "啊", "呀", "哇", "嗯", "哦", "噢", "喔", "呃", "唉", "哎", "诶", "欸", "嘿", "哟", "嗨", "咦",
)

LANGUAGES: tuple[str, ...] = ("zh", "en", "mixed", "auto")
#: numeral handling of :func:`normalize_text`: None keeps them; "zh" writes digits as Chinese numerals, "digits"
#: Chinese numerals as digits (both with cn2an, applied to reference and hypothesis alike)
NUMERAL_MODES: tuple[str | None, ...] = (None, "zh", "digits")
#: scoring protocols of :func:`score_with_protocol`
PROTOCOLS: tuple[str, ...] = ("gsv", "seed-tts-eval")
_MIXED_LANGS = {"mixed", "zh-en", "zh_en", "en-zh"}

# Scored one character at a time: CJK radicals, strokes and symbols-with-letters (々〆〇), kana, bopomofo,
# hangul (syllables and jamo), unified ideographs with Extension A, the compatibility block, and planes 2-3
# (Extensions B-I, compatibility supplement).
CJK_CHARS = ("\u1100-\u11ff\u2e80-\u2fdf\u3005-\u3007\u3040-\u30ff\u3100-\u318f\u31a0-\u31ff\u3400-\u4dbf"
             "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\U00020000-\U0003ffff")
_CJK_CHARS = CJK_CHARS
CJK_RE = re.compile(f"[{CJK_CHARS}]")
_CJK_RE = CJK_RE
_TOKEN_MIXED_RE = re.compile(f"[{CJK_CHARS}]|[^\\s{CJK_CHARS}]+")
_LATIN_WORD_RE = re.compile(f"[^\\s{CJK_CHARS}]+")
# a letter / a letter or digit that is not CJK (Latin, Greek, Cyrillic, ...)
_LETTER = f"(?:(?![{CJK_CHARS}])[^\\W\\d_])"
_WORDCH = f"(?:(?![{CJK_CHARS}])[^\\W_])"
# initialisms: single letters joined by dots, optionally ending with one (u.s. / u.s.a. / e.g. / a.m.)
_INITIALISM_RE = re.compile(f"(?<!{_WORDCH}){_LETTER}(?:\\.{_LETTER})+\\.?(?!{_WORDCH})")
# a one-letter prefix joined by a hyphen (e-mail, x-ray, t-shirt)
_LETTER_PREFIX_RE = re.compile(f"(?<!{_WORDCH})({_LETTER})[-\u2010\u2011](?={_LETTER})")
_APOSTROPHES = "'\u2018\u2019\u02bc`"
_DIGIT_JOINERS = ".,/\u2044"


def canonical_language(lang: str | None, reference: str = "") -> str:
    """``zh``, ``en`` or ``mixed`` for a language code (``auto``/``None`` decided from the reference text)."""
    key = (lang or "auto").strip().lower()
    if key in _MIXED_LANGS:
        return "mixed"
    if key in ("all_en", "eng", "english"):
        return "en"
    code = languages.scoring_language(key)  # a text mode or .list code -> its language (the one table)
    if code in languages.LANGUAGES:
        return "zh" if languages.LANGUAGES[code].char_level else "en"
    if key in ("auto", "auto_yue"):
        text = normalize_text(reference)
        has_cjk = bool(CJK_RE.search(text))
        has_latin = bool(_LATIN_WORD_RE.search(CJK_RE.sub(" ", text)))
        if has_cjk and has_latin:
            return "mixed"
        return "zh" if has_cjk else "en"
    raise MetricsError(f"unknown scoring language {lang!r}: use one of zh, en, mixed (zh-en) or auto")


def metric_name(lang: str | None, reference: str = "") -> str:
    """``"CER"`` for Chinese and mixed Chinese-English (character level), ``"WER"`` for English."""
    return "WER" if canonical_language(lang, reference) == "en" else "CER"


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def _drop_lettered_symbols(text: str) -> str:
    """Remove punctuation/symbol characters whose NFKC form holds letters or digits (™ -> "TM", ℃ -> "°C")."""
    out = []
    for ch in text:
        if ord(ch) > 0x7f and _is_mark(ch) and any(c.isalnum() for c in unicodedata.normalize("NFKC", ch)):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _strip_punctuation(text: str) -> str:
    text = _INITIALISM_RE.sub(lambda m: m.group(0).replace(".", ""), text)
    text = _LETTER_PREFIX_RE.sub(r"\1", text)
    out = []
    n = len(text)
    for i, ch in enumerate(text):
        if not _is_mark(ch) and ch not in _APOSTROPHES:
            out.append(ch)
            continue
        prev_ch = text[i - 1] if i > 0 else ""
        next_ch = text[i + 1] if i + 1 < n else ""
        if ch in _APOSTROPHES and prev_ch.isalnum() and next_ch.isalnum():
            continue  # don't -> dont, 90's -> 90s
        if ch in _DIGIT_JOINERS and prev_ch.isdigit() and next_ch.isdigit():
            continue  # 3.5 -> 35, 1,000 -> 1000, 1/2 -> 12
        out.append(" ")
    return "".join(out)


def _space_cjk(text: str) -> str:
    """Collapse whitespace; no spaces next to CJK characters."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(f"(?<=[{CJK_CHARS}]) | (?=[{CJK_CHARS}])", "", text)


def convert_numerals(text: str, mode: str | None) -> str:
    """Digits -> Chinese numerals (``mode="zh"``) or Chinese numerals -> digits (``"digits"``) with cn2an.

    Digit-group commas (``1,000``) are removed first (cn2an reads them as separators). Text cn2an cannot convert is
    returned unchanged."""
    if mode is None:
        return text
    if mode not in ("zh", "digits"):
        raise MetricsError(f"unknown numerals mode {mode!r}: use None, 'zh' or 'digits'")
    try:
        import cn2an
    except ImportError:
        raise MetricsError("numeral conversion needs the cn2an package (pip install cn2an)") from None
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    try:
        return cn2an.transform(text, "an2cn" if mode == "zh" else "cn2an")
    except Exception:  # cn2an raises plain ValueErrors on numbers it cannot read; score the text as written
        return text


def normalize_text(text: str | None, drop_interjections: bool = False, numerals: str | None = None) -> str:
    """The scoring normalisation described in the module docstring (the same for references and hypotheses)."""
    from gsv_core.asr import to_simplified

    text = (text or "").replace("\u02bc", "'")
    text = _drop_lettered_symbols(text)
    text = unicodedata.normalize("NFKC", text)
    text = to_simplified(text)
    text = text.casefold()
    text = convert_numerals(text, numerals)
    text = _strip_punctuation(text)
    if drop_interjections:
        for word in ZH_INTERJECTIONS:
            text = text.replace(word, " ")
        text = " ".join(w for w in text.split() if w not in EN_INTERJECTIONS)
    return _space_cjk(text)


def tokenize(text: str | None, lang: str | None = "auto", drop_interjections: bool = False,
             normalized: bool = False, numerals: str | None = None) -> list[str]:
    """Scoring tokens of ``text`` (normalised first unless ``normalized``): characters for zh, CJK characters +
    words for en and mixed."""
    norm = (text or "") if normalized else normalize_text(text, drop_interjections, numerals)
    kind = canonical_language(lang, norm)
    if kind == "zh":
        return [ch for ch in norm if not ch.isspace()]
    return _TOKEN_MIXED_RE.findall(norm)


@dataclass(frozen=True)
class ErrorCounts:
    """Alignment counts of one utterance or a corpus. ``ref_len`` = hits + substitutions + deletions.

    ``rate`` (CER/WER) = (S + D + I) / ref_len. With an empty reference it is 0.0 when nothing was said and
    ``math.inf`` otherwise (every hypothesis token is an insertion); a corpus rate is finite as soon as one
    reference is non-empty."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0
    ref_len: int = 0

    def __post_init__(self):
        for name in ("substitutions", "deletions", "insertions", "hits", "ref_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise MetricsError(f"ErrorCounts.{name} must be a non-negative integer, got {value!r}")
        if self.hits + self.substitutions + self.deletions != self.ref_len:
            raise MetricsError(f"inconsistent ErrorCounts: hits {self.hits} + substitutions {self.substitutions} "
                               f"+ deletions {self.deletions} != reference length {self.ref_len}")

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def hyp_len(self) -> int:
        return self.hits + self.substitutions + self.insertions

    def _ratio(self, count: int) -> float:
        if self.ref_len:
            return count / self.ref_len
        return 0.0 if count == 0 else math.inf

    @property
    def rate(self) -> float:
        return self._ratio(self.errors)

    @property
    def substitution_rate(self) -> float:
        return self._ratio(self.substitutions)

    @property
    def deletion_rate(self) -> float:
        return self._ratio(self.deletions)

    @property
    def insertion_rate(self) -> float:
        return self._ratio(self.insertions)

    # the users' names for the two kinds
    @property
    def repetition(self) -> int:
        return self.insertions

    @property
    def swallowed_words(self) -> int:
        return self.deletions

    @property
    def repetition_rate(self) -> float:
        return self.insertion_rate

    @property
    def swallowed_rate(self) -> float:
        return self.deletion_rate

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        if not isinstance(other, ErrorCounts):
            return NotImplemented
        return ErrorCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                           self.insertions + other.insertions, self.hits + other.hits,
                           self.ref_len + other.ref_len)

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        """Counts and rates as a flat dict (for CSV/JSON rows); rates of an empty reference may be ``inf``."""
        row: dict[str, float | int] = dict(asdict(self))
        row.update(errors=self.errors, hyp_len=self.hyp_len, rate=self.rate,
                   substitution_rate=self.substitution_rate, deletion_rate=self.deletion_rate,
                   insertion_rate=self.insertion_rate)
        return {prefix + k: v for k, v in row.items()}


@dataclass(frozen=True)
class AlignedChunk:
    """One stretch of the alignment: ``op`` is equal / substitute / delete / insert."""

    op: str
    ref: tuple[str, ...]
    hyp: tuple[str, ...]


def _process(ref_tokens: list[str], hyp_tokens: list[str]):
    import jiwer

    # tokens never contain spaces, so joining with a space and jiwer's default word split round-trips them
    return jiwer.process_words(" ".join(ref_tokens), " ".join(hyp_tokens))


def score_tokens(ref_tokens: list[str], hyp_tokens: list[str]) -> ErrorCounts:
    """Align two token lists (Levenshtein, jiwer) and count hits, substitutions, deletions and insertions."""
    out = _process(list(ref_tokens), list(hyp_tokens))
    return ErrorCounts(substitutions=int(out.substitutions), deletions=int(out.deletions),
                       insertions=int(out.insertions), hits=int(out.hits), ref_len=len(ref_tokens))


def score_utterance(ref: str | None, hyp: str | None, lang: str | None = "auto",
                    drop_interjections: bool = False, numerals: str | None = None) -> ErrorCounts:
    """Error counts of one hypothesis (ASR text) against its reference (the text given to TTS).

    ``lang`` ``auto`` is decided from the reference alone, so the hypothesis is tokenised the same way."""
    ref_norm = normalize_text(ref, drop_interjections, numerals)
    kind = canonical_language(lang, ref_norm)
    hyp_norm = normalize_text(hyp, drop_interjections, numerals)
    return score_tokens(tokenize(ref_norm, kind, normalized=True), tokenize(hyp_norm, kind, normalized=True))


def align(ref: str | None, hyp: str | None, lang: str | None = "auto",
          drop_interjections: bool = False, numerals: str | None = None) -> list[AlignedChunk]:
    """The alignment behind :func:`score_utterance`, for showing where the repetition / swallowed words are."""
    ref_norm = normalize_text(ref, drop_interjections, numerals)
    kind = canonical_language(lang, ref_norm)
    ref_tokens = tokenize(ref_norm, kind, normalized=True)
    hyp_tokens = tokenize(normalize_text(hyp, drop_interjections, numerals), kind, normalized=True)
    out = _process(ref_tokens, hyp_tokens)
    return [AlignedChunk(c.type, tuple(ref_tokens[c.ref_start_idx:c.ref_end_idx]),
                         tuple(hyp_tokens[c.hyp_start_idx:c.hyp_end_idx])) for c in out.alignments[0]]


def score_with_protocol(ref: str | None, hyp: str | None, lang: str | None = "auto", protocol: str = "gsv",
                        drop_interjections: bool = False, numerals: str | None = None) -> ErrorCounts:
    """Error counts under one of :data:`PROTOCOLS`: ``"gsv"`` is :func:`score_utterance` (our normalisation),
    ``"seed-tts-eval"`` is :func:`eval.seedtts.score_utterance_seed` (their normalisation and tokenisation; the
    interjection and numeral options do not exist there and are refused)."""
    if protocol == "gsv":
        return score_utterance(ref, hyp, lang, drop_interjections=drop_interjections, numerals=numerals)
    if protocol == "seed-tts-eval":
        if drop_interjections or numerals is not None:
            raise MetricsError("the seed-tts-eval protocol has no interjection or numeral options")
        from eval.seedtts import score_utterance_seed

        return score_utterance_seed(ref, hyp, lang).counts
    raise MetricsError(f"unknown scoring protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")


def corpus_score(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    """Sum of per-utterance counts (the corpus CER/WER is its ``.rate``: total errors / total reference length)."""
    total = ErrorCounts()
    for i, item in enumerate(counts):
        if not isinstance(item, ErrorCounts):
            raise MetricsError(f"corpus_score expects ErrorCounts, item {i} is {type(item).__name__}")
        total = total + item
    return total


# ----------------------------------------------------------------------------------------------------- aggregation

def _as_counts(item, i: int) -> ErrorCounts:
    if isinstance(item, ErrorCounts):
        return item
    if isinstance(item, dict):
        try:
            return ErrorCounts(substitutions=int(item["substitutions"]), deletions=int(item["deletions"]),
                               insertions=int(item["insertions"]), hits=int(item["hits"]),
                               ref_len=int(item["ref_len"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MetricsError(f"item {i}: a counts dict needs substitutions, deletions, insertions, hits and "
                               f"ref_len ({exc!r})") from None
    raise MetricsError(f"item {i} is {type(item).__name__}, expected ErrorCounts or a results.jsonl row")


@dataclass(frozen=True)
class RateSummary:
    """Both aggregations of a set of utterances, named apart (see the module docstring).

    ``corpus_*`` rates pool the counts (errors summed / reference tokens summed: :func:`corpus_score`).
    ``utterance_*`` values are statistics of the per-utterance rates over the ``n_rated`` utterances with a
    non-empty reference (seed-tts-eval's WER is ``utterance_mean_rate``); ``utterance_std_rate`` is the sample
    standard deviation (ddof=1; NaN below two utterances). ``n_empty_references`` utterances had nothing to say
    and are left out of the utterance statistics (their rate is 0 or infinite); ``n_above_half`` counts
    utterances with a rate above 0.5 (seed-tts-eval counts them too)."""

    n_utterances: int
    n_rated: int
    n_empty_references: int
    corpus: ErrorCounts
    corpus_rate: float
    corpus_substitution_rate: float
    corpus_deletion_rate: float
    corpus_insertion_rate: float
    utterance_mean_rate: float
    utterance_std_rate: float
    utterance_median_rate: float
    utterance_mean_substitution_rate: float
    utterance_mean_deletion_rate: float
    utterance_mean_insertion_rate: float
    n_above_half: int

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        """Flat dict for report.json / CSV (the corpus counts included as ``corpus_substitutions`` etc.)."""
        row: dict[str, float | int] = {k: v for k, v in asdict(self).items() if k != "corpus"}
        for key in ("substitutions", "deletions", "insertions", "hits", "ref_len"):
            row[f"corpus_{key}"] = getattr(self.corpus, key)
        return {prefix + k: v for k, v in row.items()}


def utterance_rates(counts: Iterable[ErrorCounts | dict]) -> list[float]:
    """Per-utterance rates of the utterances with a non-empty reference (the values the utterance mean averages)."""
    return [c.rate for c in (_as_counts(x, i) for i, x in enumerate(counts)) if c.ref_len > 0]


def summarize_rates(counts: Iterable[ErrorCounts | dict]) -> RateSummary:
    """Corpus rate and mean of per-utterance rates (and the per-kind parts of each) of a list of ErrorCounts or
    results.jsonl rows (dicts with substitutions/deletions/insertions/hits/ref_len). NaN where undefined."""
    items = [_as_counts(x, i) for i, x in enumerate(counts)]
    total = corpus_score(items)
    rated = [c for c in items if c.ref_len > 0]
    nan = float("nan")

    def mean(values: Sequence[float]) -> float:
        return float(statistics.fmean(values)) if values else nan

    rates = [c.rate for c in rated]
    corpus_ok = total.ref_len > 0
    return RateSummary(
        n_utterances=len(items), n_rated=len(rated), n_empty_references=len(items) - len(rated), corpus=total,
        corpus_rate=total.rate if corpus_ok else nan,
        corpus_substitution_rate=total.substitution_rate if corpus_ok else nan,
        corpus_deletion_rate=total.deletion_rate if corpus_ok else nan,
        corpus_insertion_rate=total.insertion_rate if corpus_ok else nan,
        utterance_mean_rate=mean(rates),
        utterance_std_rate=float(statistics.stdev(rates)) if len(rates) > 1 else nan,
        utterance_median_rate=float(statistics.median(rates)) if rates else nan,
        utterance_mean_substitution_rate=mean([c.substitution_rate for c in rated]),
        utterance_mean_deletion_rate=mean([c.deletion_rate for c in rated]),
        utterance_mean_insertion_rate=mean([c.insertion_rate for c in rated]),
        n_above_half=sum(1 for r in rates if r > 0.5))


# ------------------------------------------------------------------------------- fields for results.jsonl / report

def score_fields(ref: str | None, hyp: str | None, lang: str | None = "auto", drop_interjections: bool = False,
                 numerals: str | None = None, seed_compatible: bool = False) -> dict[str, object]:
    """Everything one utterance's record needs from scoring, as flat JSON-safe fields:

    ``error_rate`` (None when infinite: empty reference, something said), ``substitutions``, ``deletions``,
    ``insertions``, ``hits``, ``ref_len``, ``ref_norm``, ``hyp_norm``, ``metric`` ("CER"/"WER") and
    ``scoring_lang`` (zh/en/mixed); with ``seed_compatible`` also the seed-tts-eval numbers ``seed_wer`` (None when
    infinite), ``seed_sub_rate``, ``seed_del_rate``, ``seed_ins_rate``, ``seed_ref_len``, ``seed_lang``,
    ``seed_ref_norm``, ``seed_hyp_norm`` (:mod:`eval.seedtts`)."""
    ref_norm = normalize_text(ref, drop_interjections, numerals)
    hyp_norm = normalize_text(hyp, drop_interjections, numerals)
    kind = canonical_language(lang, ref_norm)
    c = score_tokens(tokenize(ref_norm, kind, normalized=True), tokenize(hyp_norm, kind, normalized=True))
    out: dict[str, object] = dict(error_rate=c.rate if math.isfinite(c.rate) else None,
                                  substitutions=c.substitutions, deletions=c.deletions, insertions=c.insertions,
                                  hits=c.hits, ref_len=c.ref_len, ref_norm=ref_norm, hyp_norm=hyp_norm,
                                  metric="WER" if kind == "en" else "CER", scoring_lang=kind)
    if seed_compatible:
        from eval.seedtts import score_utterance_seed

        s = score_utterance_seed(ref, hyp, lang)
        finite = math.isfinite(s.wer)
        out.update(seed_wer=s.wer if finite else None, seed_sub_rate=s.sub_rate if finite else None,
                   seed_del_rate=s.del_rate if finite else None, seed_ins_rate=s.ins_rate if finite else None,
                   seed_ref_len=s.counts.ref_len, seed_lang=s.lang, seed_ref_norm=s.ref_norm,
                   seed_hyp_norm=s.hyp_norm)
    return out


def aggregate_fields(rows: Iterable[dict], prefix: str = "error_rate_") -> dict[str, float | int | None]:
    """Summary fields of a system's scored results.jsonl rows (rows without counts, e.g. failed ASR, are skipped):

    ``<prefix>corpus`` (pooled), ``<prefix>utt_mean`` (mean of per-utterance rates), ``<prefix>utt_std``,
    ``<prefix>utt_median``, ``<prefix>n_rated``, ``<prefix>n_empty_ref``, and the per-kind parts
    ``<prefix>corpus_sub|del|ins`` / ``<prefix>utt_mean_sub|del|ins``; plus, when the rows carry ``seed_wer``, the
    seed-tts-eval numbers ``seed_wer`` (mean of per-utterance WER), ``seed_wer_percent`` and ``seed_n``.
    Undefined values are None (JSON-safe)."""
    rows = [r for r in rows if r.get("ref_len") is not None and r.get("hits") is not None]
    s = summarize_rates(rows)

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    out: dict[str, float | int | None] = {
        f"{prefix}corpus": clean(s.corpus_rate), f"{prefix}utt_mean": clean(s.utterance_mean_rate),
        f"{prefix}utt_std": clean(s.utterance_std_rate), f"{prefix}utt_median": clean(s.utterance_median_rate),
        f"{prefix}n_rated": s.n_rated, f"{prefix}n_empty_ref": s.n_empty_references,
        f"{prefix}corpus_sub": clean(s.corpus_substitution_rate), f"{prefix}corpus_del": clean(s.corpus_deletion_rate),
        f"{prefix}corpus_ins": clean(s.corpus_insertion_rate),
        f"{prefix}utt_mean_sub": clean(s.utterance_mean_substitution_rate),
        f"{prefix}utt_mean_del": clean(s.utterance_mean_deletion_rate),
        f"{prefix}utt_mean_ins": clean(s.utterance_mean_insertion_rate),
    }
    seed = [float(r["seed_wer"]) for r in rows if r.get("seed_wer") is not None]
    if seed:
        import numpy as np

        mean = float(np.mean(seed))
        out.update(seed_wer=mean, seed_wer_percent=round(mean * 100, 3), seed_n=len(seed))
    return out
