"""One text in one language -> phones: upstream's ``text.cleaner.clean_text(text, language, version)``.

    from gsv_core.text.cleaner import clean_text
    phones, word2ph, norm_text = clean_text("今日は良い天気です。", "ja", "v2")

This is what upstream's data preparation (``1-get-text.py``) runs on every ``.list`` row: the whole text goes to
one language's front end, with no English segments split off (use :func:`gsv_core.text.text_to_phones` for the
mixed modes). ``word2ph`` is a list for Chinese and Cantonese, None otherwise. Differences from upstream: a
language the model version has no phones for (Korean or Cantonese with v1), or an unknown language, raises
:class:`~gsv_core.text.frontend.UnsupportedLanguageError` instead of silently reading ``" "`` as English.
"""
from __future__ import annotations

from typing import Optional

from gsv_core.languages import LANGUAGES
from gsv_core.text.symbols import normalize_symbol_version

__all__ = ["clean_text"]


def clean_text(text: str, lang: str, version: str = "v2", *, use_g2pw: bool = False,
               user_dict: Optional[dict] = None) -> tuple[list[str], Optional[list[int]], str]:
    """``(phones, word2ph, norm_text)`` of ``text`` read entirely as ``lang`` (zh, en, ja, ko, yue).

    ``use_g2pw`` and ``user_dict`` apply to Chinese only."""
    from gsv_core.text.frontend import UnsupportedLanguageError

    sym = normalize_symbol_version(version)
    language = LANGUAGES.get(lang)
    if language is None:
        raise UnsupportedLanguageError(f"unknown language {lang!r}: use one of {', '.join(LANGUAGES)}")
    if sym not in language.symbol_versions:
        raise UnsupportedLanguageError(
            f"{language.name_en} text cannot be read by a {version} model (its symbol table has no "
            f"{language.name_en} phones); use a v2 or later model"
        )
    if lang == "zh":
        from gsv_core.text.zh import clean_zh

        phones, word2ph, norm = clean_zh(text, version, use_g2pw=use_g2pw, user_dict=user_dict)
        return list(phones), list(word2ph), norm
    if lang == "en":
        from gsv_core.text.en import clean_en

        phones, _, norm = clean_en(text, version)
        return list(phones), None, norm
    if lang == "ja":
        from gsv_core.text.ja import clean_ja

        return clean_ja(text, version)
    if lang == "ko":
        from gsv_core.text.ko import clean_ko

        return clean_ko(text, version)
    from gsv_core.text.yue import clean_yue

    return clean_yue(text, version)
