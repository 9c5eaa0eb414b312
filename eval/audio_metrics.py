"""Signal metrics of one synthesised utterance, plus speaker similarity to its reference.

:func:`analyze` takes a waveform and the text it should say (and, optionally, what ASR heard) and returns
:class:`AudioMetrics`: duration, speaking rate, F0 mean/std, energy statistics, silence and clipping ratios and the
two warning flags ``likely_repetition`` / ``likely_truncation``. All frame analyses use 25 ms frames every 10 ms.

Definitions (the numbers are module constants so reports can quote them):

- **silent frame**: frame RMS below ``max(SILENCE_DB, loudest frame - SILENCE_REL_DB)`` dBFS (-50 dBFS absolute,
  or 40 dB below the loudest frame). ``silence_ratio`` = silent frames / all frames; the *active* span runs from
  the first to the last non-silent frame (leading and trailing silence trimmed, pauses inside kept).
- **energy**: mean and standard deviation of the frame RMS in dBFS over non-silent frames.
- **clipping**: fraction of samples with ``|x| >= CLIP_LEVEL`` (0.999 of full scale).
- **speaking rate**: characters of the scoring-normalised text (:func:`eval.metrics.normalize_text`, spaces not
  counted) per second of active span.
- **F0**: librosa pYIN refined by YIN on the 16 kHz signal, 50-600 Hz, one frame per 10 ms
  (:func:`eval.prosody.analyze_prosody`, which also has the F0/energy comparison with a reference); silent frames
  are unvoiced. ``f0_mean``/``f0_std`` are over voiced frames, in Hz (NaN when nothing is voiced). The numpy YIN of
  :mod:`gsv_core.signal` (fast, no numba) stays the finetuning data stage's voicing check: ``yin_f0_contour``.
- **expected duration** of a text: each CJK character (and each digit, read as one syllable) takes 1/4.5 s at
  the typical rate, each Latin letter 1/14 s. Normal speech lies within ``ZH_CHARS_PER_S`` (2.5-8 CJK chars/s)
  and ``EN_LETTERS_PER_S`` (7-25 letters/s); the bounds give a shortest and longest plausible duration, widened
  by ``DURATION_SLACK_S`` (0.5 s) for short texts.
- **likely_repetition**: the active span is longer than the longest plausible duration, or ASR heard at least
  ``ASR_LONG_RATIO`` (1.5x) as many scoring tokens as the text has (with at least 3 extra tokens).
- **likely_truncation**: the active span is shorter than the shortest plausible duration, or ASR heard at most
  ``ASR_SHORT_RATIO`` (0.5x) of the tokens (with at least 3 missing).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gsv_core.errors import AudioError
from gsv_core.signal import (EPS as _EPS, F0_MAX_HZ, F0_MIN_HZ, F0_SR, FRAME_S, HOP_S, SILENCE_DB,  # noqa: F401
                              SILENCE_REL_DB, YIN_THRESHOLD, frame_rms_db, silent_frames)
from gsv_core.signal import as_mono as _mono, frame_view as _frames, yin_frames as _yin_frames  # noqa: F401
from gsv_core.signal import f0_contour as yin_f0_contour  # noqa: F401  (numpy YIN, as the finetuning stage uses)
from eval.prosody import analyze_prosody, f0_contour, pause_stats  # noqa: F401  (pYIN-based F0 for eval)

CLIP_LEVEL = 0.999
#: (slowest, typical, fastest) speaking rates used for the duration a text predicts
ZH_CHARS_PER_S = (2.5, 4.5, 8.0)
EN_LETTERS_PER_S = (7.0, 14.0, 25.0)
DURATION_SLACK_S = 0.5
ASR_LONG_RATIO = 1.5
ASR_SHORT_RATIO = 0.5
ASR_MIN_TOKEN_GAP = 3


def text_units(text: str) -> tuple[int, int]:
    """(CJK characters + digits, Latin letters) of the scoring-normalised text."""
    from eval.metrics import normalize_text

    from eval.metrics import CJK_CHARS

    norm = normalize_text(text).replace(" ", "")
    syllables = len(re.findall(f"[{CJK_CHARS}0-9]", norm))
    return syllables, len(norm) - syllables


def expected_duration(text: str) -> tuple[float, float, float]:
    """(shortest, typical, longest) plausible speech duration of ``text`` in seconds (without the slack)."""
    cjk, latin = text_units(text)
    slow, typical, fast = (cjk / r for r in ZH_CHARS_PER_S)
    slow_en, typical_en, fast_en = (latin / r for r in EN_LETTERS_PER_S)
    return fast + fast_en, typical + typical_en, slow + slow_en


@dataclass(frozen=True)
class AudioMetrics:
    duration: float
    active_duration: float
    speaking_rate: float
    f0_mean: float
    f0_std: float
    voiced_ratio: float
    energy_db_mean: float
    energy_db_std: float
    silence_ratio: float
    clipping_ratio: float
    expected_duration: float
    asr_length_ratio: float | None
    likely_repetition: bool
    likely_truncation: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _asr_ratio(text: str, asr_text: str, lang: str | None) -> tuple[float | None, int, int]:
    from eval.metrics import canonical_language, normalize_text, tokenize

    ref_norm = normalize_text(text)
    kind = canonical_language(lang, ref_norm)
    ref_n = len(tokenize(ref_norm, kind, normalized=True))
    hyp_n = len(tokenize(normalize_text(asr_text), kind, normalized=True))
    if ref_n == 0:
        return None, ref_n, hyp_n
    return hyp_n / ref_n, ref_n, hyp_n


def analyze(wav: Any, sr: int, text: str, asr_text: str | None = None, lang: str | None = "auto",
            track=None) -> AudioMetrics:
    """All signal metrics of one utterance (see the module docstring for every definition). ``track``: the
    utterance's :class:`eval.prosody.ProsodyTrack` when already computed (its F0 is reused)."""
    x = _mono(wav)
    sr = int(sr)
    if sr <= 0:
        raise AudioError(f"sample rate must be positive, got {sr}")
    duration = x.size / sr
    rms = frame_rms_db(x, sr)
    silent = silent_frames(rms)
    voiced_idx = np.nonzero(~silent)[0]
    if voiced_idx.size:
        active = min(duration, (voiced_idx[-1] - voiced_idx[0]) * HOP_S + FRAME_S)
        energy = rms[~silent]
        energy_mean, energy_std = float(energy.mean()), float(energy.std())
    else:
        active, energy_mean, energy_std = 0.0, float("nan"), float("nan")
    f0 = (track if track is not None else analyze_prosody(x, sr)).f0_hz
    voiced = f0[np.isfinite(f0)]
    f0_mean = float(voiced.mean()) if voiced.size else float("nan")
    f0_std = float(voiced.std()) if voiced.size else float("nan")

    cjk, latin = text_units(text)
    speaking_rate = (cjk + latin) / active if active > 0 else 0.0
    shortest, typical, longest = expected_duration(text)
    has_text = cjk + latin > 0
    too_long = has_text and active > longest + DURATION_SLACK_S
    too_short = has_text and (active == 0.0 or active < shortest - DURATION_SLACK_S)

    ratio = None
    if asr_text is not None:
        ratio, ref_n, hyp_n = _asr_ratio(text, asr_text, lang)
        if ratio is not None:
            too_long = too_long or (ratio >= ASR_LONG_RATIO and hyp_n - ref_n >= ASR_MIN_TOKEN_GAP)
            too_short = too_short or (ratio <= ASR_SHORT_RATIO and ref_n - hyp_n >= ASR_MIN_TOKEN_GAP)

    return AudioMetrics(
        duration=duration, active_duration=float(active), speaking_rate=float(speaking_rate),
        f0_mean=f0_mean, f0_std=f0_std, voiced_ratio=float(voiced.size / max(1, f0.size)),
        energy_db_mean=energy_mean, energy_db_std=energy_std,
        silence_ratio=float(silent.mean()) if silent.size else 1.0,
        clipping_ratio=float(np.mean(np.abs(x) >= CLIP_LEVEL)),
        expected_duration=float(typical), asr_length_ratio=ratio,
        likely_repetition=bool(too_long), likely_truncation=bool(too_short))


# ------------------------------------------------------------------------------------------------ speaker similarity
# eval.similarity has the scorers (ERes2NetV2 192-d verification embedding by default, forward3, WavLM-SV). These
# three functions keep their old default (kind="forward3") for callers that relied on it; refaudio's SpeakerIndex passes
# its kind ("segment" by default) explicitly and keys its cache by it.

def speaker_embedding(encoder, wav: Any, sr: int, kind: str = "forward3"):
    """A speaker vector of a waveform at any rate, as a 1-D float32 tensor: ``kind="forward3"`` (default, the
    20480-d SoVITS conditioning vector, ``SpeakerEncoder.forward``) or ``"segment"`` (the 192-d verification
    embedding, what :class:`eval.similarity.ERes2NetScorer` uses). Compute the reference's once and reuse it with
    :func:`embedding_similarity`."""
    from eval.similarity import ERes2NetScorer

    return ERes2NetScorer(encoder, kind).embed(wav, sr)


def embedding_similarity(emb_a, emb_b) -> float:
    """Cosine similarity of two speaker vectors, as a float."""
    from eval.similarity import cosine

    return cosine(emb_a, emb_b)


def speaker_similarity(encoder, wav_a: Any, sr_a: int, wav_b: Any, sr_b: int, kind: str = "forward3") -> float:
    """Cosine similarity of the speaker vectors (``kind`` as in :func:`speaker_embedding`) of two waveforms."""
    return embedding_similarity(speaker_embedding(encoder, wav_a, sr_a, kind),
                                speaker_embedding(encoder, wav_b, sr_b, kind))
