"""SoVITS (s2) finetuning for v1 / v2 / v2Pro / v2ProPlus, following upstream's ``GPT_SoVITS/s2_train.py``.

One step: the generator's training pass (:meth:`SynthesizerTrn.forward_train`) decodes a random slice of
``segment_size`` samples; the discriminator (MultiPeriodDiscriminator) is updated on real vs detached generated
slices (least-squares loss), then the generator on adversarial + feature-matching + 45 x mel L1 + 1 x KL (+ the
frozen quantizer's commitment loss, 0). Both optimisers are AdamW (lr 1e-4, betas (0.8, 0.99), eps 1e-9, weight
decay 0.01); the text embedding, text encoder and MRTE train at ``lr * text_low_lr_rate``; ``ssl_proj`` and the
quantizer codebook are frozen. ExponentialLR (gamma 0.999875) is stepped once per epoch and, as upstream, once
before the first epoch, so epoch ``e`` runs at ``lr * gamma ** e``. Gradient norms are logged, not clipped.

Files (all written by rank 0 only):

* ``<exp>/s2/state_latest.pt``: everything needed to continue exactly (G with ``enc_q``, D, both optimisers and
  schedulers, the grad scaler, epoch, global step, position inside the epoch, RNG states); tensors and plain data
  only, read back with ``weights_only=True``. Written every ``save_every_epochs`` epochs, every
  ``save_every_steps`` steps if set, at the end, on cancel and when ``max_steps`` is reached. With
  ``save_latest_only=False`` a copy ``state_e{epoch}_s{step}.pt`` is kept at every save too.
* ``<export_dir>/{export_name}_e{epoch}_s{step}.pth``: the official fp16 export (``enc_q`` dropped, version
  header, ``info`` = ``"{epoch}epoch_{step}iteration"``), loadable by the TTS tab; written every
  ``save_every_epochs`` epochs and at the end.
* ``<exp>/s2/losses.csv``: one row per step (loss_g, mel, kl, fm, gen, disc, grad norms, lr).

A run starts from ``state_latest.pt`` when it exists, else from the pretrained G (and D, if given) with
``strict=False`` like upstream (missing/unexpected key counts are logged; ``enc_q`` is missing from exported
weights and starts random).

Command line (one process)::

    python -m gsv_core.finetune.s2_train --exp-dir logs/myvoice --version v2Pro \\
        --pretrained-s2g pretrained/s2Gv2Pro.pth --pretrained-s2d pretrained/s2Dv2Pro.pth

Several GPUs (one process per GPU, NCCL; gloo on CPU), each rank trains on its own shard of every epoch::

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m gsv_core.finetune.s2_train \\
        --exp-dir logs/myvoice --version v2Pro --pretrained-s2g pretrained/s2Gv2Pro.pth

Differences from upstream, all deliberate: mel spectrograms for the loss are computed in float32 even under fp16
autocast; a corrupt feature file stops training with a message naming it instead of being replaced by zeros; the
pretrained D is loaded with ``strict=False`` on every device (upstream's CPU path uses strict loading); a D file
for another version (different number of period discriminators) is refused.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from gsv_core.device import resolve_device as _resolve_device
from gsv_core.checkpoints import load_sovits_checkpoint, load_state_dict_file, save_sovits_checkpoint
from gsv_core.errors import CheckpointError, GSVError
from gsv_core.features.spectrogram import mel_spectrogram, spec_to_mel
from gsv_core.models.s2 import MultiPeriodDiscriminator, build_synthesizer, official_s2_config
from gsv_core.models.s2.configs import S2_VERSIONS
from gsv_core.models.s2.synthesizer import slice_segments

from .common import (CancelFn, DistInfo, Eta, LossLog, ProgressFn, TrainingError, autocast, barrier,
                     broadcast_flag, cancelled, cleanup_distributed, distributed_device, grad_scaler,
                     init_distributed, load_state, report, rng_state, save_state, seed_everything, set_rng_state,
                     training_dtype)
from .layout import ExperimentLayout, disk_guard
from .losses import discriminator_loss, feature_loss, generator_loss, kl_loss, mel_l1
from .s2_data import MIN_ITEMS, AudioParams, BucketBatchSampler, ListBatchSampler, S2Batch, S2Dataset, collate

LogFn = Callable[[str], None]
STATE_NAME = "state_latest.pt"
STATE_FORMAT = "gsv-s2-train-state/1"
LOSS_COLUMNS = ("loss_g", "mel", "kl", "fm", "gen", "disc", "grad_norm_g", "grad_norm_d")
TEXT_MODULES = ("text_embedding", "encoder_text", "mrte")  # enc_p children trained at lr * text_low_lr_rate


@dataclass
class S2TrainConfig:
    version: str
    pretrained_s2g: str | Path
    pretrained_s2d: str | Path | None = None
    batch_size: int = 4
    epochs: int = 8
    save_every_epochs: int = 4
    text_low_lr_rate: float = 0.4
    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    lr_decay: float = 0.999875
    seed: int = 1234
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) / fp32 / fp16 / bf16
    device: str = "auto"
    save_latest_only: bool = True
    export_dir: str | Path | None = None  # default: <exp>/s2/weights
    export_name: str | None = None  # default: the experiment name
    max_steps: int | None = None  # stop (state + export) after this many optimiser steps in total
    save_every_steps: int | None = None  # also save the state every N steps (resume mid-epoch)
    segment_size: int | None = None  # decoded slice in samples; default the config's 20480 (32 frames)
    c_mel: float = 45.0
    c_kl: float = 1.0
    split: str | None = "train"  # names of data/<split>.list; None = every utterance with features
    num_workers: int = 2
    sampler_seed: int = 0  # batches of epoch e are shuffled with seed sampler_seed + e (upstream: 0)
    min_items: int = MIN_ITEMS  # a smaller set is repeated to about this many items per epoch (upstream: 100)


@dataclass
class S2TrainResult:
    exports: list[Path]
    epoch: int  # the last epoch trained in (completed or not)
    step: int  # optimiser steps done in total
    loss_log: Path
    state_path: Path
    cancelled: bool = False
    stopped_at_max_steps: bool = False
    log_lines: list[str] = field(default_factory=list)


class _TrainForward(nn.Module):
    """Puts :meth:`SynthesizerTrn.forward_train` behind ``forward`` so DistributedDataParallel sees the call."""

    def __init__(self, synth: nn.Module, segment_frames: int):
        super().__init__()
        self.synth = synth
        self.segment_frames = segment_frames

    def forward(self, ssl, spec, spec_lengths, text, text_lengths, sv_emb=None):
        return self.synth.forward_train(ssl, spec, spec_lengths, text, text_lengths, sv_emb,
                                        segment_frames=self.segment_frames)


def resolve_device(name: str) -> torch.device:
    try:
        return _resolve_device(name)
    except GSVError as exc:
        raise TrainingError(str(exc)) from None


def _grad_norm(params) -> float:
    norms = [p.grad.detach().float().norm(2) for p in params if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms), 2))


def _plain(obj: Any) -> Any:
    """A config as nested dicts/lists of plain values (weights-only loadable, picklable as HParams later)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


class S2Trainer:
    """Models, optimisers and one training step; :func:`train_s2` runs the epochs around it."""

    def __init__(self, layout: ExperimentLayout, cfg: S2TrainConfig, log: LogFn | None = None,
                 dist_info: DistInfo | None = None):
        if cfg.version not in S2_VERSIONS:
            raise TrainingError(f"SoVITS training supports {', '.join(S2_VERSIONS)}, not {cfg.version!r}")
        for name in ("batch_size", "epochs", "save_every_epochs"):
            if int(getattr(cfg, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, not {getattr(cfg, name)}")
        self.layout = layout
        self.cfg = cfg
        self.log = log or (lambda _msg: None)
        device = resolve_device(cfg.device)
        self.dist = dist_info if dist_info is not None else init_distributed(device)
        self.device = distributed_device(device, self.dist)
        self.dtype = training_dtype(cfg.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        seed_everything(cfg.seed)

        # -- architecture and config from the pretrained generator ---------------------------------------------
        g_path = Path(cfg.pretrained_s2g)
        if not g_path.is_file():
            raise TrainingError(f"pretrained SoVITS generator {g_path} not found: download it (python -m "
                                "gsv_core.download) or choose an existing s2G/exported SoVITS file")
        try:
            ck = load_sovits_checkpoint(g_path)
        except GSVError as exc:
            raise TrainingError(f"pretrained SoVITS generator {g_path}: {exc}") from exc
        if ck.model_version != cfg.version:
            raise TrainingError(
                f"{g_path} is a SoVITS {ck.model_version} model but {cfg.version} training was asked: choose the "
                f"{cfg.version} pretrained generator or set the version to {ck.model_version}")
        self.hps = self._build_hps(ck.config)
        data = self.hps["data"]
        self.audio = AudioParams.from_config(data)
        self.hop = self.audio.hop_length
        self.segment_frames = int(self.hps["train"]["segment_size"]) // self.hop
        if self.segment_frames < 1:
            raise TrainingError(f"segment_size {self.hps['train']['segment_size']} is shorter than one hop "
                                f"({self.hop} samples)")
        self.n_mels = int(data.get("n_mel_channels", 128))
        self.fmin = float(data.get("mel_fmin") or 0.0)
        self.fmax = data.get("mel_fmax")

        try:
            synth = build_synthesizer(self.hps, cfg.version)
        except GSVError as exc:
            raise TrainingError(f"{g_path}: {exc}") from exc
        self.net_g = synth.to(self.device)
        self.net_d = MultiPeriodDiscriminator(cfg.version).to(self.device)
        # frozen: the codebook is buffers only; ssl_proj gets no gradient through the frozen lookup (upstream),
        # marking it makes that explicit and keeps DDP from waiting for it
        for p in self.net_g.ssl_proj.parameters():
            p.requires_grad_(False)

        text_ids = {id(p) for m in TEXT_MODULES for p in getattr(self.net_g.enc_p, m).parameters()}
        base = [p for p in self.net_g.parameters() if id(p) not in text_ids and p.requires_grad]
        low = cfg.lr * cfg.text_low_lr_rate
        groups = [{"params": base, "lr": cfg.lr}] + [
            {"params": list(getattr(self.net_g.enc_p, m).parameters()), "lr": low} for m in TEXT_MODULES]
        self.optim_g = torch.optim.AdamW(groups, cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
        self.optim_d = torch.optim.AdamW(self.net_d.parameters(), cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=cfg.lr_decay, last_epoch=-1)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=cfg.lr_decay, last_epoch=-1)
        self.scaler = grad_scaler(self.device, self.dtype)

        self.epoch = 1  # the epoch to train (1-based)
        self.batch_in_epoch = 0  # batches of that epoch already trained
        self.global_step = 0
        self.elapsed_s = 0.0
        self.exports: list[Path] = []
        self.resumed = False
        self.saved_batch_size: int | None = None
        self.saved_world_size: int | None = None

        state_path = self.state_path
        if state_path.is_file():
            self._resume(load_state(state_path))
        else:
            self._load_pretrained(ck.weight)
            with warnings.catch_warnings():  # upstream's quirk: one scheduler step before training
                warnings.simplefilter("ignore", UserWarning)
                self.sched_g.step()
                self.sched_d.step()
        del ck

        self.g_fwd: nn.Module = _TrainForward(self.net_g, self.segment_frames)
        self.d_fwd: nn.Module = self.net_d
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_fwd = DDP(self.g_fwd, device_ids=ids, find_unused_parameters=True)
            self.d_fwd = DDP(self.net_d, device_ids=ids, find_unused_parameters=True)

    # -- setup helpers ---------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.layout.s2_dir / STATE_NAME

    @property
    def export_dir(self) -> Path:
        return Path(self.cfg.export_dir) if self.cfg.export_dir else self.layout.s2_dir / "weights"

    @property
    def export_name(self) -> str:
        return self.cfg.export_name or self.layout.name

    def _build_hps(self, pretrained_cfg: dict) -> dict:
        """The run's config: model/data from the pretrained file (they describe its weights), train from the
        official defaults and this run's settings."""
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
            "batch_size": cfg.batch_size, "lr_decay": cfg.lr_decay, "c_mel": cfg.c_mel, "c_kl": cfg.c_kl,
            "text_low_lr_rate": cfg.text_low_lr_rate, "seed": cfg.seed,
            "fp16_run": cfg.precision in ("auto", "fp16") and resolve_device(cfg.device).type == "cuda",
            "pretrained_s2G": str(cfg.pretrained_s2g), "pretrained_s2D": str(cfg.pretrained_s2d or ""),
            "if_save_latest": bool(cfg.save_latest_only), "if_save_every_weights": True,
            "save_every_epoch": cfg.save_every_epochs,
        })
        if cfg.segment_size is not None:
            train["segment_size"] = int(cfg.segment_size)
        hps["train"] = train
        hps["model"]["version"] = cfg.version
        hps["data"]["exp_dir"] = str(self.layout.root)
        hps["version"] = cfg.version
        hps["name"] = self.export_name
        hps["s2_ckpt_dir"] = str(self.layout.s2_dir)
        hps["save_weight_dir"] = str(self.export_dir)
        return hps

    def _load_pretrained(self, weight: dict) -> None:
        try:
            res = self.net_g.load_state_dict(weight, strict=False)
        except RuntimeError as exc:
            raise TrainingError(f"{self.cfg.pretrained_s2g}: weights do not fit the {self.cfg.version} model "
                                f"built from their config ({str(exc).splitlines()[-1][:200]})") from exc
        enc_q_missing = sum(k.startswith("enc_q.") for k in res.missing_keys)
        self.log(f"loaded pretrained G {self.cfg.pretrained_s2g}: {len(res.missing_keys)} missing keys "
                 f"({enc_q_missing} of enc_q, which exported weights do not carry), "
                 f"{len(res.unexpected_keys)} unexpected")
        if self.cfg.pretrained_s2d:
            d_path = Path(self.cfg.pretrained_s2d)
            if not d_path.is_file():
                raise TrainingError(f"pretrained discriminator {d_path} not found: download it or leave it empty "
                                    "to start the discriminator from random weights")
            try:
                raw = load_state_dict_file(d_path, "a GPT-SoVITS pretrained discriminator (s2D*.pth)")
            except CheckpointError as exc:
                raise TrainingError(str(exc)) from exc
            d_weight = raw.get("weight", raw)
            if not isinstance(d_weight, dict) or not any(str(k).startswith("discriminators.") for k in d_weight):
                raise TrainingError(f"{d_path} is not a SoVITS discriminator file (no discriminators.* weights)")
            n_file = len({str(k).split(".")[1] for k in d_weight if str(k).startswith("discriminators.")})
            n_ours = len(self.net_d.discriminators)
            if n_file != n_ours:
                raise TrainingError(
                    f"{d_path} has {n_file} discriminators but a {self.cfg.version} discriminator has {n_ours}: "
                    f"it belongs to another version (v1/v2: 6, v2Pro/v2ProPlus: 8); choose the matching s2D file")
            try:
                res = self.net_d.load_state_dict(d_weight, strict=False)
            except RuntimeError as exc:
                raise TrainingError(f"{d_path}: discriminator weights do not fit "
                                    f"({str(exc).splitlines()[-1][:200]})") from exc
            self.log(f"loaded pretrained D {d_path}: {len(res.missing_keys)} missing keys, "
                     f"{len(res.unexpected_keys)} unexpected")
        else:
            warnings.warn("no pretrained discriminator given: the discriminator starts from random weights, which "
                          "makes the first steps of finetuning noisier", stacklevel=3)
            self.log("WARNING: no pretrained discriminator: D starts from random weights")

    def _resume(self, st: dict) -> None:
        path = self.state_path
        if st.get("format") != STATE_FORMAT:
            raise TrainingError(f"{path} is not a SoVITS training state of this program; delete it to start from "
                                "the pretrained weights")
        if st.get("version") != self.cfg.version:
            raise TrainingError(f"{path} continues a SoVITS {st.get('version')} run, but {self.cfg.version} was "
                                f"asked: use version {st.get('version')} or delete {path.name} to start over")
        try:
            self.net_g.load_state_dict(st["generator"])
            self.net_d.load_state_dict(st["discriminator"])
            self.optim_g.load_state_dict(st["optim_g"])
            self.optim_d.load_state_dict(st["optim_d"])
            self.sched_g.load_state_dict(st["sched_g"])
            self.sched_d.load_state_dict(st["sched_d"])
            self.scaler.load_state_dict(st["scaler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise TrainingError(f"{path} does not fit this model ({type(exc).__name__}: {str(exc)[:200]}); it was "
                                f"written for another architecture: delete it to start from the pretrained "
                                f"weights") from exc
        self.epoch = int(st["epoch"])
        self.batch_in_epoch = int(st["batch_in_epoch"])
        self.global_step = int(st["global_step"])
        self.elapsed_s = float(st.get("elapsed_s", 0.0))
        self.exports = [Path(p) for p in st.get("exports", [])]
        self.saved_batch_size = int(st.get("batch_size", self.cfg.batch_size))
        self.saved_world_size = int(st.get("world_size", self.dist.world_size))
        self._pending_rng = st["rng"]
        self.resumed = True
        self.log(f"resumed from {path}: epoch {self.epoch}, {self.batch_in_epoch} batches into it, "
                 f"step {self.global_step}")

    def restore_rng(self) -> None:
        """Put back the RNG states of a resumed run (called once the data pipeline is built)."""
        state = getattr(self, "_pending_rng", None)
        if state is not None:
            set_rng_state(state)
            self._pending_rng = None

    # -- one step ----------------------------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        return float(self.optim_g.param_groups[0]["lr"])

    def train_step(self, batch: S2Batch) -> dict[str, float]:
        self.net_g.train()
        self.net_d.train()
        b = batch.to(self.device)
        a, seg = self.audio, self.segment_frames
        with autocast(self.device, self.dtype):
            y_hat, commit, ids, _, z_mask, (_z, z_p, m_p, logs_p, _m_q, logs_q), _ = self.g_fwd(
                b.ssl, b.spec, b.spec_lengths, b.text, b.text_lengths, b.sv_emb)
        with torch.no_grad():
            mel = spec_to_mel(b.spec.float(), a.filter_length, self.n_mels, a.sampling_rate, self.fmin, self.fmax)
            y_mel = slice_segments(mel, ids, seg)
        y_hat_mel = mel_spectrogram(y_hat.squeeze(1).float(), a.filter_length, self.n_mels, a.sampling_rate,
                                    a.hop_length, a.win_length, self.fmin, self.fmax)
        y_real = slice_segments(b.wav, ids * a.hop_length, seg * a.hop_length)

        # discriminator
        with autocast(self.device, self.dtype):
            d_real, d_fake, _, _ = self.d_fwd(y_real, y_hat.detach())
        loss_disc, _, _ = discriminator_loss(d_real, d_fake)
        self.optim_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss_disc).backward()
        self.scaler.unscale_(self.optim_d)
        grad_norm_d = _grad_norm(self.net_d.parameters())
        self.scaler.step(self.optim_d)

        # generator
        with autocast(self.device, self.dtype):
            d_real, d_fake, fmap_r, fmap_g = self.d_fwd(y_real, y_hat)
        loss_mel = mel_l1(y_mel, y_hat_mel) * self.cfg.c_mel
        loss_kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask) * self.cfg.c_kl
        loss_fm = feature_loss(fmap_r, fmap_g)
        loss_gen, _ = generator_loss(d_fake)
        loss_g = loss_gen + loss_fm + loss_mel + commit.float() + loss_kl
        self.optim_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.unscale_(self.optim_g)
        grad_norm_g = _grad_norm(self.net_g.parameters())
        self.scaler.step(self.optim_g)
        self.scaler.update()

        values = torch.stack([t.detach().float() for t in (loss_g, loss_mel, loss_kl, loss_fm, loss_gen, loss_disc)])
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(values)
            values /= self.dist.world_size
        out = dict(zip(LOSS_COLUMNS[:6], (float(v) for v in values.cpu())))
        out["grad_norm_g"], out["grad_norm_d"] = grad_norm_g, grad_norm_d
        return out

    # -- saving ------------------------------------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": self.cfg.version,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "batch_size": self.cfg.batch_size,
            "world_size": self.dist.world_size,
            "elapsed_s": self.elapsed_s,
            "generator": {k: v.detach().cpu() for k, v in self.net_g.state_dict().items()},
            "discriminator": {k: v.detach().cpu() for k, v in self.net_d.state_dict().items()},
            "optim_g": self.optim_g.state_dict(),
            "optim_d": self.optim_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "config": _plain(self.hps),
            "exports": [str(p) for p in self.exports],
        }

    def save_state(self) -> Path | None:
        if not self.dist.is_main:
            return None
        state = self.training_state()
        path = save_state(self.state_path, state)
        if not self.cfg.save_latest_only:
            save_state(self.layout.s2_dir / f"state_e{self.epoch}_s{self.global_step}.pt", state)
        return path

    def export(self, epoch: int) -> Path | None:
        if not self.dist.is_main:
            return None
        path = self.export_dir / f"{self.export_name}_e{epoch}_s{self.global_step}.pth"
        with disk_guard(f"writing the SoVITS export {path.name}"):
            self.export_dir.mkdir(parents=True, exist_ok=True)
            save_sovits_checkpoint(path, self.net_g.state_dict(), self.hps, f"{epoch}epoch_{self.global_step}iteration",
                                   self.cfg.version)
        if path not in self.exports:
            self.exports.append(path)
        self.log(f"exported {path}")
        return path


def train_s2(layout: ExperimentLayout, cfg: S2TrainConfig, progress: ProgressFn | None = None,
             cancel: CancelFn | None = None, log: LogFn | None = None) -> S2TrainResult:
    """Train (or continue training) the SoVITS model of ``layout``; see the module docstring."""
    lines: list[str] = []
    is_main = int(os.environ.get("RANK", "0")) == 0

    def say(msg: str) -> None:
        lines.append(msg)
        if log is not None and is_main:
            log(msg)

    report(progress, 0.0, "SoVITS training: loading models")
    trainer = S2Trainer(layout, cfg, log=say)
    info = trainer.dist

    dataset = S2Dataset(layout, cfg.version, trainer.audio, split=cfg.split, log=say, min_items=cfg.min_items)
    sampler = BucketBatchSampler(dataset.lengths, cfg.batch_size, num_replicas=info.world_size, rank=info.rank,
                                 seed=cfg.sampler_seed)
    steps_per_epoch = len(sampler)
    if steps_per_epoch < 1:
        raise TrainingError("no full batch can be formed; lower the batch size")
    say(f"{len(dataset.unique_names)} utterances ({len(dataset)} items per epoch), {steps_per_epoch} steps per "
        f"epoch on each of {info.world_size} process(es), batch size {cfg.batch_size}, device {trainer.device}, "
        f"{str(trainer.dtype).replace('torch.', '')}")
    if trainer.resumed and trainer.batch_in_epoch and (
            trainer.saved_batch_size != cfg.batch_size or trainer.saved_world_size != info.world_size):
        say(f"batch size or process count changed since the saved state: epoch {trainer.epoch} restarts from its "
            "first batch")
        trainer.batch_in_epoch = 0
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, int(cfg.max_steps))

    loss_log = LossLog(layout.s2_dir / "losses.csv", LOSS_COLUMNS)
    if info.is_main:
        layout.s2_dir.mkdir(parents=True, exist_ok=True)
        loss_log.truncate_after(trainer.global_step)
    barrier(info)
    trainer.restore_rng()

    eta = Eta(total_steps=total_steps, start_step=trainer.global_step)
    t_start = time.monotonic() - trainer.elapsed_s
    was_cancelled = stopped = False
    last_epoch = trainer.epoch
    bar = None
    if info.is_main and progress is None and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=min(trainer.global_step, total_steps), desc="s2", unit="step")

    def stop_now() -> bool:
        return broadcast_flag(cancelled(cancel) if info.is_main else False, info)

    done_before = cfg.max_steps is not None and trainer.global_step >= cfg.max_steps
    if done_before:
        say(f"already at step {trainer.global_step} >= max_steps {cfg.max_steps}: nothing to do")
    if trainer.epoch > cfg.epochs:
        say(f"training already finished ({cfg.epochs} epochs)")

    while not done_before and not stopped and not was_cancelled and trainer.epoch <= cfg.epochs:
        epoch = last_epoch = trainer.epoch
        batches = sampler.batches(epoch)
        skip = trainer.batch_in_epoch
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=ListBatchSampler(batches[skip:]), collate_fn=collate,
            num_workers=max(0, int(cfg.num_workers)), pin_memory=trainer.device.type == "cuda",
            generator=torch.Generator())  # its own generator: the loader must not draw from the training RNG
        for batch in loader:
            losses = trainer.train_step(batch)
            trainer.global_step += 1
            trainer.batch_in_epoch += 1
            trainer.elapsed_s = time.monotonic() - t_start
            step = trainer.global_step
            if info.is_main:
                loss_log.append({"step": step, "epoch": epoch, **losses, "lr": trainer.lr,
                                 "elapsed_s": round(trainer.elapsed_s, 3)})
                msg = (f"epoch {epoch}/{cfg.epochs} step {step}/{total_steps} mel {losses['mel']:.3f} "
                       f"kl {losses['kl']:.3f} g {losses['loss_g']:.3f} d {losses['disc']:.3f} "
                       f"{Eta.format(eta.seconds_left(step))}")
                report(progress, step / max(1, total_steps), msg)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(mel=f"{losses['mel']:.3f}", d=f"{losses['disc']:.3f}")
            if not math.isfinite(losses["loss_g"]) and trainer.dtype != torch.float16:
                trainer.save_state()
                raise TrainingError(f"the generator loss became {losses['loss_g']} at step {step}: lower the "
                                    "learning rate or check the training data (state saved)")
            if cfg.max_steps is not None and step >= cfg.max_steps:
                stopped = True
                break
            if cfg.save_every_steps and step % int(cfg.save_every_steps) == 0:
                trainer.save_state()
            if stop_now():
                was_cancelled = True
                break
        if stopped or was_cancelled:
            break
        # a full epoch is done: decay the lr, move to the next epoch, save on schedule
        trainer.sched_g.step()
        trainer.sched_d.step()
        trainer.epoch = epoch + 1
        trainer.batch_in_epoch = 0
        if epoch % cfg.save_every_epochs == 0 or epoch == cfg.epochs:
            trainer.export(epoch)
            trainer.save_state()
            barrier(info)
        if stop_now():
            was_cancelled = True

    if stopped:
        trainer.export(last_epoch)
        trainer.save_state()
    elif was_cancelled:
        trainer.save_state()
        say(f"cancelled at step {trainer.global_step}; the state is saved, run again to continue")
    barrier(info)
    if bar is not None:
        bar.close()
    report(progress, 1.0, f"SoVITS training {'cancelled' if was_cancelled else 'done'} at step "
                          f"{trainer.global_step}")
    return S2TrainResult(exports=list(trainer.exports), epoch=last_epoch, step=trainer.global_step,
                         loss_log=loss_log.path, state_path=trainer.state_path, cancelled=was_cancelled,
                         stopped_at_max_steps=stopped, log_lines=lines)


# -- command line ------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    d = S2TrainConfig(version="v2Pro", pretrained_s2g="")
    p = argparse.ArgumentParser(prog="python -m gsv_core.finetune.s2_train",
                                description="SoVITS (s2) finetuning on an experiment folder's features")
    p.add_argument("--exp-dir", required=True, help="experiment folder (holds 2-name2text.txt, 4-cnhubert, ...)")
    p.add_argument("--version", required=True, choices=S2_VERSIONS)
    p.add_argument("--pretrained-s2g", required=True, help="pretrained (or exported) SoVITS generator .pth")
    p.add_argument("--pretrained-s2d", default=None, help="pretrained discriminator s2D*.pth (optional)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--save-every-epochs", type=int, default=d.save_every_epochs)
    p.add_argument("--text-low-lr-rate", type=float, default=d.text_low_lr_rate)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-decay", type=float, default=d.lr_decay)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--precision", default=d.precision, choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--device", default=d.device)
    p.add_argument("--keep-all-states", action="store_true", help="keep a state file per save (default: latest)")
    p.add_argument("--export-dir", default=None, help="where exported weights go (default <exp>/s2/weights)")
    p.add_argument("--export-name", default=None, help="export file prefix (default: the experiment name)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--save-every-steps", type=int, default=None)
    p.add_argument("--segment-size", type=int, default=None, help="decoded slice in samples (default 20480)")
    p.add_argument("--split", default="train", help="train/val/test list to use, or 'all' (default train)")
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    layout = ExperimentLayout(Path(args.exp_dir))
    cfg = S2TrainConfig(
        version=args.version, pretrained_s2g=args.pretrained_s2g, pretrained_s2d=args.pretrained_s2d,
        batch_size=args.batch_size, epochs=args.epochs, save_every_epochs=args.save_every_epochs,
        text_low_lr_rate=args.text_low_lr_rate, lr=args.lr, lr_decay=args.lr_decay, seed=args.seed,
        precision=args.precision, device=args.device, save_latest_only=not args.keep_all_states,
        export_dir=args.export_dir, export_name=args.export_name, max_steps=args.max_steps,
        save_every_steps=args.save_every_steps, segment_size=args.segment_size,
        split=None if args.split == "all" else args.split, num_workers=args.num_workers)
    try:
        result = train_s2(layout, cfg, log=lambda m: print(m, flush=True))
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            cleanup_distributed(DistInfo(world_size=int(os.environ.get("WORLD_SIZE", "1"))))
    if not _quiet_rank():
        state = "cancelled" if result.cancelled else "finished"
        print(f"{state} at epoch {result.epoch}, step {result.step}; exports: "
              f"{', '.join(str(p) for p in result.exports) or 'none'}; losses: {result.loss_log}", flush=True)
    return 0


def _quiet_rank() -> bool:
    return int(os.environ.get("RANK", "0")) != 0


if __name__ == "__main__":
    from gsv_core.finetune.common import exit_process

    exit_process(main())
