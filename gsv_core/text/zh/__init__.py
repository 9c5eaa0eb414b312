"""Chinese text front end: normalisation + g2p, as GPT-SoVITS' ``cleaner.clean_text(text, "zh", version)``.

    from gsv_core.text.zh import clean_zh
    phones, word2ph, norm_text = clean_zh("今天是2024年3月5日。", "v2")

``clean_zh`` = :func:`normalize.normalize_zh` then :func:`g2p.g2p_zh`, with upstream's special pause marks: if the
text contains ``￥`` (checked first) or ``^``, every occurrence of that mark is read as a comma and every comma
phone of the result becomes ``SP2`` (for ``￥``) or ``SP3`` (for ``^``). Otherwise phones missing from the
version's symbol table become ``UNK`` (none of the Chinese phones is missing; the rule is upstream's).
"""
from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence

from ..symbols import UNKNOWN, normalize_symbol_version, symbol_to_id
from .g2p import PUNCTUATION, ChineseG2PError, g2p_zh, parse_pinyin, warm_up
from .normalize import normalize_zh, normalize_zh_aligned

__all__ = [
    "PUNCTUATION",
    "SPECIAL_PAUSES",
    "ChineseG2PError",
    "clean_zh",
    "finish_phones",
    "g2p_zh",
    "normalize_zh",
    "parse_pinyin",
    "special_pause",
    "warm_up",
]

log = logging.getLogger(__name__)

#: (mark in the raw text, the pause symbol its commas become), in upstream's order of precedence
SPECIAL_PAUSES = (("￥", "SP2"), ("^", "SP3"))


def special_pause(text: str) -> Optional[tuple[str, str]]:
    """``(mark, symbol)`` of the special pause mark ``text`` contains (``￥`` wins over ``^``), else None."""
    for mark, symbol in SPECIAL_PAUSES:
        if mark in text:
            return mark, symbol
    return None


def finish_phones(phones: Sequence[str], version: str = "v2", pause_symbol: Optional[str] = None) -> list[str]:
    """Upstream's last step of clean_text: with a special pause every "," becomes ``pause_symbol``; otherwise any
    phone missing from the symbol table of ``version`` becomes "UNK"."""
    if pause_symbol is not None:
        return [pause_symbol if p == "," else p for p in phones]
    table = symbol_to_id(version)
    return [p if p in table else UNKNOWN for p in phones]


def _forced_in_normalized(
    forced: Optional[Mapping[int, str]], text: str, norm_text: str, origin: Sequence[int]
) -> dict[int, str]:
    """Move forced readings keyed by indices of the raw ``text`` onto the normalised text."""
    if not forced:
        return {}
    if not isinstance(forced, Mapping):
        raise ChineseG2PError("forced readings must map a character index to a pinyin, e.g. {3: 'chong2'}")
    wanted: dict[int, str] = {}
    for index, reading in forced.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(text):
            raise ChineseG2PError(f"forced reading key {index!r} is not a character index of the text")
        if not ("\u4e00" <= text[index] <= "\u9fff" or "\u3400" <= text[index] <= "\u4dbf"):
            raise ChineseG2PError(
                f"forced reading {reading!r} at index {index} points at {text[index]!r}, not a Chinese character"
            )
        parse_pinyin(reading)  # report a bad reading even if normalisation drops its character
        wanted[index] = reading
    moved: dict[int, str] = {}
    for position, source in enumerate(origin):
        if source in wanted and "\u4e00" <= norm_text[position] <= "\u9fa5":
            moved[position] = wanted[source]
    for index in wanted.keys() - set(origin):
        log.info("forced reading for %r at index %d dropped: normalisation removed the character", text[index], index)
    return moved


def clean_zh(
    text: str,
    version: str = "v2",
    *,
    forced: Optional[Mapping[int, str]] = None,
    user_dict: Optional[Mapping[str, Sequence[str]]] = None,
    use_g2pw: bool = False,
) -> tuple[list[str], list[int], str]:
    """``(phones, word2ph, norm_text)`` of raw Chinese ``text`` for model ``version`` (upstream clean_text).

    ``forced`` maps an index of the raw ``text`` to a pinyin with tone digit for that character (carried across
    normalisation; ignored if normalisation removes the character); ``user_dict`` and ``use_g2pw`` are passed to
    :func:`g2p_zh`. ``len(word2ph) == len(norm_text)`` and ``sum(word2ph) == len(phones)``.
    """
    if not isinstance(text, str):
        raise ChineseG2PError(f"text must be a string, not {type(text).__name__}")
    normalize_symbol_version(version)
    special = special_pause(text)
    if special is not None:
        text = text.replace(special[0], ",")
    norm_text, origin = normalize_zh_aligned(text, version)
    norm_forced = _forced_in_normalized(forced, text, norm_text, origin)
    phones, word2ph = g2p_zh(norm_text, version, forced=norm_forced, user_dict=user_dict, use_g2pw=use_g2pw)
    return finish_phones(phones, version, special[1] if special else None), word2ph, norm_text
