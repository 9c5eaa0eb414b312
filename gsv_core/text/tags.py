"""Inline tags in the input text and the user pronunciation dictionary.

Two kinds of tag, both in square brackets, are recognised before any normalisation:

* a **reading** ``字[pinyin]`` right after a Chinese character, e.g. ``重[chong2]新``: the character is read with
  that pinyin (letters, then the tone digit 1-5, 5 = neutral; ``ü`` may be written ``v``, ``ü`` or ``u:``).
  Tone sandhi never changes a forced reading.
* a **pause** ``[pause=0.5]`` (seconds, 0 to 10, an optional trailing ``s``): the text is cut there and the
  engine inserts that much silence.

Precisely when brackets are a tag (anything else stays ordinary text, as in GPT-SoVITS, whose v2 symbol table has
"[" and "]" for Japanese pitch marks):

* the content starts with the word ``pause`` (any case): a pause tag; it must be ``pause=<number>`` or an error
  names it;
* the content is letters followed by one digit 1-5 (``chong2``, ``lv4``) and the bracket directly follows a
  Chinese character: a reading tag; a content that is no Mandarin syllable is an error;
* the content is a valid pinyin syllable with tone but the bracket follows anything else (a Latin letter, a
  blank, another tag): an error, because a reading needs a Chinese character;
* everything else (``[1]``, ``[note]``, ``[ref2]`` after a blank) is plain text.

Errors are :class:`TagError` (a ``GSVError``) naming the tag and its 1-based character position.

User dictionary file (``config.settings.user_dict_path``): one entry per line, ``word<TAB or blanks>pinyin
pinyin ...`` with one pinyin per character, ``#`` starts a comment; see :func:`load_user_dict`.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from gsv_core.text.langseg import is_han
from gsv_core.text.split import TextError

__all__ = [
    "TagError",
    "UserDictError",
    "Pause",
    "TextChunk",
    "MAX_PAUSE_SECONDS",
    "parse_tags",
    "split_at_pauses",
    "normalize_pinyin",
    "load_user_dict",
    "parse_user_dict",
    "configured_user_dict",
]

MAX_PAUSE_SECONDS = 10.0

_BRACKET_RE = re.compile(r"\[([^\[\]\n]{0,64})\]")
_PAUSE_HEAD_RE = re.compile(r"\s*pause\b", re.IGNORECASE)
_PAUSE_RE = re.compile(r"\s*pause\s*=\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*s?\s*$", re.IGNORECASE)
_PINYIN_SHAPE_RE = re.compile(r"^[A-Za-züÜvV:]{1,7}[1-5]$")
_ALMOST_PINYIN_RE = re.compile(r"^([A-Za-züÜvV:]{1,7})(\d*)$")


class TagError(TextError):
    """A malformed inline tag (bad pinyin, a reading after a non-Chinese character, a bad pause length)."""


class UserDictError(TextError):
    """A user dictionary file that cannot be read or has malformed lines."""


@dataclass(frozen=True)
class Pause:
    """Silence of ``seconds`` requested by a ``[pause=...]`` tag."""

    seconds: float


@dataclass
class TextChunk:
    """Text between pauses with tags removed; ``forced`` maps an index of ``text`` to a pinyin ("chong2")."""

    text: str
    forced: dict[int, str] = field(default_factory=dict)
    start: int = 0  # position of text[0] in the input (0-based)


def normalize_pinyin(pinyin: str) -> str:
    """Lower case, ``ü``/``u:`` written ``v`` (the spelling g2p uses)."""
    return pinyin.strip().lower().replace("ü", "v").replace("u:", "v")


def _check_syllable(pinyin: str) -> str | None:
    """None when ``pinyin`` is a Mandarin syllable with tone digit, else the reason."""
    from gsv_core.errors import GSVError
    from gsv_core.text.zh.g2p import parse_pinyin

    try:
        parse_pinyin(pinyin)
    except GSVError as exc:
        return str(exc)
    return None


def parse_tags(text: str) -> list[TextChunk | Pause]:
    """Split ``text`` at pause tags and strip reading tags; returns chunks and pauses in order.

    A chunk is returned even when empty (e.g. around a pause at the start); callers skip empty chunks.
    """
    items: list[TextChunk | Pause] = []
    chunk = TextChunk("", {}, 0)
    pos = 0
    for m in _BRACKET_RE.finditer(text):
        content = m.group(1)
        where = m.start() + 1  # 1-based position for messages
        tag = m.group(0)
        if _PAUSE_HEAD_RE.match(content):
            pm = _PAUSE_RE.match(content)
            if not pm:
                raise TagError(
                    f"pause tag {tag} at position {where}: write [pause=SECONDS], e.g. [pause=0.5] "
                    f"(a number from 0 to {MAX_PAUSE_SECONDS:g})"
                )
            seconds = float(pm.group(1))
            if not 0.0 <= seconds <= MAX_PAUSE_SECONDS:
                raise TagError(
                    f"pause tag {tag} at position {where}: {seconds:g} s is outside 0..{MAX_PAUSE_SECONDS:g} s"
                )
            chunk.text += text[pos : m.start()]
            items.append(chunk)
            items.append(Pause(seconds))
            pos = m.end()
            chunk = TextChunk("", {}, pos)
            continue
        if not _PINYIN_SHAPE_RE.match(content):
            near = _ALMOST_PINYIN_RE.match(content)
            before = text[m.start() - 1] if m.start() > 0 else ""
            if near and before and is_han(before) and _check_syllable(normalize_pinyin(near.group(1)) + "1") is None:
                # a pinyin syllable right after a character, but without a usable tone: a typo, not text to read
                tone = near.group(2)
                why = f"the tone {tone} is not 1-5 (5 = neutral)" if tone else "the tone digit (1-5) is missing"
                raise TagError(f"reading tag {tag} at position {where}: {why}, e.g. {before}[{near.group(1)}4]")
            continue  # ordinary text
        before = text[m.start() - 1] if m.start() > 0 else ""
        pinyin = normalize_pinyin(content)
        if before and is_han(before) and m.start() > pos:
            problem = _check_syllable(pinyin)
            if problem:
                raise TagError(f"reading tag {tag} at position {where}: {problem}")
            chunk.text += text[pos : m.start()]
            chunk.forced[len(chunk.text) - 1] = pinyin
            pos = m.end()
            continue
        if _check_syllable(pinyin) is None:
            what = repr(before) if before else "the start of the text"
            raise TagError(
                f"reading tag {tag} at position {where} follows {what}, not a Chinese character: "
                f"write it right after the character it is for, e.g. 重{tag}"
            )
        # letters + digit that are no pinyin (e.g. "[ref2]") after a non-Chinese character: plain text
    chunk.text += text[pos:]
    items.append(chunk)
    return items


def split_at_pauses(text: str) -> list[str | Pause]:
    """``text`` cut at its pause tags, reading tags left in place (call :func:`parse_tags` first to validate)."""
    parts: list[str | Pause] = []
    pos = 0
    for m in _BRACKET_RE.finditer(text):
        if not _PAUSE_HEAD_RE.match(m.group(1)):
            continue
        pm = _PAUSE_RE.match(m.group(1))
        if not pm or not 0.0 <= float(pm.group(1)) <= MAX_PAUSE_SECONDS:
            raise TagError(f"pause tag {m.group(0)} at position {m.start() + 1} is malformed")
        parts.append(text[pos : m.start()])
        parts.append(Pause(float(pm.group(1))))
        pos = m.end()
    parts.append(text[pos:])
    return parts


# ---- user dictionary -----------------------------------------------------------------------------------------------
_CACHE_LOCK = threading.Lock()
_CACHE: dict[str, tuple[float, int, dict[str, list[str]]]] = {}


def parse_user_dict(lines, source: str = "<user dictionary>") -> dict[str, list[str]]:
    """Parse user dictionary lines; every malformed line is reported (with its number) in one UserDictError."""
    entries: dict[str, list[str]] = {}
    problems: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        word, readings = parts[0], [normalize_pinyin(p) for p in parts[1:]]
        if not readings:
            problems.append(f"line {number}: {raw.strip()!r} has no pinyin after the word")
            continue
        if not all(is_han(ch) for ch in word):
            problems.append(f"line {number}: {word!r} is not a word of Chinese characters")
            continue
        if len(readings) != len(word):
            problems.append(
                f"line {number}: {word!r} has {len(word)} characters but {len(readings)} pinyin ({' '.join(parts[1:])})"
            )
            continue
        bad = [(p, why) for p in readings if (why := _check_syllable(p))]
        if bad:
            problems.append(f"line {number}: {bad[0][1]}")
            continue
        entries[word] = readings
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise UserDictError(f"user dictionary {source} has {len(problems)} bad line(s):\n" + "\n".join(shown) + more)
    return entries


def load_user_dict(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a user dictionary file (UTF-8, optional BOM); cached until the file changes."""
    p = Path(path).expanduser()
    try:
        stat = p.stat()
    except OSError as exc:
        raise UserDictError(f"user dictionary {p} cannot be read: {exc.strerror or exc}") from None
    if not p.is_file():
        raise UserDictError(f"user dictionary {p} is not a file")
    key = str(p.resolve())
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit and hit[0] == stat.st_mtime and hit[1] == stat.st_size:
            return dict(hit[2])
    try:
        content = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserDictError(f"user dictionary {p} is not UTF-8 text") from None
    except OSError as exc:
        raise UserDictError(f"user dictionary {p} cannot be read: {exc.strerror or exc}") from None
    entries = parse_user_dict(content.splitlines(), str(p))
    with _CACHE_LOCK:
        _CACHE[key] = (stat.st_mtime, stat.st_size, entries)
    return dict(entries)


def configured_user_dict(path: str | os.PathLike | None) -> dict[str, list[str]] | None:
    """The dictionary in the file ``path`` (the settings' ``user_dict_path``), or None when no file is set."""
    if not path:
        return None
    return load_user_dict(path)


def merge_user_dicts(*dicts: Mapping[str, list[str]] | None) -> dict[str, list[str]] | None:
    """Later dictionaries override earlier ones; None when all are empty."""
    merged: dict[str, list[str]] = {}
    for d in dicts:
        if d:
            merged.update({k: list(v) for k, v in d.items()})
    return merged or None
