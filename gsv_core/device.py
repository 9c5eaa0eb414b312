"""Where and in which precision models run: one decision, made from the settings."""
from __future__ import annotations

import torch

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks the first CUDA GPU when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import GSVError

        raise GSVError(f"device {name!r} was asked for, but no CUDA GPU is available to this torch build")
    return device


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` = fp16 on CUDA (what upstream runs), fp32 on CPU (half precision is slow or unsupported there)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in _DTYPES:
        raise ValueError(f"unknown precision {precision!r}; use one of auto, {', '.join(_DTYPES)}")
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32  # many CPU kernels lack fp16; bf16 is allowed where the user asks for it
    return dtype
