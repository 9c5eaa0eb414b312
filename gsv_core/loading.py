"""One way to turn files into ready models: the loaders every room (engine, eval, finetune, refaudio) calls.

Each loader reads the file safely (``checkpoints``), builds the architecture from the file's own config, loads the
weights with readable errors, and returns the model in eval mode on the requested device and dtype together with
a small :class:`ModelInfo` (the raw fp16 weights are not kept, so a loaded model costs memory once).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoints import load_gpt_checkpoint, load_sovits_checkpoint, load_sv_state_dict
from .errors import ModelMismatchError


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    kind: str  # "gpt" | "sovits"
    version: str  # GPT: symbol version it was trained for (v1/v2); SoVITS: v1/v2/v2Pro/v2ProPlus
    symbol_version: str  # text symbol table the model expects (v1: 322 symbols, v2: 732)
    info: str = ""
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".xz")


def load_gpt(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """``(Text2Semantic, ModelInfo)`` from an exported or pretrained s1 ``.ckpt``."""
    from .models.s1 import Text2Semantic

    ck = load_gpt_checkpoint(path)
    model = Text2Semantic.from_checkpoint(ck, device=device, dtype=dtype)
    info = ModelInfo(Path(path), "gpt", ck.symbol_version, ck.symbol_version, ck.info, ck.config)
    return model, info


def load_sovits(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """``(SynthesizerTrn, ModelInfo)`` from exported SoVITS weights or a pretrained ``s2G*.pth``."""
    from .models.s2 import build_synthesizer

    ck = load_sovits_checkpoint(path)
    model = build_synthesizer(ck.config, ck.model_version)
    try:
        model.load_exported_weights(ck.weight)
    except RuntimeError as exc:  # shape mismatches: the weights were not trained with this config
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[-1] if first else "")
        raise ModelMismatchError(f"{path}: SoVITS weights do not fit the architecture in their config ({detail})") from None
    model = model.to(device=device, dtype=dtype).eval()
    info = ModelInfo(Path(path), "sovits", ck.model_version, ck.symbol_version, ck.info, ck.config)
    return model, info


def load_speaker_encoder(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """The ERes2NetV2 speaker encoder (fbank front end included) from its state-dict file."""
    from .features.speaker import SpeakerEncoder

    return SpeakerEncoder.from_state_dict(load_sv_state_dict(path)).to(device=device, dtype=dtype).eval()


def load_hubert(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    from .features.hubert import HubertContent

    return HubertContent(folder).to(device=device, dtype=dtype).eval()


def load_bert(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    from .features.bert import BertPhoneFeatures

    return BertPhoneFeatures(folder).to(device=device, dtype=dtype).eval()


def check_pairing(gpt: ModelInfo, sovits: ModelInfo) -> None:
    """Refuse GPT/SoVITS pairs that cannot work together.

    The SoVITS model decides the text symbol table (as upstream does). A v1-era GPT has a 512-row phoneme table, so
    it cannot read the 732-symbol ids that v2, v2Pro and v2ProPlus SoVITS models need."""
    gpt_rows = int(gpt.config.get("model", {}).get("phoneme_vocab_size", 732))
    needed = 322 if sovits.symbol_version == "v1" else 732
    if gpt_rows < needed:
        raise ModelMismatchError(
            f"GPT {gpt.name} is a v1 model ({gpt_rows}-symbol phoneme table) and cannot drive SoVITS {sovits.name} "
            f"({sovits.version}, {needed} symbols). Pair a v2-era GPT (e.g. s1v3.ckpt or a GPT finetuned from it) "
            f"with this SoVITS model, or use a v1 SoVITS model."
        )
