"""Splitting mixed text into single-language segments, by script.

GPT-SoVITS does this with ``LangSegmenter.getTexts``: the ``split-lang`` package cuts the text into pieces and
labels them (script sections, BudouX phrases, fastText language identification), then LangSegmenter's own rules
turn the pieces into segments. For the text modes that name their language (``zh``/``ja``/``ko``/``yue`` mixed
with English, ``all_*``) only the English/non-English decision and the piece boundaries matter, and those follow
from the scripts; this module reproduces them without a model (the ``auto`` modes with kana use the real
detector, :mod:`gsv_core.text.langdetect`, and the same rules of steps 3 and 4):

1. Runs (:func:`split_by_script`): split-lang's Chinese/Japanese block (CJK U+4E00-9FFF, kana, 々), hangul
   syllables, digits (``str.isdigit``), single punctuation marks (split-lang's punctuation set; an apostrophe
   right after a non-blank stays in its word), line breaks and "other" text (Latin and other scripts, CJK
   extension characters, jamo, symbols). Blanks stay in the run they follow; the text is stripped.
2. Pieces: a mark joins the run before it; leading marks join the run after them. Runs of one kind joined only by
   marks form one piece (e.g. "3" "." "14", or "Wi" "-" "Fi"); a line break joins the piece before it and ends it.
   Labels: kana in a Chinese/Japanese piece -> ja, else zh; hangul -> ko; "other" with a Latin letter -> en, else
   unknown (x); a text of marks only -> one "punctuation" piece (marks and a line break before anything else: a
   "newline" piece).
3. Per piece (:func:`assign_languages`): digits wait for step 4 (or take the default language); a piece that is
   ASCII with at least one letter (CJK and full-width punctuation allowed, the reference's ``full_en`` test) is
   English; with a default language (``all_*`` modes) every other piece takes it. Without one, kana runs in a
   non-Japanese piece and hangul/jamo runs in a non-Korean piece are cut out as ja / ko, and an unknown piece is
   reduced to its CJK characters (extensions included), digits and a few marks (then zh) or, when nothing is
   left, stays unknown. Neighbouring segments of one language merge.
4. Without a default language, digits take a neighbour's language by the reference's rules: the language shared
   by both neighbours; after a sentence mark, the next run's; before one, the previous run's; a run ending with a
   full stop, the previous run's; otherwise the longer neighbour's (ties to the left); alone, zh. Unknown segments
   finally take the previous segment's language (the next one's at the start, zh when alone).

Every character of a segment keeps the index it had in the input (:attr:`Segment.sources`), so inline tags can
be mapped onto the segment texts exactly.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

__all__ = [
    "LangSpan", "assign_digit_languages", "assign_languages", "fill_unknown_languages", "full_en", "is_han",
    "segment_languages", "split_by_script",
]

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


# ---- step 1: pieces by script --------------------------------------------------------------------------------------
_ZHJA, _KO, _DIGIT, _PUN, _NEWLINE, _OTHER = "zh_ja", "ko", "digit", "punct", "newline", "other"


def _is_zh_ja(ch: str) -> bool:
    """split-lang's Chinese/Japanese block: CJK U+4E00-9FFF (no extensions), kana U+3040-30FF and 々."""
    return "\u4e00" <= ch <= "\u9fff" or "\u3040" <= ch <= "\u30ff" or ch == "々"


def _sections(text: str) -> list[list]:
    """``[kind, text, sources]`` runs of one script; every mark and line break is a run of its own; blanks stay in
    the run they follow; an apostrophe right after a non-blank stays in its run; the text is stripped."""
    start = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    runs: list[list] = []
    kind = _OTHER
    chars: list[str] = []
    idx: list[int] = []

    def close():
        if chars:
            runs.append([kind, "".join(chars), list(idx)])
            chars.clear()
            idx.clear()

    for i in range(start, end):
        ch = text[i]
        if _is_zh_ja(ch):
            new = _ZHJA
        elif "\uac00" <= ch <= "\ud7af":
            new = _KO
        elif ch.isdigit():
            new = _DIGIT
        elif ch in _PUNCT:
            if ch == "'" and i > start and not text[i - 1].isspace():
                new = kind  # part of a word
            else:
                close()
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


def _label(kind: str, text: str) -> str:
    if kind == _ZHJA:
        return "ja" if any("\u3040" <= c <= "\u30ff" or c == "々" for c in text) else "zh"
    if kind == _OTHER:
        return "en" if any(_is_latin_letter(c) for c in text) else "x"
    return {_KO: "ko", _DIGIT: "digit", _PUN: "punctuation", _NEWLINE: "newline"}[kind]


def split_by_script(text: str) -> list[LangSpan]:
    """split-lang's pieces of ``text`` as a detector that answers by script would give them (step 1 and 2 of the
    module docstring): marks join the piece before them (leading marks the one after), runs of one kind joined by
    marks form one piece, a line break ends a piece."""
    merged: list[list] = []
    for sec in _sections(text):
        if merged and merged[-1][0] == _PUN:  # leading marks join the next run and take its kind
            merged[-1] = [sec[0], merged[-1][1] + sec[1], merged[-1][2] + sec[2]]
        elif merged and sec[0] == _PUN:
            merged[-1][1] += sec[1]
            merged[-1][2] = merged[-1][2] + sec[2]
        else:
            merged.append(list(sec))
    pieces: list[list] = []
    after_break = False
    for kind, chunk, idx in merged:
        if kind == _NEWLINE:
            if pieces:
                pieces[-1][1] += chunk
                pieces[-1][2] = pieces[-1][2] + idx
            else:  # marks and a line break before anything else: a piece of their own
                pieces.append([kind, chunk, list(idx)])
            after_break = True
            continue
        if pieces and pieces[-1][0] == kind and not after_break:
            pieces[-1][1] += chunk
            pieces[-1][2] = pieces[-1][2] + idx
        else:
            pieces.append([kind, chunk, list(idx)])
        after_break = False
    return [LangSpan(_label(kind, chunk), chunk, idx) for kind, chunk, idx in pieces]


# ---- steps 3 and 4: languages ---------------------------------------------------------------------------------------
def _merge(spans: list[LangSpan], span: LangSpan) -> None:
    if spans and spans[-1].lang == span.lang:
        spans[-1].extend(span)
    else:
        spans.append(span)


def _reduce_to_cjk(span: LangSpan) -> LangSpan:
    keep = [(c, i) for c, i in zip(span.text, span.sources) if is_han(c) or _CJK_KEEP_RE.match(c)]
    return LangSpan("zh", "".join(c for c, _ in keep), [i for _, i in keep])


_KANA_RUN_CHARS = "\u3041-\u3096\u3099\u309a\u30a1-\u30fa\u30fc"
_HANGUL_RUN_CHARS = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_RUN_JOINERS = "0-9\u3001-\u301c。！？.!?… "  # digits, 、..〜 (U+3001-U+301C), sentence marks, blank
_SCRIPT_RUNS = {
    "ja": re.compile(f"[{_KANA_RUN_CHARS}]+(?:[{_RUN_JOINERS}]+[{_KANA_RUN_CHARS}]*)*"),
    "ko": re.compile(f"[{_HANGUL_RUN_CHARS}]+(?:[{_RUN_JOINERS}]+[{_HANGUL_RUN_CHARS}]*)*"),
}


def _cut_runs(lang: str, span: LangSpan) -> list[LangSpan]:
    """``span`` cut into runs of ``lang``'s script (labelled ``lang``) and the rest (keeping ``span.lang``)."""
    out: list[LangSpan] = []
    pos = 0
    for m in _SCRIPT_RUNS[lang].finditer(span.text):
        if m.start() > pos:
            out.append(LangSpan(span.lang, span.text[pos : m.start()], span.sources[pos : m.start()]))
        out.append(LangSpan(lang, m.group(), span.sources[m.start() : m.end()]))
        pos = m.end()
    if pos < len(span.text):
        out.append(LangSpan(span.lang, span.text[pos:], span.sources[pos:]))
    return out


def assign_languages(pieces: list[LangSpan], default_lang: str = "") -> list[LangSpan]:
    """Upstream's ``LangSegmenter`` rules over language-labelled pieces (steps 3 and 4 of the module docstring).

    The spans are mutated and merged in place, as upstream's dictionaries are (a quirk below depends on it)."""
    spans: list[LangSpan] = []
    have_digits = False
    for item in pieces:
        if item.lang == "digit":
            if default_lang:
                item.lang = default_lang
            else:
                have_digits = True
            _merge(spans, item)
            continue
        if full_en(item.text):
            item.lang = "en"
            _merge(spans, item)
            continue
        if default_lang:
            item.lang = default_lang
            _merge(spans, item)
            continue
        ja_parts = _cut_runs("ja", item) if item.lang != "ja" else []
        if not ja_parts:
            ja_parts = [item]
        parts: list[LangSpan] = []
        ko_parts: list[LangSpan] = []
        for part in ja_parts:
            if part.lang != "ko":
                ko_parts = _cut_runs("ko", part)
            # upstream quirk: for a Korean part the previous part's cut is used again
            if ko_parts:
                parts.extend(ko_parts)
            else:
                parts.append(part)
        if len(parts) == 1:
            if item.lang == "x":
                reduced = _reduce_to_cjk(item)
                _merge(spans, reduced if reduced.text else item)
            else:
                _merge(spans, item)
            continue
        for part in parts:
            if part.lang == "x":
                reduced = _reduce_to_cjk(part)
                _merge(spans, reduced if reduced.text else part)
            else:
                _merge(spans, part)
    if have_digits:
        spans = assign_digit_languages(spans)
    return fill_unknown_languages(spans)


def segment_languages(text: str, default_lang: str = "") -> list[LangSpan]:
    """Language spans of ``text`` by script (langs: zh, en, ja, ko; ``default_lang`` e.g. "zh" for all_zh)."""
    return assign_languages(split_by_script(text), default_lang)


def assign_digit_languages(pending: list[LangSpan]) -> list[LangSpan]:
    """Give every ``digit`` span a neighbour's language (step 4 of the module docstring), merging as it goes."""
    spans: list[LangSpan] = []
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
    return spans


def fill_unknown_languages(pending: list[LangSpan]) -> list[LangSpan]:
    """Spans of unknown language (``x``) take the previous span's language (the next one's at the start; zh when
    alone), merging as it goes."""
    spans: list[LangSpan] = []
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
