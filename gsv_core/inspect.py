"""``python -m gsv_core.inspect FILE [FILE ...] [--json]``: what a checkpoint or model folder is.

Prints the kind (GPT / SoVITS, v3/v4 and their LoRA files included / v3 BigVGAN or v4 vocoder / discriminator /
speaker model / BERT / HuBERT folder), the version, a config summary and the parameter count, or a clear one-line
error. Nothing is executed from the file: checkpoints go
through the weights-only loader, model folders are read from their ``config.json`` and tensor headers.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .checkpoints import (
    GPTCheckpoint,
    SoVITSCheckpoint,
    count_parameters,
    load_any_checkpoint,
    load_bigvgan_files,
    load_state_dict_file,
)
from .errors import GSVError


def _s1_summary(ck: GPTCheckpoint) -> dict[str, Any]:
    m = ck.model_config
    return {
        "kind": "GPT (s1) weights",
        "version": f"{ck.symbol_version} text symbols ({m['phoneme_vocab_size']}-row phoneme table)",
        "info": ck.info,
        "config": {
            "layers": m["n_layer"],
            "width": m.get("hidden_dim", m.get("embedding_dim")),
            "heads": m["head"],
            "semantic_vocab": m["vocab_size"],
            "phoneme_vocab": m["phoneme_vocab_size"],
            "max_sec": ck.max_sec,
        },
        "parameters": ck.num_parameters(),
        "dtype": sorted({str(t.dtype).replace("torch.", "") for t in ck.weight.values()}),
    }


def _s2_summary(ck: SoVITSCheckpoint) -> dict[str, Any]:
    m, d = ck.config["model"], ck.config["data"]
    if ck.is_lora:
        return {
            "kind": f"SoVITS {ck.model_version} LoRA (s2, CFM attention adapters)",
            "version": ck.model_version,
            "symbol_version": ck.symbol_version,
            "header": ck.header.decode("latin-1"),
            "info": ck.info,
            "config": {
                "lora_rank": ck.lora_rank,
                "base_model": ck.base_model_name,
                "base_model_recorded": ck.base_model_hint,
                "lora_tensors": sum(1 for k in ck.weight if ".lora_" in k),
                "other_tensors": sum(1 for k in ck.weight if ".lora_" not in k),
            },
            "parameters": ck.num_parameters(),
            "dtype": sorted({str(t.dtype).replace("torch.", "") for t in ck.weight.values()}),
        }
    if ck.is_cfm:
        import torch

        dit = {k for k in ck.weight if k.startswith("cfm.estimator.transformer_blocks.")}
        proj = ck.weight.get("cfm.estimator.proj_out.weight", torch.zeros(0, 0))
        vocoder = "BigVGAN 24 kHz (models--nvidia--bigvgan_v2_24khz_100band_256x/)" if ck.model_version == "v3" \
            else "HiFi-GAN 48 kHz (gsv-v4-pretrained/vocoder.pth)"
        return {
            "kind": f"SoVITS {ck.model_version} weights (s2 + CFM/DiT; needs a vocoder)",
            "version": ck.model_version,
            "symbol_version": ck.symbol_version,
            "header": ck.header.decode("latin-1"),
            "official_pretrained": ck.official_name,
            "info": ck.info,
            "config": {
                "output_rate": 24000 if ck.model_version == "v3" else 48000,
                "vocoder": vocoder,
                "hidden_channels": m.get("hidden_channels"),
                "n_layers": m.get("n_layers"),
                "fea_channels": int(ck.weight["bridge.0.weight"].shape[0]) if "bridge.0.weight" in ck.weight else None,
                "dit_dim": int(proj.shape[1]) if proj.dim() == 2 else None,
                "dit_depth": len({k.split(".")[3] for k in dit}),
            },
            "parameters": ck.num_parameters(),
            "dtype": sorted({str(t.dtype).replace("torch.", "") for t in ck.weight.values()}),
        }
    return {
        "kind": "SoVITS (s2) weights",
        "version": ck.model_version,
        "symbol_version": ck.symbol_version,
        "header": ck.header.decode("latin-1"),
        "official_pretrained": ck.official_name,
        "info": ck.info,
        "config": {
            "sampling_rate": d.get("sampling_rate"),
            "hidden_channels": m.get("hidden_channels"),
            "inter_channels": m.get("inter_channels"),
            "gin_channels": m.get("gin_channels"),
            "n_layers": m.get("n_layers"),
            "upsample_rates": m.get("upsample_rates"),
            "upsample_initial_channel": m.get("upsample_initial_channel"),
            "has_posterior_encoder": any(k.startswith("enc_q.") for k in ck.weight),
        },
        "parameters": ck.num_parameters(),
        "dtype": sorted({str(t.dtype).replace("torch.", "") for t in ck.weight.values()}),
    }


def _vocoder_summary(kind: str, state: dict, config: dict | None = None) -> dict[str, Any]:
    if kind == "bigvgan":
        cfg = config or {}
        return {
            "kind": "SoVITS v3 vocoder (BigVGAN)",
            "version": "v3",
            "config": {k: cfg.get(k) for k in ("sampling_rate", "num_mels", "hop_size", "upsample_rates",
                                                 "upsample_initial_channel", "activation") if k in cfg},
            "parameters": count_parameters(state, skip_buffers=(".filter",)),
        }
    return {
        "kind": "SoVITS v4 vocoder (HiFi-GAN, 48 kHz)",
        "version": "v4",
        "config": {"upsample_initial_channel": int(state["conv_pre.weight"].shape[0]), "sampling_rate": 48000,
                   "num_mels": int(state["conv_pre.weight"].shape[1])},
        "parameters": count_parameters(state),
    }


def _folder_summary(folder: Path) -> dict[str, Any]:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise GSVError(f"{folder} is a folder without config.json: not a transformers model folder")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GSVError(f"{cfg_path} is not readable JSON: {exc}") from exc
    if isinstance(cfg, dict) and "upsample_rates" in cfg and "model_type" not in cfg:
        config, state = load_bigvgan_files(folder)
        return _vocoder_summary("bigvgan", state, config)
    model_type = str(cfg.get("model_type", "?"))
    kind = {"bert": "BERT (text features)", "hubert": "HuBERT (content features)", "whisper": "Whisper"}.get(
        model_type, f"transformers model ({model_type})"
    )
    params = None
    st = folder / "model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), "pt") as f:
            params = 0
            for key in f.keys():
                n = 1
                for dim in f.get_slice(key).get_shape():
                    n *= dim
                params += n
    else:
        binary = folder / "pytorch_model.bin"
        if binary.is_file():
            params = count_parameters(load_state_dict_file(binary, "a transformers pytorch_model.bin"))
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    return {
        "kind": kind,
        "version": model_type,
        "config": {k: cfg[k] for k in keys if k in cfg},
        "parameters": params,
    }


def describe(path: str | Path) -> dict[str, Any]:
    """A JSON-able description of one checkpoint file or model folder; raises GSVError when it is neither."""
    p = Path(path)
    if p.is_dir():
        out = _folder_summary(p)
    else:
        ck = load_any_checkpoint(p)
        if isinstance(ck, GPTCheckpoint):
            out = _s1_summary(ck)
        elif isinstance(ck, SoVITSCheckpoint):
            out = _s2_summary(ck)
        elif isinstance(ck, OrderedDict):
            out = {
                "kind": "speaker-verification model (ERes2NetV2 state dict)",
                "version": "ERes2NetV2",
                "config": {
                    "m_channels": int(ck["conv1.weight"].shape[0]),
                    "feat_dim": "80 (fbank)",
                    "embedding": "20480-d (forward3)" if int(ck["conv1.weight"].shape[0]) == 64 else "tiny",
                },
                "parameters": count_parameters(ck, skip_buffers=("running_", "num_batches")),
            }
        elif "vocoder" in ck:
            if ck["vocoder"] == "bigvgan":
                config = None
                if (p.parent / "config.json").is_file():
                    config, _ = load_bigvgan_files(p)
                out = _vocoder_summary("bigvgan", ck["generator"], config)
            else:
                out = _vocoder_summary("v4", ck["state_dict"])
        else:
            weight = ck["weight"]
            periods = sorted({k.split(".")[1] for k in weight if k.startswith("discriminators.")}, key=int)
            out = {
                "kind": "SoVITS discriminator (s2D)",
                "version": "v2Pro/v2ProPlus" if len(periods) > 6 else "v1/v2",
                "config": {"sub_discriminators": len(periods)},
                "parameters": count_parameters(weight),
            }
    out["path"] = str(p)
    return out


def _format(d: dict[str, Any]) -> str:
    lines = [f"{d['path']}", f"  kind:       {d['kind']}", f"  version:    {d['version']}"]
    for key in ("symbol_version", "header", "official_pretrained", "info", "dtype"):
        if d.get(key) not in (None, ""):
            lines.append(f"  {key + ':':<11} {d[key]}")
    params = d.get("parameters")
    lines.append(f"  parameters: {params:,} ({params / 1e6:.2f} M)" if params is not None else "  parameters: unknown")
    lines.append("  config:")
    for k, v in d.get("config", {}).items():
        lines.append(f"    {k}: {v}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gsv_core.inspect", description=__doc__.split("\n\n")[1])
    parser.add_argument("paths", nargs="+", help="checkpoint files (.ckpt/.pth[.xz]) or model folders")
    parser.add_argument("--json", action="store_true", help="print one JSON object per path")
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths:
        try:
            info = describe(path)
        except GSVError as exc:
            status = 1
            if args.json:
                print(json.dumps({"path": str(path), "error": str(exc)}, ensure_ascii=False))
            else:
                print(f"error: {exc}", file=sys.stderr)
            continue
        print(json.dumps(info, ensure_ascii=False) if args.json else _format(info))
    return status


if __name__ == "__main__":
    sys.exit(main())
