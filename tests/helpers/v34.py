"""The tiny SoVITS v3/v4 fixture models laid out as upstream's (and our downloader's) pretrained folder.

    PRETRAINED/s1v3.ckpt                                            (the tiny v2 GPT of gsv_parity)
    PRETRAINED/s2Gv3.pth                                            tiny v3 base
    PRETRAINED/models--nvidia--bigvgan_v2_24khz_100band_256x/       tiny BigVGAN (config.json + bigvgan_generator.pt)
    PRETRAINED/gsv-v4-pretrained/{s2Gv4.pth, vocoder.pth}           tiny v4 base and vocoder
    SoVITS_weights_v3/lora_v3.pth, SoVITS_weights_v4/lora_v4.pth    upstream's rank-4 LoRA exports of those bases

The fixtures come from ``GSV_PARITY_V34_DIR`` (default ``<repo>/../shared/fixtures/gsv_parity_v34``)."""
from __future__ import annotations

import json
import lzma
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIGVGAN = "models--nvidia--bigvgan_v2_24khz_100band_256x"


def v34_dir() -> Path:
    raw = os.environ.get("GSV_PARITY_V34_DIR")
    return Path(raw).expanduser().resolve() if raw else (REPO / ".." / "shared" / "fixtures" / "gsv_parity_v34").resolve()


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def build_v34_home(root: Path, parity_dir: Path, vocoders: bool = True) -> dict[str, Path]:
    """Write the layout above under ``root`` (``root/pretrained_models`` is the pretrained folder)."""
    fx = v34_dir()
    if not (fx / "weights_index.json").is_file():
        raise FileNotFoundError(f"v3/v4 fixture folder not found: {fx} (set GSV_PARITY_V34_DIR)")
    index = json.loads((fx / "weights_index.json").read_text())
    pre = root / "pretrained_models"
    (pre / "gsv-v4-pretrained").mkdir(parents=True, exist_ok=True)
    out = {"root": root, "pretrained": pre, "gpt": pre / "s1v3.ckpt", "v3": pre / "s2Gv3.pth",
           "v4": pre / "gsv-v4-pretrained" / "s2Gv4.pth", "v3_lora": root / "SoVITS_weights_v3" / "lora_v3.pth",
           "v4_lora": root / "SoVITS_weights_v4" / "lora_v4.pth", "bigvgan": pre / BIGVGAN,
           "v4_vocoder": pre / "gsv-v4-pretrained" / "vocoder.pth"}
    shutil.copy(parity_dir / "s1_v2.ckpt", out["gpt"])
    for v in ("v3", "v4"):
        out[v].write_bytes(_raw(fx / index[f"{v}_base"]["file"]))
        out[f"{v}_lora"].parent.mkdir(parents=True, exist_ok=True)
        out[f"{v}_lora"].write_bytes(_raw(fx / index[f"{v}_lora"]["file"]))
    if vocoders:
        out["bigvgan"].mkdir(parents=True, exist_ok=True)
        shutil.copy(fx / index["bigvgan"]["config"], out["bigvgan"] / "config.json")
        (out["bigvgan"] / "bigvgan_generator.pt").write_bytes(_raw(fx / index["bigvgan"]["file"]))
        out["v4_vocoder"].write_bytes(_raw(fx / index["v4_vocoder"]["file"]))
    return out
