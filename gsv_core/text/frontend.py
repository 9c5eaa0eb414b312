"""Text -> phones for one piece of text, as GPT-SoVITS' ``TextPreprocessor.get_phones_and_bert`` does it (minus
BERT, which the engine computes from the returned segments).

Modes (``lang``), from the one table :mod:`gsv_core.languages` (:data:`LANGS` lists them):

* ``zh`` / ``ja`` / ``ko`` / ``yue``: the language mixed with English; consecutive non-English spans are merged
  into one segment of that language (upstream: "the user's choice decides for CJK characters");
* ``all_zh`` / ``all_ja`` / ``all_ko`` / ``all_yue``: every non-English span is that language, digits included;
  spans that are plain ASCII with a letter still go to English (upstream's rule, also for Japanese and Korean);
* ``auto`` / ``auto_yue``: spans keep their detected language (zh, ja, ko, en; ``auto_yue`` reads Chinese spans
  as Cantonese): texts with kana through :mod:`gsv_core.text.langdetect` (split-lang + fastText, offline),
  others by script (:mod:`gsv_core.text.langseg`: Han = Chinese, hangul = Korean);
* ``en``: the whole text is English.

v1 models (322 symbols) read only Chinese, Japanese and English: a Korean or Cantonese mode, or a detected Korean
span, is an :class:`UnsupportedLanguageError`.

Runs of two or more spaces become one first. Each segment is cleaned by its language's front end (Chinese:
:func:`gsv_core.text.zh.clean_zh`, English: :func:`gsv_core.text.en.clean_en`, Japanese:
:func:`gsv_core.text.ja.clean_ja`, Korean: :func:`gsv_core.text.ko.clean_ko`, Cantonese:
:func:`gsv_core.text.yue.clean_yue`), phones become ids of the version's symbol table, and the engine
concatenates the segments in order (BERT features for Chinese segments, zeros for the others, Cantonese
included). When the whole piece yields fewer than 6 phones it is processed once more with "." prepended, as the
reference does.

On top of the reference: inline tags (:mod:`gsv_core.text.tags`): ``字[pinyin]`` forces a reading (Mandarin
segments only) and ``[pause=0.5]`` cuts the piece in every language, giving :class:`Pause` items between groups
of segments; and a user dictionary (word -> pinyin per character, Mandarin) given as the ``user_dict`` argument
(the engine loads the file named by the settings' ``user_dict_path``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from gsv_core.languages import LANGUAGES, TEXT_MODES, LanguageError, check_mode, text_modes
from gsv_core.text.langseg import LangSpan, segment_languages
from gsv_core.text.split import TextError, cut_long_run, preprocess_pieces
from gsv_core.text.tags import (
    Pause,
    TagError,
    TextChunk,
    merge_user_dicts,
    parse_tags,
    split_at_pauses,
)

__all__ = [
    "LANGS", "NothingToReadError", "UnsupportedLanguageError", "Segment", "Pause", "FrontendResult",
    "text_to_phones", "preprocess_text",
]

#: the text modes the front end reads, in the order of :data:`gsv_core.languages.TEXT_MODES`
LANGS: tuple[str, ...] = text_modes()
MIN_PHONES = 6
#: phones that are no speech (a chunk made only of these has nothing to read); 空/停 are Korean's blank and
#: unknown-character phones
SILENT_PHONES = frozenset(("!", "?", "…", ",", ".", "-", "SP", "SP2", "SP3", "UNK", "_", "空", "停"))
_KANA_RE = re.compile("[\u3041-\u3096\u30a1-\u30fa]")
_SPACE_RUN_RE = re.compile(r" {2,}")
_AUTO = object()


class NothingToReadError(TextError):
    """The text has no speakable content (only punctuation, emoji or scripts no front end reads)."""


class UnsupportedLanguageError(TextError, LanguageError):
    """An unknown text mode, or a language the model version cannot say (Korean/Cantonese with a v1 model)."""


@dataclass(frozen=True)
class Segment:
    """One single-language segment: ``lang`` is "zh", "en", "ja", "ko" or "yue"; ``word2ph`` (phones per character
    of ``norm_text``) only for Chinese and Cantonese (upstream gives none for the others)."""

    lang: str
    text: str
    norm_text: str
    phones: list[str]
    phone_ids: list[int]
    word2ph: list[int] | None

    def to_dict(self) -> dict:
        return {
            "lang": self.lang,
            "text": self.text,
            "norm_text": self.norm_text,
            "phones": list(self.phones),
            "phone_ids": list(self.phone_ids),
            "word2ph": None if self.word2ph is None else list(self.word2ph),
        }


@dataclass
class FrontendResult:
    """Segments and pauses of one text, in order. Consecutive segments are read together as one utterance; a
    :class:`Pause` separates utterances."""

    text: str
    lang: str
    version: str
    items: list[Segment | Pause] = field(default_factory=list)

    @property
    def segments(self) -> list[Segment]:
        return [i for i in self.items if isinstance(i, Segment)]

    @property
    def pauses(self) -> list[Pause]:
        return [i for i in self.items if isinstance(i, Pause)]

    @property
    def phones(self) -> list[str]:
        return [p for s in self.segments for p in s.phones]

    @property
    def phone_ids(self) -> list[int]:
        return [p for s in self.segments for p in s.phone_ids]

    @property
    def norm_text(self) -> str:
        return "".join(s.norm_text for s in self.segments)

    @property
    def word2ph(self) -> list[int] | None:
        """Phones per character of :attr:`norm_text` when every segment has them (Chinese, Cantonese), else None."""
        segs = self.segments
        if not segs or any(s.word2ph is None for s in segs):
            return None
        return [n for s in segs for n in s.word2ph]

    def utterances(self) -> list[tuple[list[Segment], float]]:
        """``[(segments, pause_after_seconds), ...]``: the groups the engine synthesises one by one."""
        groups: list[tuple[list[Segment], float]] = []
        current: list[Segment] = []
        for item in self.items:
            if isinstance(item, Segment):
                current.append(item)
            else:
                groups.append((current, item.seconds))
                current = []
        if current:
            groups.append((current, 0.0))
        return [(segs, pause) for segs, pause in groups if segs or pause > 0]

    def to_dict(self) -> dict:
        """JSON-ready: text, norm_text, phones, word2ph, phone_ids, segments, and ``items`` (segments and
        ``{"pause": seconds}`` in order) when the text has pauses."""
        out = {
            "text": self.text,
            "norm_text": self.norm_text,
            "phones": self.phones,
            "word2ph": self.word2ph,
            "phone_ids": self.phone_ids,
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.pauses:
            out["items"] = [s.to_dict() if isinstance(s, Segment) else {"pause": s.seconds} for s in self.items]
        return out


# ---- language spans ------------------------------------------------------------------------------------------------
def _merge_into(spans: list[LangSpan], target: str) -> list[LangSpan]:
    """Every non-English span becomes ``target``; neighbours of the same language merge."""
    merged: list[LangSpan] = []
    for span in spans:
        lang = "en" if span.lang == "en" else target
        if merged and merged[-1].lang == lang:
            merged[-1].extend(span)
        else:
            merged.append(LangSpan(lang, span.text, list(span.sources)))
    return merged


def _rename(spans: list[LangSpan], old: str, new: str) -> list[LangSpan]:
    for span in spans:
        if span.lang == old:
            span.lang = new
    return spans


def _spans(text: str, lang: str) -> list[LangSpan]:
    if lang == "en":
        return [LangSpan("en", text, list(range(len(text))))] if text else []
    mode = TEXT_MODES[lang]
    if mode.language == "auto":
        if _KANA_RE.search(text):
            from gsv_core.text.langdetect import detect_languages

            spans = detect_languages(text)
        else:
            spans = segment_languages(text)
        for span in spans:  # a text of marks only ("punctuation"): silent, read as Chinese
            if span.lang not in ("zh", "en", "ja", "ko"):
                span.lang = "zh"
        return _rename(spans, "zh", "yue") if "yue" in mode.reads else spans
    if mode.language in ("zh", "yue"):
        _refuse_other_scripts(text, lang)
    if lang.startswith("all_"):
        target = mode.language
        spans = segment_languages(text, "zh" if target == "yue" else target)
        return _rename(spans, "zh", "yue") if target == "yue" else spans
    return _merge_into(segment_languages(text), mode.language)


_KANA_OR_HANGUL_RE = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


def _refuse_other_scripts(text: str, lang: str) -> None:
    """A Chinese mode would read only the kanji of Japanese text (and nothing of Korean) without a word: say so.
    (Upstream drops the kana/hangul silently; we refuse and name the modes that read them.)"""
    m = _KANA_OR_HANGUL_RE.search(text)
    if m:
        hangul = "\uac00" <= m.group(0) <= "\ud7af" or "\u1100" <= m.group(0) <= "\u11ff" or \
            "\u3130" <= m.group(0) <= "\u318f"
        which, modes = ("Korean", "ko, all_ko or auto") if hangul else ("Japanese", "ja, all_ja or auto")
        raise TextError(f"the text has {which} characters ({m.group(0)!r} at position {m.start() + 1}), which the "
                        f"{lang} mode would skip: choose {modes}")


# ---- per-language cleaning -----------------------------------------------------------------------------------------
def _check_span_language(lang: str, version: str) -> None:
    from gsv_core.text.symbols import normalize_symbol_version

    sym = normalize_symbol_version(version)
    if sym not in LANGUAGES[lang].symbol_versions:
        raise UnsupportedLanguageError(
            f"{LANGUAGES[lang].name_en} text cannot be read by a {version} model (its symbol table has only "
            f"{', '.join(l.name_en for l in LANGUAGES.values() if sym in l.symbol_versions)}); use a v2 or later model"
        )


def _clean_segment(span_text: str, lang: str, version: str, forced: dict[int, str], g2p_options: dict):
    if forced and lang != "zh":
        name = LANGUAGES[lang].name_en
        raise TagError(f"reading tags [pinyin] need Mandarin Chinese text; this part is read as {name}")
    if lang == "en":
        from gsv_core.text.en import clean_en

        return clean_en(span_text, version)
    if lang == "ja":
        from gsv_core.text.ja import clean_ja

        return clean_ja(span_text, version)
    if lang == "ko":
        from gsv_core.text.ko import clean_ko

        _check_span_language(lang, version)
        return clean_ko(span_text, version)
    if lang == "yue":
        from gsv_core.text.yue import clean_yue

        _check_span_language(lang, version)
        return clean_yue(span_text, version)
    from gsv_core.text.zh import clean_zh
    from gsv_core.text.zh.normalize import zh_char_survives

    for index in forced:
        if not zh_char_survives(span_text[index]):
            raise TagError(
                f"the character {span_text[index]!r} is dropped by Chinese normalisation and cannot take a reading"
            )
    # clean_zh carries readings keyed by indices of the raw text across normalisation (aligned normaliser), so
    # the text is normalised exactly as without tags
    phones, word2ph, norm = clean_zh(span_text, version, forced=forced or None, **g2p_options)
    return list(phones), list(word2ph), norm


def _chunk_segments(chunk: TextChunk, lang: str, version: str, g2p_options: dict, final: bool = False):
    from gsv_core.text.symbols import phones_to_ids

    # runs of spaces collapse; forced indices follow the characters
    keep = [i for i in range(len(chunk.text)) if not (chunk.text[i] == " " and i > 0 and chunk.text[i - 1] == " ")]
    text = "".join(chunk.text[i] for i in keep)
    new_index = {old: new for new, old in enumerate(keep)}
    forced = {new_index[i]: p for i, p in chunk.forced.items()}

    segments: list[Segment] = []
    assigned: set[int] = set()
    for span in _spans(text, lang):
        local = {k: forced[src] for k, src in enumerate(span.sources) if src in forced}
        assigned.update(src for src in span.sources if src in forced)
        phones, word2ph, norm = _clean_segment(span.text, span.lang, version, local, g2p_options)
        segments.append(Segment(span.lang, span.text, norm, phones, phones_to_ids(phones, version), word2ph))
    lost = set(forced) - assigned
    if lost:
        raise TagError(f"a reading tag is attached to {text[min(lost)]!r}, which is not read as Chinese text")
    if not final and sum(len(s.phones) for s in segments) < MIN_PHONES:
        shifted = TextChunk("." + text, {i + 1: p for i, p in forced.items()}, chunk.start)
        return _chunk_segments(shifted, lang, version, g2p_options, final=True)
    return segments


def _check_args(text, lang: str, version: str) -> str:
    from gsv_core.text.symbols import normalize_symbol_version

    if not isinstance(text, str):
        raise TextError(f"text must be a string, not {type(text).__name__}")
    if lang not in LANGS:
        raise UnsupportedLanguageError(f"unsupported language mode {lang!r}: use one of {', '.join(LANGS)}")
    sym = normalize_symbol_version(version)
    try:
        check_mode(lang, sym)
    except LanguageError as exc:
        raise UnsupportedLanguageError(str(exc)) from None
    return lang


def _g2p_options(user_dict, use_g2pw) -> dict:
    # the library never reads the application's settings: callers (the engine, finetune, the text CLI) pass the
    # user dictionary and the G2PW switch; G2PW's model location is set with gsv_core.text.configure()
    if user_dict is _AUTO:
        user_dict = None
    return {"user_dict": merge_user_dicts(user_dict), "use_g2pw": True if use_g2pw is None else bool(use_g2pw)}


def text_to_phones(
    text: str,
    lang: str = "zh",
    version: str = "v2",
    *,
    user_dict: Mapping[str, Sequence[str]] | None = _AUTO,  # type: ignore[assignment]
    use_g2pw: bool | None = None,
    tags: bool = True,
) -> FrontendResult:
    """Phones of one piece of text (see the module docstring).

    ``user_dict``: word -> one pinyin per character (None: none; the engine passes the file named by the settings'
    ``user_dict_path``). ``use_g2pw``: None = True (G2PW when :func:`gsv_core.text.configure` set up a model).
    ``tags=False`` reads brackets literally. Raises :class:`TextError` (a GSVError) for unusable input.
    """
    lang = _check_args(text, lang, version)
    if not text.strip():
        raise TextError("the text is empty")
    options = _g2p_options(user_dict, use_g2pw)
    chunks = parse_tags(text) if tags else [TextChunk(text, {}, 0)]
    result = FrontendResult(text=text, lang=lang, version=version)
    for item in chunks:
        if isinstance(item, Pause):
            result.items.append(item)
            continue
        if not item.text.strip():
            continue
        segments = _chunk_segments(item, lang, version, options)
        if all(p in SILENT_PHONES for s in segments for p in s.phones):
            continue  # only punctuation or characters no front end reads (emoji, other scripts)
        result.items.extend(segments)
    if not result.segments and not result.pauses:
        shown = text.strip()
        shown = shown if len(shown) <= 30 else shown[:30] + "..."
        raise NothingToReadError(
            f"nothing to read in {shown!r}: only punctuation or characters the {lang} front end cannot read "
            f"(supported: {', '.join(LANGUAGES[x].name_en for x in TEXT_MODES[lang].reads)})"
        )
    return result


def preprocess_text(
    text: str,
    lang: str = "zh",
    version: str = "v2",
    method: str = "cut5",
    *,
    user_dict: Mapping[str, Sequence[str]] | None = _AUTO,  # type: ignore[assignment]
    use_g2pw: bool | None = None,
    tags: bool = True,
) -> list[FrontendResult]:
    """A whole user text as the inference front end handles it: collapse repeated punctuation, split with
    ``method`` (:func:`gsv_core.text.split.preprocess_pieces`), then :func:`text_to_phones` per piece; pieces
    without phones or with an empty normalised text are dropped. Pause tags are cut out before splitting (a pause
    ends the piece before it)."""
    lang = _check_args(text, lang, version)
    split_lang = "en" if lang == "en" else lang
    options = {"user_dict": user_dict, "use_g2pw": use_g2pw, "tags": tags}
    if tags:
        parse_tags(text)  # report a malformed tag with its position in the whole text
        parts = split_at_pauses(text)
    else:
        parts = [text]
    results: list[FrontendResult] = []
    for part in parts:
        if isinstance(part, Pause):
            results.append(FrontendResult(text="", lang=lang, version=version, items=[part]))
            continue
        if not part.strip("\n"):
            continue
        pieces = [p for run in preprocess_pieces(part, split_lang, method) for p in cut_long_run(run, lang=split_lang)]
        for piece in pieces:
            try:
                res = text_to_phones(piece, lang, version, **options)
            except NothingToReadError:
                continue  # the reference drops pieces without phones too
            if res.segments and res.norm_text and res.phones:
                results.append(res)
    if not any(r.segments for r in results):
        raise NothingToReadError("the text has nothing to read (only punctuation or unsupported characters)")
    return results
