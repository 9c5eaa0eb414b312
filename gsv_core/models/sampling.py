"""Token sampling for the s1 GPT, numerically equivalent to upstream's ``logits_to_probs`` + exponential race.

The order of operations is part of the behaviour (gsv-spec §3.1): repetition penalty, then top-p on the penalised
logits *before* temperature, then temperature, then top-k with ties at the pivot kept, then softmax. Unlike upstream,
nothing here modifies its arguments in place; the decode loop calls :func:`apply_repetition_penalty` itself because
upstream's EOS check happens to look at the penalised logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from gsv_core.errors import GSVError

_MIN_TEMPERATURE = 1e-5  # upstream clamps instead of rejecting 0, which makes temperature 0 mean "greedy"


class SamplingParamsError(GSVError, ValueError):
    """A sampling setting outside its valid range (e.g. top_k < 1, top_p <= 0)."""


@dataclass(frozen=True)
class SamplingParams:
    """GPT sampling settings; the defaults are TTS.py's."""

    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise SamplingParamsError(f"top_k must be a whole number >= 1, got {self.top_k!r}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise SamplingParamsError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not float(self.temperature) >= 0.0:
            raise SamplingParamsError(f"temperature must be >= 0, got {self.temperature!r}")
        if not float(self.repetition_penalty) > 0.0:
            raise SamplingParamsError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")


def apply_repetition_penalty(
    logits: torch.Tensor, previous_tokens: Optional[torch.Tensor], penalty: float
) -> torch.Tensor:
    """Return a copy of ``logits`` (B, V) where every id in ``previous_tokens`` (B, T) is pushed towards "unlikely".

    Positive logits are divided by ``penalty``, negative ones multiplied, each distinct id once however often it
    occurs (a repeated index receives the same value twice).
    """
    if previous_tokens is None or penalty == 1.0:
        return logits
    index = previous_tokens.long()
    picked = logits.gather(1, index)
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    return logits.scatter(1, index, picked)


def filtered_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
) -> torch.Tensor:
    """Top-p (before temperature), temperature, top-k, softmax: the part of the sampling transform after the penalty."""
    if top_p is not None and top_p < 1.0:
        ranked, order = torch.sort(logits, descending=True)
        beyond = ranked.softmax(dim=-1).cumsum(dim=-1) > top_p
        beyond[:, 0] = False  # the single most likely token always survives, even if it alone exceeds top_p
        logits = logits.masked_fill(beyond.scatter(1, order, beyond), float("-inf"))

    logits = logits / max(temperature, _MIN_TEMPERATURE)

    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))  # "<", so every entry tied with the pivot stays

    return F.softmax(logits, dim=-1)


def logits_to_probs(
    logits: torch.Tensor,
    previous_tokens: Optional[torch.Tensor] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    repetition_penalty: float = 1.0,
) -> torch.Tensor:
    """Sampling distribution (B, V) for logits (B, V), as upstream's function of the same name (input left intact)."""
    penalised = apply_repetition_penalty(logits, previous_tokens, repetition_penalty)
    return filtered_probs(penalised, temperature=temperature, top_k=top_k, top_p=top_p)


def sample_from_probs(
    probs: torch.Tensor, generator: Optional[torch.Generator] | Sequence[torch.Generator] = None
) -> torch.Tensor:
    """Draw one token per row of ``probs`` (B, V) -> (B,) int64 by an exponential race: argmax(p / Exp(1)).

    Equivalent to multinomial sampling but without a device-to-host sync. Without ``generator`` the noise comes from
    torch's global RNG with the same shape and dtype as upstream draws it, so ``torch.manual_seed`` reproduces
    upstream's choices. A generator may live on another device than ``probs`` (e.g. a CPU generator for a CUDA
    model): the noise is then drawn there and moved, which makes a seed give the same draws on every device.
    A sequence of generators, one per row, makes each row's draws independent of the rows decoded beside it (a
    sentence gives the same tokens alone or in a batch).
    """
    if generator is None:
        noise = torch.empty_like(probs).exponential_(1.0)
    elif isinstance(generator, torch.Generator):
        noise = torch.empty(probs.shape, dtype=probs.dtype, device=generator.device)
        noise = noise.exponential_(1.0, generator=generator).to(probs.device)
    else:
        if len(generator) != probs.shape[0]:
            raise ValueError(f"{len(generator)} generators for {probs.shape[0]} rows")
        rows = [
            torch.empty(probs.shape[1:], dtype=probs.dtype, device=g.device).exponential_(1.0, generator=g)
            for g in generator
        ]
        noise = torch.stack(rows).to(probs.device)
    return torch.argmax(probs / noise, dim=-1)


def sample(
    logits: torch.Tensor,
    previous_tokens: Optional[torch.Tensor],
    params: SamplingParams,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convenience: ``(tokens (B,), probs (B, V))`` for logits (B, V) under ``params``."""
    probs = logits_to_probs(
        logits,
        previous_tokens,
        temperature=params.temperature,
        top_k=params.top_k,
        top_p=params.top_p,
        repetition_penalty=params.repetition_penalty,
    )
    return sample_from_probs(probs, generator), probs
