"""The one request/result schema every front end speaks (TTS tab, batch CSV, CLI, eval, refaudio sweeps).

:class:`SynthesisRequest` also owns the conversion from untyped values: :meth:`SynthesisRequest.from_mapping`
turns a form's values, a CSV row, a YAML mapping or a sweep cell into a request with one clear error per bad field
(named) and unknown keys refused. Front ends derive their field lists and defaults from :data:`PARAMETERS` and
:meth:`SynthesisRequest.defaults` instead of writing their own.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from .. import languages
from ..errors import GSVError
from ..messages import keyed

#: A reference: a file path, or a (sample_rate, samples) pair as Gradio's numpy audio gives it.
AudioSource = Union[str, Path, tuple]

TEXT_EMPTY, NO_REFERENCE = "the text is empty", "no reference audio was given"
#: the Chinese of the problems a user meets most (the others are shown in English inside the Chinese sentence)
PROBLEMS_ZH = {TEXT_EMPTY: "文本为空", NO_REFERENCE: "没有提供参考音频"}
SPLIT_METHODS = ("cut0", "cut1", "cut2", "cut3", "cut4", "cut5")
MAX_SAMPLE_STEPS = 128  # upstream's largest choice (v3)


class RequestError(GSVError, ValueError):
    """A synthesis request whose parameters cannot be used as given."""


@dataclass
class SynthesisRequest:
    text: str = ""
    ref_audio: Optional[AudioSource] = None
    ref_text: str = ""  # empty: reference-free mode (v2 and later)
    ref_lang: str = "zh"
    text_lang: str = "zh"
    gpt_path: Optional[Union[str, Path]] = None  # None: the engine's current GPT
    sovits_path: Optional[Union[str, Path]] = None  # None: the engine's current SoVITS
    aux_refs: tuple = ()  # extra references whose timbre is averaged in (SoVITS "fusion")
    #: SoVITS v2Pro/v2ProPlus only: the clip whose speaker embedding conditions the voice instead of the prompt
    #: reference's (None: the prompt reference's own); ignored by the other versions
    sv_ref: Optional[AudioSource] = None
    split_method: str = "cut1"
    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    speed: float = 1.0
    noise_scale: float = 0.5
    pause: float = 0.3  # seconds of silence after each fragment
    seed: int = -1  # -1: a random seed, reported in the result
    batch_size: int = 8  # fragments decoded together by the GPT (and sampled together by the v3/v4 CFM)
    parallel: bool = True  # batched GPT decoding (upstream's parallel_infer)
    #: batch fragments of similar phone counts together (upstream's split_bucket: less padding in a GPT batch;
    #: results stay in text order, and a fragment's tokens do not depend on its batch)
    split_bucket: bool = False
    max_tokens: Optional[int] = None  # cap on semantic tokens per fragment (25 per second); None: the model's limit
    #: SoVITS v3/v4 only: CFM sampling steps; None (0 in a form or CSV) = the version's default (v3 32, v4 8, as
    #: upstream's inference webui), ignored by the other versions
    sample_steps: Optional[int] = None
    #: SoVITS v3 only: AP-BWE super-sampling of the 24 kHz output to 48 kHz (needs g_24kto48k.zip + config.json);
    #: ignored by the other versions, as upstream does
    super_sampling: bool = False
    #: "freeze": the semantic tokens of each fragment from an earlier result (``result.semantic_tokens``); the GPT
    #: is skipped and SoVITS decodes these with this request's speed, noise, references and SoVITS model. The text
    #: must cut into as many fragments as there are token lists. None: the GPT predicts them.
    semantic_tokens: Optional[tuple] = None
    id: str = ""  # caller's label (batch CSV id)

    def validate(self) -> "SynthesisRequest":
        problems = []
        if not isinstance(self.text, str) or not self.text.strip():
            problems.append(TEXT_EMPTY)
        for what, code, needed in (("text language", self.text_lang, True), ("reference language", self.ref_lang,
                                                                             bool(self.ref_text))):
            if needed:
                try:
                    languages.mode(code)
                except languages.LanguageError as exc:
                    problems.append(f"{what}: {exc}")
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
        if self.sample_steps is not None and not (isinstance(self.sample_steps, int) and
                                                  1 <= self.sample_steps <= MAX_SAMPLE_STEPS):
            problems.append(f"sample_steps must be in 1..{MAX_SAMPLE_STEPS} or None (the version's default), not "
                            f"{self.sample_steps!r}")
        if not isinstance(self.super_sampling, bool):
            problems.append(f"super_sampling must be true or false, not {self.super_sampling!r}")
        if not isinstance(self.split_bucket, bool):
            problems.append(f"split_bucket must be true or false, not {self.split_bucket!r}")
        if self.semantic_tokens is not None:
            try:
                _token_lists(self.semantic_tokens)
            except ValueError as exc:
                problems.append(f"semantic_tokens: {exc}")
        if self.ref_audio is None or (isinstance(self.ref_audio, str) and not self.ref_audio.strip()):
            problems.append(NO_REFERENCE)
        if problems:
            raise keyed(RequestError, "request.invalid", problems="; ".join(problems),
                        problems_zh="；".join(PROBLEMS_ZH.get(p, p) for p in problems))
        return self

    def replace(self, **changes: Any) -> "SynthesisRequest":
        return dataclasses.replace(self, **changes)

    # -- conversion --------------------------------------------------------------------------------------------

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default (the one place UI widgets, CSV columns and sweep bases take them from)."""
        return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Optional["SynthesisRequest"] = None, *,
                     where: str = "", skip_empty: bool = True) -> "SynthesisRequest":
        """A request from untyped values (strings, numbers, None), on top of ``base`` (default: the defaults).

        Keys are field names or their aliases (:data:`ALIASES`: ``ref`` = ref_audio, ``lang`` = text_lang, ``gpt``
        = gpt_path, ...). With ``skip_empty`` an empty cell ("", None) keeps the base value, as a CSV row does. Every
        bad value and every unknown key is collected into one :class:`RequestError` that names the field (and
        ``where``, e.g. "line 4"). Ranges are checked by :meth:`validate`, which the engine calls."""
        if not isinstance(values, Mapping):
            raise RequestError(f"{where + ': ' if where else ''}synthesis parameters must be a mapping of names to "
                               f"values, not {type(values).__name__}")
        changes: dict[str, Any] = {}
        problems: list[str] = []
        unknown = []
        for key, raw in values.items():
            name = ALIASES.get(str(key).strip(), str(key).strip())
            spec = PARAMETERS.get(name)
            if spec is None:
                unknown.append(str(key))
                continue
            if skip_empty and (raw is None or (isinstance(raw, str) and not raw.strip())) and name != "text":
                continue
            try:
                changes[name] = spec.parse(raw)
            except (TypeError, ValueError) as exc:
                problems.append(f"{key}: {exc}")
        if unknown:
            problems.append(f"unknown parameter(s) {', '.join(sorted(unknown))} (known: {', '.join(PARAMETERS)}; "
                            f"aliases: {', '.join(f'{a}={n}' for a, n in ALIASES.items())})")
        if problems:
            prefix = f"{where}: " if where else ""
            raise RequestError(prefix + "; ".join(problems))
        return dataclasses.replace(base or cls(), **changes)

    def to_mapping(self) -> dict[str, Any]:
        """JSON-ready values that :meth:`from_mapping` turns back into the same request (audio as paths)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Path):
                v = str(v)
            elif isinstance(v, tuple) and f.name == "aux_refs":
                v = [str(a) for a in v]
            elif f.name in ("ref_audio", "sv_ref") and v is not None and not isinstance(v, str):
                v = "<audio array>" if isinstance(v, tuple) else str(v)
            elif f.name == "semantic_tokens" and v is not None:
                v = [list(t) for t in v]
            out[f.name] = v
        return out

    @property
    def ref_free(self) -> bool:
        return not self.ref_text.strip()


#: a fragment slower than this many phones per second of speech is flagged as likely repetition/babble (normal
#: speech runs at about 8-15 phones per second)
MIN_PHONES_PER_SECOND = 2.0


# ---- conversion of untyped values -----------------------------------------------------------------------------

def _text(raw: Any) -> str:
    if isinstance(raw, (bytes, bytearray)):
        raise ValueError("expected text, got bytes")
    return "" if raw is None else str(raw)


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    if isinstance(raw, str):
        raw = raw.strip()
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def _integer(raw: Any) -> int:
    value = _number(raw)
    if value != int(value):
        raise ValueError(f"expected a whole number, got {raw!r}")
    return int(value)


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on", "y", "t"):
        return True
    if text in ("0", "false", "no", "off", "n", "f"):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _optional_tokens(raw: Any) -> Optional[int]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    value = _integer(raw)
    return None if value <= 0 else value  # 0: the model's own limit, as the UI's slider says


def _optional_steps(raw: Any) -> Optional[int]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    value = _integer(raw)
    return None if value == 0 else value  # 0: the version's default, as the UI's choice says


def _path_or_none(raw: Any) -> Optional[str]:
    text = _text(raw).strip()
    return text or None


def _audio(raw: Any) -> Optional[AudioSource]:
    if isinstance(raw, tuple):
        return raw  # (sample_rate, samples) from Gradio
    return _path_or_none(raw)


def _audio_list(raw: Any) -> tuple:
    if raw is None:
        return ()
    if isinstance(raw, str):  # a CSV/YAML cell: paths separated by ";"
        return tuple(p.strip() for p in raw.split(";") if p.strip())
    if isinstance(raw, (list, tuple)):
        return tuple(a if isinstance(a, tuple) else str(a) for a in raw if a not in (None, ""))
    raise ValueError(f"expected a list of audio files, got {type(raw).__name__}")


#: semantic token ids are codebook indices of the SoVITS quantizer (1024 entries; the GPT's EOS is 1024)
SEMANTIC_VOCAB = 1024


def _token_lists(raw: Any) -> Optional[tuple]:
    """Frozen semantic tokens: one list of token ids per fragment, as a list of lists or its JSON text (a CSV
    cell, a CLI flag); None or "" = none."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError("expected JSON: a list of token lists, one per fragment, e.g. [[12, 845, 3], [7, 7]]") \
                from None
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError("expected a non-empty list of token lists, one per fragment")
    out = []
    for n, tokens in enumerate(raw, 1):
        if hasattr(tokens, "tolist"):  # a tensor or an array
            tokens = tokens.tolist()
        if not isinstance(tokens, (list, tuple)) or not tokens:
            raise ValueError(f"fragment {n}: expected a non-empty list of token ids")
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < SEMANTIC_VOCAB for t in tokens):
            raise ValueError(f"fragment {n}: token ids must be whole numbers in 0..{SEMANTIC_VOCAB - 1}")
        out.append(tuple(tokens))
    return tuple(out)


def _mode(raw: Any) -> str:
    code = _text(raw).strip().lower()
    if code not in languages.TEXT_MODES:
        raise ValueError(f"unknown language {raw!r} (use one of {', '.join(languages.text_modes())})")
    return code


def _split(raw: Any) -> str:
    code = _text(raw).strip().lower()
    if code not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {raw!r} (use cut0..cut5)")
    return code


@dataclass(frozen=True)
class Parameter:
    name: str
    parse: Any  # untyped value -> typed value (raises ValueError with a readable reason)
    help: str


#: every field of SynthesisRequest with its parser and a one-line description, in the order forms list them
PARAMETERS: dict[str, Parameter] = {p.name: p for p in (
    Parameter("text", _text, "text to synthesise"),
    Parameter("text_lang", _mode, "language of the text (zh, all_zh, en, ja, ko, yue, auto, ...)"),
    Parameter("ref_audio", _audio, "reference audio (3-10 s)"),
    Parameter("ref_text", _text, "transcript of the reference (empty: reference-free, v2 and later)"),
    Parameter("ref_lang", _mode, "language of the reference transcript"),
    Parameter("aux_refs", _audio_list, "extra references whose timbre is averaged in (';'-separated in a CSV)"),
    Parameter("sv_ref", _audio, "SoVITS v2Pro/v2ProPlus: speaker-embedding reference (empty: the prompt reference)"),
    Parameter("gpt_path", _path_or_none, "GPT weights (.ckpt)"),
    Parameter("sovits_path", _path_or_none, "SoVITS weights (.pth)"),
    Parameter("split_method", _split, "how long text is cut into fragments (cut0..cut5)"),
    Parameter("top_k", _integer, "sample among the k most likely tokens"),
    Parameter("top_p", _number, "nucleus sampling threshold (0, 1]"),
    Parameter("temperature", _number, "sampling temperature"),
    Parameter("repetition_penalty", _number, "penalty on tokens already generated"),
    Parameter("speed", _number, "speaking rate factor"),
    Parameter("noise_scale", _number, "SoVITS noise scale"),
    Parameter("pause", _number, "seconds of silence after each fragment"),
    Parameter("seed", _integer, "-1: random; the seed used is reported"),
    Parameter("batch_size", _integer, "fragments decoded together by the GPT (and the v3/v4 CFM)"),
    Parameter("parallel", _boolean, "batched GPT decoding"),
    Parameter("split_bucket", _boolean, "batch fragments of similar length together (less padding)"),
    Parameter("max_tokens", _optional_tokens, "semantic tokens per fragment at most (25 per second; 0 = model limit)"),
    Parameter("sample_steps", _optional_steps, "SoVITS v3/v4: CFM sampling steps (0 = the version's default: v3 32, "
                                               "v4 8)"),
    Parameter("super_sampling", _boolean, "SoVITS v3: super-sample the 24 kHz output to 48 kHz (AP-BWE)"),
    Parameter("semantic_tokens", _token_lists, "freeze: semantic tokens per fragment from an earlier result (JSON "
                                               "list of lists); the GPT is skipped"),
    Parameter("id", _text, "the caller's label (batch CSV id)"),
)}
#: other names front ends use for fields (a CSV's "ref" and "lang", an eval system's "gpt" and "sovits")
ALIASES = {"ref": "ref_audio", "lang": "text_lang", "gpt": "gpt_path", "sovits": "sovits_path",
           "split": "split_method", "aux": "aux_refs"}
#: the sampling and shaping settings (what a sweep cell, a product or an eval system carries besides models and
#: references)
SAMPLING_FIELDS = ("top_k", "top_p", "temperature", "repetition_penalty", "split_method", "speed", "noise_scale",
                   "pause", "max_tokens", "batch_size", "parallel", "sample_steps", "super_sampling")


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
    semantic: tuple = ()  # the fragment's semantic token ids (what a frozen request takes back)

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
    def semantic_tokens(self) -> list[list[int]]:
        """Each fragment's semantic tokens: pass them as a request's ``semantic_tokens`` to re-synthesise this
        take without the GPT (another speed, reference or SoVITS model)."""
        return [list(f.semantic) for f in self.fragments]

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
