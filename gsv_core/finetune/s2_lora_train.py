"""SoVITS v3 / v4 LoRA finetuning, following upstream's ``GPT_SoVITS/s2_train_v3_lora.py``.

Model: the official ``s2Gv3.pth`` / ``s2Gv4.pth`` (SynthesizerTrnV3) with LoRA adapters (rank r, alpha = r) on the
four attention projections (to_q, to_k, to_v, to_out.0) of every DiT block; the rest of the CFM, the text encoder,
ssl_proj and the quantizer are frozen; ref_enc, bridge, wns1 and linear_mel stay trainable (ref_enc and linear_mel
receive no gradient in practice: ge reaches wns1 detached and linear_mel is unused). One step =
:meth:`SynthesizerTrnV3.forward_train` (the CFM flow-matching loss with upstream's random prompt and 30 % shortcut
targets). AdamW over the trainable parameters (lr 1e-4, betas (0.8, 0.99), eps 1e-9, weight decay 0.01),
ExponentialLR (gamma 0.999875) stepped once before training and after every epoch, no gradient clipping (the norm is
logged), fp16 autocast + GradScaler on CUDA.

Data: the experiment's features as for v2 training (``2-name2text.txt``, ``4-cnhubert``, ``5-wav32k``) through
:class:`S2Dataset`, batches from the bucketed sampler with upstream's v3 boundaries (32 .. 1000 frames); the target
mel is computed from the 32 kHz clip: v4 at 32 kHz (1280 / 320), v3 after resampling to 24 kHz (1024 / 256, soxr
where upstream lets ffmpeg resample), normalised with (x + 12) / 14 * 2 - 1 and zero-padded as upstream's collates.

Files: ``<exp>/s2/lora_<version>_r<rank>/state_latest.pt`` (weights-only training state: model, optimiser,
scheduler, scaler, RNG, epoch, step and position in the epoch; an exact resume), ``losses.csv`` beside it, and the
exports ``<export_dir>/<name>_e<epoch>_s<step>_l<rank>.pth`` in upstream's LoRA format (header ``03`` / ``04``,
``lora_rank``, fp16, trainable tensors + buffers under peft's names) that upstream's webui and our loader read on
top of the base model.

The Finetune pipeline (``Experiment.run_s2``), its tab and ``python -m gsv_core.finetune`` run it for v3/v4 experiments."""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gsv_core.checkpoints import CFM_SOVITS_VERSIONS, load_sovits_checkpoint, save_sovits_checkpoint
from gsv_core.errors import GSVError
from gsv_core.features.spectrogram import mel_spectrogram
from gsv_core.models.lora import add_cfm_lora, lora_export_state
from gsv_core.models.s2.configs import official_s2_config
from gsv_core.models.s2.synthesizer_v3 import build_synthesizer_v3

from .common import (CancelFn, Eta, LossLog, ProgressFn, TrainingError, autocast, cancelled, grad_scaler,
                     load_state, report, rng_state, save_state, seed_everything, set_rng_state, training_dtype)
from .layout import ExperimentLayout, disk_guard
from .s2_data import AudioParams, BucketBatchSampler, ListBatchSampler, S2Dataset, collate

STATE_FORMAT = "gsv-s2-lora-train-state/1"
LOSS_COLUMNS = ("cfm", "grad_norm")  # + step, epoch, lr, elapsed_s
V3_BOUNDARIES = (32, 300, 400, 500, 600, 700, 800, 900, 1000)
MEL = {"v3": (24000, 1024, 256), "v4": (32000, 1280, 320)}  # target mel: rate, n_fft (= win), hop


@dataclass
class LoRATrainConfig:
    version: str  # v3 / v4
    pretrained_s2g: str | Path  # s2Gv3.pth / gsv-v4-pretrained/s2Gv4.pth
    lora_rank: int = 32  # webui choices 16 / 32 / 64 / 128
    batch_size: int = 4
    epochs: int = 2  # webui default for v3/v4 (max 16)
    save_every_epochs: int = 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    lr_decay: float = 0.999875
    seed: int = 1234
    precision: str = "auto"
    device: str = "auto"
    grad_ckpt: bool = False
    export_dir: str | Path | None = None  # default <exp>/s2/weights
    export_name: str | None = None  # default the experiment name
    max_steps: int | None = None
    save_every_steps: int | None = None
    split: str | None = "train"
    num_workers: int = 0
    sampler_seed: int = 0


@dataclass
class LoRATrainResult:
    exports: list[Path]
    epoch: int
    step: int
    loss_log: Path
    state_path: Path
    cancelled: bool = False
    log_lines: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# data


def target_mel(wav32: torch.Tensor, version: str) -> torch.Tensor:
    """32 kHz clip [1, L] -> normalised 100-band mel [100, frames] as upstream's v3/v4 loaders compute it."""
    rate, n_fft, hop = MEL[version]
    wav = wav32
    if rate != 32000:
        from gsv_core.audio import resample

        wav = torch.from_numpy(resample(wav32[0].numpy(), 32000, rate))[None]
    mel = mel_spectrogram(wav.float(), n_fft=n_fft, num_mels=100, sr=rate, hop=hop, win=n_fft)[0]
    return (mel + 12) / 14 * 2 - 1


class CFMDataset(S2Dataset):
    """S2Dataset items plus the target mel."""

    def __init__(self, layout: ExperimentLayout, version: str, split: str | None, log=None):
        super().__init__(layout, "v2", AudioParams(), split=split, log=log)  # v3/v4 use the v2 symbol table
        self.cfm_version = version

    def __getitem__(self, index: int):
        ssl, spec, wav, ids, _ = super().__getitem__(index)
        return ssl, spec, wav, ids, None, target_mel(wav, self.cfm_version)


def collate_cfm(batch, version: str):
    """S2Batch + (mel [B, 100, T_mel] zero-padded like upstream's V3/V4 collates, mel lengths)."""
    order = sorted(range(len(batch)), key=lambda i: -batch[i][1].size(1))
    s2 = collate([b[:5] for b in batch])
    if version == "v3":
        max_ssl = max(b[0].size(2) for b in batch)
        width = int(int(8 * ((max_ssl // 8) + 1)) * 1.25 * 1.5)
    else:
        width = s2.spec.size(2) * 2
    mels = [batch[j][5] for j in order]
    width = max(width, max(m.size(1) for m in mels))
    mel = torch.zeros(len(batch), 100, width)
    lengths = torch.zeros(len(batch), dtype=torch.long)
    for i, m in enumerate(mels):
        mel[i, :, : m.size(1)] = m
        lengths[i] = m.size(1)
    return s2, mel, lengths


class _Collate:
    def __init__(self, version: str):
        self.version = version

    def __call__(self, batch):
        return collate_cfm(batch, self.version)


# ----------------------------------------------------------------------------------------------------------------
# trainer


def _device(name: str) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} was asked but no CUDA GPU is available")
    return device


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


class LoRATrainer:
    def __init__(self, layout: ExperimentLayout, cfg: LoRATrainConfig, log=None):
        if cfg.version not in CFM_SOVITS_VERSIONS:
            raise TrainingError(f"LoRA SoVITS training is for v3/v4, not {cfg.version!r}")
        for name in ("batch_size", "epochs", "save_every_epochs", "lora_rank"):
            if int(getattr(cfg, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, not {getattr(cfg, name)}")
        self.layout, self.cfg = layout, cfg
        self.log = log or (lambda _m: None)
        self.device = _device(cfg.device)
        self.dtype = training_dtype(cfg.precision, self.device)
        seed_everything(cfg.seed)
        g_path = Path(cfg.pretrained_s2g)
        if not g_path.is_file():
            raise TrainingError(f"pretrained SoVITS {cfg.version} model {g_path} not found: download it "
                                f"(s2Gv3.pth / gsv-v4-pretrained/s2Gv4.pth)")
        try:
            ck = load_sovits_checkpoint(g_path)
        except GSVError as exc:
            raise TrainingError(f"pretrained SoVITS model {g_path}: {exc}") from exc
        if ck.model_version != cfg.version or ck.is_lora:
            raise TrainingError(f"{g_path} is a SoVITS {ck.model_version}{' LoRA' if ck.is_lora else ''} file; "
                                f"{cfg.version} LoRA training starts from the official {cfg.version} base model")
        self.hps = self._build_hps(ck.config)
        model = build_synthesizer_v3(self.hps, cfg.version, ck.weight)
        model.load_weights(ck.weight)
        for module in (model.enc_p, model.ssl_proj, model.quantizer):
            for p in module.parameters():
                p.requires_grad_(False)
        add_cfm_lora(model, cfg.lora_rank)
        self.model = model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = torch.optim.AdamW(self.params, cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.optim, gamma=cfg.lr_decay)
        self.scaler = grad_scaler(self.device, self.dtype)
        self.epoch, self.batch_in_epoch, self.global_step, self.elapsed_s = 1, 0, 0, 0.0
        self.exports: list[Path] = []
        self.resumed = False
        self._pending_rng = None
        if self.state_path.is_file():
            self._resume(load_state(self.state_path))
        else:
            import warnings

            with warnings.catch_warnings():  # upstream steps the scheduler once before the first epoch
                warnings.simplefilter("ignore", UserWarning)
                self.sched.step()
            self.log(f"LoRA rank {cfg.lora_rank} on {g_path.name}: "
                     f"{sum(p.numel() for p in self.params):,} trainable parameters")

    @property
    def run_dir(self) -> Path:
        return self.layout.s2_dir / f"lora_{self.cfg.version}_r{self.cfg.lora_rank}"

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state_latest.pt"

    @property
    def export_dir(self) -> Path:
        return Path(self.cfg.export_dir) if self.cfg.export_dir else self.layout.s2_dir / "weights"

    @property
    def export_name(self) -> str:
        return self.cfg.export_name or self.layout.name

    def _build_hps(self, pretrained_cfg: dict) -> dict:
        cfg = self.cfg
        official = official_s2_config(cfg.version)
        hps = copy.deepcopy(_plain(dict(pretrained_cfg)))
        for section in ("model", "data"):
            merged = dict(official[section])
            merged.update(hps.get(section) or {})
            hps[section] = merged
        train = dict(official["train"])
        train.update({
            "epochs": cfg.epochs, "learning_rate": cfg.lr, "betas": list(cfg.betas), "eps": cfg.eps,
            "batch_size": cfg.batch_size, "lr_decay": cfg.lr_decay, "seed": cfg.seed,
            "fp16_run": self.dtype == torch.float16, "pretrained_s2G": str(cfg.pretrained_s2g), "pretrained_s2D": "",
            "if_save_latest": True, "if_save_every_weights": True, "save_every_epoch": cfg.save_every_epochs,
            "grad_ckpt": bool(cfg.grad_ckpt), "lora_rank": str(cfg.lora_rank),  # the webui stores it as text
        })
        hps["train"] = train
        hps["model"]["version"] = cfg.version
        hps["data"]["exp_dir"] = str(self.layout.root)
        hps["s2_ckpt_dir"] = str(self.layout.root)
        hps["save_weight_dir"] = str(self.export_dir)
        hps["name"] = self.export_name
        hps["version"] = cfg.version
        return hps

    def _resume(self, st: dict) -> None:
        if st.get("format") != STATE_FORMAT or st.get("version") != self.cfg.version or \
                int(st.get("lora_rank", -1)) != self.cfg.lora_rank:
            raise TrainingError(f"{self.state_path} is not a {self.cfg.version} rank-{self.cfg.lora_rank} LoRA "
                                "training state of this program; delete it to start over")
        try:
            self.model.load_state_dict(st["model"])
            self.optim.load_state_dict(st["optim"])
            self.sched.load_state_dict(st["sched"])
            self.scaler.load_state_dict(st["scaler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise TrainingError(f"{self.state_path} does not fit this model ({str(exc)[:200]}); delete it to start "
                                "over") from exc
        self.epoch, self.batch_in_epoch = int(st["epoch"]), int(st["batch_in_epoch"])
        self.global_step, self.elapsed_s = int(st["global_step"]), float(st.get("elapsed_s", 0.0))
        self.exports = [Path(p) for p in st.get("exports", [])]
        self._pending_rng = st["rng"]
        self.resumed = True
        self.log(f"resumed from {self.state_path}: epoch {self.epoch}, step {self.global_step}")

    def restore_rng(self) -> None:
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None

    @property
    def lr(self) -> float:
        return float(self.optim.param_groups[0]["lr"])

    def train_step(self, batch) -> dict[str, float]:
        s2, mel, mel_lengths = batch
        b = s2.to(self.device)
        self.model.train()
        with autocast(self.device, self.dtype):
            loss = self.model.forward_train(b.ssl, b.spec, mel.to(self.device), b.spec_lengths, b.text,
                                            b.text_lengths, mel_lengths.to(self.device), self.cfg.grad_ckpt)
        self.optim.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optim)
        norms = [p.grad.detach().float().norm(2) for p in self.params if p.grad is not None]
        grad_norm = float(torch.linalg.vector_norm(torch.stack(norms), 2)) if norms else 0.0
        self.scaler.step(self.optim)
        self.scaler.update()
        return {"cfm": float(loss.detach()), "grad_norm": grad_norm, "lr": self.lr}

    def training_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT, "version": self.cfg.version, "lora_rank": self.cfg.lora_rank,
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "global_step": self.global_step,
            "elapsed_s": self.elapsed_s, "batch_size": self.cfg.batch_size,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optim": self.optim.state_dict(), "sched": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": rng_state(), "config": _plain(self.hps), "exports": [str(p) for p in self.exports],
        }

    def save_state(self) -> Path:
        return save_state(self.state_path, self.training_state())

    def export(self, epoch: int) -> Path:
        """Upstream's LoRA export: ``<name>_e<epoch>_s<step>_l<rank>.pth``, header 03/04."""
        path = self.export_dir / f"{self.export_name}_e{epoch}_s{self.global_step}_l{self.cfg.lora_rank}.pth"
        with disk_guard(f"writing the LoRA export {path.name}"):
            self.export_dir.mkdir(parents=True, exist_ok=True)
            save_sovits_checkpoint(path, lora_export_state(self.model), self.hps,
                                   f"{epoch}epoch_{self.global_step}iteration", self.cfg.version,
                                   extra={"lora_rank": self.cfg.lora_rank})
        if path not in self.exports:
            self.exports.append(path)
        self.log(f"exported {path}")
        return path


def train_s2_lora(layout: ExperimentLayout, cfg: LoRATrainConfig, progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None, log=None) -> LoRATrainResult:
    """Train (or continue) a v3/v4 LoRA on ``layout``'s features; see the module docstring. Single process."""
    lines: list[str] = []

    def say(msg: str) -> None:
        lines.append(msg)
        if log is not None:
            log(msg)

    report(progress, 0.0, "SoVITS LoRA training: loading models")
    trainer = LoRATrainer(layout, cfg, log=say)
    dataset = CFMDataset(layout, cfg.version, cfg.split, log=say)
    sampler = BucketBatchSampler(dataset.lengths, cfg.batch_size, boundaries=V3_BOUNDARIES, seed=cfg.sampler_seed)
    steps_per_epoch = len(sampler)
    if steps_per_epoch < 1:
        raise TrainingError("no full batch can be formed; lower the batch size")
    total = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.epochs * steps_per_epoch, cfg.max_steps)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    loss_log = LossLog(trainer.run_dir / "losses.csv", LOSS_COLUMNS)
    loss_log.truncate_after(trainer.global_step)
    trainer.restore_rng()
    eta = Eta(total_steps=total, start_step=trainer.global_step)
    t_start = time.monotonic() - trainer.elapsed_s
    was_cancelled = stopped = False
    last_epoch = trainer.epoch
    done = cfg.max_steps is not None and trainer.global_step >= cfg.max_steps
    while not done and not stopped and not was_cancelled and trainer.epoch <= cfg.epochs:
        epoch = last_epoch = trainer.epoch
        batches = sampler.batches(epoch)[trainer.batch_in_epoch:]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=ListBatchSampler(batches),
                                             collate_fn=_Collate(cfg.version), num_workers=max(0, cfg.num_workers),
                                             generator=torch.Generator())
        for batch in loader:
            losses = trainer.train_step(batch)
            trainer.global_step += 1
            trainer.batch_in_epoch += 1
            trainer.elapsed_s = time.monotonic() - t_start
            step = trainer.global_step
            loss_log.append({"step": step, "epoch": epoch, **losses, "elapsed_s": round(trainer.elapsed_s, 3)})
            report(progress, step / max(1, total), f"epoch {epoch}/{cfg.epochs} step {step}/{total} "
                                                   f"cfm {losses['cfm']:.4f} {Eta.format(eta.seconds_left(step))}")
            if not math.isfinite(losses["cfm"]) and trainer.dtype != torch.float16:
                trainer.save_state()
                raise TrainingError(f"the CFM loss became {losses['cfm']} at step {step} (state saved)")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stopped = True
                break
            if cfg.save_every_steps and step % int(cfg.save_every_steps) == 0:
                trainer.save_state()
            if cancelled(cancel):
                was_cancelled = True
                break
        if stopped or was_cancelled:
            break
        trainer.sched.step()
        trainer.epoch, trainer.batch_in_epoch = epoch + 1, 0
        if epoch % cfg.save_every_epochs == 0 or epoch == cfg.epochs:
            trainer.export(epoch)
            trainer.save_state()
    if stopped:
        trainer.export(last_epoch)
        trainer.save_state()
    elif was_cancelled:
        trainer.save_state()
        say(f"cancelled at step {trainer.global_step}; the state is saved, run again to continue")
    report(progress, 1.0, f"SoVITS LoRA training {'cancelled' if was_cancelled else 'done'} at step "
                          f"{trainer.global_step}")
    return LoRATrainResult(list(trainer.exports), last_epoch, trainer.global_step, loss_log.path, trainer.state_path,
                           was_cancelled, lines)


def main(argv: list[str] | None = None) -> int:
    d = LoRATrainConfig(version="v3", pretrained_s2g="")
    p = argparse.ArgumentParser(prog="python -m gsv_core.finetune.s2_lora_train",
                                description="SoVITS v3/v4 LoRA finetuning on an experiment folder's features")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--version", required=True, choices=CFM_SOVITS_VERSIONS)
    p.add_argument("--pretrained-s2g", required=True, help="s2Gv3.pth / gsv-v4-pretrained/s2Gv4.pth")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--save-every-epochs", type=int, default=d.save_every_epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--precision", default=d.precision, choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--device", default=d.device)
    p.add_argument("--grad-ckpt", action="store_true")
    p.add_argument("--export-dir", default=None)
    p.add_argument("--export-name", default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--split", default="train")
    args = p.parse_args(argv)
    cfg = LoRATrainConfig(version=args.version, pretrained_s2g=args.pretrained_s2g, lora_rank=args.lora_rank,
                          batch_size=args.batch_size, epochs=args.epochs, save_every_epochs=args.save_every_epochs,
                          lr=args.lr, precision=args.precision, device=args.device, grad_ckpt=args.grad_ckpt,
                          export_dir=args.export_dir, export_name=args.export_name, max_steps=args.max_steps,
                          split=None if args.split == "all" else args.split)
    try:
        result = train_s2_lora(ExperimentLayout(Path(args.exp_dir)), cfg, log=lambda m: print(m, flush=True))
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'cancelled' if result.cancelled else 'finished'} at step {result.step}; exports: "
          f"{', '.join(map(str, result.exports)) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
