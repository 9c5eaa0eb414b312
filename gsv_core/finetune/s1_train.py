"""GPT (s1) finetuning, full or LoRA, with upstream's loss, optimiser, schedule and step rule (gsv-spec §5.2).

Run in process (``train_s1(layout, cfg, progress, cancel, log)``) or from the command line, also under torchrun::

    python -m gsv_core.finetune.s1_train --exp-dir logs/NAME --pretrained-s1 s1v3.ckpt [--lora]
    python -m torch.distributed.run --nproc_per_node 2 -m gsv_core.finetune.s1_train --exp-dir ... --pretrained-s1 ...

Upstream's rules kept: the summed cross-entropy, backward on every batch and an optimiser step when the batch index
within the epoch is > 0 and divisible by 4 (the first step of an epoch therefore sums five batches; gradients left
at the end of an epoch carry into the next), ScaledAdam at 0.01 for the first step and 0.002 after (the schedule's
lock), batches bucketed by duration with seed 0 + epoch, ``seed_everything(1234)``, exports as fp16
``{name}-e{epoch}.ckpt``. The training state (``s1/state_latest.pt``) is weights-only and holds what an exact resume
needs: weights (or LoRA adapters), optimiser, schedule, scaler, epoch, batch position, pending gradients and RNG.

DPO (upstream's ``if_dpo``, :mod:`.dpo`): the summed cross-entropy plus a reference-free DPO term against a
corrupted copy of each item's tokens (a span repeated or skipped), with the batch size halved as upstream does.

LoRA (our extension; upstream trains the whole GPT): adapters on the fused q/k/v projection, ``out_proj``,
``linear1`` and ``linear2`` of every layer through peft; only they train, with AdamW at ``lora_lr`` (ScaledAdam
scales each step by the tensor's rms, so a LoRA ``B`` initialised to zero would never move). Exports merge the
adapters into the base weights and are ordinary official GPT files.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.utils.data import DataLoader

from gsv_core.device import resolve_device
from gsv_core.errors import GSVError
from gsv_core.checkpoints import load_gpt_checkpoint, save_gpt_checkpoint
from gsv_core.models.s1 import Text2Semantic
from .common import (DistInfo, Eta, LossLog, TrainingError, all_reduce_mean, autocast, barrier, broadcast_flag,
                     cancelled, cleanup_distributed, distributed_device, grad_scaler, init_distributed, load_state,
                     report, rng_state, save_state, seed_everything, set_rng_state, training_dtype)
from .layout import ExperimentLayout, disk_guard
from .optim import LOCKED_LR, ScaledAdam, WarmupCosineSchedule
from .s1_data import BucketBatches, S1Dataset, collate, effective_batch_size

LogFn = Callable[[str], None]
STATE_VERSION = 1
STEP_EVERY = 4  # upstream: optimiser step when batch_idx > 0 and batch_idx % 4 == 0
DEFAULT_LORA_TARGETS = ("self_attn.in_proj_weight", "out_proj", "linear1", "linear2")
#: s1longer-v2.yaml's optimiser section (used where a pretrained file's config lacks one)
YAML_OPTIMIZER = {"lr": 0.01, "lr_init": 0.00001, "lr_end": 0.0001, "warmup_steps": 2000, "decay_steps": 40000}


@dataclass
class S1TrainConfig:
    pretrained_s1: str
    batch_size: int = 8
    epochs: int = 15
    save_every_epochs: int = 5
    precision: str = "auto"  # auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    device: str = "auto"
    seed: int = 1234
    split: Optional[str] = "train"  # None / "all": every utterance with features
    lora: bool = False
    lora_rank: int = 32
    lora_alpha: Optional[float] = None  # None: equal to the rank (scaling 1)
    lora_lr: float = 2e-4
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    dpo: bool = False  # upstream's if_dpo: add the DPO loss (rejected = a span repeated or skipped); halves the batch
    save_latest_only: bool = True  # False: also keep state_e{epoch}.pt at every save
    export_dir: Optional[str] = None  # default: <experiment>/s1/weights
    export_name: Optional[str] = None  # default: the experiment name
    max_steps: Optional[int] = None  # stop after this many batches in total (tests, smoke runs)
    save_every_steps: Optional[int] = None  # also save the state every N batches (mid-epoch resume)
    resume: bool = True
    text_padding: str = "upstream"  # "upstream" reproduces the left-pad text mask on right-padded phones
    num_workers: int = 0

    def validate(self) -> None:
        if not self.pretrained_s1:
            raise TrainingError("no pretrained GPT (s1) file given: choose e.g. s1v3.ckpt")
        for name in ("batch_size", "epochs", "save_every_epochs"):
            if int(getattr(self, name)) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lora and self.lora_rank < 1:
            raise TrainingError(f"lora_rank must be at least 1, got {self.lora_rank}")
        if self.text_padding not in ("upstream", "right"):
            raise TrainingError(f"text_padding must be 'upstream' or 'right', got {self.text_padding!r}")


@dataclass
class S1TrainResult:
    exports: list[Path] = field(default_factory=list)
    state_path: Optional[Path] = None
    epochs_done: int = 0
    steps: int = 0  # batches processed in total (the loss log's step)
    optimizer_steps: int = 0
    cancelled: bool = False
    last_loss: Optional[float] = None
    data: dict = field(default_factory=dict)


class _TrainStep(torch.nn.Module):
    """What DDP wraps: its forward is the model's training forward, so gradient hooks fire."""

    def __init__(self, model: torch.nn.Module, text_padding: str, dpo: bool = False):
        super().__init__()
        self.model = model
        self.text_padding = text_padding
        self.dpo = dpo

    def forward(self, phones, phone_lens, tokens, token_lens, bert):
        """(loss, accuracy, DPO term or 0)."""
        if self.dpo:
            from .dpo import forward_train_dpo

            return forward_train_dpo(self.model, phones, phone_lens, tokens, token_lens, bert, self.text_padding)
        loss, acc = self.model.forward_train(phones, phone_lens, tokens, token_lens, bert, self.text_padding)
        return loss, acc, torch.zeros((), device=loss.device)


# -- LoRA ------------------------------------------------------------------------------------------------------------

def add_lora(model: Text2Semantic, rank: int, alpha: Optional[float], targets: tuple[str, ...]) -> torch.nn.Module:
    """Inject peft LoRA adapters in place; everything else is frozen. Returns the model."""
    try:
        from peft import LoraConfig
        from peft.tuners.lora import LoraModel
    except ImportError as exc:  # pragma: no cover - peft is a dependency
        raise TrainingError("LoRA training needs the 'peft' package (pip install peft==0.21.2)") from exc
    modules = [t for t in targets if "." not in t]
    parameters = [t for t in targets if "." in t]
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else rank),
                        target_modules=modules, target_parameters=parameters or None, lora_dropout=0.0,
                        init_lora_weights=True)
    LoraModel(model, config, "default")  # injects into `model` and freezes the base weights
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainingError(f"no LoRA adapter was created for targets {list(targets)}")
    return model


def is_lora(model: torch.nn.Module) -> bool:
    return any("lora_" in n for n, _ in model.named_parameters())


def merged_state_dict(model: torch.nn.Module, key_order: list[str]) -> "dict[str, torch.Tensor]":
    """The model's weights under the official keys, LoRA deltas added to their base weights (float32, CPU);
    nothing in ``model`` is modified."""
    from peft.tuners.lora.layer import LoraLayer, ParamWrapper

    raw = {k: v.detach().float().cpu() for k, v in model.state_dict().items() if "lora_" not in k}
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, LoraLayer) or "default" not in module.lora_A:
                continue
            param = module.parameter_name if isinstance(module, ParamWrapper) else "weight"
            key = f"{name}.base_layer.{param}"
            raw[key] = raw[key] + module.get_delta_weight("default").detach().float().cpu()
    clean = {k.replace(".base_layer", ""): v for k, v in raw.items()}
    if set(clean) != set(key_order):
        extra, missing = sorted(set(clean) - set(key_order)), sorted(set(key_order) - set(clean))
        raise TrainingError(f"merged GPT weights do not match the official keys (extra {extra[:3]}, missing "
                            f"{missing[:3]})")
    return {k: clean[k] for k in key_order}


def trainable_state(model: torch.nn.Module) -> "dict[str, torch.Tensor]":
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


# -- export ----------------------------------------------------------------------------------------------------------

def export_config(base: dict[str, Any], cfg: S1TrainConfig, layout: ExperimentLayout, export_dir: Path,
                  name: str, precision: str) -> dict[str, Any]:
    """The config dict an upstream export stores: the training yaml with the WebUI's additions; the model section
    is the pretrained file's (it describes these weights)."""
    config = copy.deepcopy(dict(base))
    train = dict(config.get("train") or {})
    train.update({"seed": cfg.seed, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                  "save_every_n_epoch": cfg.save_every_epochs, "precision": precision,
                  "gradient_clip": train.get("gradient_clip", 1.0), "if_save_latest": cfg.save_latest_only,
                  "if_save_every_weights": True, "if_dpo": bool(cfg.dpo), "half_weights_save_dir": str(export_dir),
                  "exp_name": name})
    config["train"] = train
    config["optimizer"] = {**YAML_OPTIMIZER, **dict(config.get("optimizer") or {})}
    data = {"max_eval_sample": 8, "max_sec": 54, "num_workers": 4, "pad_val": 1024}
    data.update(dict(config.get("data") or {}))
    config["data"] = data
    config.setdefault("inference", {"top_k": 15})
    config["pretrained_s1"] = str(cfg.pretrained_s1)
    config["train_semantic_path"] = str(layout.name2semantic)
    config["train_phoneme_path"] = str(layout.name2text)
    config["output_dir"] = str(layout.s1_dir)
    return config


# -- the trainer -----------------------------------------------------------------------------------------------------

def _device(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except GSVError as exc:
        raise TrainingError(str(exc)) from None


def _signature(cfg: S1TrainConfig, data_items: int, batch: int) -> dict[str, Any]:
    return {"lora": bool(cfg.lora), "lora_rank": int(cfg.lora_rank) if cfg.lora else 0,
            **({"dpo": True} if cfg.dpo else {}),  # absent without DPO: states saved before DPO existed still resume
            "lora_targets": list(cfg.lora_targets) if cfg.lora else [], "items": int(data_items),
            "batch_size": int(batch), "pretrained_s1": os.path.basename(str(cfg.pretrained_s1))}


def train_s1(layout: ExperimentLayout, cfg: S1TrainConfig, progress=None, cancel=None,
             log: Optional[LogFn] = None) -> S1TrainResult:
    cfg.validate()
    device = _device(cfg.device)
    dist_info = init_distributed(device)
    try:
        return _train(layout, cfg, dist_info, distributed_device(device, dist_info), progress, cancel, log)
    finally:
        cleanup_distributed(dist_info)


def _train(layout: ExperimentLayout, cfg: S1TrainConfig, info: DistInfo, device: torch.device, progress, cancel,
           log: Optional[LogFn]) -> S1TrainResult:
    say = (log if (log is not None and info.is_main) else (lambda _m: None))
    dtype = training_dtype(cfg.precision, device)
    seed_everything(cfg.seed)
    ck = load_gpt_checkpoint(cfg.pretrained_s1)
    key_order = list(ck.model_state_dict().keys())
    model = Text2Semantic.from_checkpoint(ck, device=device, dtype=torch.float32)
    model.train()
    max_sec = float((ck.config.get("data") or {}).get("max_sec", 54))
    dataset = S1Dataset(layout, None if cfg.split in (None, "all") else cfg.split, ck.symbol_version, max_sec,
                        log=say)
    # upstream halves the batch under DPO (every item runs twice: chosen and rejected)
    batch_size = effective_batch_size(cfg.batch_size // 2 if cfg.dpo else cfg.batch_size, len(dataset))
    batches = BucketBatches([dataset.seconds(i) for i in range(len(dataset))], batch_size, info.world_size,
                            info.rank, seed=0)
    per_epoch = len(batches)

    if cfg.lora:
        add_lora(model, cfg.lora_rank, cfg.lora_alpha, tuple(cfg.lora_targets))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lora_lr, betas=(0.9, 0.95), weight_decay=0.0)
        schedule = WarmupCosineSchedule(optimizer, lock_lr=cfg.lora_lr)
    else:
        opt_cfg = {**YAML_OPTIMIZER, **dict(ck.config.get("optimizer") or {})}
        optimizer = ScaledAdam(model.parameters(), lr=0.01, betas=(0.9, 0.95), clipping_scale=2.0,
                               clipping_update_period=1000)
        schedule = WarmupCosineSchedule(optimizer, init_lr=opt_cfg["lr_init"], peak_lr=opt_cfg["lr"],
                                        end_lr=opt_cfg["lr_end"], warmup_steps=opt_cfg["warmup_steps"],
                                        total_steps=opt_cfg["decay_steps"], lock_lr=LOCKED_LR)
    scaler = grad_scaler(device, dtype)
    signature = _signature(cfg, len(dataset), batch_size)
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}

    s1_dir = layout.s1_dir
    state_path = s1_dir / "state_latest.pt"
    losses = LossLog(s1_dir / "losses.csv", ["loss", "loss_per_token", "acc"] + (["dpo"] if cfg.dpo else []))
    export_dir = Path(cfg.export_dir) if cfg.export_dir else s1_dir / "weights"
    export_name = cfg.export_name or layout.name
    epoch, batch_pos, step, opt_steps, elapsed_before = 0, 0, 0, 0, 0.0
    if cfg.resume and state_path.is_file():
        state = load_state(state_path)
        if state.get("version") != STATE_VERSION or state.get("signature") != signature:
            raise TrainingError(
                f"{state_path} was written by a different GPT training setup ({state.get('signature')} vs "
                f"{signature}): delete it to start again from the pretrained weights, or use the same settings")
        missing = [n for n in trained if n not in state["weights"]]
        if missing:
            raise TrainingError(f"{state_path} lacks weights {missing[:3]}: delete it to start again")
        with torch.no_grad():
            for n, p in trained.items():
                p.copy_(state["weights"][n].to(p.device, p.dtype))
                pending = state.get("grads", {}).get(n)
                p.grad = None if pending is None else pending.to(p.device, p.dtype)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        epoch, batch_pos, step, opt_steps = (int(state[k]) for k in ("epoch", "batch", "step", "optimizer_steps"))
        elapsed_before = float(state.get("elapsed_s", 0.0))
        set_rng_state(state["rng"])
        say(f"resuming GPT training at epoch {epoch + 1}, batch {batch_pos + 1}, step {step}")
    if info.is_main:
        losses.truncate_after(step)

    wrapped: torch.nn.Module = _TrainStep(model, cfg.text_padding, bool(cfg.dpo))
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        wrapped = DDP(wrapped, device_ids=[device.index] if device.type == "cuda" else None)

    total = cfg.epochs * per_epoch
    if cfg.max_steps is not None:
        total = min(total, int(cfg.max_steps))
    eta = Eta(total_steps=total, start_step=step)
    result = S1TrainResult(state_path=state_path, steps=step, optimizer_steps=opt_steps, epochs_done=epoch,
                           data=dataset.report.as_dict())
    precision_name = {torch.float16: "16-mixed", torch.bfloat16: "bf16-mixed"}.get(dtype, "32")

    def save(epoch_: int, batch_: int, elapsed: float, keep_copy: bool = False) -> None:
        if not info.is_main:
            return
        state = {"version": STATE_VERSION, "signature": signature, "weights": trainable_state(model),
                 "grads": {n: p.grad.detach().cpu().clone() for n, p in trained.items() if p.grad is not None},
                 "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                 "scaler": scaler.state_dict() if scaler.is_enabled() else {}, "epoch": epoch_, "batch": batch_,
                 "step": step, "optimizer_steps": opt_steps, "elapsed_s": float(elapsed_before + elapsed),
                 "rng": rng_state(), "config": _plain(asdict(cfg))}
        save_state(state_path, state)
        if keep_copy and not cfg.save_latest_only:
            with disk_guard("copying the training state"):
                shutil.copyfile(state_path, s1_dir / f"state_e{epoch_}.pt")

    def export(epoch_number: int) -> None:
        if not info.is_main:
            return
        if cfg.lora:
            weights = merged_state_dict(model, key_order)
        else:
            own = model.state_dict()
            weights = {k: own[k].detach().float().cpu() for k in key_order}
        config = export_config(ck.config, cfg, layout, export_dir, export_name, precision_name)
        path = export_dir / f"{export_name}-e{epoch_number}.ckpt"
        with disk_guard("exporting GPT weights"):
            save_gpt_checkpoint(path, weights, config, f"GPT-e{epoch_number}")
        result.exports.append(path)
        say(f"exported {path}")

    say(f"GPT training: {len(dataset)} items, batch size {batch_size}, {per_epoch} batches per epoch on "
        f"{info.world_size} process(es), {device.type} {str(dtype).replace('torch.', '')}"
        + (f", LoRA rank {cfg.lora_rank}" if cfg.lora else "") + (", DPO" if cfg.dpo else ""))
    bar = None
    if info.is_main and progress is None and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=total, initial=min(step, total), unit="batch", desc="GPT")
    stop_reason: Optional[str] = None
    started = time.monotonic()
    try:
        while epoch < cfg.epochs:
            todo = batches.batches(epoch)[batch_pos:]
            # its own generator: creating an iterator must not draw from the global RNG (exact resume)
            loader = DataLoader(dataset, batch_sampler=todo, collate_fn=collate, num_workers=cfg.num_workers,
                                generator=torch.Generator())
            finished_epoch = False
            for offset, batch in enumerate(loader):
                index = batch_pos + offset
                # DDP averages gradients on every backward (as Lightning's manual optimisation does), so pending
                # accumulated gradients are identical on every rank and rank 0's copy resumes them exactly
                with autocast(device, dtype):
                    loss, acc, dpo_term = wrapped(batch["phones"].to(device), batch["phone_lens"].to(device),
                                        batch["tokens"].to(device), batch["token_lens"].to(device),
                                        batch["bert"].to(device))
                scaler.scale(loss).backward()
                if index > 0 and index % STEP_EVERY == 0:
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    schedule.step()
                    opt_steps += 1
                step += 1
                scored = float(batch["tokens"].shape[0] * (int(batch["token_lens"].max()) + 1))
                loss_v = all_reduce_mean(float(loss.detach()), info)
                acc_v = all_reduce_mean(float(acc), info)
                dpo_v = all_reduce_mean(float(dpo_term), info)
                per_token = all_reduce_mean((float(loss.detach()) - float(dpo_term)) / scored, info)  # the CE part
                result.last_loss = loss_v
                if info.is_main:
                    losses.append({"step": step, "epoch": epoch + 1, "loss": loss_v, "loss_per_token": per_token,
                                   "acc": acc_v, "dpo": dpo_v, "lr": optimizer.param_groups[0]["lr"],
                                   "elapsed_s": round(elapsed_before + time.monotonic() - started, 2)})
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss_v:.1f}", acc=f"{acc_v:.3f}")
                report(progress, step / max(1, total),
                       f"GPT epoch {epoch + 1}/{cfg.epochs}, batch {index + 1}/{per_epoch}, loss {loss_v:.2f}, "
                       f"top-3 acc {acc_v:.3f}, {Eta.format(eta.seconds_left(step))}")
                if broadcast_flag(cancelled(cancel) if info.is_main else False, info):
                    stop_reason = "cancel"
                elif cfg.max_steps is not None and step >= cfg.max_steps:
                    stop_reason = "max_steps"
                if index + 1 == per_epoch:
                    finished_epoch = True
                    break
                if stop_reason is not None:
                    save(epoch, index + 1, time.monotonic() - started)
                    barrier(info)
                    break
                if cfg.save_every_steps and step % int(cfg.save_every_steps) == 0:
                    save(epoch, index + 1, time.monotonic() - started)
                    barrier(info)
            if not finished_epoch:
                break
            epoch += 1
            batch_pos = 0
            if epoch % cfg.save_every_epochs == 0 or epoch == cfg.epochs:
                save(epoch, 0, time.monotonic() - started, keep_copy=True)
                export(epoch)
            elif stop_reason is not None:
                save(epoch, 0, time.monotonic() - started)
            barrier(info)
            if stop_reason is not None:
                break
    finally:
        if bar is not None:
            bar.close()
    result.cancelled = stop_reason == "cancel"
    result.steps, result.optimizer_steps, result.epochs_done = step, opt_steps, epoch
    if result.cancelled:
        say(f"GPT training stopped at step {step}; the state is saved in {state_path}, run again to continue")
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# -- CLI -------------------------------------------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gsv_core.finetune.s1_train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--exp-dir", required=True, help="the experiment folder (holds 2-name2text.txt, ...)")
    ap.add_argument("--pretrained-s1", required=True, help="pretrained GPT .ckpt to start from")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--save-every", type=int, default=5, help="save state and export every N epochs")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--split", default="train", help="train | val | test | all")
    ap.add_argument("--lora", action="store_true", help="train LoRA adapters instead of the whole GPT")
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--lora-alpha", type=float, default=None)
    ap.add_argument("--lora-lr", type=float, default=2e-4)
    ap.add_argument("--dpo", action="store_true", help="add upstream's DPO loss (halves the batch size)")
    ap.add_argument("--keep-all-states", action="store_true", help="also keep state_e<epoch>.pt at every save")
    ap.add_argument("--export-dir", default=None)
    ap.add_argument("--export-name", default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--save-every-steps", type=int, default=None)
    ap.add_argument("--no-resume", action="store_true", help="ignore an existing state_latest.pt")
    ap.add_argument("--text-padding", default="upstream", choices=["upstream", "right"])
    ap.add_argument("--num-workers", type=int, default=0)
    args = ap.parse_args(argv)
    from gsv_core.errors import GSVError

    cfg = S1TrainConfig(pretrained_s1=args.pretrained_s1, batch_size=args.batch_size, epochs=args.epochs,
                        save_every_epochs=args.save_every, precision=args.precision, device=args.device,
                        seed=args.seed, split=None if args.split == "all" else args.split, lora=args.lora,
                        lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lora_lr=args.lora_lr, dpo=args.dpo,
                        save_latest_only=not args.keep_all_states, export_dir=args.export_dir,
                        export_name=args.export_name, max_steps=args.max_steps,
                        save_every_steps=args.save_every_steps, resume=not args.no_resume,
                        text_padding=args.text_padding, num_workers=args.num_workers)
    try:
        result = train_s1(ExperimentLayout(Path(args.exp_dir)), cfg, log=lambda m: print(m, flush=True))
    except GSVError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        for path in result.exports:
            print(f"export: {path}")
        print(f"steps: {result.steps}, optimiser steps: {result.optimizer_steps}, epochs: {result.epochs_done}"
              + (" (cancelled)" if result.cancelled else ""))
    return 0


if __name__ == "__main__":
    from gsv_core.finetune.common import exit_process

    exit_process(main())
