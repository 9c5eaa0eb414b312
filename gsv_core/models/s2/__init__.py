"""s2: the SoVITS synthesizer of GPT-SoVITS v1 / v2 / v2Pro / v2ProPlus, its discriminator and official configs."""
from .configs import OFFICIAL_S2_CONFIGS, S2_VERSIONS, official_s2_config
from .discriminator import MultiPeriodDiscriminator
from .synthesizer import ReferenceCondition, SynthesizerTrn, build_synthesizer

__all__ = [
    "OFFICIAL_S2_CONFIGS",
    "S2_VERSIONS",
    "official_s2_config",
    "MultiPeriodDiscriminator",
    "ReferenceCondition",
    "SynthesizerTrn",
    "build_synthesizer",
]
