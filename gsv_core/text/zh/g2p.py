"""Chinese grapheme-to-phoneme conversion of GPT-SoVITS v1 and v2 (phones + per-character phone counts).

Input is normalised text (see :mod:`gsv_core.text.zh.normalize`): CJK characters U+4E00..U+9FA5 and the six
punctuation marks ``! ? … , . -``. The pipeline, per piece of text ending in a punctuation mark:

1. jieba_fast part-of-speech segmentation, then :func:`tone_sandhi.premerge` regrouping;
2. per word, pinyin initials and finals (tone digit, neutral tone 5) from pypinyin, or, for v2 with a G2PW model,
   from G2PW's sentence-level prediction corrected by the polyphone dictionary;
3. user-dictionary and forced readings, tone sandhi (:func:`tone_sandhi.apply_sandhi`), erhua tones (v2 only);
4. each syllable -> ``[initial, final+tone]`` through the opencpop table (``data/zh_pinyin_to_phones.tsv``),
   each punctuation mark -> itself.

``word2ph[i]`` is the number of phones of ``norm_text[i]`` (2 for a syllable, 1 for a mark). Characters the
pipeline cannot voice (Latin letters, digits, spaces, symbols, the few CJK characters pypinyin has no usable
reading for) get 0 phones instead of failing, so ``len(word2ph) == len(norm_text)`` always holds.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ...errors import GSVError
from ..symbols import normalize_symbol_version
from . import tone_sandhi

__all__ = [
    "PUNCTUATION",
    "ChineseG2PError",
    "g2p_zh",
    "parse_pinyin",
    "syllable_phones",
    "warm_up",
]

log = logging.getLogger(__name__)

#: the punctuation marks that survive normalisation; each becomes a phone of its own
PUNCTUATION = ("!", "?", "…", ",", ".", "-")
_PUNCT = frozenset(PUNCTUATION)
#: characters upstream's normaliser rewrites before g2p because pypinyin's reading of them has no final
_READ_AS = str.maketrans({"嗯": "恩", "呣": "母"})
_DATA = Path(__file__).resolve().parent.parent / "data"
_PINYIN_RE = re.compile(r"^([a-z]+)([1-5])$")

# spelling normalisation from pypinyin's strict initial/final split to the table's keys
_FINAL_CONTRACTIONS = {"uei": "ui", "iou": "iu", "uen": "un"}
_BARE_SYLLABLES = {"ing": "ying", "i": "yi", "in": "yin", "u": "wu"}
_BARE_GLIDES = {"v": "yu", "e": "e", "i": "y", "u": "w"}

_ERHUA_BLOCKING_TAGS = frozenset({"a", "j", "nr"})


class ChineseG2PError(GSVError):
    """Bad input to the Chinese g2p: a malformed forced reading or user-dictionary entry, a wrong index."""


# --------------------------------------------------------------------------------------------------------------
# tables


def _word_lines(name: str) -> list[str]:
    with (_DATA / name).open(encoding="utf-8") as handle:
        rows = [line.rstrip("\r\n") for line in handle]
    return [row for row in rows if row and not row.startswith("#")]


@lru_cache(maxsize=None)
def _pinyin_table() -> dict[str, tuple[str, str]]:
    table = {}
    for row in _word_lines("zh_pinyin_to_phones.tsv"):
        spelling, initial, final = row.split("\t")
        table[spelling] = (initial, final)
    return table


@lru_cache(maxsize=None)
def _erhua_words() -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(_word_lines("zh_must_erhua_words.txt")), frozenset(_word_lines("zh_not_erhua_words.txt"))


def _spelling(initial: str, final_without_tone: str) -> str:
    if initial:
        return initial + _FINAL_CONTRACTIONS.get(final_without_tone, final_without_tone)
    bare = final_without_tone
    if bare in _BARE_SYLLABLES:
        return _BARE_SYLLABLES[bare]
    if bare and bare[0] in _BARE_GLIDES:
        return _BARE_GLIDES[bare[0]] + bare[1:]
    return bare


def syllable_phones(initial: str, final: str) -> Optional[tuple[str, str]]:
    """``(initial phone, final phone + tone)`` of a pypinyin strict initial and toned final, or None if the
    syllable is not in the table (no final, no tone digit, or a syllable such as "hm" the models never saw)."""
    if not final or final[-1] not in "12345":
        return None
    phones = _pinyin_table().get(_spelling(initial, final[:-1]))
    if phones is None:
        return None
    return phones[0], phones[1] + final[-1]


# --------------------------------------------------------------------------------------------------------------
# pypinyin access (cached per word / per character)


@lru_cache(maxsize=1)
def _pypinyin():
    from pypinyin import Style, lazy_pinyin, pinyin
    from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials

    return Style, lazy_pinyin, pinyin, to_initials, to_finals_tone3


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"


def _split_tone3(syllable: str) -> tuple[str, str]:
    """(initial, final) of a pinyin such as "zhong1"/"de5"; a non-letter item (punctuation) is its own pair."""
    _, _, _, to_initials, to_finals_tone3 = _pypinyin()
    if syllable and syllable[0].isalpha():
        return to_initials(syllable), to_finals_tone3(syllable, neutral_tone_with_five=True)
    return syllable, syllable


@lru_cache(maxsize=65536)
def _pypinyin_word(word: str) -> tuple[tuple[str, str], ...]:
    """(initial, final) per character of ``word`` read as one phrase by pypinyin (strict, neutral tone 5).

    One TONE3 lookup split with pypinyin's own converters; for Chinese characters this equals the INITIALS and
    FINALS_TONE3 styles that upstream requests separately. Other characters are their own initial and final.
    """
    _, _, _, to_initials, to_finals_tone3 = _pypinyin()
    items = _tone3_items(word)
    if len(items) != len(word):
        # pypinyin keeps a run of non-Chinese characters as one item: read Chinese runs and other characters apart
        out: list[tuple[str, str]] = []
        for run in re.findall(r"[\u4e00-\u9fa5]+|.", word, flags=re.S):
            out.extend(_pypinyin_word(run) if _is_han(run[0]) else [(run, run)])
        return tuple(out)
    return tuple(
        (to_initials(item), to_finals_tone3(item, neutral_tone_with_five=True)) if _is_han(ch) else (item, item)
        for ch, item in zip(word, items)
    )


def _tone3_items(word: str) -> list[str]:
    Style, lazy_pinyin, _, _, _ = _pypinyin()
    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.TONE3)


def _word_finals(word: str) -> tuple[str, ...]:
    return tuple(final for _, final in _pypinyin_word(word))


@lru_cache(maxsize=65536)
def _voiced_reading(ch: str) -> Optional[tuple[str, str]]:
    """The first of pypinyin's readings of ``ch`` that the phone table can voice, or None (not a syllable)."""
    Style, _, pinyin, _, _ = _pypinyin()
    for candidates in pinyin(ch, heteronym=True, style=Style.TONE3, neutral_tone_with_five=True):
        for reading in candidates:
            initial, final = _split_tone3(reading)
            if syllable_phones(initial, final) is not None:
                return initial, final
    return None


def _usable(ch: str, initial: str, final: str) -> bool:
    if ch in _PUNCT:
        return initial == final == ch
    return syllable_phones(initial, final) is not None


# --------------------------------------------------------------------------------------------------------------
# user input: forced readings and the user dictionary


def parse_pinyin(reading: str) -> tuple[str, str]:
    """``(initial, final)`` of a pinyin with tone digit ("chong2", "lv4", "lü4", "de5"); ChineseG2PError if the
    text is not a Mandarin syllable the phone table knows."""
    if not isinstance(reading, str):
        raise ChineseG2PError(f"a pinyin reading must be a string such as 'chong2', not {reading!r}")
    text = reading.strip().lower().replace("ü", "v").replace("u:", "v")
    match = _PINYIN_RE.match(text)
    if not match:
        raise ChineseG2PError(
            f"{reading!r} is not a pinyin with tone digit: write letters then a tone 1-5, e.g. 'chong2' or 'de5'"
        )
    initial, final = _split_tone3(text)
    if syllable_phones(initial, final) is None:
        raise ChineseG2PError(f"{reading!r} is not a Mandarin syllable the Chinese phone set can express")
    return initial, final


def _forced_readings(forced: Optional[Mapping[int, str]], text: str) -> dict[int, tuple[str, str]]:
    if not forced:
        return {}
    if not isinstance(forced, Mapping):
        raise ChineseG2PError("forced readings must map a character index to a pinyin, e.g. {3: 'chong2'}")
    out = {}
    for index, reading in forced.items():
        if isinstance(index, bool) or not isinstance(index, int):
            raise ChineseG2PError(f"forced reading key {index!r} is not a character index")
        if not 0 <= index < len(text):
            raise ChineseG2PError(f"forced reading at index {index} is outside the text ({len(text)} characters)")
        if not _is_han(text[index]):
            raise ChineseG2PError(
                f"forced reading {reading!r} at index {index} points at {text[index]!r}, not a Chinese character"
            )
        out[index] = parse_pinyin(reading)
    return out


def _user_readings(user_dict: Optional[Mapping[str, Sequence[str]]], text: str) -> dict[int, tuple[str, str]]:
    """Readings from the user dictionary for every occurrence of its words (longest word first, left to right)."""
    if not user_dict:
        return {}
    if not isinstance(user_dict, Mapping):
        raise ChineseG2PError("the user dictionary must map a word to a list of pinyin, one per character")
    entries: dict[str, list[tuple[str, str]]] = {}
    for word, readings in user_dict.items():
        if not isinstance(word, str) or not word:
            raise ChineseG2PError(f"user dictionary key {word!r} is not a non-empty word")
        if isinstance(readings, str):
            readings = readings.split()
        readings = list(readings)
        if len(readings) != len(word):
            raise ChineseG2PError(
                f"user dictionary entry {word!r} has {len(readings)} pinyin for {len(word)} characters"
            )
        if word in text:
            entries[word] = [parse_pinyin(r) for r in readings]
    out: dict[int, tuple[str, str]] = {}
    if not entries:
        return out
    by_length = sorted(entries, key=len, reverse=True)
    i = 0
    while i < len(text):
        for word in by_length:
            if text.startswith(word, i):
                for k, reading in enumerate(entries[word]):
                    if _is_han(text[i + k]):
                        out[i + k] = reading
                i += len(word)
                break
        else:
            i += 1
    return out


# --------------------------------------------------------------------------------------------------------------
# segmentation


@lru_cache(maxsize=1)
def _posseg():
    import jieba_fast
    import jieba_fast.posseg as posseg

    jieba_fast.setLogLevel(logging.CRITICAL)
    return posseg


def _pos_cut(text: str) -> list[tuple[str, str]]:
    return [(pair.word, pair.flag) for pair in _posseg().lcut(text)]


def _pieces(text: str, keep: Sequence[int]) -> list[list[int]]:
    """Indices of the kept characters grouped into pieces that each end after a punctuation mark."""
    pieces: list[list[int]] = []
    current: list[int] = []
    for i in keep:
        current.append(i)
        if text[i] in _PUNCT:
            pieces.append(current)
            current = []
    if current:
        pieces.append(current)
    return pieces


# --------------------------------------------------------------------------------------------------------------
# erhua


def _erhua(word: str, pos: str, finals: list[str]) -> list[str]:
    """v2's erhua: a word-final 儿 read er1 becomes er2; unless the word or its POS blocks erhua, a word-final 儿
    read er2/er5 takes the tone of the syllable before it."""
    must, never = _erhua_words()
    finals = list(finals)
    if finals and len(finals) == len(word) and word[-1] == "儿" and finals[-1] == "er1":
        finals[-1] = "er2"
    if word not in must and (word in never or pos in _ERHUA_BLOCKING_TAGS):
        return finals
    if len(finals) != len(word) or len(word) < 2:
        return finals
    if word[-1] == "儿" and finals[-1] in ("er2", "er5") and word[-2:] not in never:
        finals[-1] = "er" + finals[-2][-1:]
    return finals


# --------------------------------------------------------------------------------------------------------------
# main entry point


def g2p_zh(
    norm_text: str,
    version: str = "v2",
    forced: Optional[Mapping[int, str]] = None,
    user_dict: Optional[Mapping[str, Sequence[str]]] = None,
    use_g2pw: bool = False,
    *,
    trace: Optional[list] = None,
) -> tuple[list[str], list[int]]:
    """Phones and per-character phone counts of normalised Chinese text, as GPT-SoVITS ``version`` reads it.

    ``forced`` maps an index of ``norm_text`` to a pinyin with tone digit that the character must be read with
    (it is used by the sandhi rules of its neighbours and is never changed itself). ``user_dict`` maps a word to
    one pinyin per character; each occurrence of the word in the text is read that way before tone sandhi.
    ``use_g2pw`` (v2 only) predicts polyphones with the configured G2PW model (see :mod:`.g2pw`), falling back to
    pypinyin with a one-time notice if none is available. ``trace``, if a list, receives one dict per word with
    the intermediate stages (for debugging).
    """
    if not isinstance(norm_text, str):
        raise ChineseG2PError(f"text must be a string, not {type(norm_text).__name__}")
    symbol_version = normalize_symbol_version(version)
    pinned = _forced_readings(forced, norm_text)
    preset = _user_readings(user_dict, norm_text)
    preset.update(pinned)

    text = norm_text.translate(_READ_AS)
    keep = [
        i
        for i, ch in enumerate(text)
        if ch in _PUNCT or (_is_han(ch) and (i in preset or _voiced_reading(ch) is not None))
    ]
    pieces = _pieces(text, keep)
    word2ph = [0] * len(text)
    phones: list[str] = []
    if not pieces:
        return phones, word2ph

    predictions: Optional[list] = None
    if use_g2pw and symbol_version == "v2":
        from . import g2pw as g2pw_module

        predictor = g2pw_module.active_g2pw()
        if predictor is not None:
            predictions = predictor.predict(["".join(text[i] for i in piece) for piece in pieces])

    for piece_no, piece in enumerate(pieces):
        piece_text = "".join(text[i] for i in piece)
        cut = _pos_cut(piece_text)
        merged = tone_sandhi.premerge(cut, _word_finals)
        if trace is not None:
            trace.append({"piece": piece_text, "lcut": cut, "pre_merge": merged})
        offset = 0
        for word, pos in merged:
            indices = piece[offset : offset + len(word)]
            offset += len(word)
            if predictions is not None:
                pairs = _g2pw_word(word, predictions[piece_no][offset - len(word) : offset])
            else:
                pairs = list(_pypinyin_word(word))
            if len(pairs) != len(word):  # defensive: one (initial, final) per character, whatever pypinyin did
                pairs = (pairs + [(ch, ch) for ch in word[len(pairs):]])[: len(word)]
            pairs = [
                pair if _usable(ch, *pair) else (_voiced_reading(ch) or pair) for ch, pair in zip(word, pairs)
            ]
            for k, idx in enumerate(indices):
                if idx in preset:
                    pairs[k] = preset[idx]
            initials = [p[0] for p in pairs]
            raw_finals = [p[1] for p in pairs]
            finals = tone_sandhi.apply_sandhi(word, pos, raw_finals)
            sandhi_finals = list(finals)
            if symbol_version == "v2":
                finals = _erhua(word, pos, finals)
            for k, idx in enumerate(indices):
                if idx in pinned:
                    initials[k], finals[k] = pinned[idx]
            if trace is not None:
                trace.append(
                    {
                        "word": word,
                        "pos": pos,
                        "initials": initials,
                        "finals_raw": raw_finals,
                        "finals_after_sandhi": sandhi_finals,
                        "finals_final": list(finals),
                    }
                )
            for idx, ch, initial, final in zip(indices, word, initials, finals):
                if ch in _PUNCT:
                    phones.append(ch)
                    word2ph[idx] = 1
                    continue
                pair = syllable_phones(initial, final)
                if pair is None:  # a sandhi rule cannot create an unknown syllable; stay safe all the same
                    log.warning("no phones for %r read %r%r; character skipped", ch, initial, final)
                    continue
                phones.extend(pair)
                word2ph[idx] = 2
    return phones, word2ph


def _g2pw_word(word: str, predicted: Sequence[Optional[str]]) -> list[tuple[str, str]]:
    """(initial, final) per character of ``word`` from G2PW's readings, after the polyphone dictionary."""
    from . import g2pw as g2pw_module

    readings = g2pw_module.apply_polyphone_dictionary(word, list(predicted))
    fallback: Optional[tuple[tuple[str, str], ...]] = None
    pairs = []
    for k, reading in enumerate(readings[: len(word)]):
        if reading:
            pairs.append(_split_tone3(reading))
            continue
        if fallback is None:
            fallback = _pypinyin_word(word)
        pairs.append(fallback[k])
    while len(pairs) < len(word):  # defensive: a shorter dictionary entry
        if fallback is None:
            fallback = _pypinyin_word(word)
        pairs.append(fallback[len(pairs)])
    return pairs


def warm_up() -> None:
    """Load jieba's dictionary and pypinyin's tables now rather than on the first call."""
    _pos_cut("预热")
    _pypinyin_word("预热")
    tone_sandhi.split_in_two("预热")
