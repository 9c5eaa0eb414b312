"""A synthetic SoVITS feature folder for the s2 training tests (independent of the feature-extraction code)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from gsv_core.finetune.layout import ExperimentLayout
from gsv_core.text.symbols import symbols

SR = 32000
HOP = 640


def tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wav = sum((0.3 / k) * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) for k in range(1, 6))
    env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)  # 50 ms fades
    return (wav * env + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def build_experiment(root: Path, version: str, n: int = 3, durations=(1.0, 1.3, 1.6), f0s=(140.0, 190.0, 240.0),
                     seed: int = 0) -> ExperimentLayout:
    layout = ExperimentLayout(Path(root))
    for d in (layout.hubert_dir, layout.wav32k_dir, layout.data_dir):
        d.mkdir(parents=True, exist_ok=True)
    pro = version in ("v2Pro", "v2ProPlus")
    if pro:
        layout.sv_dir.mkdir(parents=True, exist_ok=True)
    table = [s for s in symbols("v1") if s not in ("_", "UNK") and not s.startswith(" ")]
    g = torch.Generator().manual_seed(seed)
    rows, train = [], []
    for i in range(n):
        name = f"clip{i}.wav"
        wav = tone(durations[i % len(durations)], f0s[i % len(f0s)], seed + i)
        sf.write(layout.wav32k_dir / name, (wav * 32767).astype(np.int16), SR, subtype="PCM_16")
        frames = len(wav) // HOP
        t = frames - (1 if i == 1 else 0)  # one clip one frame short: the loader pads like upstream
        torch.save(torch.randn(1, 768, t, generator=g), layout.hubert_dir / f"{name}.pt")
        if pro:
            torch.save(torch.randn(1, 20480, generator=g), layout.sv_dir / f"{name}.pt")
        phones = [table[(7 * i + 3 * k) % len(table)] for k in range(6 + 2 * i)]
        rows.append(f"{name}\t{' '.join(phones)}\t{' '.join('1' for _ in phones)}\ttext {i}")
        train.append(f"/somewhere/else/{name}|spk|ZH|text {i}")
    layout.name2text.write_text("\n".join(rows) + "\n", encoding="utf-8")
    layout.split_list("train").write_text("\n".join(train) + "\n", encoding="utf-8")
    return layout
