"""LoRA adapters on the DiT attention projections of SoVITS v3/v4 (what upstream's s2 LoRA training adapts).

Upstream wraps ``cfm`` with peft (``target_modules=["to_k", "to_q", "to_v", "to_out.0"]``, ``lora_alpha = r``,
default init) and exports the trainable tensors under peft's names. :class:`LoRALinear` keeps peft's attribute names
(``base_layer``, ``lora_A.default``, ``lora_B.default``) so the state-dict names of an adapted model are upstream's
minus peft's ``base_model.model.`` wrapper, which :func:`lora_export_state` adds back.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
PEFT_PREFIX = "cfm.base_model.model."


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) * B(A(x)); A starts Kaiming-uniform, B at zero (peft's default), so training
    starts from the base model."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.ModuleDict({"default": nn.Linear(base.in_features, rank, bias=False)})
        self.lora_B = nn.ModuleDict({"default": nn.Linear(rank, base.out_features, bias=False)})
        self.rank = rank
        self.scaling = float(alpha if alpha is not None else rank) / rank
        nn.init.kaiming_uniform_(self.lora_A["default"].weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B["default"].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.lora_B["default"](self.lora_A["default"](x)) * self.scaling

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        w = self.base_layer.weight
        delta = (self.lora_B["default"].weight.float() @ self.lora_A["default"].weight.float()) * self.scaling
        self.base_layer.weight.copy_((w.float() + delta).to(w.dtype))
        return self.base_layer


def _targets(model: nn.Module):
    for block in model.cfm.estimator.transformer_blocks:
        attn = block.attn
        yield attn, "to_q"
        yield attn, "to_k"
        yield attn, "to_v"
        yield attn.to_out, "0"


def add_cfm_lora(model: nn.Module, rank: int, alpha: float | None = None) -> nn.Module:
    """Wrap every DiT attention projection of a SynthesizerTrnV3 in LoRALinear and freeze the rest of ``cfm``
    (as peft does). Returns the model."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, not {rank}")
    for p in model.cfm.parameters():
        p.requires_grad_(False)
    for parent, name in _targets(model):
        layer = getattr(parent, name) if name != "0" else parent[0]
        if isinstance(layer, LoRALinear):
            continue
        wrapped = LoRALinear(layer, rank, alpha).to(device=layer.weight.device, dtype=layer.weight.dtype)
        if name == "0":
            parent[0] = wrapped
        else:
            setattr(parent, name, wrapped)
    return model


def merge_cfm_lora_modules(model: nn.Module) -> nn.Module:
    """Fold every LoRALinear back into a plain Linear (W + scale * B @ A)."""
    for parent, name in _targets(model):
        layer = getattr(parent, name) if name != "0" else parent[0]
        if isinstance(layer, LoRALinear):
            if name == "0":
                parent[0] = layer.merged()
            else:
                setattr(parent, name, layer.merged())
    return model


def lora_export_state(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """What upstream's LoRA export holds: every trainable parameter and every buffer, in state-dict order, ``cfm``
    names under peft's ``cfm.base_model.model.`` prefix (frozen parameters are left out)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in model.state_dict().items():
        if key in trainable or key in buffers:
            name = PEFT_PREFIX + key[len("cfm."):] if key.startswith("cfm.") else key
            out[name] = value.detach().cpu()
    return out


__all__ = ["LoRALinear", "PEFT_PREFIX", "TARGETS", "add_cfm_lora", "lora_export_state", "merge_cfm_lora_modules"]
