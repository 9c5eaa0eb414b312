"""Training speed and memory of the finetuning core on full-size models (official shapes, random weights).

Workload: a synthetic experiment of ``--clips`` clips of ``--seconds`` seconds (harmonic tones at 32 kHz, random
HuBERT features, phone sequences of a plausible length, speaker vectors for the Pro versions), "pretrained"
SoVITS/GPT files of the official architecture for ``--version`` with random weights, then ``--steps`` optimiser
steps of SoVITS (batch ``--s2-batch``, decoder slice ``--segment-frames`` frames = upstream's 32 by default) and
``--steps`` batches of GPT (batch ``--s1-batch``, full or ``--lora``) through the real trainers (train_s2 /
train_s1). Prints seconds per step (first step excluded: warm-up), clips per second and peak memory (RSS; CUDA
peak allocated when on a GPU).

    .venv/bin/python bench/bench_train.py --version v2Pro --steps 4
    .venv/bin/python bench/bench_train.py --device cuda --precision fp16 --s2-batch 8 --s1-batch 16 --steps 20
"""
from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gsv_core.checkpoints import save_gpt_checkpoint, save_sovits_checkpoint  # noqa: E402
from gsv_core.finetune.layout import ExperimentLayout  # noqa: E402
from gsv_core.models.s1 import S1Config, Text2Semantic  # noqa: E402
from gsv_core.models.s2.configs import official_s2_config  # noqa: E402
from gsv_core.models.s2.synthesizer import build_synthesizer  # noqa: E402
from gsv_core.text.symbols import symbols  # noqa: E402

SR, HOP = 32000, 640
#: the model section of upstream's s1longer-v2.yaml (the official GPT shape for v2 and later)
S1_CONFIG = {
    "train": {"seed": 1234, "epochs": 15, "batch_size": 8, "save_every_n_epoch": 5, "precision": "16-mixed",
              "gradient_clip": 1.0},
    "optimizer": {"lr": 0.01, "lr_init": 0.00001, "lr_end": 0.0001, "warmup_steps": 2000, "decay_steps": 40000},
    "data": {"max_eval_sample": 8, "max_sec": 54, "num_workers": 4, "pad_val": 1024},
    "model": {"vocab_size": 1025, "phoneme_vocab_size": 732, "embedding_dim": 512, "hidden_dim": 512, "head": 16,
              "linear_units": 2048, "n_layer": 24, "dropout": 0, "EOS": 1024, "random_bert": 0},
    "inference": {"top_k": 15},
}


def build_experiment(root: Path, version: str, clips: int, seconds: float) -> ExperimentLayout:
    layout = ExperimentLayout(root / "exp")
    for d in (layout.hubert_dir, layout.wav32k_dir, layout.data_dir, layout.bert_dir):
        d.mkdir(parents=True, exist_ok=True)
    pro = version in ("v2Pro", "v2ProPlus")
    if pro:
        layout.sv_dir.mkdir(parents=True, exist_ok=True)
    table = [s for s in symbols("v2") if s not in ("_", "UNK") and not s.startswith(" ")]
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    text_rows, sem_rows, train = [], ["item_name\tsemantic_audio"], []
    n = int(seconds * SR)
    t = np.arange(n) / SR
    for i in range(clips):
        name = f"clip{i:03d}.wav"
        f0 = 120 + 7 * i
        wav = sum((0.25 / k) * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) for k in range(1, 6))
        sf.write(layout.wav32k_dir / name, (wav * 32767).astype(np.int16), SR, subtype="PCM_16")
        frames = n // HOP
        torch.save(torch.randn(1, 768, frames, generator=g), layout.hubert_dir / f"{name}.pt")
        if pro:
            torch.save(torch.randn(1, 20480, generator=g), layout.sv_dir / f"{name}.pt")
        n_phones = int(seconds * 12)  # ~12 phones per second of Chinese speech
        phones = [table[int(v)] for v in rng.integers(0, len(table), n_phones)]
        text_rows.append(f"{name}\t{' '.join(phones)}\tNone\tbench {i}")
        tokens = rng.integers(0, 1024, int(seconds * 25))
        sem_rows.append(f"{name}\t{' '.join(map(str, tokens))}")
        train.append(f"{layout.wav32k_dir / name}|spk|zh|bench {i}")
    layout.name2text.write_text("\n".join(text_rows) + "\n", encoding="utf-8")
    layout.name2semantic.write_text("\n".join(sem_rows) + "\n", encoding="utf-8")
    layout.split_list("train").write_text("\n".join(train) + "\n", encoding="utf-8")
    return layout


def pretrained(root: Path, version: str) -> tuple[Path, Path]:
    torch.manual_seed(0)
    hps = official_s2_config(version)
    g = build_synthesizer(hps, version)
    s2g = root / f"s2G_{version}_random.pth"
    save_sovits_checkpoint(s2g, g.state_dict(), hps, "random weights (benchmark)", version)
    s1 = root / "s1_random.ckpt"
    model = Text2Semantic(S1Config.from_checkpoint_config(S1_CONFIG))
    save_gpt_checkpoint(s1, model.state_dict(), S1_CONFIG, "random weights (benchmark)")
    return s2g, s1


def step_times(loss_csv: Path) -> list[float]:
    with open(loss_csv, newline="", encoding="utf-8") as fh:
        elapsed = [float(r["elapsed_s"]) for r in csv.DictReader(fh)]
    return [b - a for a, b in zip(elapsed, elapsed[1:])]


def peak(device: torch.device) -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = f"peak RSS {rss / 1024:.2f} GiB"
    if device.type == "cuda":
        text += f", CUDA peak allocated {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        torch.cuda.reset_peak_memory_stats(device)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", default="v2Pro", choices=("v1", "v2", "v2Pro", "v2ProPlus"))
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--s2-batch", type=int, default=4)
    ap.add_argument("--s1-batch", type=int, default=8)
    ap.add_argument("--segment-frames", type=int, default=32)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--only", choices=("s2", "s1"), default=None)
    args = ap.parse_args(argv)

    from gsv_core.device import resolve_device
    from gsv_core.finetune.s1_train import S1TrainConfig, train_s1
    from gsv_core.finetune.s2_train import S2TrainConfig, train_s2

    device = resolve_device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"device {device}, precision {args.precision}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        layout = build_experiment(root, args.version, args.clips, args.seconds)
        s2g, s1 = pretrained(root, args.version)
        if args.only in (None, "s2"):
            t0 = time.perf_counter()
            cfg = S2TrainConfig(version=args.version, pretrained_s2g=s2g, batch_size=args.s2_batch, epochs=1,
                                save_every_epochs=1, device=args.device, precision=args.precision,
                                max_steps=args.steps + 1, segment_size=args.segment_frames * HOP, num_workers=0,
                                export_dir=root / "out")
            train_s2(layout, cfg, log=lambda m: None)
            dts = step_times(layout.s2_dir / "losses.csv")
            per = float(np.median(dts)) if dts else float("nan")
            print(f"SoVITS {args.version}: batch {args.s2_batch} x {args.segment_frames}-frame slices: "
                  f"{per:.2f} s/step (median of {len(dts)}), {args.s2_batch / per:.2f} clips/s; "
                  f"total {time.perf_counter() - t0:.0f} s incl. loading; {peak(device)}")
        if args.only in (None, "s1"):
            t0 = time.perf_counter()
            cfg = S1TrainConfig(pretrained_s1=s1, batch_size=args.s1_batch, epochs=1, save_every_epochs=1,
                                device=args.device, precision=args.precision, max_steps=args.steps + 1,
                                lora=args.lora, export_dir=root / "out")
            train_s1(layout, cfg, log=lambda m: None)
            dts = step_times(layout.s1_dir / "losses.csv")
            per = float(np.median(dts)) if dts else float("nan")
            print(f"GPT 24x512{' LoRA' if args.lora else ''}: batch {args.s1_batch}: {per:.2f} s/batch (median of "
                  f"{len(dts)}), {args.s1_batch / per:.2f} clips/s; total {time.perf_counter() - t0:.0f} s incl. "
                  f"loading; {peak(device)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
