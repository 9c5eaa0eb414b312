"""Model versions, defined once: what each SoVITS version is made of and what the engine, finetuning, the UI and
the downloader need to know about it. Adding a version is one entry here plus its model code.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedVersionError


@dataclass(frozen=True)
class ModelVersion:
    name: str
    symbols: str  # symbol table: "v1" (322 symbols) or "v2" (732)
    sample_rate: int  # output audio rate
    speaker_embedding: bool  # conditioned on the ERes2NetV2 speaker vector (v2Pro family)
    cfm: bool  # SoVITS decodes mels with a CFM (DiT) and a vocoder (v3/v4)
    inference: bool  # our engine synthesises with it
    finetune: bool  # our trainers train it
    #: GPT weights folder / SoVITS weights folder names upstream uses for this version
    gpt_folder: str
    sovits_folder: str
    #: CFM versions: the sampling-step choices upstream's inference webui offers, and its default (a request's
    #: ``sample_steps`` of None means this default)
    sample_steps: tuple[int, ...] = ()
    default_sample_steps: int = 0
    #: output rate with the optional AP-BWE super-sampling (v3 only: 24 -> 48 kHz); 0 = not offered
    super_sampling_rate: int = 0


VERSIONS: dict[str, ModelVersion] = {
    v.name: v
    for v in (
        ModelVersion("v1", "v1", 32000, False, False, True, True, "GPT_weights", "SoVITS_weights"),
        ModelVersion("v2", "v2", 32000, False, False, True, True, "GPT_weights_v2", "SoVITS_weights_v2"),
        ModelVersion("v3", "v2", 24000, False, True, True, True, "GPT_weights_v3", "SoVITS_weights_v3",
                     sample_steps=(4, 8, 16, 32, 64, 128), default_sample_steps=32, super_sampling_rate=48000),
        ModelVersion("v4", "v2", 48000, False, True, True, True, "GPT_weights_v4", "SoVITS_weights_v4",
                     sample_steps=(4, 8, 16, 32), default_sample_steps=8),
        ModelVersion("v2Pro", "v2", 32000, True, False, True, True, "GPT_weights_v2Pro", "SoVITS_weights_v2Pro"),
        ModelVersion("v2ProPlus", "v2", 32000, True, False, True, True, "GPT_weights_v2ProPlus",
                     "SoVITS_weights_v2ProPlus"),
    )
}


def inference_versions() -> tuple[str, ...]:
    return tuple(v for v, m in VERSIONS.items() if m.inference)


def finetune_versions() -> tuple[str, ...]:
    return tuple(v for v, m in VERSIONS.items() if m.finetune)


def version(name: str) -> ModelVersion:
    v = VERSIONS.get(name)
    if v is None:
        raise UnsupportedVersionError(f"unknown model version {name!r}: known are {', '.join(VERSIONS)}")
    return v


def is_cfm(name: str) -> bool:
    """SoVITS v3/v4: decoded by the CFM + vocoder path (needs the reference text, has sampling steps)."""
    return name in VERSIONS and VERSIONS[name].cfm


def output_rate(name: str, super_sampling: bool = False) -> int:
    """The sample rate of synthesised audio for a version (v3 with super-sampling: 48 kHz)."""
    v = version(name)
    return v.super_sampling_rate if super_sampling and v.super_sampling_rate else v.sample_rate


def is_pro(name: str) -> bool:
    return name in VERSIONS and VERSIONS[name].speaker_embedding


__all__ = ["ModelVersion", "VERSIONS", "finetune_versions", "inference_versions", "is_cfm", "is_pro", "output_rate",
           "version"]
