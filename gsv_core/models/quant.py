"""Weight-only int8 for the GPT's decoding on CPU.

Decoding one token at a time is memory-bound: every step streams all 77 M GPT weights. Storing the large linear
layers as int8 with one float scale per output row (symmetric, per channel) and multiplying them against bf16
activations with torch's fused int8 x bf16 kernel moves a quarter of the bytes of fp32. Everything else (embeddings,
LayerNorm, attention, sampling) keeps its precision. Numerics differ from upstream by the int8 rounding of the
weights (relative error about 2^-8 per weight), so this is an opt-in speed setting, never the parity path.
"""
from __future__ import annotations

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


def int8_supported() -> bool:
    return hasattr(torch, "_weight_int8pack_mm")


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
