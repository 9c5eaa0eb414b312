"""Cantonese front end: text -> Jyutping phones, as GPT-SoVITS' ``clean_text(text, "yue", "v2")``.

    from gsv_core.text.yue import clean_yue
    phones, word2ph, norm_text = clean_yue("我哋今日去飲茶好唔好？")

Only the v2 symbol table has Cantonese phones; v1 is refused. Steps:

1. The Chinese sentence normaliser (:func:`gsv_core.text.zh.normalize.verbalize_zh_sentences`, upstream's
   ``TextNormalizer``) runs first, so traditional characters become simplified and numbers, dates, times,
   percentages and fractions are written out the Mandarin way (``14:30`` -> 十四点半, ``123`` -> 幺二三).
2. Per sentence: ``...`` -> ``…``; ``：；，、·`` -> ``,``, ``。\\n$`` -> ``.``, ``！`` ``!``, ``？`` ``?``,
   quotes and brackets -> ``'``, ``—～~`` -> ``-``; then every character outside CJK U+4E00-9FA5 and
   ``! ? … , . -`` is deleted (so the ``'`` goes again, with Latin letters, left-over digits, emoji, kana and
   characters beyond the BMP). Unlike Mandarin, repeated marks are not collapsed here.
3. ToJyutping gives each character its Jyutping; a syllable becomes two phones, ``Y`` + initial and
   ``Y`` + final + tone. A syllable without consonant initial is cut at the first entry of :data:`INITIALS` it
   starts with (``aa3`` -> ``Yaa`` ``Ya3``, ``uk1`` -> ``Yuk`` ``Yk1``); an initial with nothing after it repeats
   its last letter as the final. A mark is one phone. ``word2ph``: 2 per syllable, 1 per mark.
4. A character ToJyutping has no reading for (乄, 艹, ...) is an error, as upstream (which fails with a
   TypeError there); here it is a :class:`CantoneseError` naming the character.
"""
from __future__ import annotations

import re

from gsv_core.text.optional import require
from gsv_core.text.split import TextError
from gsv_core.text.symbols import UNKNOWN, normalize_symbol_version, symbol_to_id

__all__ = ["CantoneseError", "INITIALS", "clean_yue", "g2p_yue", "jyutping_phones", "normalize_yue"]

TOJYUTPING_VERSION = "3.2.0"
#: the marks that survive normalisation and are phones of their own
MARKS = ("!", "?", "…", ",", ".", "-")
_MARK_SET = frozenset(MARKS)

#: syllable onsets tried in this order (the first prefix that matches wins); the vowel-initial entries make
#: upstream's split of syllables without a consonant (aa3 -> aa + a3)
INITIALS = (
    "aa", "aai", "aak", "aap", "aat", "aau", "ai", "au", "ap", "at", "ak", "a", "p", "b", "e", "ts", "t", "dz",
    "d", "kw", "k", "gw", "g", "f", "h", "l", "m", "ng", "n", "s", "y", "w", "c", "z", "j", "ong", "on", "ou",
    "oi", "ok", "o", "uk", "ung", "sp", "spl", "spn", "sil",
)

_PUNCTUATION_MAP = str.maketrans({
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",", "$": ".",
    "“": "'", "”": "'", '"': "'", "‘": "'", "’": "'", "（": "'", "）": "'", "(": "'", ")": "'", "《": "'",
    "》": "'", "【": "'", "】": "'", "[": "'", "]": "'", "—": "-", "～": "-", "~": "-", "「": "'", "」": "'",
})
_NOT_KEPT = re.compile("[^\u4e00-\u9fa5" + re.escape("".join(MARKS)) + "]+")
_ONLY_MARKS = re.compile("^[" + re.escape("".join(MARKS)) + "]+$")
_JYUTPING = re.compile(r"^([a-z]+[1-6]+[ ]?)+$")


class CantoneseError(TextError):
    """Cantonese text the front end cannot read (a character without Jyutping, or a v1 model)."""


def _replace_punctuation(sentence: str) -> str:
    sentence = sentence.replace("...", "…").translate(_PUNCTUATION_MAP)
    return _NOT_KEPT.sub("", sentence)


def normalize_yue(text: str) -> str:
    """Upstream's Cantonese ``text_normalize`` (see the module docstring, steps 1 and 2)."""
    from gsv_core.text.zh.normalize import verbalize_zh_sentences

    if not isinstance(text, str):
        raise CantoneseError(f"text must be a string, not {type(text).__name__}")
    return "".join(_replace_punctuation(s) for s in verbalize_zh_sentences(text))


def _jyutping_list(text: str) -> list[str]:
    """Jyutping strings and marks of normalised text (one entry per character)."""
    tojyutping = require("ToJyutping", "ToJyutping", "the Cantonese front end", TOJYUTPING_VERSION)
    out: list[str] = []
    for word, jyutping in tojyutping.get_jyutping_list(text):
        if _ONLY_MARKS.match(word):
            out.extend(word)
            continue
        if jyutping is None:
            raise CantoneseError(f"no Cantonese (Jyutping) reading is known for {word!r}")
        if not _JYUTPING.search(jyutping):
            raise CantoneseError(f"cannot read {word!r} in Cantonese: unexpected Jyutping {jyutping!r}")
        out.append(jyutping)
    return out


def jyutping_phones(syllables: list[str]) -> tuple[list[str], list[int]]:
    """``(phones, word2ph)`` of Jyutping syllables and marks (upstream's initial/final split)."""
    phones: list[str] = []
    word2ph: list[int] = []
    for syllable in syllables:
        if syllable in _MARK_SET or syllable == "_":
            phones.append(syllable if syllable in _MARK_SET else "Y" + syllable)
            word2ph.append(1)
            continue
        if syllable[-1:].isdecimal() and syllable[-1].isascii():
            tone, base = syllable[-1], syllable[:-1]
        else:
            tone, base = "", syllable
        if tone == "0":
            tone = ""
        for initial in INITIALS:
            if not base.startswith(initial):
                continue
            if base.startswith("nga"):
                onset, final = base[:2], base[2:] or base[-1]
            else:
                onset, final = initial, base[len(initial):] or initial[-1]
            phones.extend(("Y" + onset, "Y" + final + tone))
            word2ph.append(2)
            break
    return phones, word2ph


def g2p_yue(norm_text: str) -> tuple[list[str], list[int]]:
    """``(phones, word2ph)`` of normalised Cantonese text; ``len(word2ph) == len(norm_text)``."""
    phones, word2ph = jyutping_phones(_jyutping_list(norm_text))
    if len(word2ph) != len(norm_text) or sum(word2ph) != len(phones):
        raise CantoneseError(f"cannot read {norm_text!r} in Cantonese: some syllables have no known initial")
    return phones, word2ph


def clean_yue(text: str, version: str = "v2") -> tuple[list[str], list[int], str]:
    """``(phones, word2ph, norm_text)`` of Cantonese ``text``; ``version`` must be v2 or later."""
    if normalize_symbol_version(version) == "v1":
        raise CantoneseError("Cantonese needs a v2 or later model (the v1 symbol table has no Cantonese phones)")
    norm_text = normalize_yue(text)
    phones, word2ph = g2p_yue(norm_text)
    table = symbol_to_id("v2")
    return [p if p in table else UNKNOWN for p in phones], word2ph, norm_text


def warm_up() -> None:
    require("ToJyutping", "ToJyutping", "the Cantonese front end", TOJYUTPING_VERSION).get_jyutping_list("粤")
