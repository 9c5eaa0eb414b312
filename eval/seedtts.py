"""seed-tts-eval compatible scoring: their normalisation, tokenisation, per-utterance WER and averaging.

`seed-tts-eval <https://github.com/BytedanceSpeech/seed-tts-eval>`_ (the Seed-TTS objective test set) scores
intelligibility like this (re-implemented here from its description; :mod:`eval.metrics` is our own protocol):

1. **ASR**: Paraformer-zh (FunASR ``paraformer-zh``) for Mandarin, its output converted to simplified Chinese
   (zhconv ``zh-cn``); Whisper-large-v3 (``openai/whisper-large-v3``, forced ``language=english``,
   ``task=transcribe``, audio resampled to 16 kHz) for English. See :data:`SEED_TTS_EVAL_ASR`.
2. **normalisation** (:func:`seed_normalize`), reference and hypothesis alike: every character of
   :data:`SEED_PUNCTUATION` (zhon's Chinese punctuation + ASCII ``string.punctuation``) except the apostrophe is
   *deleted* (not replaced by a space: ``hello,world`` -> ``helloworld``), then each double space is replaced by
   one space, once, left to right (three spaces stay two). Then ``zh``: every character, spaces included, is
   joined with a space (so Latin letters and digits count one by one, case kept); ``en``: ``str.lower``. No
   Unicode normalisation, no full-width folding, no traditional -> simplified conversion of the reference.
3. **tokens**: jiwer's default word split: runs of two or more whitespace characters -> one space, strip,
   split on ``" "``, empty words dropped (:func:`seed_tokens`).
4. **per-utterance WER** = (S + D + I) / (H + S + D) of jiwer's alignment. The substitution / deletion /
   insertion *ratios* they print are divided by ``len(normalised_reference.split(" "))``, which counts empty
   strings where the zh joining doubled spaces: :attr:`SeedScore.sub_rate` etc. reproduce that.
5. **aggregation** (:func:`seed_average`): the WER of a test set is the *mean of per-utterance WERs* (every
   utterance weighs the same), printed as a percentage rounded to 3 decimals; utterances above 0.5 are counted.

Languages: only ``zh`` and ``en`` exist there. Our codes map as: ``en`` -> en; ``zh``/``mixed``/``yue``... -> zh
(character level); ``auto`` -> zh when the reference has a CJK character, else en.

Where we differ (on purpose) from running their script: an empty normalised reference makes jiwer raise there;
here it gives ``ErrorCounts`` with ``ref_len == 0`` (rate 0 or inf, left out of :func:`seed_average`'s mean and
counted). The hypothesis' traditional -> simplified step uses OpenCC ``t2s`` instead of zhconv (the tables differ
on a few rare characters); pass ``simplify_hypothesis=False`` when the ASR output is already simplified.

Speaker similarity there is WavLM-large fine-tuned for speaker verification with an ECAPA-TDNN head (UniSpeech's
``wavlm_large_finetune.pth``), cosine of the two embeddings at 16 kHz: :data:`SEED_TTS_EVAL_SIM`
(:mod:`eval.similarity` has the nearest scorer we can run).
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from eval.metrics import CJK_RE, ErrorCounts, MetricsError, canonical_language, score_tokens

#: the ASR systems seed-tts-eval uses, per language (our runs name these when ``protocol="seed-tts-eval"``)
SEED_TTS_EVAL_ASR: dict[str, str] = {
    "zh": "Paraformer-zh (FunASR AutoModel(model='paraformer-zh'), batch_size_s=300; output converted to "
          "simplified Chinese with zhconv 'zh-cn')",
    "en": "Whisper-large-v3 (openai/whisper-large-v3 with transformers; language='english', task='transcribe'; "
          "audio resampled to 16 kHz)",
}
#: the faster-whisper model closest to their English ASR (a CTranslate2 conversion of the same weights); for zh
#: there is no Paraformer in our stack, so zh numbers come from our Whisper and are not strictly comparable
SEED_TTS_EVAL_FASTER_WHISPER_EN = "large-v3"
#: the speaker-similarity model of seed-tts-eval
SEED_TTS_EVAL_SIM = ("WavLM-large + ECAPA-TDNN fine-tuned for speaker verification (UniSpeech "
                     "downstreams/speaker_verification, checkpoint wavlm_large_finetune.pth); cosine similarity of "
                     "the embeddings of the 16 kHz waveforms")

#: zhon.hanzi.punctuation (zhon 2.x): full-width ASCII-range punctuation, CJK brackets and marks, dashes and quotes
SEED_HANZI_PUNCTUATION = (
    "\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b\uff1c\uff1d"
    "\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f\uff60\uff62\uff63\uff64"
    "\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011\u3014\u3015\u3016\u3017"
    "\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c"
    "\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51\ufe54\u00b7"
    "\uff0e\uff01\uff1f\uff61\u3002"
)
#: everything seed-tts-eval deletes (the apostrophe ``'`` is kept, as there)
SEED_PUNCTUATION = SEED_HANZI_PUNCTUATION + string.punctuation
_DELETE = str.maketrans("", "", SEED_PUNCTUATION.replace("'", ""))
_MULTI_WS = re.compile(r"\s\s+")


def seed_language(lang: str | None, reference: str = "") -> str:
    """``"zh"`` or ``"en"``: seed-tts-eval's language for one of our codes (see the module docstring)."""
    key = (lang or "auto").strip().lower()
    if key == "auto":
        return "zh" if CJK_RE.search(reference or "") else "en"
    return "en" if canonical_language(key) == "en" else "zh"


def seed_normalize(text: str | None, lang: str) -> str:
    """The string seed-tts-eval hands to jiwer for ``lang`` ``"zh"`` or ``"en"`` (step 2 of the docstring)."""
    if lang not in ("zh", "en"):
        raise MetricsError(f"seed-tts-eval scores only zh or en, got {lang!r}")
    text = (text or "").translate(_DELETE).replace("  ", " ")
    return " ".join(text) if lang == "zh" else text.lower()


def seed_tokens(normalized: str) -> list[str]:
    """jiwer's default word split of a normalised string (step 3)."""
    return [w for w in _MULTI_WS.sub(" ", normalized).strip().split(" ") if w]


@dataclass(frozen=True)
class SeedScore:
    """One utterance scored the seed-tts-eval way.

    ``wer`` equals ``counts.rate``; ``sub_rate``/``del_rate``/``ins_rate`` are their ratios (divided by
    ``ref_split_len``, see the module docstring), ``ref_norm``/``hyp_norm`` the strings jiwer saw."""

    counts: ErrorCounts
    lang: str
    ref_norm: str
    hyp_norm: str
    ref_split_len: int

    @property
    def wer(self) -> float:
        return self.counts.rate

    def _ratio(self, n: int) -> float:
        return n / self.ref_split_len if self.ref_split_len else (0.0 if n == 0 else math.inf)

    @property
    def sub_rate(self) -> float:
        return self._ratio(self.counts.substitutions)

    @property
    def del_rate(self) -> float:
        return self._ratio(self.counts.deletions)

    @property
    def ins_rate(self) -> float:
        return self._ratio(self.counts.insertions)


def score_utterance_seed(ref: str | None, hyp: str | None, lang: str | None = "auto",
                         simplify_hypothesis: bool = True) -> SeedScore:
    """Score one ASR hypothesis against its reference exactly as seed-tts-eval's ``run_wer.py`` does.

    With ``simplify_hypothesis`` (default) a zh hypothesis is converted to simplified Chinese first, as their
    Paraformer output is (OpenCC t2s standing in for zhconv)."""
    kind = seed_language(lang, ref or "")
    hyp = hyp or ""
    if kind == "zh" and simplify_hypothesis:
        from gsv_core.asr import to_simplified

        hyp = to_simplified(hyp)
    ref_norm, hyp_norm = seed_normalize(ref, kind), seed_normalize(hyp, kind)
    counts = score_tokens(seed_tokens(ref_norm), seed_tokens(hyp_norm))
    return SeedScore(counts=counts, lang=kind, ref_norm=ref_norm, hyp_norm=hyp_norm,
                     ref_split_len=len(ref_norm.split(" ")) if seed_tokens(ref_norm) else 0)


@dataclass(frozen=True)
class SeedSummary:
    """seed-tts-eval's ``average_wer.py`` numbers: ``wer`` is the mean of per-utterance WERs (a fraction),
    ``wer_percent`` what they print (``round(mean * 100, 3)``); ``n_above_half`` utterances have WER > 0.5 and
    ``wer_below_half`` is the mean over the others (computed there, not printed). ``sub``/``del``/``ins`` are the
    means of their per-utterance ratios. ``n_empty_references`` utterances (which crash their script) are left
    out."""

    n: int
    wer: float
    wer_percent: float
    n_above_half: int
    wer_below_half: float
    sub: float
    dele: float
    ins: float
    n_empty_references: int = 0

    def as_dict(self, prefix: str = "seed_") -> dict[str, float | int]:
        return {prefix + k: getattr(self, k) for k in self.__dataclass_fields__}


def seed_average(scores: Iterable[SeedScore]) -> SeedSummary:
    """Aggregate per-utterance :class:`SeedScore` values the seed-tts-eval way (step 5)."""
    items = list(scores)
    for i, s in enumerate(items):
        if not isinstance(s, SeedScore):
            raise MetricsError(f"seed_average expects SeedScore values, item {i} is {type(s).__name__}")
    rated = [s for s in items if s.counts.ref_len > 0]
    nan = float("nan")

    def mean(values: Sequence[float]) -> float:
        # numpy's mean, as there (pairwise summation: the last digit can differ from math.fsum)
        return float(np.mean(values)) if values else nan

    wers = [s.wer for s in rated]
    below = [w for w in wers if w <= 0.5]
    wer = mean(wers)
    return SeedSummary(n=len(rated), wer=wer, wer_percent=round(wer * 100, 3) if wers else nan,
                       n_above_half=len(wers) - len(below), wer_below_half=mean(below),
                       sub=mean([s.sub_rate for s in rated]), dele=mean([s.del_rate for s in rated]),
                       ins=mean([s.ins_rate for s in rated]), n_empty_references=len(items) - len(rated))
