"""Constant tensors (STFT windows, filterbanks) cached per shape, device and dtype for inference and training alike.

A tensor first made inside ``torch.inference_mode()`` is an *inference tensor*: autograd refuses to save it for
backward, so a window cached during a synthesis would break the next training step in the same process. Every
entry is therefore built with inference mode switched off (and without grad), which gives an ordinary tensor that
inference mode reads just as well. The key must name the device and dtype, so no caller gets a tensor on another
device or in another precision.
"""
from __future__ import annotations

import threading
from typing import Callable, Hashable

import torch

_CACHES: list["ConstantCache"] = []


class ConstantCache:
    def __init__(self, name: str):
        self.name = name
        self._entries: dict[Hashable, torch.Tensor] = {}
        self._lock = threading.Lock()
        _CACHES.append(self)

    def get(self, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        tensor = self._entries.get(key)
        if tensor is None:
            with torch.inference_mode(False), torch.no_grad():
                tensor = make()
            with self._lock:
                tensor = self._entries.setdefault(key, tensor)
        return tensor

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def clear_constant_caches() -> None:
    """Empty every cache (tests use it to start from a cold process state)."""
    for cache in _CACHES:
        cache.clear()


__all__ = ["ConstantCache", "clear_constant_caches"]
