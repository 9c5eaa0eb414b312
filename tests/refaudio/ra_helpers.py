"""Helpers of the refaudio tests: settings in a temporary home, generated clips, .list files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from config import load_settings

REF_TEXT = "你早上好，这是参考声音。"


def make_wav(path: Path, seconds: float, freq: float = 220.0, sr: int = 16000, seed: int = 0) -> Path:
    """A voiced-like test clip: a harmonic tone with a little noise, different per (freq, seed)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * np.sin(2 * np.pi * 2 * freq * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr)
    return path


def make_settings(tmp: Path):
    """Settings in a temporary home whose model folders include the parity fixtures (the sweeps' models)."""
    import os

    raw = os.environ.get("GSV_PARITY_DIR")
    fixtures = str(Path(raw).expanduser().resolve() if raw else
                   (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "gsv_parity").resolve())
    return load_settings(environ={"GSV_HOME": str(tmp), "GSV_REFAUDIO_DB": str(tmp / "ra" / "lib.sqlite3"),
                                  "GSV_OUTPUT_DIR": str(tmp / "out"), "GSV_GPT_WEIGHT_DIRS": fixtures,
                                  "GSV_SOVITS_WEIGHT_DIRS": fixtures}, my_config=tmp / "none.py")


def write_list(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path
