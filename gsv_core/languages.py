"""Languages and text modes, defined once.

Everything that takes a language reads this table: the text front end, request validation, the ``.list`` reader and
writer, finetune data, RefAudio import, eval scoring and the UI dropdowns. Adding a language is one entry here plus
its front end in :mod:`gsv_core.text`.

Two notions, as upstream has them:

* a **language** (:class:`Language`) is what a front end reads: ``zh``, ``en``, ``ja``, ``ko``, ``yue``;
* a **text mode** (:class:`TextMode`) is what a user picks for a text: ``all_zh`` (everything Chinese), ``zh``
  (Chinese mixed with English), ``en``, ``all_ja``/``ja``, ``all_ko``/``ko``, ``all_yue``/``yue``, ``auto`` and
  ``auto_yue`` (per-span detection). Upstream's webui offers the same names.

``.list`` files carry upper-case codes (``ZH``, ``JA``/``JP``, ``EN``, ``KO``, ``YUE``) as upstream's ASR tools
write them; :func:`list_code_to_mode` reads every spelling upstream's data preparation accepts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import GSVError


class LanguageError(GSVError, ValueError):
    """A language or text mode that is unknown, not installed or not readable by the chosen model version."""


@dataclass(frozen=True)
class Language:
    code: str  # front-end language
    name_en: str
    name_zh: str
    list_code: str  # what a .list file written by us carries
    whisper: str  # Whisper's language code for ASR
    char_level: bool  # scored by CER (True) or WER (False)
    symbol_versions: tuple[str, ...]  # symbol tables (v1 = 322 symbols, v2 = 732) that have its phones


@dataclass(frozen=True)
class TextMode:
    code: str
    name_en: str
    name_zh: str
    language: str  # the language the mode is scored and transcribed in ("auto": per text)
    #: languages this mode sends text to (English spans of the mixed modes included)
    reads: tuple[str, ...]


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("zh", "Chinese", "中文", "ZH", "zh", True, ("v1", "v2")),
        Language("en", "English", "英文", "EN", "en", False, ("v1", "v2")),
        Language("ja", "Japanese", "日文", "JA", "ja", True, ("v1", "v2")),
        Language("ko", "Korean", "韩文", "KO", "ko", True, ("v2",)),
        Language("yue", "Cantonese", "粤语", "YUE", "yue", True, ("v2",)),
    )
}

TEXT_MODES: dict[str, TextMode] = {
    mode.code: mode
    for mode in (
        TextMode("zh", "Chinese with English", "中英混合", "zh", ("zh", "en")),
        TextMode("all_zh", "Chinese", "中文", "zh", ("zh", "en")),
        TextMode("en", "English", "英文", "en", ("en",)),
        TextMode("ja", "Japanese with English", "日英混合", "ja", ("ja", "en")),
        TextMode("all_ja", "Japanese", "日文", "ja", ("ja", "en")),
        TextMode("ko", "Korean with English", "韩英混合", "ko", ("ko", "en")),
        TextMode("all_ko", "Korean", "韩文", "ko", ("ko", "en")),
        TextMode("yue", "Cantonese with English", "粤英混合", "yue", ("yue", "en")),
        TextMode("all_yue", "Cantonese", "粤语", "yue", ("yue", "en")),
        TextMode("auto", "Multilingual (detect)", "多语种混合", "auto", ("zh", "en", "ja", "ko")),
        TextMode("auto_yue", "Multilingual, Cantonese (detect)", "多语种混合(粤语)", "auto", ("yue", "en", "ja", "ko")),
    )
}

#: front-end languages whose text front end is implemented in gsv_core.text (the others are refused clearly);
#: ja/ko/yue need optional packages (requirements.txt) and, for ja, Debian's open-jtalk-mecab-naist-jdic: when one
#: is missing, using the language raises gsv_core.text.optional.MissingPackageError / MissingDataError
IMPLEMENTED: frozenset[str] = frozenset({"zh", "en", "ja", "ko", "yue"})

#: every spelling of a language code upstream's data preparation accepts in a .list (1-get-text.py), plus ours
_LIST_ALIASES = {
    "zh": "zh", "cmn": "zh",
    "jp": "ja", "ja": "ja",
    "en": "en",
    "ko": "ko",
    "yue": "yue",
}


def text_modes() -> tuple[str, ...]:
    """Every text mode whose languages are all implemented, in the table's order."""
    return tuple(code for code, mode in TEXT_MODES.items() if set(mode.reads) <= IMPLEMENTED)


def all_text_modes() -> tuple[str, ...]:
    return tuple(TEXT_MODES)


def mode(code: str) -> TextMode:
    """The text mode named ``code``; a clear :class:`LanguageError` when it is unknown or not implemented."""
    key = (code or "").strip().lower() if isinstance(code, str) else code
    m = TEXT_MODES.get(key) if isinstance(key, str) else None
    if m is None:
        raise LanguageError(f"unknown language {code!r}: use one of {', '.join(text_modes())}")
    missing = [LANGUAGES[x].name_en for x in m.reads if x not in IMPLEMENTED]
    if missing:
        raise LanguageError(f"language {code!r} needs the {', '.join(missing)} front end, which is not available "
                            f"in this version (use one of {', '.join(text_modes())})")
    return m


def check_mode(code: str, symbol_version: Optional[str] = None) -> str:
    """``code`` normalised after checking that it exists, is implemented and (given a symbol version 'v1'/'v2')
    that the model's symbol table can say it."""
    m = mode(code)
    if symbol_version is not None:
        sym = "v1" if symbol_version == "v1" else "v2"
        for lang in m.reads:
            if lang == "en" or sym in LANGUAGES[lang].symbol_versions:
                continue
            if m.language == "auto":
                continue  # checked per span by the front end
            raise LanguageError(f"{LANGUAGES[lang].name_en} ({code}) cannot be read by a {symbol_version} model: its "
                                f"symbol table has only {', '.join(x for x, l in LANGUAGES.items() if sym in l.symbol_versions)}")
    return m.code


def list_code_to_mode(code: str) -> Optional[str]:
    """The canonical lower-case code of a ``.list`` language code, or None when it is unknown: upstream's spellings
    of a language (``ZH``, ``JP``/``JA``, ``EN``/``En``, ``KO``/``Ko``, ``YUE``/``Yue``) become the language
    (``zh``, ``ja``, ...), which is also the name of a text mode; text modes (``all_zh``, ``auto_yue``) stay.
    Finetuning reads a row with its language's front end alone, as upstream's data preparation does."""
    key = (code or "").strip().lower()
    if key in TEXT_MODES:
        return key
    lang = _LIST_ALIASES.get(key)
    return lang


def list_code_to_language(code: str) -> Optional[str]:
    """The front-end language a ``.list`` row of this code is read with when training (``ZH``/``all_zh`` -> zh,
    ``JP`` -> ja, ...), as upstream's data preparation reads it; None for unknown codes and for ``auto``/
    ``auto_yue`` (a training row names its language)."""
    key = list_code_to_mode(code)
    if key is None:
        return None
    lang = TEXT_MODES[key].language if key in TEXT_MODES else key
    return lang if lang in LANGUAGES else None


def mode_to_list_code(code: str) -> str:
    """The upper-case code a ``.list`` row of this text mode carries (``all_zh`` -> ``ZH``; ``auto`` stays)."""
    m = TEXT_MODES.get((code or "").lower())
    if m is None:
        return code.upper()
    if m.language == "auto":
        return m.code
    return LANGUAGES[m.language].list_code


def scoring_language(code: str) -> str:
    """The language a text of this mode or language code is scored in: a front-end language or ``auto``."""
    key = (code or "").strip().lower()
    if key in TEXT_MODES:
        return TEXT_MODES[key].language
    lang = _LIST_ALIASES.get(key)
    return lang or "auto"


def whisper_language(code: str) -> str:
    """Whisper's code for a text mode or language (``auto`` for the detecting modes)."""
    lang = scoring_language(code)
    return LANGUAGES[lang].whisper if lang in LANGUAGES else "auto"


def display_name(code: str, ui_lang: str = "zh") -> str:
    """The name of a text mode or language in ``ui_lang`` ("zh", "en" or "both")."""
    entry = TEXT_MODES.get(code) or LANGUAGES.get(code)
    if entry is None:
        return code
    if ui_lang == "both":
        return f"{entry.name_zh} {entry.name_en}"
    return entry.name_zh if ui_lang == "zh" else entry.name_en


def choices(ui_lang: str = "both") -> list[tuple[str, str]]:
    """(label, code) pairs for a dropdown of every available text mode."""
    return [(f"{display_name(c, ui_lang)} · {c}", c) for c in text_modes()]


__all__ = [
    "IMPLEMENTED", "LANGUAGES", "Language", "LanguageError", "TEXT_MODES", "TextMode", "all_text_modes",
    "check_mode", "choices", "display_name", "list_code_to_language", "list_code_to_mode", "mode", "mode_to_list_code", "scoring_language",
    "text_modes", "whisper_language",
]
