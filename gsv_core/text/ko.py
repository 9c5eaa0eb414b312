"""Korean front end: text -> jamo phones, as GPT-SoVITS' ``clean_text(text, "ko", "v2")``.

    from gsv_core.text.ko import clean_ko
    phones, word2ph, norm_text = clean_ko("오늘은 날씨가 정말 맑네요.")     # word2ph is always None

Only the v2 symbol table (v2, v2Pro, v2ProPlus models) has Korean phones; v1 is refused. Steps:

1. ``norm_text`` is the input unchanged.
2. Every ASCII letter (case-insensitively, letter by letter in alphabetical order) becomes its Korean letter name
   (``OK`` -> 오케이, ``Wi-Fi`` -> 더블유아이-에프아이).
3. The g2pk2 pronunciation rules (mecab-ko analysis, idioms, numbers spelled out — native numerals before
   g2pk2's bound nouns, Sino-Korean before other bound nouns, digit by digit elsewhere — liaison, tensing,
   nasalisation, palatalisation, the 의 rules). g2pk2's English step is a no-op here because step 2 left no
   Latin letters, so g2pk2 is used without its CMU dictionary (which it would download through NLTK).
4. Hangul is decomposed into compatibility jamo and every complex vowel is written as two simple ones
   (ㅘ -> ㅗㅏ, ㅢ -> ㅡㅣ, ㅕ -> ㅣㅓ, ...).
5. ``ㅇㅡㄹ ㄹ``/``ㄹㅡㄹ ㄹ`` across a blank become ``... ㄴ`` (upstream's fix of a g2pk2 liaison error); a
   text ending in a jamo gets a final ``.``.
6. One phone per character: blank -> ``空``; ``：；，。！？\\n·、`` as in the other languages; anything not in the
   v2 table (Hanja, emoji, quotes, brackets, ``$``) -> ``停``.
"""
from __future__ import annotations

import os
import re
import threading

from gsv_core.text.optional import MissingPackageError, require
from gsv_core.text.split import TextError
from gsv_core.text.symbols import normalize_symbol_version, symbol_to_id

__all__ = ["KoreanError", "clean_ko", "g2p_ko", "latin_to_hangul", "split_jamo"]

G2PK2_VERSION = "0.0.3"

#: Korean names of the Latin letters, applied in this order
_LETTER_NAMES = (
    ("a", "에이"), ("b", "비"), ("c", "시"), ("d", "디"), ("e", "이"), ("f", "에프"), ("g", "지"),
    ("h", "에이치"), ("i", "아이"), ("j", "제이"), ("k", "케이"), ("l", "엘"), ("m", "엠"), ("n", "엔"),
    ("o", "오"), ("p", "피"), ("q", "큐"), ("r", "아르"), ("s", "에스"), ("t", "티"), ("u", "유"),
    ("v", "브이"), ("w", "더블유"), ("x", "엑스"), ("y", "와이"), ("z", "제트"),
)
# re.IGNORECASE as upstream: "k" also matches the Kelvin sign and "s" the long s
_LETTER_RES = tuple((re.compile(letter, re.IGNORECASE), name) for letter, name in _LETTER_NAMES)

#: complex vowels (compatibility jamo) written as two simple ones
_SPLIT_VOWELS = str.maketrans({
    "ㅘ": "ㅗㅏ", "ㅙ": "ㅗㅐ", "ㅚ": "ㅗㅣ", "ㅝ": "ㅜㅓ", "ㅞ": "ㅜㅔ", "ㅟ": "ㅜㅣ", "ㅢ": "ㅡㅣ",
    "ㅑ": "ㅣㅏ", "ㅒ": "ㅣㅐ", "ㅕ": "ㅣㅓ", "ㅖ": "ㅣㅔ", "ㅛ": "ㅣㅗ", "ㅠ": "ㅣㅜ",
})
_RIEUL_FIX = re.compile("([ㅇㄹ]ㅡㄹ) ㄹ")
_FINAL_JAMO = re.compile("([\u3131-\u3163])$")
_MARK_PHONES = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",", " ": "空",
}
_UNKNOWN_PHONE = "停"


class KoreanError(TextError):
    """Korean text the front end cannot process (or a model version without Korean phones)."""


_LOCK = threading.Lock()
_G2P = None


def _load_g2pk2():
    """g2pk2's G2p with mecab-ko, set up without its CMU dictionary and without the package's import-time NLTK
    download attempt (NLTK's downloader is disabled while g2pk2 is imported)."""
    require("jamo", "jamo", "the Korean front end")
    mecab = require("mecab", "python-mecab-ko", "the Korean front end")
    nltk = require("nltk", "nltk", "the Korean front end (g2pk2)")
    downloader = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        module = require("g2pk2.g2pk2", "g2pk2", "the Korean front end", G2PK2_VERSION)
    finally:
        nltk.download = downloader
    utils = require("g2pk2.utils", "g2pk2", "the Korean front end", G2PK2_VERSION)
    try:
        tagger = mecab.MeCab()
    except Exception as exc:  # noqa: BLE001 - the binding raises its own types
        raise MissingPackageError(
            "the Korean front end needs the mecab-ko dictionary from the Python package 'python-mecab-ko-dic' "
            f"(pip install 'python-mecab-ko-dic==2.1.1.post2'): {exc}",
            package="python-mecab-ko-dic",
            purpose="the Korean front end",
        ) from None
    g2p = module.G2p.__new__(module.G2p)  # G2p.__init__ would load NLTK's cmudict and may pip-install things
    g2p.use_konlpy = False
    g2p.mecab_path = None
    g2p.mecab = tagger
    g2p.table = utils.parse_table()
    g2p.cmu = {}  # never consulted: no Latin letters reach g2pk2
    g2p.rule2text = utils.get_rule_id2text()
    g2p.idioms_path = os.path.join(os.path.dirname(module.__file__), "idioms.txt")
    return g2p


def _g2pk2():
    global _G2P
    with _LOCK:
        if _G2P is None:
            _G2P = _load_g2pk2()
        return _G2P


def latin_to_hangul(text: str) -> str:
    """Latin letters -> their Korean names, letter by letter."""
    for pattern, name in _LETTER_RES:
        text = pattern.sub(name, text)
    return text


def split_jamo(text: str) -> str:
    """Hangul syllables -> compatibility jamo, complex vowels as two simple vowels."""
    jamo = require("jamo", "jamo", "the Korean front end")
    return jamo.j2hcj(jamo.h2j(text)).translate(_SPLIT_VOWELS)


def g2p_ko(text: str) -> list[str]:
    """Phones (one per character of the pronounced jamo string) of Korean ``text``."""
    if not isinstance(text, str):
        raise KoreanError(f"text must be a string, not {type(text).__name__}")
    g2p = _g2pk2()
    with _LOCK:  # mecab-ko's tagger is not documented as thread-safe
        spoken = g2p(latin_to_hangul(text))
    jamo = _RIEUL_FIX.sub(r"\1 ㄴ", split_jamo(spoken))
    jamo = _FINAL_JAMO.sub(r"\1.", jamo)
    table = symbol_to_id("v2")
    phones = []
    for ch in jamo:
        ph = _MARK_PHONES.get(ch, ch)
        phones.append(ph if ph in table else _UNKNOWN_PHONE)
    return phones


def clean_ko(text: str, version: str = "v2") -> tuple[list[str], None, str]:
    """``(phones, None, norm_text)`` of Korean ``text``; ``version`` must be v2 or later (v1 has no Korean)."""
    if normalize_symbol_version(version) == "v1":
        raise KoreanError("Korean needs a v2 or later model (the v1 symbol table has no Korean phones)")
    return g2p_ko(text), None, text


def warm_up() -> None:
    _g2pk2()
