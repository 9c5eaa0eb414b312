"""Chinese text normalisation: raw text -> the ``norm_text`` the Chinese G2P reads.

Reproduces GPT-SoVITS' ``text_normalize`` of ``text/chinese2.py`` (v2 and later) and ``text/chinese.py`` (v1),
which are identical: the PaddleSpeech-derived sentence normaliser followed by a punctuation map, a character filter
and the collapsing of punctuation runs. Pretrained models only sound right on exactly that output, so its quirks are
kept (each is noted where it happens).

Steps, in order:

1. Drop ASCII spaces and the brackets/quotes/markers ``— 《 》 【 】 < > { } ( ) （ ） # & @ “ ” ^ _ | \\``; cut the text
   into sentences after ``：、，；。？！,;?!`` (plus a closing ``’``) and at line breaks. Rules never reach across
   sentences, so "1,234" is read 一,二三四.
2. Per sentence: traditional -> simplified (``data/zh_t2s.tsv``), full-width letters, digits and space -> ASCII;
   dates; time ranges and times; unit ranges with "~"; temperatures; unit abbreviations; arithmetic signs between
   operands; superscript powers; fractions; percentages; phone numbers; number ranges; negative integers; dotted
   versions; decimals; quantities; digit codes; plain numbers; finally leftover symbols spelled out
   (``data/zh_symbol_readings.tsv``) and the step-1 characters dropped again.
3. Per sentence: 嗯 -> 恩, 呣 -> 母; ``：；，、·/`` -> ``,``, ``。$`` -> ``.``, ``！`` -> ``!``, ``？`` -> ``?``,
   ``...~～`` -> ``…``, ``—`` -> ``-``; then everything except CJK U+4E00-U+9FA5 and ``! ? … , . -`` is removed
   (Latin letters, emoji, kana, other scripts, CJK outside that block).
4. The sentences are joined and every run of punctuation collapses to its first mark.

Every CJK character of the input that :func:`zh_char_survives` accepts appears in the output, in order, as
:func:`fold_zh_char` gives it, with one upstream exception: a temperature written "<number>摄氏度" is read
"<number>度" (摄 and 氏 are dropped). All other output characters are added by expansions (numbers, units,
symbols). :func:`normalize_zh_aligned` also returns, for every output character, the index of the input character
it comes from, so per-character information can be carried across exactly.
"""
from __future__ import annotations

import re
from functools import lru_cache

from ...errors import GSVError
from ..symbols import normalize_symbol_version
from .norm_dates import DATE_RULES, TIME_RULES
from .norm_numbers import ARITHMETIC_RULE, FRACTION_PERCENT_RULES, NUMBER_RULES, POWER_RULE
from .norm_phones import PHONE_RULES
from .norm_tables import symbol_readings, traditional_to_simplified
from .norm_trace import TracedText
from .norm_units import TEMPERATURE_RULE, UNIT_ABBREVIATION_RULES, UNIT_RANGE_RULE

__all__ = [
    "PUNCTUATION",
    "ZhNormalizeError",
    "fold_zh_char",
    "normalize_zh",
    "normalize_zh_aligned",
    "verbalize_zh_sentences",
    "zh_char_survives",
]

#: the punctuation marks that survive normalisation (the Chinese G2P passes them through as phones)
PUNCTUATION = "!?…,.-"

# step 1: characters dropped before the sentence split (and, but for the space, once more after the symbol readings)
_BRACKETS_AND_MARKERS = "—《》【】<>{}()（）#&@“”^_|\\"
_DROP_BEFORE_SPLIT = re.compile("[ " + re.escape(_BRACKETS_AND_MARKERS) + "]+")
_SENTENCE_END = re.compile(r"[：、，；。？！,;?!][”’]?")
_LINE_BREAKS = re.compile(r"\n+")

# step 2
_FULL_WIDTH = {**{0xFF10 + i: chr(0x30 + i) for i in range(10)},
               **{0xFF21 + i: chr(0x41 + i) for i in range(26)},
               **{0xFF41 + i: chr(0x61 + i) for i in range(26)},
               0x3000: " "}
_OTHER_DECIMAL_DIGIT = re.compile(r"(?![0-9])\d")

# step 3
_INTERJECTIONS = str.maketrans({"嗯": "恩", "呣": "母"})
_ELLIPSIS = re.compile(r"\.\.\.")
_PUNCTUATION_MAP = str.maketrans({"：": ",", "；": ",", "，": ",", "、": ",", "·": ",", "/": ",", "。": ".", "$": ".",
                                  "！": "!", "？": "?", "\n": ".", "~": "…", "～": "…", "—": "-"})
_NOT_KEPT = re.compile("[^\u4e00-\u9fa5" + re.escape(PUNCTUATION) + "]+")

# step 4: a mark right after a mark goes
_REPEATED_PUNCTUATION = re.compile("(?<=[" + re.escape(PUNCTUATION) + "])[" + re.escape(PUNCTUATION) + "]+")

class ZhNormalizeError(GSVError):
    """Text that cannot be normalised (not a string)."""


@lru_cache(maxsize=None)
def _symbols() -> dict[int, str | None]:
    """Symbol readings, and the step-1 characters removed (upstream's second filter, after "-" and "=" are read)."""
    table: dict[int, str | None] = {ord(c): None for c in _BRACKETS_AND_MARKERS}
    table.update({ord(symbol): reading for symbol, reading in symbol_readings().items()})
    return table


def _nothing(_match: re.Match[str]) -> str:
    return ""


def _with_break(match: re.Match[str]) -> str:
    return match.group() + "\n"


def _ascii_digit(match: re.Match[str]) -> str:
    return str(int(match.group()))


def _ellipsis(_match: re.Match[str]) -> str:
    return "…"


def _sentences(text: TracedText) -> list[TracedText]:
    text.sub(_DROP_BEFORE_SPLIT, _nothing)
    text.sub(_SENTENCE_END, _with_break)
    return [sentence.strip() for sentence in text.strip().split(_LINE_BREAKS)]


def _verbalize(sentence: TracedText) -> TracedText:
    sentence.translate_chars(traditional_to_simplified())
    sentence.translate_chars(_FULL_WIDTH)
    # upstream crashes on decimal digits of other scripts (٣, १); reading them as the digits they are is our choice
    sentence.sub(_OTHER_DECIMAL_DIGIT, _ascii_digit)
    sentence.apply(DATE_RULES)
    sentence.apply(TIME_RULES)
    if "~" in sentence.text:  # (only a shortcut)
        sentence.sub(*UNIT_RANGE_RULE)
    sentence.sub(*TEMPERATURE_RULE)
    sentence.apply(UNIT_ABBREVIATION_RULES)
    while sentence.sub(*ARITHMETIC_RULE):
        pass
    sentence.sub(*POWER_RULE)
    sentence.apply(FRACTION_PERCENT_RULES)
    sentence.apply(PHONE_RULES)
    sentence.apply(NUMBER_RULES)
    sentence.translate(_symbols())
    return sentence


def _keep_speakable(sentence: TracedText) -> TracedText:
    sentence.translate_chars(_INTERJECTIONS)
    sentence.sub(_ELLIPSIS, _ellipsis)
    sentence.translate_chars(_PUNCTUATION_MAP)
    sentence.sub(_NOT_KEPT, _nothing)
    return sentence


def normalize_zh_aligned(text: str, version: str = "v2") -> tuple[str, list[int]]:
    """:func:`normalize_zh`, plus for each character of the result the index in ``text`` of the character it
    comes from (the folded form of that character, see :func:`fold_zh_char`, or a punctuation mark mapped from it),
    or -1 for characters generated by an expansion (number words, unit and symbol readings)."""
    if not isinstance(text, str):
        raise ZhNormalizeError(f"text to normalise must be a string, not {type(text).__name__}")
    normalize_symbol_version(version)
    traced = TracedText.join(_keep_speakable(_verbalize(s)) for s in _sentences(TracedText(text)))
    traced.sub(_REPEATED_PUNCTUATION, _nothing)
    return traced.text, traced.origin


def verbalize_zh_sentences(text: str) -> list[str]:
    """Steps 1 and 2 only: the sentences of ``text`` with numbers, dates, units and symbols written out, before
    the Chinese punctuation map and character filter (upstream's ``TextNormalizer().normalize(text)``, which the
    Cantonese front end runs before its own punctuation rules)."""
    if not isinstance(text, str):
        raise ZhNormalizeError(f"text to normalise must be a string, not {type(text).__name__}")
    return [_verbalize(s).text for s in _sentences(TracedText(text))]


def normalize_zh(text: str, version: str = "v2") -> str:
    """Normalise Chinese text exactly like GPT-SoVITS' ``text_normalize`` for ``version``.

    v1 (``text/chinese.py``) and v2+ (``text/chinese2.py``) normalise identically; ``version`` is still checked
    ("v1", "v2", "v2Pro", "v2ProPlus", ...) so that a wrong value is reported here rather than later. The special
    SP2/SP3 markers ``￥`` and ``^`` are not handled here (the caller replaces them first): like upstream, a ``^``
    left in the text is dropped before the sentence split and a ``￥`` by the final character filter.
    Returns "" for text with nothing speakable. Raises :class:`ZhNormalizeError` for a non-string ``text`` and
    :class:`gsv_core.text.symbols.SymbolError` for an unknown ``version``."""
    return normalize_zh_aligned(text, version)[0]


def fold_zh_char(char: str) -> str:
    """The form a single input character takes in the normalised text if it is kept: traditional -> simplified,
    then 嗯 -> 恩 and 呣 -> 母 (e.g. "們" -> "们")."""
    return char.translate(traditional_to_simplified()).translate(_INTERJECTIONS)


def zh_char_survives(char: str) -> bool:
    """Whether a single input character is carried into the normalised text: true for every character whose folded
    form lies in CJK U+4E00-U+9FA5 (a handful of traditional characters fold to Extension-A forms and are dropped,
    as upstream does). The one context that drops such characters all the same is "<number>摄氏度" (-> 度)."""
    return len(char) == 1 and "\u4e00" <= fold_zh_char(char) <= "\u9fa5"
