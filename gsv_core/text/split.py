"""Splitting a long text into the pieces that are synthesised one by one.

Behaviour follows GPT-SoVITS (``TTS_infer_pack/text_segmentation_method.py`` and the pre-segmentation steps of
``TextPreprocessor``) exactly, because the pieces decide where the models pause and how much context each
sentence gets:

* :func:`cut` applies one of the six split methods ``cut0`` .. ``cut5`` and returns the pieces joined by ``"\\n"``;
* :func:`replace_consecutive_punctuation` collapses runs of ``! ? … , . -`` to their first character;
* :func:`pre_seg_text` turns a user text into the list of pieces handed to g2p (prefix for a very short first
  clause, split method, blank-line collapsing, merging of short pieces, dropping pure-symbol pieces, a final stop
  mark, and splitting of pieces longer than 510 characters);
* :func:`preprocess_pieces` = ``pre_seg_text(replace_consecutive_punctuation(text))`` as the inference front
  end does it.
"""
from __future__ import annotations

import re

from gsv_core.errors import GSVError

__all__ = [
    "TextError",
    "SPLIT_MARKS",
    "METHODS",
    "METHOD_DESCRIPTIONS",
    "cut",
    "split_sentences",
    "split_big_text",
    "cut_long_run",
    "replace_consecutive_punctuation",
    "merge_short_pieces",
    "pre_seg_text",
    "preprocess_pieces",
]


class TextError(GSVError):
    """A text the frontend cannot turn into phones (empty, only symbols, a malformed tag, a bad dictionary...)."""


#: characters after which a sentence ends (the ``splits`` set of the reference implementation)
SPLIT_MARKS = frozenset("，。？！,.?!~:：—…")

#: what counts as "punctuation only" for the split methods (note the space)
_CUT_PUNCT = frozenset("!?…,.- ")

#: characters collapsed by replace_consecutive_punctuation (no space here)
_RUN_PUNCT = "!?…,.-"
_RUN_RE = re.compile("([" + re.escape(_RUN_PUNCT) + "])([" + re.escape(_RUN_PUNCT) + "])+")

#: marks cut5 cuts after
_CUT5_MARKS = frozenset(",.;?!、，。？！：…")

_BIG_TEXT_RE = re.compile("([" + "".join(re.escape(c) for c in sorted(SPLIT_MARKS)) + "])")
_FIRST_CLAUSE_RE = re.compile("[" + "".join(re.escape(c) for c in sorted(SPLIT_MARKS)) + "]")
_DOT_NOT_IN_NUMBER_RE = re.compile(r"(?<!\d)\.(?!\d)")
_WORD_CHAR_RE = re.compile(r"\w")

MAX_PIECE_CHARS = 510
MIN_PIECE_CHARS = 5

METHOD_DESCRIPTIONS = {
    "cut0": "no split",
    "cut1": "four sentences per piece",
    "cut2": "about 50 characters per piece",
    "cut3": "split at the Chinese full stop 。",
    "cut4": "split at the English full stop . (not inside numbers)",
    "cut5": "split at every punctuation mark",
}


def _only_symbols(piece: str, symbols: frozenset[str] = _CUT_PUNCT) -> bool:
    """True when every character of ``piece`` is one of ``symbols`` (also for the empty string)."""
    return all(ch in symbols for ch in piece)


def _keep_spoken(pieces: list[str]) -> list[str]:
    return [p for p in pieces if not _only_symbols(p)]


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` after every split mark; each sentence keeps its mark.

    "……" counts as one "。" and "——" as one "，"; a text not ending with a mark gets a final "。".
    """
    text = text.replace("……", "。").replace("——", "，")
    if not text:
        return []
    if text[-1] not in SPLIT_MARKS:
        text += "。"
    sentences: list[str] = []
    start = 0
    for pos, ch in enumerate(text):
        if ch in SPLIT_MARKS:
            sentences.append(text[start : pos + 1])
            start = pos + 1
    return sentences


def _cut0(text: str) -> str:
    return "\n" if _only_symbols(text) else text


def _cut1(text: str) -> str:
    text = text.strip("\n")
    sentences = split_sentences(text)
    starts = list(range(0, len(sentences), 4))
    if len(starts) > 1:
        # the last group start is dropped: the final piece takes the remainder together with the previous group
        bounds = starts[:-1] + [len(sentences)]
        pieces = ["".join(sentences[a:b]) for a, b in zip(bounds, bounds[1:])]
    else:
        pieces = [text]
    return "\n".join(_keep_spoken(pieces))


def _cut2(text: str, limit: int = 50) -> str:
    text = text.strip("\n")
    sentences = split_sentences(text)
    if len(sentences) < 2:
        return text
    pieces: list[str] = []
    current = ""
    for sentence in sentences:
        current += sentence
        if len(current) > limit:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    if len(pieces) > 1 and len(pieces[-1]) < limit:
        tail = pieces.pop()
        pieces[-1] += tail
    return "\n".join(_keep_spoken(pieces))


def _cut3(text: str) -> str:
    text = text.strip("\n")
    return "\n".join(_keep_spoken(text.strip("。").split("。")))


def _cut4(text: str) -> str:
    text = text.strip("\n")
    return "\n".join(_keep_spoken(_DOT_NOT_IN_NUMBER_RE.split(text.strip("."))))


def _cut5(text: str) -> str:
    text = text.strip("\n")
    pieces: list[str] = []
    current: list[str] = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        current.append(ch)
        if ch not in _CUT5_MARKS:
            continue
        if ch == "." and 0 < i < last and text[i - 1].isdigit() and text[i + 1].isdigit():
            continue  # decimal point
        pieces.append("".join(current))
        current = []
    if current:
        pieces.append("".join(current))
    return "\n".join(p for p in pieces if not _only_symbols(p, _CUT5_MARKS))


METHODS = {"cut0": _cut0, "cut1": _cut1, "cut2": _cut2, "cut3": _cut3, "cut4": _cut4, "cut5": _cut5}


def cut(text: str, method: str = "cut5") -> str:
    """Apply split method ``method`` (``cut0`` .. ``cut5``); the pieces are separated by ``"\\n"``."""
    try:
        fn = METHODS[method]
    except KeyError:
        raise TextError(f"unknown split method {method!r} (known: {', '.join(METHODS)})") from None
    if not text.strip("\n"):
        return "\n" if method == "cut0" else ""
    return fn(text)


def split_big_text(text: str, max_len: int = MAX_PIECE_CHARS) -> list[str]:
    """Greedy split of ``text`` at split marks into chunks of at most ``max_len`` characters (a single run without
    marks longer than that stays whole)."""
    chunks: list[str] = []
    current = ""
    for part in _BIG_TEXT_RE.split(text):
        if len(current) + len(part) > max_len:
            if current:  # a first run longer than max_len: upstream appends "" here (and drops it later)
                chunks.append(current)
            current = part
        else:
            current += part
    if current:
        chunks.append(current)
    return chunks


def cut_long_run(piece: str, max_len: int = MAX_PIECE_CHARS, lang: str = "zh") -> list[str]:
    """``piece`` cut into nearly equal parts of at most ``max_len`` characters, each but the last ending in a comma.
    Upstream leaves a run without split marks whole (:func:`split_big_text`), which no BERT can read past 510
    characters; the front end uses this for such runs only, so every other text splits exactly as upstream's."""
    if len(piece) <= max_len:
        return [piece]
    n = -(-len(piece) // (max_len - 1))
    size = -(-len(piece) // n)
    parts = [piece[i:i + size] for i in range(0, len(piece), size)]
    comma = "," if lang == "en" else "，"
    return [p if p[-1] in SPLIT_MARKS or i == len(parts) - 1 else p + comma for i, p in enumerate(parts)]


def replace_consecutive_punctuation(text: str) -> str:
    """Collapse every run of ``! ? … , . -`` to its first character."""
    return _RUN_RE.sub(r"\1", text)


def merge_short_pieces(pieces: list[str], threshold: int = MIN_PIECE_CHARS) -> list[str]:
    """Concatenate consecutive pieces until the running text has ``threshold`` characters; a short tail is
    appended to the last merged piece."""
    if len(pieces) < 2:
        return list(pieces)
    merged: list[str] = []
    current = ""
    for piece in pieces:
        current += piece
        if len(current) >= threshold:
            merged.append(current)
            current = ""
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return merged


def _first_clause(text: str) -> str:
    return _FIRST_CLAUSE_RE.split(text, maxsplit=1)[0].strip()


def pre_seg_text(text: str, lang: str = "zh", method: str = "cut5") -> list[str]:
    """The pieces of ``text`` that go to g2p, for language ``lang`` and split method ``method``.

    Raises :class:`TextError` when the text has nothing but blanks after splitting.
    """
    if method not in METHODS:
        raise TextError(f"unknown split method {method!r} (known: {', '.join(METHODS)})")
    stop = "." if lang == "en" else "。"
    text = text.strip("\n")
    if not text:
        return []
    if text[0] not in SPLIT_MARKS and len(_first_clause(text)) < 4:
        text = stop + text
    text = METHODS[method](text)
    while "\n\n" in text:
        text = text.replace("\n\n", "\n")
    raw = text.split("\n")
    if all(p in ("", " ", "\n") for p in raw):
        raise TextError("the text has nothing to say after splitting (only blanks or punctuation)")
    pieces = merge_short_pieces([p for p in raw if p not in ("", " ")], MIN_PIECE_CHARS)
    out: list[str] = []
    for piece in pieces:
        if not piece.strip():
            continue
        if not _WORD_CHAR_RE.search(piece):
            continue  # symbols only
        if piece[-1] not in SPLIT_MARKS:
            piece += stop
        if len(piece) > MAX_PIECE_CHARS:
            out.extend(split_big_text(piece))
        else:
            out.append(piece)
    return out


def preprocess_pieces(text: str, lang: str = "zh", method: str = "cut5") -> list[str]:
    """``pre_seg_text(replace_consecutive_punctuation(text), lang, method)``: the inference front end's split."""
    return pre_seg_text(replace_consecutive_punctuation(text), lang, method)
