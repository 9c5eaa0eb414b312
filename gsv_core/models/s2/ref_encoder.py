"""MelStyleEncoder: a reference spectrogram -> one global timbre vector ``ge`` [B, out_dim, 1].

Key tree: ``spectral.{0,3}.fc``, ``temporal.{0,1}.conv1.conv``, ``slf_attn.{w_qs,w_ks,w_vs,fc}``, ``fc.fc``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class _Wrapped(nn.Module):
    """A layer one attribute deep (``<name>.fc`` / ``<name>.conv``), matching the official key names."""

    def __init__(self, attr: str, layer: nn.Module):
        super().__init__()
        self._attr = attr
        setattr(self, attr, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self._attr)(x)


class GatedConv(nn.Module):
    """Residual Conv1d + GLU (a * sigmoid(b)), [B, C, T] -> [B, C, T]."""

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.dropout = dropout
        self.conv1 = _Wrapped("conv", nn.Conv1d(channels, 2 * channels, kernel_size, padding=(kernel_size - 1) // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv1(x).chunk(2, dim=1)
        return x + F.dropout(a * torch.sigmoid(b), self.dropout, self.training)


class StyleSelfAttention(nn.Module):
    """Time-major multi-head self-attention with a residual.

    Scores are divided by sqrt(d_model) rather than sqrt(head_dim) and padded keys get -inf: both as upstream, whose
    weights were trained that way.
    """

    def __init__(self, n_heads: int, d_model: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.temperature = math.sqrt(d_model)
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        """x: [B, T, C]; pad: [B, T] True at padded frames, or None."""
        b, t, c = x.shape
        split = lambda y: y.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.w_qs(x)), split(self.w_ks(x)), split(self.w_vs(x))
        scores = (q @ k.transpose(-2, -1)) / self.temperature
        if pad is not None:
            scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        probs = F.dropout(F.softmax(scores, dim=-1), self.dropout, self.training)
        out = (probs @ v).transpose(1, 2).reshape(b, t, c)
        return F.dropout(self.fc(out), self.dropout, self.training) + x


class MelStyleEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128, kernel_size: int = 5, n_heads: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.in_dim = in_dim
        self.spectral = nn.Sequential(
            _Wrapped("fc", nn.Linear(in_dim, hidden)), nn.Mish(), nn.Dropout(dropout),
            _Wrapped("fc", nn.Linear(hidden, hidden)), nn.Mish(), nn.Dropout(dropout),
        )
        self.temporal = nn.Sequential(GatedConv(hidden, kernel_size, dropout), GatedConv(hidden, kernel_size, dropout))
        self.slf_attn = StyleSelfAttention(n_heads, hidden, dropout)
        self.fc = _Wrapped("fc", nn.Linear(hidden, out_dim))

    def forward(self, spec: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """spec: [B, in_dim, T] (already multiplied by the mask); mask: [B, 1, T] of 0/1 or None (no padding)."""
        pad = None if mask is None else (mask[:, 0] == 0)
        x = self.spectral(spec.transpose(1, 2))
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        if pad is not None:
            x = x.masked_fill(pad[..., None], 0)
        x = self.fc(self.slf_attn(x, pad))
        # masked temporal mean, in float32 and dividing before summing as upstream does
        x32 = x.float()
        if pad is None:
            mean = (x32 / x.size(1)).sum(dim=1)
        else:
            valid = (~pad).sum(dim=1, keepdim=True)[:, :, None]
            mean = (x32.masked_fill(pad[..., None], 0) / valid).sum(dim=1)
        return mean.to(x.dtype).unsqueeze(-1)
