"""int8 projections for the GPT's decoding on CPU (the opt-in ``GPT_INT8`` setting).

Decoding one token at a time is memory-bound: every step streams all 77 M GPT weights. Storing the large linear
layers as int8 with one float scale per output row (symmetric, per channel) moves a quarter of the bytes of fp32.
Everything else (embeddings, LayerNorm, attention, sampling) keeps its precision. Numerics differ from upstream by
the int8 rounding, so this is an opt-in speed setting, never the parity path. Two kernels, chosen by
``gsv_core.engine.fastpaths`` from what the CPU runs natively:

* :class:`Int8Linear` (variant ``int8``): weight-only int8 times bf16 activations through
  ``torch._weight_int8pack_mm``. Fast where the CPU has native bf16 (AVX-512 BF16 / AMX); on an AVX2-only CPU the
  bf16 arithmetic is emulated and this is slower than fp32.
* :class:`DynamicInt8Linear` (variant ``int8-dynamic``): int8 weights times int8 activations through fbgemm's
  dynamic-quantisation kernel (AVX2 and AVX-512 integer code): each call quantises its activation rows to 8 bits
  with one scale for the call (all rows of a batch together), multiplies in integers and rescales to fp32. Faster
  than fp32 on AVX2-only CPUs; the activation rounding adds error on top of the weights' (a sentence decoded in a
  batch may then differ slightly from the same sentence alone, as the batch shares the activation scale).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .s1 import FusedSelfAttention


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` kept as int8 rows times per-row scales."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, act_dtype: torch.dtype):
        super().__init__()
        w = weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.register_buffer("qweight", torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(act_dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(act_dtype))
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features)
        if flat.device.type == "cpu" and flat.dtype == torch.bfloat16:
            y = torch._weight_int8pack_mm(flat.contiguous(), self.qweight, self.scales)
        else:  # other devices/dtypes: dequantise (still saves memory, not time)
            y = F.linear(flat, (self.qweight.to(flat.dtype) * self.scales.to(flat.dtype)[:, None]))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)


class Int8FusedSelfAttention(FusedSelfAttention):
    """Drop-in variant of :class:`FusedSelfAttention` whose projections are int8: the same forward (the base
    class's), only ``project_qkv`` and ``out_proj`` differ. Built from a loaded attention module; inference only
    (its state dict is not the checkpoint format)."""

    def __init__(self, base: nn.Module, act: torch.dtype):
        nn.Module.__init__(self)
        self.heads, self.dropout = base.heads, base.dropout
        self.in_proj = Int8Linear(base.in_proj_weight, base.in_proj_bias, act)
        self.out_proj = Int8Linear(base.out_proj.weight, base.out_proj.bias, act)
        self.train(base.training)

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_proj(x)


class DynamicInt8Linear(nn.Module):
    """``y = x W^T + b`` with ``W`` int8 per output row, activations quantised per call (fbgemm). fp32 in and out.

    The packed weights live in fbgemm's own structure (not a tensor); ``qweight`` keeps the int8 rows as a buffer
    so that memory accounting (the registry sums parameters and buffers) sees the layer's size."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        w = weight.detach().float().cpu()
        scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        zero = torch.zeros(w.shape[0], dtype=torch.long, device="cpu")
        with warnings.catch_warnings():
            # torch 2.13 deprecates quantized tensor types (torch issue 184982); fbgemm's dynamic linear still takes
            # one. dynamic_int8_supported() turns this variant off in a build that drops them.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
            qw = torch.quantize_per_channel(w, scales.double(), zero, 0, torch.qint8)
        b = None if bias is None else bias.detach().float().cpu()
        self._packed = torch.ops.quantized.linear_prepack(qw, b)
        self.register_buffer("qweight", qw.int_repr())
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features)
        if flat.dtype != torch.float32:
            flat = flat.float()
        # reduce_range: 7-bit activations, so AVX2's u8 x s8 pair sums (vpmaddubsw, int16) cannot saturate
        y = torch.ops.quantized.linear_dynamic(flat, self._packed, True)
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)


class DynamicInt8FusedSelfAttention(FusedSelfAttention):
    """:class:`FusedSelfAttention` whose projections are :class:`DynamicInt8Linear` (base forward unchanged)."""

    def __init__(self, base: nn.Module):
        nn.Module.__init__(self)
        self.heads, self.dropout = base.heads, base.dropout
        self.in_proj = DynamicInt8Linear(base.in_proj_weight, base.in_proj_bias)
        self.out_proj = DynamicInt8Linear(base.out_proj.weight, base.out_proj.bias)
        self.train(base.training)

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_proj(x)


def int8_supported() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


_DYNAMIC_OK: bool | None = None


def dynamic_int8_supported() -> bool:
    """Whether this torch build has a working fbgemm/x86 dynamic int8 linear kernel (it runs on any x86-64 CPU):
    checked once by running a tiny layer, so a build that drops quantized tensors turns the variant off."""
    global _DYNAMIC_OK
    if _DYNAMIC_OK is None:
        engines = torch.backends.quantized.supported_engines
        ok = hasattr(torch.ops.quantized, "linear_dynamic") and ("fbgemm" in engines or "x86" in engines)
        if ok:
            try:
                layer = DynamicInt8Linear(torch.ones(4, 8, device="cpu"), torch.zeros(4, device="cpu"))
                ok = layer(torch.ones(2, 8, device="cpu")).shape == (2, 4)
            except Exception:  # noqa: BLE001 - any failure: no such kernel here
                ok = False
        _DYNAMIC_OK = ok
    return _DYNAMIC_OK


def quantize_gpt_dynamic_int8(model: nn.Module) -> nn.Module:
    """Replace the GPT's per-layer projections and output layer with :class:`DynamicInt8Linear`, in place.

    The model stays in fp32 (the kernel's activations are fp32 in and out); CPU only; inference only."""
    if not dynamic_int8_supported():
        raise RuntimeError("this torch build has no fbgemm dynamic int8 linear kernel")
    if next(model.parameters()).device.type != "cpu":
        raise RuntimeError("the dynamic int8 GPT runs on the CPU only")
    for layer in model.h.layers:
        layer.self_attn = DynamicInt8FusedSelfAttention(layer.self_attn)
        layer.linear1 = DynamicInt8Linear(layer.linear1.weight, layer.linear1.bias)
        layer.linear2 = DynamicInt8Linear(layer.linear2.weight, layer.linear2.bias)
    model.ar_predict_layer = DynamicInt8Linear(model.ar_predict_layer.weight, None)
    model.quantized = "int8-dynamic"
    return model


def quantize_gpt_int8(model: nn.Module) -> nn.Module:
    """Replace the GPT's per-layer projections and its output layer with :class:`Int8Linear`, in place.

    The model should already be in bf16 on the CPU (where the fused kernel is used). Returns the model; its state
    dict no longer matches the checkpoint format, so quantised models are for inference only."""
    if not int8_supported():
        raise RuntimeError("this torch build has no int8 weight-only matmul")
    act = next(model.parameters()).dtype
    for layer in model.h.layers:
        layer.self_attn = Int8FusedSelfAttention(layer.self_attn, act)
        layer.linear1 = Int8Linear(layer.linear1.weight, layer.linear1.bias, act)
        layer.linear2 = Int8Linear(layer.linear2.weight, layer.linear2.bias, act)
    model.ar_predict_layer = Int8Linear(model.ar_predict_layer.weight, None, act)
    model.quantized = "int8"
    return model
