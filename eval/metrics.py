"""Intelligibility scoring: CER (Chinese, mixed Chinese-English) and WER (English) with the error kinds apart.

The protocol follows seed-tts-eval (``run_wer.py``): both texts go through the same normalisation, Chinese is split
into characters, English into words, and jiwer aligns the token lists. Substitutions, deletions and insertions are
kept separately because users name two of them: an **insertion** is what they call *repetition* (复读, the model
says more than the text) and a **deletion** is a *swallowed word* (吞字, the model skips part of the text).
A corpus score sums the counts over utterances, then divides (``corpus_score``), as seed-tts-eval does; it is not
the mean of per-utterance rates.

Normalisation for scoring (:func:`normalize_text`), in this order:

1. Unicode NFKC (full-width letters, digits and punctuation become their ASCII forms, compatibility ideographs
   are unified);
2. Traditional -> Simplified Chinese with OpenCC ``t2s`` (so 說話 and 说话 score the same);
3. case folding (``str.casefold``);
4. punctuation and symbols removed: every character of a Unicode ``P*`` (punctuation) or ``S*`` (symbol)
   category. An apostrophe inside a word and a ``.`` / ``,`` between digits are deleted (``don't`` -> ``dont``,
   ``3.5`` -> ``35``); any other one becomes a word break;
5. optionally, interjections dropped (``drop_interjections=True``; off by default, so a model that adds or
   swallows an 嗯 or an "um" is scored for it): the English words in :data:`EN_INTERJECTIONS` are dropped as
   whole words, the Chinese interjections in :data:`ZH_INTERJECTIONS` wherever they occur (Chinese has no word
   breaks; the list holds only characters that are almost never part of a word, plus doubled laughs such as 哈哈);
6. whitespace collapsed: in the normalised text a single space separates Latin words; CJK characters carry no
   spaces around them.

Tokenisation (:func:`tokenize`) by language: ``zh`` (also ``yue``, ``ja``, ``ko``): every non-space character is
one token; ``en``: whitespace-separated words; ``mixed`` (``zh-en``): each CJK character is one token and each
run of Latin letters / digits is one word. ``auto`` picks ``mixed`` when the reference has both CJK characters and
Latin words, else ``zh`` or ``en``. The metric is CER for ``zh``/``mixed`` (character level) and WER for ``en``.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Iterable

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
_CHAR_LANGS = {"zh": "zh", "cmn": "zh", "yue": "zh", "ja": "zh", "ko": "zh", "all_zh": "zh", "all_yue": "zh",
               "all_ja": "zh", "all_ko": "zh"}
_MIXED_LANGS = {"mixed", "zh-en", "zh_en", "en-zh"}

# CJK ideographs (with extensions and compatibility block), kana and hangul: scored one character at a time
_CJK_CHARS = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK_CHARS}]")
_TOKEN_MIXED_RE = re.compile(f"[{_CJK_CHARS}]|[^\\s{_CJK_CHARS}]+")
_LATIN_WORD_RE = re.compile(f"[^\\s{_CJK_CHARS}]+")


def canonical_language(lang: str | None, reference: str = "") -> str:
    """``zh``, ``en`` or ``mixed`` for a language code (``auto``/``None`` decided from the reference text)."""
    key = (lang or "auto").strip().lower()
    if key in _CHAR_LANGS:
        return "zh"
    if key in ("en", "all_en", "eng", "english"):
        return "en"
    if key in _MIXED_LANGS:
        return "mixed"
    if key == "auto":
        text = normalize_text(reference)
        has_cjk = bool(_CJK_RE.search(text))
        has_latin = bool(_LATIN_WORD_RE.search(_CJK_RE.sub(" ", text)))
        if has_cjk and has_latin:
            return "mixed"
        return "zh" if has_cjk else "en"
    raise MetricsError(f"unknown scoring language {lang!r}: use one of zh, en, mixed (zh-en) or auto")


def metric_name(lang: str | None, reference: str = "") -> str:
    """``"CER"`` for Chinese and mixed Chinese-English (character level), ``"WER"`` for English."""
    return "WER" if canonical_language(lang, reference) == "en" else "CER"


def _strip_punctuation(text: str) -> str:
    out = []
    n = len(text)
    for i, ch in enumerate(text):
        cat = unicodedata.category(ch)
        if cat[0] not in "PS":
            out.append(ch)
            continue
        prev_ch = text[i - 1] if i > 0 else ""
        next_ch = text[i + 1] if i + 1 < n else ""
        if ch in "'’" and prev_ch.isalpha() and next_ch.isalpha():
            continue  # don't -> dont
        if ch in ".," and prev_ch.isdigit() and next_ch.isdigit():
            continue  # 3.5 -> 35, 1,000 -> 1000
        out.append(" ")
    return "".join(out)


def _space_cjk(text: str) -> str:
    """Collapse whitespace; no spaces next to CJK characters."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(f"(?<=[{_CJK_CHARS}]) | (?=[{_CJK_CHARS}])", "", text)


def normalize_text(text: str | None, drop_interjections: bool = False) -> str:
    """The scoring normalisation described in the module docstring (the same for references and hypotheses)."""
    from eval.asr import to_simplified

    text = unicodedata.normalize("NFKC", text or "")
    text = to_simplified(text)
    text = text.casefold()
    text = _strip_punctuation(text)
    if drop_interjections:
        for word in ZH_INTERJECTIONS:
            text = text.replace(word, " ")
        text = " ".join(w for w in text.split() if w not in EN_INTERJECTIONS)
    return _space_cjk(text)


def tokenize(text: str | None, lang: str | None = "auto", drop_interjections: bool = False,
             normalized: bool = False) -> list[str]:
    """Scoring tokens of ``text`` (normalised first unless ``normalized``): characters for zh, words for en,
    CJK characters + Latin words for mixed."""
    norm = (text or "") if normalized else normalize_text(text, drop_interjections)
    kind = canonical_language(lang, norm)
    if kind == "en":
        return norm.split()
    if kind == "mixed":
        return _TOKEN_MIXED_RE.findall(norm)
    return [ch for ch in norm if not ch.isspace()]


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
                    drop_interjections: bool = False) -> ErrorCounts:
    """Error counts of one hypothesis (ASR text) against its reference (the text given to TTS).

    ``lang`` ``auto`` is decided from the reference alone, so the hypothesis is tokenised the same way."""
    ref_norm = normalize_text(ref, drop_interjections)
    kind = canonical_language(lang, ref_norm)
    hyp_norm = normalize_text(hyp, drop_interjections)
    return score_tokens(tokenize(ref_norm, kind, normalized=True), tokenize(hyp_norm, kind, normalized=True))


def align(ref: str | None, hyp: str | None, lang: str | None = "auto",
          drop_interjections: bool = False) -> list[AlignedChunk]:
    """The alignment behind :func:`score_utterance`, for showing where the repetition / swallowed words are."""
    ref_norm = normalize_text(ref, drop_interjections)
    kind = canonical_language(lang, ref_norm)
    ref_tokens = tokenize(ref_norm, kind, normalized=True)
    hyp_tokens = tokenize(normalize_text(hyp, drop_interjections), kind, normalized=True)
    out = _process(ref_tokens, hyp_tokens)
    return [AlignedChunk(c.type, tuple(ref_tokens[c.ref_start_idx:c.ref_end_idx]),
                         tuple(hyp_tokens[c.hyp_start_idx:c.hyp_end_idx])) for c in out.alignments[0]]


def corpus_score(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    """Sum of per-utterance counts (the corpus CER/WER is its ``.rate``: total errors / total reference length)."""
    total = ErrorCounts()
    for i, item in enumerate(counts):
        if not isinstance(item, ErrorCounts):
            raise MetricsError(f"corpus_score expects ErrorCounts, item {i} is {type(item).__name__}")
        total = total + item
    return total
