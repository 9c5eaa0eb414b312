"""VITS-style attention with 1x1-conv projections and the post-LN transformer stack built from it.

Relative positions (window w, one table shared by all heads) only ever touch the 2w+1 diagonals around the main
one, so we keep them as a [L, 2w+1] band and move between band and full [L, L] layouts with a pad-and-reshape
skew. That costs O(L*w) instead of the O(L^2) of materialising all 2L-1 relative offsets.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .layers import ChannelLayerNorm

MASKED_SCORE = -1e4  # upstream fills masked logits with -1e4 (not -inf), which keeps fully masked rows finite


def band_to_full(band: torch.Tensor, window: int) -> torch.Tensor:
    """[..., L, 2w+1] -> [..., L, L] with full[i, j] = band[i, j - i + w] and zeros off the band."""
    length = band.size(-2)
    lead = band.shape[:-2]
    skewed = F.pad(band, (0, length)).reshape(*lead, length * (length + 2 * window + 1))
    skewed = skewed[..., : length * (length + 2 * window)].reshape(*lead, length, length + 2 * window)
    return skewed[..., window : window + length]


def full_to_band(full: torch.Tensor, window: int) -> torch.Tensor:
    """[..., L, L] -> [..., L, 2w+1] with band[i, r] = full[i, i + r - w] (zero where that column does not exist)."""
    length = full.size(-1)
    lead = full.shape[:-2]
    flat = F.pad(full, (window, window)).reshape(*lead, length * (length + 2 * window))
    skewed = F.pad(flat, (0, length)).reshape(*lead, length, length + 2 * window + 1)
    return skewed[..., : 2 * window + 1]


class ConvAttention(nn.Module):
    """Multi-head attention over [B, C, T] tensors; ``window`` enables relative position embeddings (self-attention)."""

    def __init__(self, channels: int, out_channels: int, n_heads: int, p_dropout: float = 0.0, window: int | None = None):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.p_dropout = p_dropout
        self.window = window
        if window is not None:
            # one table for all heads ("heads_share" upstream), init spread head_dim^-0.5 as upstream
            self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * self.head_dim**-0.5)
            self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * self.head_dim**-0.5)
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        for conv in (self.conv_q, self.conv_k, self.conv_v):
            nn.init.xavier_uniform_(conv.weight)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, H, T, D]
        return x.view(x.size(0), self.n_heads, self.head_dim, x.size(2)).transpose(2, 3)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: queries [B, C, Tq]; context: keys/values [B, C, Tk]; mask: [B, 1, Tq, Tk] of 0/1 or None."""
        q = self._heads(self.conv_q(x)) / math.sqrt(self.head_dim)
        k = self._heads(self.conv_k(context))
        v = self._heads(self.conv_v(context))

        scores = q @ k.transpose(-2, -1)
        if self.window is not None:
            if q.size(2) != k.size(2):
                raise ValueError("relative position attention needs equal query and key lengths")
            scores = scores + band_to_full(q @ self.emb_rel_k[0].transpose(0, 1), self.window)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, MASKED_SCORE)
        probs = F.dropout(F.softmax(scores, dim=-1), self.p_dropout, self.training)

        out = probs @ v
        if self.window is not None:
            out = out + full_to_band(probs, self.window) @ self.emb_rel_v[0]
        b, h, t, d = out.shape
        return self.conv_o(out.transpose(2, 3).reshape(b, h * d, t))


class ConvFFN(nn.Module):
    """Conv -> ReLU -> Conv with "same" padding (left (k-1)//2, right k//2), masking the input of each conv."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int, p_dropout: float = 0.0):
        super().__init__()
        self.kernel_size = kernel_size
        self.p_dropout = p_dropout
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.pad(x, ((k - 1) // 2, k // 2)) if k > 1 else x

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(self._pad(x * mask)))
        x = F.dropout(x, self.p_dropout, self.training)
        return self.conv_2(self._pad(x * mask)) * mask


class RelPosEncoder(nn.Module):
    """Post-LN transformer encoder (upstream ``attentions.Encoder``): x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, hidden_channels, filter_channels, n_heads, n_layers, kernel_size=1, p_dropout=0.0, window=4):
        super().__init__()
        self.p_dropout = p_dropout
        self.attn_layers = nn.ModuleList(
            ConvAttention(hidden_channels, hidden_channels, n_heads, p_dropout, window) for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(hidden_channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            ConvFFN(hidden_channels, filter_channels, kernel_size, p_dropout) for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(hidden_channels) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, C, T]; mask: [B, 1, T]."""
        attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
        x = x * mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            x = norm1(x + F.dropout(attn(x, x, attn_mask), self.p_dropout, self.training))
            x = norm2(x + F.dropout(ffn(x, mask), self.p_dropout, self.training))
        return x * mask
