"""Pieces both trainers share: distributed setup (torchrun / DDP), mixed precision, progress and ETA, the loss
log, and training-state files that load without unpickling code.

A training-state file (``state_latest.pt``) holds only tensors, numbers, strings, lists and dicts, so it is read
back with ``torch.load(weights_only=True)``; RNG states are stored as uint8 tensors."""
from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.distributed as dist

from gsv_core.device import cpu_fp16_allowed, resolve_device
from gsv_core.errors import GSVError
from gsv_core.fileio import atomic_path
from .layout import disk_guard

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


class TrainingError(GSVError):
    """A training run that cannot start or continue (bad data, mismatched state, impossible settings)."""


# -- distributed -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes through WORLD_SIZE/RANK/LOCAL_RANK (gloo on CPU, nccl on CUDA);
    a plain single-process run returns a disabled DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def distributed_device(device: torch.device, info: DistInfo) -> torch.device:
    """Under torchrun each process takes the GPU of its local rank."""
    if info.enabled and device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def _collective_device() -> torch.device:
    """Where a collective's tensor must live: NCCL (CUDA training) only moves GPU tensors, gloo CPU ones."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's decision (e.g. 'cancel now') for every rank, so all processes stop at the same step."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_collective_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group together: every rank waits for the others (rank 0 may still be exporting) and
    drops its DDP wrappers before the group goes away; a rank leaving early can abort its peer's gloo threads."""
    if info.enabled and dist.is_initialized():
        import gc

        gc.collect()
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - a peer that already failed: still tear down our side
            pass
        dist.destroy_process_group()


# -- precision -------------------------------------------------------------------------------------------------------
def suggested_batch_size(device: str = "auto", cpu_default: int = 4) -> int:
    """A batch size for the Finetune form: half the free memory of the GPU in GiB, as upstream's webui suggests
    from its total (about 2 GiB per item at the default slice lengths), at least 1 and at most 32; ``cpu_default``
    without a GPU."""
    try:
        dev = resolve_device(device)
    except GSVError:
        return cpu_default
    if dev.type != "cuda":
        return cpu_default
    try:
        free, _total = torch.cuda.mem_get_info(dev)
    except Exception:  # noqa: BLE001 - a driver that cannot say: the CPU default
        return cpu_default
    return int(max(1, min(32, (free / 2**30) // 2)))


def training_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp16/bf16 autocast on CUDA (fp16 only where the GPU supports it well), fp32 on CPU unless bf16 is asked."""
    precision = (precision or "auto").lower()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in table:
        raise TrainingError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    dtype = table[precision]
    if device.type == "cpu" and dtype == torch.float16 and not cpu_fp16_allowed():
        # (gsv_core.device.allow_cpu_fp16 lets tests run the fp16 autocast + GradScaler path on a CPU-only machine)
        raise TrainingError("fp16 training needs a CUDA GPU; on the CPU use fp32 or bf16")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise TrainingError("this GPU does not support bf16; use fp16 or fp32")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype) -> torch.amp.GradScaler:
    """A real scaler for fp16 (CUDA, or the CPU under the test override); a disabled one (a no-op with the same
    API) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=(dtype == torch.float16))


# -- seeds and RNG state ---------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python/numpy/torch RNG states as tensors and plain values (weights-only loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- state files -------------------------------------------------------------------------------------------------------
def save_state(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically write a training state (only tensors/plain values; checked on load with weights_only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with disk_guard(f"saving the training state {path.name}"), atomic_path(path) as tmp:
        torch.save(dict(state), tmp)
    return path


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or holding objects we refuse to unpickle
        raise TrainingError(
            f"training state {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); delete it to start "
            "this stage from the pretrained weights, or restore a good copy") from exc


# -- loss log and ETA ------------------------------------------------------------------------------------------------
class LossLog:
    """Append-only CSV of per-step losses (``step, epoch, <names...>, lr, elapsed_s``); survives restarts: on resume
    rows after the restored step are dropped, so a curve never holds the same step twice."""

    def __init__(self, path: str | os.PathLike, columns: Iterable[str]):
        self.path = Path(path)
        self.columns = ["step", "epoch", *columns, "lr", "elapsed_s"]

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        rows = self.read()
        kept = [r for r in rows if int(float(r["step"])) <= step]
        with disk_guard("rewriting the loss log"), atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
                w.writeheader()
                w.writerows(kept)

    def append(self, row: Mapping[str, Any]) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with disk_guard("appending to the loss log"):
            with open(self.path, "a", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))


@dataclass
class Eta:
    """Seconds left from the mean time of the steps done in this process (restarts do not skew it)."""
    total_steps: int
    start_step: int = 0
    _t0: float = field(default_factory=time.monotonic)

    def seconds_left(self, step: int) -> float | None:
        done = step - self.start_step
        if done <= 0 or self.total_steps <= 0:
            return None
        rate = (time.monotonic() - self._t0) / done
        return max(0.0, (self.total_steps - step) * rate)

    @staticmethod
    def format(seconds: float | None) -> str:
        if seconds is None or not math.isfinite(seconds):
            return "ETA --"
        seconds = int(round(seconds))
        h, rem = divmod(seconds, 3600)
        m, s = divmod(rem, 60)
        return f"ETA {h}:{m:02d}:{s:02d}" if h else f"ETA {m}:{s:02d}"


def report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(1.0, max(0.0, fraction)), message)


def cancelled(cancel: CancelFn | None) -> bool:
    return bool(cancel is not None and cancel())


def exit_process(code: int) -> None:
    """End a CLI process. Under torchrun the process leaves with ``os._exit`` after flushing its streams: the
    process group is already destroyed, and skipping the interpreter's teardown avoids gloo's C++ threads being
    destroyed in an arbitrary order (seen as a rare SIGABRT of one rank after a successful run)."""
    import sys

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    sys.exit(code)

