"""One way to turn files into ready models: the loaders every room (engine, eval, finetune, refaudio) calls.

Each loader reads the file safely (``checkpoints``), builds the architecture from the file's own config, loads the
weights with readable errors, and returns the model in eval mode on the requested device and dtype together with
a small :class:`ModelInfo` (the raw fp16 weights are not kept, so a loaded model costs memory once).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import torch

from .checkpoints import (
    BIGVGAN_DIR,
    BIGVGAN_WEIGHTS,
    CFM_BASE_MODELS,
    V4_VOCODER,
    SoVITSCheckpoint,
    load_bigvgan_files,
    load_gpt_checkpoint,
    load_sovits_checkpoint,
    load_sv_state_dict,
    load_v4_vocoder_state_dict,
)
from .errors import CheckpointError, ModelMismatchError



@dataclass(frozen=True)
class ModelInfo:
    path: Path
    kind: str  # "gpt" | "sovits"
    version: str  # GPT: symbol version it was trained for (v1/v2); SoVITS: v1/v2/v2Pro/v2ProPlus
    symbol_version: str  # text symbol table the model expects (v1: 322 symbols, v2: 732)
    info: str = ""
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: v3/v4 LoRA files: the base model they were applied to, and their rank (0 otherwise)
    base: Optional[Path] = None
    lora_rank: int = 0

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


def load_sovits(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                base_path: str | Path | None = None, search_dirs: Sequence[str | Path] = ()):
    """``(model, ModelInfo)`` from exported SoVITS weights or a pretrained ``s2G*.pth``.

    v1/v2/v2Pro/v2ProPlus give a ``SynthesizerTrn``; v3/v4 a ``SynthesizerTrnV3`` (which needs the version's vocoder,
    see :func:`load_vocoder`). A v3/v4 LoRA file is merged into its base model: ``base_path`` or, when not given, the
    official ``s2Gv3.pth`` / ``gsv-v4-pretrained/s2Gv4.pth`` found by :func:`find_lora_base` (``search_dirs``: the
    pretrained-models folders to look in, e.g. the settings' ``pretrained_dir``)."""
    from .models.s2 import build_synthesizer

    ck = load_sovits_checkpoint(path)
    if ck.is_cfm:
        return _load_cfm_sovits(ck, device, dtype, base_path, search_dirs)
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


# ----------------------------------------------------------------------------------------------------------------
# SoVITS v3/v4: base models, LoRA merging, vocoders


def _candidate_dirs(anchor: Optional[Path], search_dirs: Iterable[str | Path]) -> list[Path]:
    dirs: list[Path] = [Path(d) for d in search_dirs]
    if anchor is not None:
        folder = anchor.resolve().parent
        dirs += [folder, *list(folder.parents)[:2]]
    dirs.append(Path.cwd())
    out: list[Path] = []
    for d in dirs:
        for sub in ("", "pretrained_models", "GPT_SoVITS/pretrained_models"):
            c = d / sub if sub else d
            if c not in out:
                out.append(c)
    return out


def find_lora_base(ck: SoVITSCheckpoint, search_dirs: Sequence[str | Path] = ()) -> Path:
    """The base model of a v3/v4 LoRA file: the path its training config recorded (``train.pretrained_s2G``, as
    given or relative to the folders below), else the official file (``s2Gv3.pth`` / ``gsv-v4-pretrained/s2Gv4.pth``,
    also without its sub-folder, ``.xz`` allowed) in ``search_dirs``, next to the LoRA file or one or two folders
    up, or under the working directory. Raises CheckpointError naming the missing file and where it looked."""
    name = ck.base_model_name or CFM_BASE_MODELS[ck.model_version]
    dirs = _candidate_dirs(ck.path, search_dirs)
    rel: list[str] = []
    hint = ck.base_model_hint
    if hint:
        hp = Path(hint)
        if hp.is_absolute():
            rel.append(str(hp))
        rel += [hint, hint.removeprefix("GPT_SoVITS/").removeprefix("pretrained_models/")]
    rel += [name, Path(name).name]
    tried: list[Path] = []
    for r in dict.fromkeys(rel):
        for d in ([Path("/")] if Path(r).is_absolute() else dirs):
            for cand in (d / r, d / (r + ".xz")):
                if cand not in tried:
                    tried.append(cand)
                if cand.is_file():
                    return cand
    shown = ", ".join(str(d) for d in dirs[:6]) + (", and more" if len(dirs) > 6 else "")
    raise CheckpointError(
        f"{ck.path.name} is a SoVITS {ck.model_version} LoRA file; it needs its base model {Path(name).name} "
        f"(upstream: GPT_SoVITS/pretrained_models/{name}), which was not found. Looked in: {shown}. Download the "
        f"{ck.model_version} pretrained models (`python -m gsv_core.download --version {ck.model_version}`) or put "
        f"{Path(name).name} next to the LoRA file."
    )


LORA_PREFIX = "cfm.base_model.model."  # peft's name of the wrapped cfm module in upstream's LoRA exports
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def merge_cfm_lora(model: torch.nn.Module, weight: Mapping[str, torch.Tensor], rank: int,
                   alpha: Optional[float] = None, where: str = "LoRA file") -> None:
    """Apply an upstream v3/v4 LoRA export to a loaded base model, as TTS.py does with peft: its plain tensors
    (ref_enc, bridge, wns1, linear_mel, quantizer buffers, rotary inv_freq) replace the base ones, then each adapted
    attention projection becomes W + (alpha / rank) * B @ A (alpha = rank upstream, so the scale is 1), in float32."""
    if rank < 1:
        raise CheckpointError(f"{where}: lora_rank is {rank!r}; a LoRA file records a positive rank")
    scale = float(alpha if alpha is not None else rank) / rank
    plain: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in weight.items():
        name = "cfm." + key[len(LORA_PREFIX):] if key.startswith(LORA_PREFIX) else key
        if ".lora_A." in name or ".lora_B." in name:
            module, rest = name.split(".lora_", 1)
            if not module.endswith(tuple("." + t for t in LORA_TARGETS)):
                raise CheckpointError(f"{where}: LoRA on {module}, which upstream never adapts ({LORA_TARGETS})")
            pairs.setdefault(module, {})[rest[0]] = value
        else:
            plain[name] = value
    own = model.state_dict()
    unexpected = [k for k in plain if k not in own]
    if unexpected:
        raise ModelMismatchError(f"{where}: {len(unexpected)} tensors the base model does not have "
                                 f"(e.g. {unexpected[:3]})")
    try:
        model.load_state_dict(plain, strict=False)
    except RuntimeError as exc:
        raise ModelMismatchError(f"{where}: tensors do not fit the base model ({str(exc).splitlines()[-1]})") from None
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise CheckpointError(f"{where}: {module} has lora_{next(iter(ab))} without its partner")
        try:
            w = model.get_parameter(module + ".weight")
        except AttributeError:
            raise ModelMismatchError(f"{where}: LoRA target {module} is not in the base model") from None
        a, b = ab["A"].float(), ab["B"].float()
        if a.shape != (rank, w.shape[1]) or b.shape != (w.shape[0], rank):
            raise ModelMismatchError(f"{where}: {module} LoRA shapes {tuple(a.shape)}/{tuple(b.shape)} do not fit "
                                     f"weight {tuple(w.shape)} at rank {rank}")
        with torch.no_grad():
            w.copy_((w.float() + (b @ a) * scale).to(w.dtype))


def _load_cfm_sovits(ck: SoVITSCheckpoint, device, dtype, base_path, search_dirs):
    from .models.s2.synthesizer_v3 import build_synthesizer_v3

    base = None
    if ck.is_lora:
        base = Path(base_path) if base_path is not None else find_lora_base(ck, search_dirs)
        base_ck = load_sovits_checkpoint(base)
        if base_ck.is_lora or base_ck.model_version != ck.model_version:
            raise ModelMismatchError(
                f"{ck.path.name} is a SoVITS {ck.model_version} LoRA but its base {base} is "
                f"{'a LoRA file' if base_ck.is_lora else 'a ' + base_ck.model_version + ' model'}; it needs the "
                f"official {Path(CFM_BASE_MODELS[ck.model_version]).name}")
        full = base_ck
    else:
        full = ck
    try:
        model = build_synthesizer_v3(full.config, ck.model_version, full.weight)
        model.load_weights(full.weight)
        if ck.is_lora:
            merge_cfm_lora(model, ck.weight, ck.lora_rank, where=str(ck.path))
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((line.strip() for line in lines if "size mismatch" in line), lines[-1] if lines else "")
        raise ModelMismatchError(f"{ck.path}: SoVITS weights do not fit the architecture ({detail})") from None
    model = model.to(device=device, dtype=dtype).eval()
    info = ModelInfo(ck.path, "sovits", ck.model_version, ck.symbol_version, ck.info, ck.config, base=base,
                     lora_rank=ck.lora_rank)
    return model, info


def default_vocoder_path(version: str) -> str:
    """The vocoder of a SoVITS version, relative to upstream's pretrained_models folder."""
    if version == "v3":
        return BIGVGAN_DIR
    if version == "v4":
        return V4_VOCODER
    raise CheckpointError(f"SoVITS {version} has no separate vocoder (only v3 and v4 do)")


def find_vocoder(version: str, search_dirs: Sequence[str | Path] = (), near: Optional[str | Path] = None) -> Path:
    """Locate the v3 BigVGAN folder / v4 vocoder.pth in ``search_dirs`` (and near a model file, and under the working
    directory); CheckpointError naming the missing file otherwise."""
    rel = default_vocoder_path(version)
    dirs = _candidate_dirs(Path(near) if near else None, search_dirs)
    for d in dirs:
        cand = d / rel
        if version == "v3" and (cand / "config.json").is_file() and any(
                (cand / n).is_file() for n in (BIGVGAN_WEIGHTS, BIGVGAN_WEIGHTS + ".xz")):
            return cand
        if version == "v4":
            for c in (cand, Path(str(cand) + ".xz")):
                if c.is_file():
                    return c
    what = (f"the folder {BIGVGAN_DIR}/ (config.json + {BIGVGAN_WEIGHTS})" if version == "v3"
            else f"{V4_VOCODER}")
    shown = ", ".join(str(d) for d in dirs[:6]) + (", and more" if len(dirs) > 6 else "")
    raise CheckpointError(
        f"SoVITS {version} models need their vocoder, {what} (upstream: GPT_SoVITS/pretrained_models/{rel}), which "
        f"was not found. Looked in: {shown}. Download the {version} pretrained models.")


def load_vocoder(version: str, path: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
    """The vocoder of a v3 (BigVGAN folder or its .pt) or v4 (vocoder.pth) model, weight norm folded, eval mode."""
    from .models.vocoder import HiFiGANVocoder, build_bigvgan

    p = Path(path)
    if not p.exists():
        what = f"{BIGVGAN_DIR}/ folder" if version == "v3" else Path(V4_VOCODER).name
        raise CheckpointError(f"SoVITS {version} vocoder not found: {p} (expected the {what})")
    if version == "v3":
        config, state = load_bigvgan_files(p)
        model = build_bigvgan(config, state)
    elif version == "v4":
        model = HiFiGANVocoder.from_state_dict(load_v4_vocoder_state_dict(p))
    else:
        raise CheckpointError(f"SoVITS {version} has no separate vocoder (only v3 and v4 do)")
    return model.to(device=device, dtype=dtype).eval()
