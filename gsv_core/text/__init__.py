"""The text front end: user text -> phones (and the pieces the engine synthesises one by one).

Public API::

    from gsv_core.text import text_to_phones, preprocess_text, cut, pre_seg_text, load_user_dict

    result = text_to_phones("重[chong2]新开始[pause=0.5]Hello world", lang="zh", version="v2")
    result.phones, result.phone_ids, result.norm_text, result.word2ph
    for item in result.items: ...          # Segment(lang, text, norm_text, phones, phone_ids, word2ph) | Pause

    pieces = preprocess_text(long_text, lang="zh", version="v2", method="cut5")   # one FrontendResult per piece
    phones, word2ph, norm_text = clean_text("今日は良い天気です。", "ja", "v2")   # one language, no segments
    cut(text, "cut1"); pre_seg_text(text, "zh", "cut5"); symbols("v2"); phones_to_ids(phones, "v2")

Text modes (:data:`LANGS`, from :mod:`gsv_core.languages`): ``zh``/``ja``/``ko``/``yue`` (the language mixed with
English), ``all_zh``/``all_ja``/``all_ko``/``all_yue``, ``en``, ``auto`` and ``auto_yue`` (detected per span).
Versions: ``v1`` (322-symbol table: Chinese, Japanese, English) and every later model version (732 symbols, also
Korean and Cantonese). Errors a user can cause are :class:`TextError` (a ``GSVError``); a missing optional
package or dictionary of a language is a :class:`MissingPackageError` / :class:`MissingDataError` naming it.
See ``docs/text-frontend.md`` and ``python -m gsv_core.text --help``.
"""
from __future__ import annotations

from gsv_core.text.split import (
    METHODS,
    SPLIT_MARKS,
    TextError,
    cut,
    merge_short_pieces,
    pre_seg_text,
    preprocess_pieces,
    replace_consecutive_punctuation,
    split_big_text,
    split_sentences,
)
from gsv_core.text.symbols import phones_to_ids, symbols
from gsv_core.text.tags import (
    MAX_PAUSE_SECONDS,
    Pause,
    TagError,
    UserDictError,
    configured_user_dict,
    load_user_dict,
    parse_tags,
    parse_user_dict,
)
from gsv_core.text.frontend import (
    LANGS,
    FrontendResult,
    NothingToReadError,
    Segment,
    UnsupportedLanguageError,
    preprocess_text,
    text_to_phones,
)
from gsv_core.text.optional import MissingDataError, MissingPackageError
from gsv_core.text.cleaner import clean_text

__all__ = [
    "configure",
    "LANGS",
    "METHODS",
    "SPLIT_MARKS",
    "MAX_PAUSE_SECONDS",
    "TextError",
    "TagError",
    "UserDictError",
    "NothingToReadError",
    "UnsupportedLanguageError",
    "MissingPackageError",
    "MissingDataError",
    "Segment",
    "Pause",
    "FrontendResult",
    "text_to_phones",
    "preprocess_text",
    "clean_text",
    "cut",
    "pre_seg_text",
    "preprocess_pieces",
    "replace_consecutive_punctuation",
    "split_big_text",
    "split_sentences",
    "merge_short_pieces",
    "symbols",
    "phones_to_ids",
    "load_user_dict",
    "parse_user_dict",
    "configured_user_dict",
    "parse_tags",
    "clean_en",
    "normalize_en",
]


def __getattr__(name: str):
    # English helpers are imported lazily (NLTK and inflect take a moment to import)
    if name in ("clean_en", "normalize_en", "g2p_en"):
        from gsv_core.text import en

        return getattr(en, name)
    raise AttributeError(f"module 'gsv_core.text' has no attribute {name!r}")


def configure(settings) -> None:
    """Point the front end's process-wide resources at ``settings``: the G2PW model (its folder, the BERT
    tokenizer, the device; off when ``use_g2pw`` is false) and the folder holding upstream's full language-detector
    model. The engine and the CLIs call this; the library itself never reads the application's settings."""
    from gsv_core.text import langdetect
    from gsv_core.text.zh.g2pw import configure_g2pw

    device = "cpu" if str(getattr(settings, "device", "auto")) == "cpu" else "auto"
    if getattr(settings, "use_g2pw", True):
        configure_g2pw(getattr(settings, "g2pw_dir", None), getattr(settings, "bert_dir", None), device=device)
    else:
        configure_g2pw(None)
    langdetect.set_pretrained_dir(getattr(settings, "pretrained_dir", None))
