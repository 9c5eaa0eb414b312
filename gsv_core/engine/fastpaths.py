"""The one place fast paths are chosen: a loaded model goes in, the variant the engine runs comes out.

Variants are drop-in modules with the plain model's interface (GSV-TTS-Lite style), never attributes poked into the
base model. GPT variants (the registry calls :func:`gpt_variant` / :func:`gpt_load_dtype` and keys its cache by
:func:`gpt_variant_name`, so a model is prepared once per variant):

* ``static`` (the default on every device): :class:`gsv_core.models.s1_static.StaticCacheText2Semantic`, the
  static-KV-cache decoding step. On CUDA its fixed-shape step is captured as CUDA graphs, checked at load against
  the eager step (any failure or difference: eager, with one log line); on the CPU graphs do not exist, the step runs
  eagerly (one log line at load says so). Same weights and decoding rules as the plain model; its greedy tokens equal
  the plain model's (tests/test_static_cache.py).
* ``int8`` (``GPT_INT8`` on a CPU with native bf16: AVX-512 BF16 or AMX): projections as weight-only int8 times
  bf16 activations (``torch._weight_int8pack_mm``), with the static-cache step.
* ``int8-onnx`` (``GPT_INT8`` on any other CPU, AVX2 included, where onnx + onnxruntime are installed): the decoding
  step on onnxruntime with int8 projections (7-bit weights per column, activations quantised per call, integer
  AVX2 kernels); the prefill stays fp32 in torch.
* ``int8-dynamic`` (the same without onnx): projections as fbgemm dynamic-quantisation int8 (integer AVX2 kernels,
  fp32 activations in and out), with the torch static-cache step.
* ``onnx`` (the default for an fp32 GPT on the CPU where ``onnx`` and ``onnxruntime`` are installed): the same
  static-cache variant with its per-token step on onnxruntime (:mod:`gsv_core.models.s1_onnx`: MLAS kernels stream
  fp32 weights about twice as fast as torch's MKL calls for one row, four times for five).
* ``plain``: the model as loaded (``settings.gpt_static_cache = False``, where a front end offers it;
  ``settings.gpt_onnx = False`` keeps the torch step on the CPU).

A variant that cannot be used on this machine falls back to the next simpler one with one log line.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger("gsv.fastpaths")


def gpt_variant_name(settings: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Which GPT variant the settings ask for on ``device``: "int8", "int8-dynamic", "onnx", "static" or "plain".

    ``dtype`` is the engine's model dtype (the registry passes its own where it can; fp32 otherwise)."""
    device = torch.device(device)
    if bool(getattr(settings, "gpt_int8", False)) and device.type == "cpu":
        from ..device import native_cpu_bf16

        if native_cpu_bf16():
            return "int8"
        from ..models.s1_onnx import onnx_available

        return "int8-onnx" if onnx_available() and bool(getattr(settings, "gpt_onnx", True)) else "int8-dynamic"
    if not bool(getattr(settings, "gpt_static_cache", True)):
        return "plain"
    if device.type == "cpu" and dtype == torch.float32 and bool(getattr(settings, "gpt_onnx", True)):
        from ..models.s1_onnx import onnx_available

        if onnx_available():
            return "onnx"
    return "static"


def gpt_load_dtype(variant: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype to load the GPT in for ``variant`` (``int8`` multiplies against bf16 activations, ``int8-dynamic``
    against fp32 ones)."""
    if variant == "int8":
        return torch.bfloat16
    if variant in ("int8-dynamic", "int8-onnx"):
        return torch.float32
    return dtype


def gpt_variant(model: torch.nn.Module, variant: str) -> torch.nn.Module:
    """``model`` prepared as ``variant`` (the plain model's modules are reused, int8 ones replaced in place)."""
    if variant == "plain":
        return model
    if variant == "int8":
        from ..models.quant import int8_supported, quantize_gpt_int8

        if int8_supported():
            quantize_gpt_int8(model)
        else:
            log.warning("GPT_INT8 is set but this torch build has no int8 weight-only matmul: using the fp32 GPT")
    elif variant == "int8-dynamic":
        from ..models.quant import dynamic_int8_supported, quantize_gpt_dynamic_int8

        if dynamic_int8_supported():
            quantize_gpt_dynamic_int8(model)
        else:
            log.warning("GPT_INT8 is set but this torch build has no fbgemm int8 kernel: using the fp32 GPT")
    elif variant in ("onnx", "int8-onnx"):
        from ..models.s1_onnx import onnx_available

        weight = model.bert_proj.weight
        if onnx_available() and weight.device.type == "cpu" and weight.dtype == torch.float32:
            return static_gpt(model, backend="onnx" if variant == "onnx" else "onnx-int8")
        log.info("the onnxruntime decoding step needs onnx + onnxruntime and an fp32 GPT on the CPU: using torch's")
    return static_gpt(model)


def static_gpt(model: torch.nn.Module, backend: str = "torch") -> torch.nn.Module:
    """The static-cache variant of ``model``; CUDA graphs where they work, with one log line where they do not."""
    from ..models.s1_static import StaticCacheText2Semantic

    variant = StaticCacheText2Semantic.from_plain(model, backend=backend)
    device = model.bert_proj.weight.device
    if device.type != "cuda":
        log.info("CUDA graphs are not available on %s: the GPT decodes with the eager static-cache step%s",
                 device.type, " on onnxruntime" if backend.startswith("onnx") else "")
        if backend.startswith("onnx"):
            variant.onnx_step()  # build the session at load, not on the first sentence
    elif variant.graphs:
        variant.verify_graphs()  # logs once itself when it falls back
    return variant
