"""How the engine will read a text, before it synthesises it: the pieces after splitting, each piece's language
segments with their normalised text, phones and (Mandarin) pinyin, and the pauses from ``[pause=…]`` tags.

Built from the engine's own front end (:meth:`gsv_core.engine.textfeatures.TextFeaturizer.preview`, the same call
:meth:`TextFeaturizer.fragments` makes), so what it shows is what the GPT and SoVITS receive. No BERT, no models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

from ..text.frontend import FrontendResult, Segment

__all__ = ["PreviewPiece", "PreviewSegment", "TextPreview", "build_preview", "pinyin_of"]


@dataclass(frozen=True)
class PreviewSegment:
    lang: str  # zh, en, ja, ko, yue
    text: str
    norm_text: str
    phones: tuple[str, ...]
    pinyin: tuple[str, ...] = ()  # Mandarin segments: one toned syllable (or mark) per character of norm_text


@dataclass(frozen=True)
class PreviewPiece:
    """One fragment the engine synthesises on its own (its seed is the request's seed + its index)."""

    text: str
    segments: tuple[PreviewSegment, ...]
    pause_after: float  # seconds of silence after it (the request's pause, or a [pause=…] tag's)

    @property
    def phones(self) -> int:
        return sum(len(s.phones) for s in self.segments)

    @property
    def langs(self) -> tuple[str, ...]:
        return tuple(s.lang for s in self.segments)


@dataclass(frozen=True)
class TextPreview:
    text: str
    lang: str
    split_method: str
    version: str
    pieces: tuple[PreviewPiece, ...] = field(default_factory=tuple)

    @property
    def phones(self) -> int:
        return sum(p.phones for p in self.pieces)


@lru_cache(maxsize=1)
def _syllables() -> dict[tuple[str, str], str]:
    """(initial phone, final phone without tone) -> pinyin spelling, from the front end's own table."""
    from ..text.zh.g2p import _pinyin_table

    out: dict[tuple[str, str], str] = {}
    for spelling, phones in _pinyin_table().items():
        out.setdefault(phones, spelling)
    return out


def pinyin_of(segment: Segment) -> tuple[str, ...]:
    """The toned pinyin (``jin1``) of each character of a Mandarin segment's normalised text, read back from its
    phones (so a forced reading, the user dictionary, G2PW and tone sandhi all show); a mark stays itself. Empty
    for other languages."""
    if segment.lang != "zh" or not segment.word2ph:
        return ()
    table, out, at = _syllables(), [], 0
    for count in segment.word2ph:
        phones = segment.phones[at : at + count]
        at += count
        if len(phones) >= 2 and phones[1][-1:].isdigit():
            spelling = table.get((phones[0], phones[1][:-1]))
            if spelling is not None:
                out.append(spelling + phones[1][-1] + "".join(phones[2:]))
                continue
        out.append("".join(phones))
    return tuple(out)


def build_preview(text: str, lang: str, split_method: str, version: str, results: Sequence[FrontendResult],
                  pause: float) -> TextPreview:
    """The preview of ``results`` (the front end's pieces of ``text``), with the pause rules of the engine: each
    piece is followed by ``pause`` seconds, a pause tag replaces the pause of the piece before it."""
    pieces: list[list] = []
    for res in results:
        if res.segments:
            segs = tuple(PreviewSegment(s.lang, s.text, s.norm_text, tuple(s.phones), pinyin_of(s))
                         for s in res.segments)
            pieces.append([res.text, segs, pause])
        elif res.pauses and pieces:
            pieces[-1][2] = sum(p.seconds for p in res.pauses)
    return TextPreview(text, lang, split_method, version,
                       tuple(PreviewPiece(t, segs, float(after)) for t, segs, after in pieces))
