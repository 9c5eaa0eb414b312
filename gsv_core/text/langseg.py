"""Splitting mixed Chinese/English text into single-language segments, by script.

GPT-SoVITS does this with the ``split-lang`` package (fastText language identification on chunks) followed by its
own ``LangSegmenter.getTexts`` rules. For Chinese + English text the observable result is decided by the script
of each run, and that is what this module implements without any model:

1. Runs: Chinese characters, Japanese kana, Korean hangul, digits (``str.isdigit``), single punctuation marks
   (split-lang's punctuation set; an apostrophe right after a non-blank stays in its word), line breaks and
   "other" text (Latin and other scripts, symbols). Blanks stay in the run they follow; the text is stripped.
2. A punctuation mark joins the run before it; leading marks join the run after them. Neighbouring digit runs
   (e.g. "3" "." "14") become one digit run; neighbouring runs of the same language merge.
3. Languages: Chinese characters -> zh, kana -> ja, hangul -> ko, a run with only ASCII text and at least one
   letter (CJK and full-width punctuation allowed, as the reference's ``full_en`` test) -> en, other Latin-script
   text -> en, anything else (emoji, Cyrillic, Arabic...) -> unknown: reduced to its CJK characters, digits and
   a few marks (then zh), or, when nothing is left, given a neighbour's language.
4. With a default language (the ``all_zh`` mode) every non-English run takes it, digits included. Without one,
   digits take a neighbour's language by the reference's rules: the language shared by both neighbours; after a
   sentence mark, the next run's; before one, the previous run's; a run ending with a full stop, the previous
   run's; otherwise the longer neighbour's (ties to the left); alone, zh.

Every character of a segment keeps the index it had in the input (:attr:`Segment.sources`), so inline tags can
be mapped onto the segment texts exactly.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

__all__ = ["LangSpan", "segment_languages", "is_han", "full_en"]

# split-lang's punctuation set
_PUNCT = frozenset("""〜~,.;:!?，。！？；：、·([{<（【《〈「『“‘)]}>）】》〉」』”’"-_——#$%&……￥'*+<=>?@[\\]^_`{|}~""")
_SENTENCE_MARKS = frozenset(",.!?，。！？")
_FULL_EN_RE = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9\s\u0020-\u007E\u2000-\u206F\u3000-\u303F\uFF00-\uFFEF]+$")
_CJK_KEEP_RE = re.compile(r"[0-9、-〜。！？.!?… /]")
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DB5),
    (0x20000, 0x2A6DD),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0x2CEB0, 0x2EBEF),
    (0x30000, 0x3134A),
    (0x31350, 0x323AF),
    (0x2EBF0, 0x2EE5D),
)


def is_han(ch: str) -> bool:
    """True for a Chinese character (CJK unified ideographs, extensions A..H)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_kana(ch: str) -> bool:
    return "\u3040" <= ch <= "\u30ff" or ch == "々"


def _is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7af" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f"


def full_en(text: str) -> bool:
    """The reference's test for "this is English": ASCII (plus CJK/full-width marks) with at least one letter."""
    return bool(_FULL_EN_RE.match(text))


def _is_latin_letter(ch: str) -> bool:
    return ch.isalpha() and "LATIN" in unicodedata.name(ch, "")


@dataclass
class LangSpan:
    """A run of text in one language; ``sources[i]`` is the input index of ``text[i]``."""

    lang: str
    text: str
    sources: list[int] = field(default_factory=list)

    def extend(self, other: "LangSpan") -> None:
        self.text += other.text
        self.sources.extend(other.sources)


# ---- step 1: runs -------------------------------------------------------------------------------------------------
_HAN, _KANA, _HANGUL, _DIGIT, _PUN, _NEWLINE, _OTHER = "han", "kana", "hangul", "digit", "punct", "newline", "other"


def _runs(text: str) -> list[tuple[str, str, list[int]]]:
    start = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    runs: list[tuple[str, str, list[int]]] = []
    kind = _OTHER
    chars: list[str] = []
    idx: list[int] = []

    def close():
        if chars:
            runs.append((kind, "".join(chars), list(idx)))
            chars.clear()
            idx.clear()

    for i in range(start, end):
        ch = text[i]
        if is_han(ch) and not _is_kana(ch):
            new = _HAN
        elif _is_kana(ch):
            new = _KANA
        elif _is_hangul(ch):
            new = _HANGUL
        elif ch.isdigit():
            new = _DIGIT
        elif ch in _PUNCT:
            if ch == "'" and i > 0 and not text[i - 1].isspace():
                new = kind  # part of a word
            else:
                close()  # every mark is a run of its own
                new = _PUN
        elif ch.isspace():
            if ch in "\n\r":
                close()
                new = _NEWLINE
            else:
                new = kind
        else:
            new = _OTHER
        if new != kind:
            close()
            kind = new
        chars.append(ch)
        idx.append(i)
    close()
    return runs


# ---- steps 2 and 3: attach marks, label ---------------------------------------------------------------------------
def _label(kind: str, text: str) -> str:
    if kind == _DIGIT:
        return "digit"
    if kind == _HAN:
        return "zh"
    if kind == _KANA:
        return "ja"
    if kind == _HANGUL:
        return "ko"
    if kind == _OTHER:
        if any(_is_latin_letter(c) for c in text):
            return "en"
        return "x"
    return "x"


def _attach_marks(runs: list[tuple[str, str, list[int]]]) -> list[list]:
    """Marks and line breaks join the previous run (leading ones the next); returns [kind, text, sources]."""
    out: list[list] = []
    pending: list = []  # leading marks waiting for a run
    for kind, text, idx in runs:
        if kind in (_PUN, _NEWLINE):
            if out:
                out[-1][1] += text
                out[-1][2] = out[-1][2] + idx
            else:
                pending.append((text, idx))
            continue
        item = [kind, text, list(idx)]
        if pending:
            item[1] = "".join(t for t, _ in pending) + item[1]
            item[2] = [i for _, ix in pending for i in ix] + item[2]
            pending = []
        out.append(item)
    if pending:  # nothing but marks
        out.append([_PUN, "".join(t for t, _ in pending), [i for _, ix in pending for i in ix]])
    return out


def _merge(spans: list[LangSpan], span: LangSpan) -> None:
    if spans and spans[-1].lang == span.lang:
        spans[-1].extend(span)
    else:
        spans.append(span)


def _reduce_to_cjk(span: LangSpan) -> LangSpan:
    keep = [(c, i) for c, i in zip(span.text, span.sources) if is_han(c) or _CJK_KEEP_RE.match(c)]
    return LangSpan("zh", "".join(c for c, _ in keep), [i for _, i in keep])


def segment_languages(text: str, default_lang: str = "") -> list[LangSpan]:
    """Language spans of ``text`` (langs: zh, en, ja, ko; ``default_lang`` e.g. "zh" for the all_zh mode)."""
    items: list[LangSpan] = []
    for kind, chunk, idx in _attach_marks(_runs(text)):
        lang = _label(kind, chunk)
        _merge(items, LangSpan(lang, chunk, idx))

    spans: list[LangSpan] = []
    have_digits = False
    for span in items:
        if span.lang == "digit":
            if default_lang:
                span.lang = default_lang
            else:
                have_digits = True
            _merge(spans, span)
            continue
        if full_en(span.text):
            span.lang = "en"
            _merge(spans, span)
            continue
        if default_lang:
            span.lang = default_lang
            _merge(spans, span)
            continue
        if span.lang == "x":
            reduced = _reduce_to_cjk(span)
            _merge(spans, reduced if reduced.text else span)
            continue
        _merge(spans, span)

    if have_digits:
        pending = spans
        spans = []
        last = len(pending) - 1
        for i, span in enumerate(pending):
            if span.lang == "digit":
                if spans and i == last:
                    span.lang = spans[-1].lang
                elif not spans and i < last:
                    span.lang = pending[1].lang
                elif spans and i < last:
                    before, after = spans[-1], pending[i + 1]
                    if before.lang == after.lang:
                        span.lang = before.lang
                    elif before.text[-1] in _SENTENCE_MARKS:
                        span.lang = after.lang
                    elif after.text[0] in _SENTENCE_MARKS:
                        span.lang = before.lang
                    elif span.text[-1] in "。.":
                        span.lang = before.lang
                    elif len(before.text) >= len(after.text):
                        span.lang = before.lang
                    else:
                        span.lang = after.lang
                else:
                    span.lang = "zh"
            _merge(spans, span)

    pending = spans
    spans = []
    for span in pending:
        if span.lang == "x":
            if spans:
                span.lang = spans[-1].lang
            elif len(pending) > 1:
                span.lang = pending[1].lang
            else:
                span.lang = "zh"
        _merge(spans, span)
    return spans
