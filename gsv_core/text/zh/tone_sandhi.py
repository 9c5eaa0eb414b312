"""Mandarin tone sandhi as GPT-SoVITS applies it (the PaddleSpeech rule set), on pypinyin-style finals.

Two entry points:

* :func:`premerge` regroups jieba's (word, POS) list before pinyin lookup so that the rules below see the right
  units: 不 joins the following word, "V一V" and 一 + next word are joined, reduplications are joined, adjacent
  words that are all third tone are joined (at most three characters, never after a reduplication), and 儿 joins
  the word before it.
* :func:`apply_sandhi` rewrites the tone digits of one word's finals (``["ong1", "uo2"]`` style, neutral tone 5)
  in the order 不, 一, neutral tone, third tone.

Word lists live in ``gsv_core/text/data/zh_must_neutral_words.txt`` and ``zh_must_not_neutral_words.txt``.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = ["premerge", "apply_sandhi", "split_in_two", "pypinyin_finals", "must_neutral_words"]

_DATA = Path(__file__).resolve().parent.parent / "data"

# sentence-final particles and structural particles whose syllable is read in the neutral tone
_FINAL_PARTICLES = "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"
_STRUCTURAL = "的地得"
_ASPECT_MARKERS = "了着过"
_ASPECT_TAGS = frozenset({"ul", "uz", "ug"})
_PLURAL_SUFFIXES = "们子"
_PLURAL_TAGS = frozenset({"r", "n"})
_LOCATIVES = "上下里"
_LOCATIVE_TAGS = frozenset({"s", "l", "f"})
_DIRECTIONAL = "来去"
_DIRECTIONAL_HEADS = "上下进出回过起开"
_GE_HEADS = "几有两半多各整每做是"
_REDUPLICATION_TAGS = frozenset("nva")
# after 一, these marks keep it in the first tone ("…" and "-" are not among them)
_YI_KEEPS_FIRST_TONE = "：，；。？！“”‘’':,;.?!"


def _load_words(name: str) -> frozenset[str]:
    with (_DATA / name).open(encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    return frozenset(line for line in lines if line and not line.startswith("#"))


@lru_cache(maxsize=None)
def must_neutral_words() -> frozenset[str]:
    """Words whose last syllable is always neutral (麻烦, 骆驼, ...)."""
    return _load_words("zh_must_neutral_words.txt")


@lru_cache(maxsize=None)
def _must_not_neutral_words() -> frozenset[str]:
    return _load_words("zh_must_not_neutral_words.txt")


# --------------------------------------------------------------------------------------------------------------
# external helpers: jieba search segmentation and pypinyin finals (both cached per word)


@lru_cache(maxsize=1)
def _jieba():
    import jieba_fast

    jieba_fast.setLogLevel(logging.CRITICAL)
    return jieba_fast


@lru_cache(maxsize=65536)
def split_in_two(word: str) -> tuple[str, str]:
    """Split ``word`` into two parts around its shortest search-mode sub-word.

    When that sub-word starts the word it is the first part, otherwise it is the second part and the first part
    is what precedes its length at the end. The second part may be empty (a word jieba does not split).
    """
    pieces = list(_jieba().cut_for_search(word))
    if not pieces:
        return word, ""
    shortest = min(pieces, key=len)  # the first of the shortest ones, as a stable sort would give
    if word.find(shortest) == 0:
        return shortest, word[len(shortest):]
    return word[: -len(shortest)], shortest


@lru_cache(maxsize=65536)
def pypinyin_finals(word: str) -> tuple[str, ...]:
    """pypinyin's finals with tone digit (neutral tone 5, strict mode) for ``word`` looked up as one phrase."""
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3))


# --------------------------------------------------------------------------------------------------------------
# tone helpers


def _retone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _tone(final: str) -> str:
    return final[-1:] if final else ""


def _all_third(finals: Iterable[str]) -> bool:
    return all(_tone(f) == "3" for f in finals)


class _EmptyFinal(Exception):
    """A syllable without final (pypinyin's reading of e.g. 嗯) met by a merge step: the step is skipped."""


def _strict_tone(final: str) -> str:
    if not final:
        raise _EmptyFinal
    return final[-1]


def _strict_all_third(finals: Iterable[str]) -> bool:
    return all(_strict_tone(f) == "3" for f in finals)


def _is_reduplication(word: str) -> bool:
    return len(word) == 2 and word[0] == word[1]


# --------------------------------------------------------------------------------------------------------------
# pre-merge of the jieba segmentation

Segment = list  # [word, pos]


def _join_bu(words: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    previous = ""
    for word, pos in words:
        if previous == "不":
            word = "不" + word
        if word != "不":
            out.append([word, pos])
        previous = word
    if previous == "不":  # a trailing 不 stays a word of its own (adverb)
        out.append(["不", "d"])
    return out


def _join_yi(words: list[Segment]) -> list[Segment]:
    # "V 一 V" (same verb on both sides) becomes one word
    joined: list[Segment] = []
    i = 0
    while i < len(words):
        word, pos = words[i]
        if i >= 1 and word == "一" and i + 1 < len(words):
            left = joined[-1]
            right = words[i + 1]
            if left[0] == right[0] and left[1] == "v" and right[1] == "v":
                joined[-1] = [left[0] + "一" + right[0], left[1]]
                i += 2
                continue
        joined.append([word, pos])
        i += 1
    # a lone 一 takes the word after it
    out: list[Segment] = []
    for word, pos in joined:
        if out and out[-1][0] == "一":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def _join_reduplications(words: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for word, pos in words:
        if out and out[-1][0] == word:
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def _join_third_tones(words: list[Segment], finals_of: Callable[[str], Sequence[str]], whole_words: bool):
    """Join neighbours that are both all-third-tone (``whole_words``) or meet on two third tones (otherwise)."""
    finals = [finals_of(word) for word, _ in words]
    out: list[Segment] = []
    joined_previous = False
    for i, (word, pos) in enumerate(words):
        joined_now = False
        if i >= 1:
            # evaluated before looking at joined_previous: an empty final aborts the step either way
            if whole_words:
                candidate = _strict_all_third(finals[i - 1]) and _strict_all_third(finals[i])
            else:
                candidate = _strict_tone(finals[i - 1][-1]) == "3" and _strict_tone(finals[i][0]) == "3"
            if candidate and not joined_previous:
                previous_word = words[i - 1][0]
                if not _is_reduplication(previous_word) and len(previous_word) + len(word) <= 3:
                    out[-1][0] += word
                    joined_now = True
        if not joined_now:
            out.append([word, pos])
        joined_previous = joined_now
    return out


def _join_er(words: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for i, (word, pos) in enumerate(words):
        if i >= 1 and word == "儿" and words[i - 1][0] != "#":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def premerge(
    words: Iterable[tuple[str, str]], finals_of: Callable[[str], Sequence[str]] = pypinyin_finals
) -> list[tuple[str, str]]:
    """Regroup a jieba (word, POS) list for tone sandhi; ``finals_of`` gives a word's finals with tone digits.

    A third-tone merge step that meets a syllable without final leaves the list as it was (upstream skips the
    step in that case too).
    """
    seg: list[Segment] = [[w, p] for w, p in words]
    seg = _join_bu(seg)
    seg = _join_yi(seg)
    seg = _join_reduplications(seg)
    for whole_words in (True, False):
        try:
            seg = _join_third_tones(seg, finals_of, whole_words)
        except _EmptyFinal:
            pass
    seg = _join_er(seg)
    return [(w, p) for w, p in seg]


# --------------------------------------------------------------------------------------------------------------
# per-word sandhi


def _bu_rule(word: str, finals: list[str]) -> None:
    if len(word) == 3 and word[1] == "不":  # 看不懂
        finals[1] = _retone(finals[1], "5")
        return
    for i in range(len(word) - 1):
        if word[i] == "不" and _tone(finals[i + 1]) == "4":  # 不怕
            finals[i] = _retone(finals[i], "2")


def _yi_rule(word: str, finals: list[str]) -> None:
    if "一" in word and all(ch.isnumeric() for ch in word if ch != "一"):
        return  # a digit string such as 一零零
    if len(word) == 3 and word[1] == "一" and word[0] == word[2]:  # 看一看
        finals[1] = _retone(finals[1], "5")
    elif word.startswith("第一"):
        finals[1] = _retone(finals[1], "1")
    else:
        for i in range(len(word) - 1):
            if word[i] != "一":
                continue
            if _tone(finals[i + 1]) == "4":  # 一段
                finals[i] = _retone(finals[i], "2")
            elif word[i + 1] not in _YI_KEEPS_FIRST_TONE:  # 一天
                finals[i] = _retone(finals[i], "4")


def _neutral_rule(word: str, pos: str, finals: list[str]) -> list[str]:
    exempt = word in _must_not_neutral_words()
    must = must_neutral_words()
    if pos[:1] in _REDUPLICATION_TAGS and not exempt:
        for j in range(1, len(word)):
            if word[j] == word[j - 1]:  # 奶奶, 试试
                finals[j] = _retone(finals[j], "5")
    last = word[-1]
    ge = word.find("个")
    if last in _FINAL_PARTICLES or last in _STRUCTURAL:
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) == 1 and word in _ASPECT_MARKERS and pos in _ASPECT_TAGS:
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) > 1 and last in _PLURAL_SUFFIXES and pos in _PLURAL_TAGS and not exempt:
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) > 1 and last in _LOCATIVES and pos in _LOCATIVE_TAGS:
        finals[-1] = _retone(finals[-1], "5")
    elif len(word) > 1 and last in _DIRECTIONAL and word[-2] in _DIRECTIONAL_HEADS:
        finals[-1] = _retone(finals[-1], "5")
    elif (ge >= 1 and (word[ge - 1].isnumeric() or word[ge - 1] in _GE_HEADS)) or word == "个":
        finals[ge] = _retone(finals[ge], "5")
    elif word in must or word[-2:] in must:
        finals[-1] = _retone(finals[-1], "5")

    first, second = split_in_two(word)
    parts = [finals[: len(first)], finals[len(first):]]
    for part_word, part in zip((first, second), parts):
        if part and (part_word in must or part_word[-2:] in must):
            part[-1] = _retone(part[-1], "5")
    return parts[0] + parts[1]


def _third_rule(word: str, finals: list[str]) -> list[str]:
    if len(word) == 2:
        if _all_third(finals):
            finals[0] = _retone(finals[0], "2")
        return finals
    if len(word) == 3:
        first, _ = split_in_two(word)
        if _all_third(finals):
            if len(first) == 2:  # 蒙古/包
                finals[0] = _retone(finals[0], "2")
                finals[1] = _retone(finals[1], "2")
            elif len(first) == 1:  # 纸/老虎
                finals[1] = _retone(finals[1], "2")
            return finals
        head, tail = finals[: len(first)], finals[len(first):]
        if _all_third(head) and len(head) == 2:  # 所有/人
            head[0] = _retone(head[0], "2")
        if _all_third(tail) and len(tail) == 2:
            tail[0] = _retone(tail[0], "2")
        elif tail and not _all_third(tail) and _tone(tail[0]) == "3" and _tone(head[-1]) == "3":  # 好/喜欢
            head[-1] = _retone(head[-1], "2")
        return head + tail
    if len(word) == 4:  # idioms: two two-syllable halves
        for start in (0, 2):
            if _all_third(finals[start:start + 2]):
                finals[start] = _retone(finals[start], "2")
    return finals


def apply_sandhi(word: str, pos: str, finals: Sequence[str]) -> list[str]:
    """The finals of ``word`` (POS ``pos``) after the 不, 一, neutral-tone and third-tone rules (a new list).

    ``finals`` has one entry per character of ``word``; punctuation characters carry themselves as final.
    """
    if not word:
        return list(finals)
    out = list(finals)
    _bu_rule(word, out)
    _yi_rule(word, out)
    out = _neutral_rule(word, pos, out)
    return _third_rule(word, out)
