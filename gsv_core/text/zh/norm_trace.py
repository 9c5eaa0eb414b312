"""A string that remembers where each of its characters came from, for the Chinese normaliser.

The normaliser is a chain of regular-expression rewrites. Running it on a :class:`TracedText` instead of a plain
``str`` yields, next to the normalised text, the index of the input character behind every output character (or
-1 for characters an expansion generated), so a caller can carry per-character information (a forced pinyin, a
tag) from the raw text onto the normalised text.

Inside a rewritten span, characters of the replacement are matched to equal characters of the original span from
the right (greedy). That is exact for every rule of the normaliser: the only characters a rule both reads and writes
back are measure words, 年/月/日/号, 度 and the like, and they always follow the number words the rule generates.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable

__all__ = ["Rule", "TracedText"]

#: a rewrite rule: a compiled pattern and the function giving the replacement of each match
Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _align_from_right(old: str, old_origin: list[int], new: str) -> list[int]:
    origin = [-1] * len(new)
    end = len(new)
    for i in range(len(old) - 1, -1, -1):
        k = new.rfind(old[i], 0, end)
        if k >= 0:
            origin[k] = old_origin[i]
            end = k
    return origin


class TracedText:
    """``text`` plus ``origin``: for each character of ``text`` the index of the input character it stems from."""

    __slots__ = ("text", "origin")

    def __init__(self, text: str, origin: list[int] | None = None) -> None:
        self.text = text
        self.origin = list(range(len(text))) if origin is None else origin

    def __repr__(self) -> str:
        return f"TracedText({self.text!r})"

    def sub(self, pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str]) -> bool:
        """Like ``pattern.sub(replace, text)``, in place; returns whether anything matched."""
        text, origin = self.text, self.origin
        pieces: list[str] = []
        new_origin: list[int] = []
        last = 0
        for match in pattern.finditer(text):
            start, end = match.span()
            replacement = replace(match)
            pieces.append(text[last:start])
            new_origin.extend(origin[last:start])
            pieces.append(replacement)
            new_origin.extend(_align_from_right(text[start:end], origin[start:end], replacement))
            last = end
        if not pieces:
            return False
        pieces.append(text[last:])
        new_origin.extend(origin[last:])
        self.text, self.origin = "".join(pieces), new_origin
        return True

    def apply(self, rules: Iterable[Rule]) -> None:
        for pattern, replace in rules:
            self.sub(pattern, replace)

    def translate_chars(self, table: dict[int, str]) -> None:
        """``str.translate`` with a table that maps single characters to single characters."""
        self.text = self.text.translate(table)

    def translate(self, table: dict[int, str | None]) -> None:
        """``str.translate`` with a table that may delete characters or expand them into several."""
        if not any(ord(c) in table for c in self.text):
            return
        pieces: list[str] = []
        new_origin: list[int] = []
        for char, source in zip(self.text, self.origin):
            mapped = table.get(ord(char), char)
            if mapped:
                pieces.append(mapped)
                new_origin.extend([source] if mapped == char else [-1] * len(mapped))
        self.text, self.origin = "".join(pieces), new_origin

    def slice(self, start: int, end: int) -> TracedText:
        return TracedText(self.text[start:end], self.origin[start:end])

    def strip(self) -> TracedText:
        """Whitespace removed at both ends, as ``str.strip()`` does."""
        start = len(self.text) - len(self.text.lstrip())
        end = len(self.text.rstrip())
        return self.slice(start, max(start, end))

    def split(self, separator: re.Pattern[str]) -> list[TracedText]:
        """Like ``separator.split(text)`` (the separator pattern must not contain groups)."""
        parts: list[TracedText] = []
        last = 0
        for match in separator.finditer(self.text):
            parts.append(self.slice(last, match.start()))
            last = match.end()
        parts.append(self.slice(last, len(self.text)))
        return parts

    @staticmethod
    def join(parts: Iterable[TracedText]) -> TracedText:
        texts: list[str] = []
        origin: list[int] = []
        for part in parts:
            texts.append(part.text)
            origin.extend(part.origin)
        return TracedText("".join(texts), origin)
