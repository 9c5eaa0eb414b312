"""English front end: normalisation and grapheme-to-phoneme conversion, fully offline.

Reproduces GPT-SoVITS' ``text/english.py`` (``text_normalize`` + ``g2p``) and the English branch of
``cleaner.clean_text``:

1. :func:`normalize_en` (see :mod:`gsv_core.text.en_normalize`);
2. tokens from NLTK's ``TweetTokenizer`` (pure code, no data), POS tags for the whole token list;
3. per token: no letter -> the token itself (punctuation); a single letter -> its dictionary reading (capital
   "A" -> EY1); a homograph -> the reading chosen by its POS tag; else :func:`word_phones`: dictionary,
   title-case names, words of at most 3 letters spelled, "'s" endings (S after a voiceless consonant, AH0 Z
   after a sibilant, else Z), compounds split with ``wordsegment``, else the neural predictor;
4. phones " ", "<pad>", "UW", "<s>", "</s>" removed, "<unk>" -> "UNK", "'" -> "-", anything else outside the
   symbol table dropped;
5. :func:`clean_en`: "," prepended when fewer than 4 phones remain, ``word2ph`` is None.
"""
from __future__ import annotations

import functools
import re

from gsv_core.text import en_lexicon
from gsv_core.text.en_normalize import normalize_en
from gsv_core.text.en_predict import predict_phones

__all__ = ["normalize_en", "g2p_en", "clean_en", "word_phones", "tokenize_en"]

_HAS_LETTER_RE = re.compile("[a-z]")
_POSSESSIVE_RE = re.compile(r"^([a-z]+)('s)$")
_VOICELESS_END = frozenset(("P", "T", "K", "F", "TH", "HH"))
_SIBILANT_END = frozenset(("S", "Z", "SH", "ZH", "CH", "JH"))
_DROPPED = frozenset((" ", "<pad>", "UW", "</s>", "<s>"))
_MAX_DEPTH = 32


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from nltk.tokenize.casual import TweetTokenizer

    return TweetTokenizer()


def tokenize_en(text: str) -> list[str]:
    """Tokens of normalised English text (NLTK's TweetTokenizer, case kept)."""
    return _tokenizer().tokenize(text)


@functools.lru_cache(maxsize=None)
def _symbol_set(version: str) -> frozenset[str]:
    from gsv_core.text.symbols import symbols

    return frozenset(symbols(version))


def _letter(ch: str) -> list[str]:
    return list(en_lexicon.dictionary()[ch])


def word_phones(token: str, _depth: int = 0) -> list[str]:
    """Phones of one word that is neither a single letter nor a homograph (original case in ``token``)."""
    word = token.lower()
    lexicon = en_lexicon.dictionary()
    if len(word) > 1 and word in lexicon:
        return list(lexicon[word])
    if token.istitle() and word in en_lexicon.names():
        return list(en_lexicon.names()[word])
    if len(word) <= 3:
        phones: list[str] = []
        for ch in word:
            if ch == "a":
                phones.append("EY1")
            elif not ch.isalpha():
                phones.append(ch)
            elif ch in lexicon:
                phones.extend(lexicon[ch])
            else:  # a letter outside a-z (cannot survive normalisation, but word_phones is public)
                phones.extend(predict_phones(ch))
        return phones
    if _POSSESSIVE_RE.match(word):
        phones = word_phones(word[:-2], _depth + 1)
        last = phones[-1] if phones else ""
        if last in _VOICELESS_END:
            phones.append("S")
        elif last in _SIBILANT_END:
            phones.extend(["AH0", "Z"])
        else:
            phones.append("Z")
        return phones
    parts = en_lexicon.segment_word(word)
    if len(parts) == 1 or _depth >= _MAX_DEPTH:
        return predict_phones(word)
    return [ph for part in parts for ph in word_phones(part, _depth + 1)]


def _token_phones(token: str, tag: str) -> list[str]:
    word = token.lower()
    if _HAS_LETTER_RE.search(word) is None:
        return [word]
    if len(word) == 1:
        return ["EY1"] if token == "A" else _letter(word)
    entry = en_lexicon.homographs().get(word)
    if entry is not None:
        first, second, pos = entry
        if tag.startswith(pos) or (len(tag) < len(pos) and tag == pos[: len(tag)]):
            return list(first)
        return list(second)
    return word_phones(token)


def g2p_en(norm_text: str) -> list[str]:
    """Phones of normalised English text (output of :func:`normalize_en`)."""
    tokens = tokenize_en(norm_text)
    if not tokens:
        return []
    need_tags = any(t.lower() in en_lexicon.homographs() for t in tokens)
    tags = en_lexicon.pos_tag(tokens) if need_tags else [""] * len(tokens)
    raw: list[str] = []
    for token, tag in zip(tokens, tags):
        raw.extend(_token_phones(token, tag))
    table = _symbol_set("v2")  # the reference filters with the v2 table whatever the model version
    phones: list[str] = []
    for ph in raw:
        if ph in _DROPPED:
            continue
        if ph == "<unk>":
            ph = "UNK"
        if ph in table:
            phones.append(ph)
        elif ph == "'":
            phones.append("-")
    return phones


def clean_en(text: str, version: str = "v2") -> tuple[list[str], None, str]:
    """``(phones, None, norm_text)`` for English ``text``, as the reference's ``clean_text(text, 'en', version)``."""
    norm_text = normalize_en(text)
    phones = g2p_en(norm_text)
    if len(phones) < 4:
        phones = [","] + phones
    table = _symbol_set(version)
    return ["UNK" if ph not in table else ph for ph in phones], None, norm_text
