"""WaveNet stack, the mean-only coupling flow and the posterior encoder ``enc_q`` (training only)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import WNConv1d, sequence_mask


class WaveNet(nn.Module):
    """Non-causal gated WaveNet (upstream ``modules.WN``); output = masked sum of skips."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int = 0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("WaveNet kernel_size must be odd")
        self.hidden = hidden
        self.n_layers = n_layers
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        if gin_channels:
            # one projection of the global vector, sliced per layer
            self.cond_layer = WNConv1d(gin_channels, 2 * hidden * n_layers, 1)
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                WNConv1d(hidden, 2 * hidden, kernel_size, dilation=dilation, padding=(kernel_size - 1) * dilation // 2)
            )
            last = i == n_layers - 1
            self.res_skip_layers.append(WNConv1d(hidden, hidden if last else 2 * hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """``cond``: ``cond_layer(g)`` computed beforehand (:meth:`condition`), used instead of ``g``."""
        h = self.hidden
        if cond is None and g is not None:
            cond = self.cond_layer(g)
        skip = None
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            a = in_layer(x)
            if cond is not None:
                a = a + cond[:, 2 * h * i : 2 * h * (i + 1)]
            acts = torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:])
            rs = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + rs[:, :h]) * mask
                rs = rs[:, h:]
            skip = rs if skip is None else skip + rs
        return skip * mask

    def condition(self, g: torch.Tensor) -> torch.Tensor:
        """The projection of the global vector every layer slices, [B, 2 * hidden * n_layers, 1]: it depends on the
        reference only, so a decoder can compute it once per reference."""
        return self.cond_layer(g)


class MeanOnlyCoupling(nn.Module):
    """Affine coupling with unit scale: the second half of the channels is shifted by f(first half, g)."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int = 0):
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden, self.half, 1)
        # start as the identity map
        nn.init.zeros_(self.post.weight)
        nn.init.zeros_(self.post.bias)

    def forward(self, x, mask, g=None, reverse: bool = False, cond=None):
        x0, x1 = torch.split(x, [self.half, self.half], dim=1)
        shift = self.post(self.enc(self.pre(x0) * mask, mask, g, cond)) * mask
        x1 = (x1 - shift) * mask if reverse else shift + x1 * mask
        return torch.cat([x0, x1], dim=1)


class ChannelFlip(nn.Module):
    def forward(self, x, mask, g=None, reverse: bool = False, cond=None):
        return torch.flip(x, [1])


class CouplingFlow(nn.Module):
    """n_flows x (coupling, flip); volume preserving, so no log-determinant is needed."""

    def __init__(self, channels, hidden, kernel_size, dilation_rate, n_layers, n_flows=4, gin_channels=0):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(MeanOnlyCoupling(channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels))
            self.flows.append(ChannelFlip())

    def forward(self, x, mask, g=None, reverse: bool = False, conds=None):
        """``conds``: :meth:`conditions` of ``g`` computed beforehand (then ``g`` is not needed)."""
        order = range(len(self.flows) - 1, -1, -1) if reverse else range(len(self.flows))
        for i in order:
            x = self.flows[i](x, mask, g=g, reverse=reverse, cond=None if conds is None else conds[i])
        return x

    def conditions(self, g: torch.Tensor | None) -> tuple:
        """Per flow step, the WaveNet conditioning of ``g`` (None for the flips, or everywhere without ``g``)."""
        if g is None:
            return tuple(None for _ in self.flows)
        return tuple(f.enc.condition(g) if isinstance(f, MeanOnlyCoupling) and hasattr(f.enc, "cond_layer") else None
                     for f in self.flows)


class PosteriorEncoder(nn.Module):
    """Linear spectrogram -> z ~ N(m_q, exp(logs_q)); used by training only and dropped from exported weights."""

    def __init__(self, in_channels, out_channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels=0):
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden, out_channels * 2, 1)

    def forward(self, spec, lengths, g=None, generator: torch.Generator | None = None):
        if g is not None:
            g = g.detach()  # as upstream: the posterior must not train the reference encoder
        mask = sequence_mask(lengths, spec.size(2), spec.dtype)
        h = self.enc(self.pre(spec) * mask, mask, g)
        m, logs = torch.split(self.proj(h) * mask, self.out_channels, dim=1)
        noise = torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype)
        z = (m + noise * torch.exp(logs)) * mask
        return z, m, logs, mask
