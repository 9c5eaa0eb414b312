"""The GPT trainer's optimiser and learning-rate schedule, with upstream's numerics (gsv-spec §5.2).

:class:`ScaledAdam` is the icefall optimiser GPT-SoVITS trains its GPT with: an Adam whose step for a tensor is
proportional to that tensor's root-mean-square value, which additionally learns each tensor's overall scale (as if
``p = underlying * exp(scale)``), with scalars handled by a plain Adam at a reduced rate, and a clipping threshold
taken from the median gradient norm of the previous ``clipping_update_period`` steps.

Upstream stacks tensors of equal shape and steps them together for speed; the arithmetic is per tensor, so here each
tensor is stepped on its own (the only difference is the summation order of the global gradient norm). Two
behaviours of upstream's copy are kept on purpose:

* the clipping factor multiplies only the gradient used for the *scale* update; the Adam step itself reads the
  unclipped gradient;
* clipping starts after ``clipping_update_period`` steps (before that the factor is 1).

:class:`WarmupCosineSchedule` computes a warmup-then-cosine rate but, like upstream's ``WarmupCosineLRSchedule``,
pins every group's rate to ``lock_lr`` (0.002) each time it is stepped, so the very first optimiser step runs at the
optimiser's initial rate (0.01) and every later one at 0.002. ``lock_lr=None`` gives the real schedule.

Both ``state_dict()`` results hold only tensors, numbers, strings, lists and dicts, so they round-trip through the
weights-only training-state files.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["ScaledAdam", "WarmupCosineSchedule", "LOCKED_LR"]

#: the rate upstream's schedule pins every step after the first to
LOCKED_LR = 0.002


class ScaledAdam(Optimizer):
    """icefall's ScaledAdam with GPT-SoVITS's defaults and settings (``lr=0.01, betas=(0.9, 0.95),
    clipping_scale=2.0, clipping_update_period=1000`` for the GPT)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.01,
        clipping_scale: Optional[float] = 2.0,
        betas: tuple[float, float] = (0.9, 0.95),
        scalar_lr_scale: float = 0.1,
        eps: float = 1.0e-8,
        param_min_rms: float = 1.0e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_update_period: int = 1000,
    ):
        if not 0 < betas[0] <= betas[1] < 1:
            raise ValueError(f"betas must satisfy 0 < beta1 <= beta2 < 1, got {betas}")
        defaults = dict(lr=lr, clipping_scale=clipping_scale, betas=tuple(betas), scalar_lr_scale=scalar_lr_scale,
                        eps=eps, param_min_rms=param_min_rms, param_max_rms=param_max_rms, scalar_max=scalar_max,
                        size_update_period=size_update_period, clipping_update_period=clipping_update_period)
        super().__init__(params, defaults)

    # -- state -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _rms(p: Tensor) -> Tensor:
        return (p.detach() ** 2).mean().sqrt().reshape(1)

    def _init_state(self, group: dict, p: Tensor, state: dict) -> None:
        state["step"] = 0
        state["delta"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if p.numel() > 1:
            state["param_rms"] = self._rms(p)
            state["scale_exp_avg_sq"] = torch.zeros_like(state["param_rms"])
            state["scale_grads"] = torch.zeros(group["size_update_period"], device=p.device, dtype=p.dtype)

    # -- clipping --------------------------------------------------------------------------------------------------

    def _clipping_factor(self, group: dict, params: list[Tensor]) -> float:
        """The factor (<= 1) the scale-update gradients of this step are multiplied by.

        The bookkeeping lives in the state of the group's first tensor (as upstream keeps it in the state of its
        first stacked batch): ``model_norms`` (the last ``clipping_update_period`` norms), ``model_norm_threshold``
        (clipping_scale x their median, refreshed every period) and ``num_clipped``."""
        clipping_scale = group["clipping_scale"]
        first = self.state[params[0]]
        if not first or clipping_scale is None:
            return 1.0
        step = first["step"]
        if step == 0:
            return 1.0
        period = group["clipping_update_period"]
        total = torch.zeros((), device=params[0].device, dtype=torch.float32)
        for p in params:
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            if p.numel() == 1:
                total += (grad.float() ** 2).sum()
            else:
                total += ((grad.float() * self.state[p]["param_rms"].float()) ** 2).sum()
        norm = total.sqrt()
        if "model_norms" not in first:
            first["model_norms"] = torch.zeros(period, device=params[0].device)
        first["model_norms"][step % period] = norm
        if step % period == 0:
            ordered = first["model_norms"].sort()[0]
            median = float(ordered[min(period - 1, (period // 4) * 2)])
            first["model_norm_threshold"] = clipping_scale * median
            first["num_clipped"] = 0
        if step < period or "model_norm_threshold" not in first:
            return 1.0
        factor = min(1.0, first["model_norm_threshold"] / (float(norm) + 1.0e-20))
        if factor < 1.0:
            first["num_clipped"] = int(first.get("num_clipped", 0)) + 1
        return factor

    # -- the step --------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = list(group["params"])
            if not params:
                continue
            factor = self._clipping_factor(group, params)
            for p in params:
                if p.grad is not None and p.grad.is_sparse:
                    raise RuntimeError("ScaledAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    self._init_state(group, p, state)
                self._step_one(group, p, state, factor)
        return loss

    def _step_one(self, group: dict, p: Tensor, state: dict, clip: float) -> None:
        # a tensor without a gradient is stepped with a zero gradient (its momentum keeps moving it), as upstream
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        beta1 = group["betas"][0]
        period = group["size_update_period"]
        step = state["step"]
        delta = state["delta"]
        delta.mul_(beta1)
        if p.numel() > 1:
            clipped = grad * clip if clip != 1.0 else grad
            state["scale_grads"][step % period] = (p * clipped).sum()
            if step % period == period - 1:
                state["param_rms"].copy_(self._rms(p))
                if step > 0:
                    self._size_update(group, p, state)
            self._tensor_update(group, p, grad, state)
        else:
            self._scalar_update(group, p, grad, state)
        state["step"] = step + 1

    def _size_update(self, group: dict, p: Tensor, state: dict) -> None:
        """Learn the tensor's overall scale from the last ``size_update_period`` values of sum(p * grad)."""
        beta1, beta2 = group["betas"]
        size_lr = group["lr"] * group["scalar_lr_scale"]
        scale_grads = state["scale_grads"]
        period = scale_grads.shape[0]
        beta2_period = beta2 ** period
        avg_sq = state["scale_exp_avg_sq"]
        avg_sq.mul_(beta2_period).add_((scale_grads ** 2).mean(), alpha=1 - beta2_period)
        size_step = (state["step"] + 1) // period
        correction = 1 - beta2_period ** size_step  # no first-moment correction: slower start, more stable
        scale_step = -size_lr * (correction ** 0.5) * scale_grads.sum() / (avg_sq.sqrt() + group["eps"])
        rms = state["param_rms"]
        scale_step = torch.where(rms < group["param_min_rms"], torch.zeros_like(scale_step), scale_step)
        scale_step = torch.where(rms > group["param_max_rms"],
                                 torch.full_like(scale_step, -size_lr * period), scale_step)
        state["delta"].add_(p * scale_step, alpha=1 - beta1)

    def _tensor_update(self, group: dict, p: Tensor, grad: Tensor, state: dict) -> None:
        """Adam direction scaled by the tensor's rms (so the relative change per step is ~lr)."""
        beta1, beta2 = group["betas"]
        avg_sq = state["exp_avg_sq"]
        avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction = 1 - beta2 ** (state["step"] + 1)
        if correction < 0.99:
            avg_sq = avg_sq * (1.0 / correction)
        direction = grad / (avg_sq.sqrt() + group["eps"])
        size = -group["lr"] * (1 - beta1) * state["param_rms"].clamp(min=group["param_min_rms"])
        state["delta"].add_(direction * size)
        p.add_(state["delta"])

    def _scalar_update(self, group: dict, p: Tensor, grad: Tensor, state: dict) -> None:
        """Plain Adam (second moment bias-corrected, no first-moment correction) at lr x scalar_lr_scale; the value
        is clamped to +-scalar_max *before* the update is added, as upstream does."""
        beta1, beta2 = group["betas"]
        avg_sq = state["exp_avg_sq"]
        avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction = 1 - beta2 ** (state["step"] + 1)
        denom = (avg_sq / correction).sqrt() + group["eps"]
        state["delta"].add_(grad / denom, alpha=-group["lr"] * group["scalar_lr_scale"] * (1 - beta1))
        p.clamp_(min=-group["scalar_max"], max=group["scalar_max"])
        p.add_(state["delta"])


class WarmupCosineSchedule:
    """Upstream's ``WarmupCosineLRSchedule`` (init -> peak linearly over ``warmup_steps``, cosine to ``end_lr`` at
    ``total_steps``), including its lock: with ``lock_lr`` set, each :meth:`step` sets every group to ``lock_lr``
    whatever the curve says. Nothing is changed at construction, so the first optimiser step uses the optimiser's
    own initial rate."""

    def __init__(self, optimizer: Optimizer, init_lr: float = 1e-5, peak_lr: float = 0.01, end_lr: float = 1e-4,
                 warmup_steps: int = 2000, total_steps: int = 40000, lock_lr: Optional[float] = LOCKED_LR):
        if warmup_steps <= 0 or total_steps <= warmup_steps:
            raise ValueError(f"need 0 < warmup_steps < total_steps, got {warmup_steps}, {total_steps}")
        self.optimizer = optimizer
        self.init_lr, self.peak_lr, self.end_lr = float(init_lr), float(peak_lr), float(end_lr)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.lock_lr = None if lock_lr is None else float(lock_lr)
        self.current_step = 0
        self.lr = self.init_lr
        self._last_lr = [self.init_lr]

    def curve(self, step: int) -> float:
        """The warmup/cosine rate at ``step`` (what upstream computes before overriding it)."""
        if step < self.warmup_steps:
            return self.init_lr + (self.peak_lr - self.init_lr) / self.warmup_steps * step
        if step > self.total_steps:
            return self.end_lr
        ratio = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.end_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (self.peak_lr - self.end_lr)

    def step(self) -> float:
        lr = self.curve(self.current_step) if self.lock_lr is None else self.lock_lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]  # the rate the step just taken used
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.lr = lr
        self.current_step += 1
        return lr

    def get_last_lr(self) -> list[float]:
        """Upstream's logged value: the group rates *before* the latest :meth:`step` (init_lr before any)."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"init_lr": self.init_lr, "peak_lr": self.peak_lr, "end_lr": self.end_lr,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps, "lock_lr": self.lock_lr,
                "current_step": self.current_step, "lr": self.lr, "last_lr": list(self._last_lr)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.init_lr, self.peak_lr, self.end_lr = state["init_lr"], state["peak_lr"], state["end_lr"]
        self.warmup_steps, self.total_steps = state["warmup_steps"], state["total_steps"]
        self.lock_lr = state["lock_lr"]
        self.current_step = int(state["current_step"])
        self.lr = state["lr"]
        self._last_lr = list(state["last_lr"])
