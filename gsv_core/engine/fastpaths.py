"""The one place fast paths are chosen: a loaded model goes in, the variant the engine runs comes out.

Variants are drop-in modules with the plain model's interface (GSV-TTS-Lite style), never attributes poked into the
base model: the int8 GPT swaps its attention and linear modules for :mod:`gsv_core.models.quant` variants that
keep the base ``forward``. A variant that cannot be used on this machine falls back to the plain model with one
log line. The registry calls :func:`gpt_variant` / :func:`gpt_load_dtype` and keys its cache by
:func:`gpt_variant_name`, so a model is prepared once per variant.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger("gsv.fastpaths")


def gpt_variant_name(settings: Any, device: torch.device) -> str:
    """Which GPT variant the settings ask for on ``device``: "int8" (CPU, weight-only int8) or "plain"."""
    if bool(getattr(settings, "gpt_int8", False)) and device.type == "cpu":
        return "int8"
    return "plain"


def gpt_load_dtype(variant: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype to load the GPT in for ``variant`` (int8 multiplies against bf16 activations)."""
    return torch.bfloat16 if variant == "int8" else dtype


def gpt_variant(model: torch.nn.Module, variant: str) -> torch.nn.Module:
    """``model`` prepared as ``variant`` (in place where the variant replaces modules)."""
    if variant == "int8":
        from ..models.quant import int8_supported, quantize_gpt_int8

        if not int8_supported():
            log.warning("GPT_INT8 is set but this torch build has no int8 weight-only matmul: using the plain GPT")
            return model
        return quantize_gpt_int8(model)
    return model
