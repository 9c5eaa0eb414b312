"""The one request/result schema every front end speaks (TTS tab, batch CSV, CLI, eval, refaudio sweeps)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import GSVError

#: A reference: a file path, or a (sample_rate, samples) pair as Gradio's numpy audio gives it.
AudioSource = Union[str, Path, tuple]

TEXT_LANGS = ("zh", "en", "all_zh", "auto")
SPLIT_METHODS = ("cut0", "cut1", "cut2", "cut3", "cut4", "cut5")


class RequestError(GSVError, ValueError):
    """A synthesis request whose parameters cannot be used as given."""


@dataclass
class SynthesisRequest:
    text: str
    ref_audio: Optional[AudioSource] = None
    ref_text: str = ""  # empty: reference-free mode (v2 and later)
    ref_lang: str = "zh"
    text_lang: str = "zh"
    gpt_path: Optional[Union[str, Path]] = None  # None: the engine's current GPT
    sovits_path: Optional[Union[str, Path]] = None  # None: the engine's current SoVITS
    aux_refs: tuple = ()  # extra references whose timbre is averaged in (SoVITS "fusion")
    split_method: str = "cut1"
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    speed: float = 1.0
    noise_scale: float = 0.5
    pause: float = 0.3  # seconds of silence after each fragment
    seed: int = -1  # -1: a random seed, reported in the result
    batch_size: int = 8  # fragments decoded together by the GPT
    parallel: bool = True  # batched GPT decoding (upstream's parallel_infer)
    max_tokens: Optional[int] = None  # cap on semantic tokens per fragment (25 per second); None: the model's limit
    id: str = ""  # caller's label (batch CSV id)

    def validate(self) -> "SynthesisRequest":
        problems = []
        if not isinstance(self.text, str) or not self.text.strip():
            problems.append("the text is empty")
        if self.text_lang not in TEXT_LANGS:
            problems.append(f"text language {self.text_lang!r} is not supported (use one of {', '.join(TEXT_LANGS)})")
        if self.ref_text and self.ref_lang not in TEXT_LANGS:
            problems.append(f"reference language {self.ref_lang!r} is not supported")
        if self.split_method not in SPLIT_METHODS:
            problems.append(f"split method {self.split_method!r} is unknown (use cut0..cut5)")
        if not (isinstance(self.top_k, int) and self.top_k >= 1):
            problems.append(f"top_k must be an integer >= 1, not {self.top_k!r}")
        if not (0.0 < float(self.top_p) <= 1.0):
            problems.append(f"top_p must be in (0, 1], not {self.top_p!r}")
        if not (0.0 <= float(self.temperature) <= 5.0):
            problems.append(f"temperature must be in [0, 5], not {self.temperature!r}")
        if not (0.0 < float(self.repetition_penalty) <= 5.0):
            problems.append(f"repetition_penalty must be in (0, 5], not {self.repetition_penalty!r}")
        if not (0.25 <= float(self.speed) <= 4.0):
            problems.append(f"speed must be in [0.25, 4], not {self.speed!r}")
        if not (0.0 <= float(self.noise_scale) <= 2.0):
            problems.append(f"noise_scale must be in [0, 2], not {self.noise_scale!r}")
        if not (0.0 <= float(self.pause) <= 10.0):
            problems.append(f"pause must be in [0, 10] seconds, not {self.pause!r}")
        if not (isinstance(self.seed, int) and -1 <= self.seed < 2**32):
            problems.append(f"seed must be -1 (random) or an integer in [0, 2^32), not {self.seed!r}")
        if not (isinstance(self.batch_size, int) and 1 <= self.batch_size <= 64):
            problems.append(f"batch_size must be in 1..64, not {self.batch_size!r}")
        if self.max_tokens is not None and not (isinstance(self.max_tokens, int) and 1 <= self.max_tokens <= 1500):
            problems.append(f"max_tokens must be in 1..1500 (60 s) or None, not {self.max_tokens!r}")
        if self.ref_audio is None or (isinstance(self.ref_audio, str) and not self.ref_audio.strip()):
            problems.append("no reference audio was given")
        if problems:
            raise RequestError("Cannot synthesise: " + "; ".join(problems) + ".")
        return self

    def replace(self, **changes: Any) -> "SynthesisRequest":
        return dataclasses.replace(self, **changes)

    @property
    def ref_free(self) -> bool:
        return not self.ref_text.strip()


#: a fragment slower than this many phones per second of speech is flagged as likely repetition/babble (normal
#: speech runs at about 8-15 phones per second)
MIN_PHONES_PER_SECOND = 2.0


@dataclass
class FragmentInfo:
    text: str
    norm_text: str
    phones: int
    tokens: int
    seed: int
    seconds: float
    pause_after: float
    hit_limit: bool = False  # the GPT stopped at the token cap instead of an end-of-speech token

    @property
    def warning(self) -> str:
        """Why this fragment's audio is probably not what its text says ('' when nothing looks wrong)."""
        shown = self.text if len(self.text) <= 20 else self.text[:20] + "…"
        if self.hit_limit:
            return (f"{shown!r} reached the token cap ({self.tokens} tokens, {self.seconds:.1f} s) without an "
                    "end-of-speech token: likely repetition or babble (or a cap too low for this text); try another "
                    "seed")
        if self.seconds > 1.5 and self.seconds > (self.phones / MIN_PHONES_PER_SECOND) + 1.0:
            return (f"{shown!r} lasts {self.seconds:.1f} s for {self.phones} phones: unusually slow, likely "
                    "repetition; try another seed")
        return ""


@dataclass
class SynthesisResult:
    sample_rate: int
    audio: np.ndarray  # float32 in [-1, 1], mono
    seed: int
    fragments: list[FragmentInfo]
    timings: dict[str, float]  # seconds per stage: reference, frontend, bert, s1, s2, post
    wall: float
    gpt: str
    sovits: str
    version: str
    request: Optional[SynthesisRequest] = field(default=None, repr=False)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def speech_seconds(self) -> float:
        return sum(f.seconds for f in self.fragments)

    @property
    def rtf(self) -> float:
        """Wall time / output seconds (pauses included), the usual definition."""
        return self.wall / self.duration if self.duration > 0 else float("inf")

    @property
    def tokens(self) -> int:
        return sum(f.tokens for f in self.fragments)

    @property
    def warnings(self) -> list[str]:
        """Fragments whose audio is probably wrong (token cap reached, implausibly long), one line each."""
        return [f"fragment {i + 1}: {f.warning}" for i, f in enumerate(self.fragments) if f.warning]

    def int16(self) -> np.ndarray:
        from ..audio import to_int16

        return to_int16(self.audio)

    def save(self, path: Union[str, Path]) -> Path:
        from ..audio import save_wav

        return save_wav(path, self.audio, self.sample_rate)


@dataclass
class AudioChunk:
    """One piece of streamed output: a fragment's audio followed by its pause."""

    sample_rate: int
    audio: np.ndarray  # float32
    index: int
    last: bool
    fragment: Optional[FragmentInfo] = None
