"""Word errors of an English transcript for the ASR tests (espeak-ng speech through Whisper): a normaliser that
spells digits as words and drops punctuation, and the edit distance counted by jiwer (the library the product's
WER uses)."""
from __future__ import annotations

import re

import jiwer

_NUMBERS = {str(i): w for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}


def words(text: str) -> list[str]:
    text = text.lower().replace("favourite", "favorite").replace("-", " ")
    return [_NUMBERS.get(w, w) for w in re.sub(r"[^a-z0-9' ]+", " ", text).split()]


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions turning ``ref`` into ``hyp``."""
    if not ref:
        return len(hyp)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return out.substitutions + out.deletions + out.insertions
