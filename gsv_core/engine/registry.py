"""The one place models live in memory: loaded once by path, shared by every tab and job, evicted LRU.

Every model the engine uses comes from here, keyed by (kind, resolved path). Loading the same key from two threads
loads it once; a model beyond the memory budget evicts the least-recently-used others (a model still in use by a
running job stays alive through that job's reference and is freed when it finishes).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..device import resolve_device, resolve_dtype
from ..errors import GSVError
from .. import loading


def module_bytes(obj: Any) -> int:
    """Memory held by a model's parameters and buffers (0 for things that are not modules)."""
    if not isinstance(obj, torch.nn.Module):
        return 0
    tensors = list(obj.parameters()) + list(obj.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


#: the my_config.py setting that says where each feature model is
_SETTING_NAMES = {"bert": "BERT_DIR", "hubert": "HUBERT_DIR", "sv": "SV_PATH"}


@dataclass
class Entry:
    value: Any
    info: Any
    nbytes: int


class ModelRegistry:
    def __init__(self, settings: Any = None, device: Optional[str] = None, precision: Optional[str] = None,
                 budget_gb: Optional[float] = None):
        if settings is None:
            raise GSVError("ModelRegistry needs the settings (open engines with gsv_core.api.Engine.open)")
        self.settings = settings
        if getattr(settings, "cpu_threads", 0) > 0:
            torch.set_num_threads(int(settings.cpu_threads))
        self.device = resolve_device(device or settings.device)
        self.precision = precision or settings.precision  # as asked: "auto", "fp32", "fp16" or "bf16"
        self.dtype = resolve_dtype(self.precision, self.device)
        self.budget_bytes = int((settings.model_memory_budget_gb if budget_gb is None else budget_gb) * 2**30)
        self._entries: "OrderedDict[tuple[str, str], Entry]" = OrderedDict()
        self._lock = threading.RLock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.loads = 0  # how many times a model was actually read from disk (tests and the UI show it)

    # -- generic -----------------------------------------------------------------------------------------------

    def _get(self, kind: str, path: Path, loader: Callable[[], tuple[Any, Any]]) -> Entry:
        key = (kind, str(path))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per key; others wait for it instead of loading a second copy
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    return entry
            # Callers may be inside torch.inference_mode(); parameters created there would be inference tensors
            # (no version counter: weight-norm caches never hit; unusable for training). Load outside it.
            with torch.inference_mode(False):
                value, info = loader()
            entry = Entry(value, info, module_bytes(value))
            with self._lock:
                self.loads += 1
                self._entries[key] = entry
                self._evict(keep=key)
                self._loading.pop(key, None)
            return entry

    def _evict(self, keep: tuple[str, str]) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        for key in list(self._entries):
            if total <= self.budget_bytes:
                break
            if key == keep:
                continue
            total -= self._entries.pop(key).nbytes

    def loaded(self) -> list[tuple[str, str, int]]:
        """(kind, path, bytes) of every resident model, least recently used first."""
        with self._lock:
            return [(k[0], k[1], e.nbytes) for k, e in self._entries.items()]

    def resident_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def unload(self, kind: Optional[str] = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if kind is None or k[0] == kind]:
                del self._entries[key]

    # -- models ------------------------------------------------------------------------------------------------

    @staticmethod
    def _resolve(path: Any, what: str) -> Path:
        if path is None or str(path).strip() == "":
            raise GSVError(f"No {what} was chosen")
        return Path(path).expanduser().resolve()

    def gpt(self, path: Any):
        from . import fastpaths

        p = self._resolve(path, "GPT weights (.ckpt)")
        variant = fastpaths.gpt_variant_name(self.settings, self.device)

        def load():
            model, info = loading.load_gpt(p, self.device, fastpaths.gpt_load_dtype(variant, self.dtype))
            return fastpaths.gpt_variant(model, variant), info

        e = self._get("gpt" if variant == "plain" else f"gpt-{variant}", p, load)
        return e.value, e.info

    def sovits(self, path: Any):
        """A SoVITS model; v3/v4 LoRA files are merged into their base model, found in the pretrained folder (or
        next to the LoRA file), with a message naming the missing file otherwise."""
        p = self._resolve(path, "SoVITS weights (.pth)")
        search = [self.settings.pretrained_dir]
        e = self._get("sovits", p, lambda: loading.load_sovits(p, self.device, self.dtype, search_dirs=search))
        return e.value, e.info

    def vocoder(self, version: str):
        """The vocoder of SoVITS ``version`` (v3: BigVGAN 24 kHz, v4: HiFi-GAN 48 kHz) from the pretrained folder."""
        from ..errors import CheckpointError

        try:
            path = loading.find_vocoder(version, [self.settings.pretrained_dir])
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (`python -m gsv_core.download --version {version}` fetches it into "
                                  f"PRETRAINED_DIR)") from None
        e = self._get(f"vocoder-{version}", path,
                      lambda: (loading.load_vocoder(version, path, self.device, self.dtype), None))
        return e.value

    def super_sampler(self):
        """The AP-BWE 24 -> 48 kHz model for SoVITS v3's optional super-sampling (a CheckpointError naming
        g_24kto48k.zip / config.json and their folder when absent)."""
        from ..models.ap_bwe import load_super_sampler
        from ..weights import super_sampler_dir

        folder = super_sampler_dir(self.settings)
        e = self._get("ap_bwe", folder.resolve(), lambda: (load_super_sampler(folder, self.device), None))
        return e.value

    def _feature_model(self, kind: str, path: Any, default: Path, load: Callable, download_item: str):
        p = Path(path).expanduser().resolve() if path else Path(default)
        if not p.exists():
            raise GSVError(
                f"The {kind} model is missing: {p} does not exist. Run `python -m gsv_core.download {download_item}` "
                f"or point {_SETTING_NAMES[kind]} (or PRETRAINED_DIR, the folder holding all pretrained models) in "
                f"my_config.py at your copy."
            )
        return self._get(kind, p, lambda: (load(p, self.device, self.dtype), None)).value

    def bert(self, folder: Any = None):
        return self._feature_model("bert", folder, self.settings.bert_dir, loading.load_bert, "bert")

    def hubert(self, folder: Any = None):
        return self._feature_model("hubert", folder, self.settings.hubert_dir, loading.load_hubert, "hubert")

    def speaker(self, path: Any = None):
        return self._feature_model("sv", path, self.settings.sv_path, loading.load_speaker_encoder, "sv")
