"""HiFi-GAN V1-style waveform generator ``dec`` (latent frames -> 32 kHz audio)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import WNConv1d, WNConvTranspose1d

LRELU_SLOPE = 0.1


class ResBlock1(nn.Module):
    """Three residual pairs: (dilated conv, plain conv), each conv preceded by LeakyReLU(0.1)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilations=(1, 3, 5)):
        super().__init__()
        same = lambda d: (kernel_size - 1) * d // 2  # noqa: E731
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel_size, dilation=d, padding=same(d)) for d in dilations
        )
        self.convs2 = nn.ModuleList(WNConv1d(channels, channels, kernel_size, padding=same(1)) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class Generator(nn.Module):
    def __init__(self, in_channels, resblock, resblock_kernel_sizes, resblock_dilation_sizes, upsample_rates,
                 upsample_initial_channel, upsample_kernel_sizes, gin_channels=0):
        super().__init__()
        if str(resblock) != "1":
            raise ValueError(f"resblock type {resblock!r} is not used by any official s2 model; only '1' is supported")
        self.n_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, 1, padding=3)
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_in, c_out = upsample_initial_channel // 2**i, upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(WNConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // 2 ** (i + 1)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch, k, d))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def forward(self, z: torch.Tensor, g: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``cond``: :meth:`condition` of ``g`` computed beforehand (used instead of ``g``)."""
        x = self.conv_pre(z)
        if cond is not None:
            x = x + cond
        elif g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.n_kernels : (i + 1) * self.n_kernels]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / self.n_kernels
        # the last activation uses torch's default slope 0.01, not 0.1: the official weights were trained so
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def condition(self, g: torch.Tensor | None) -> torch.Tensor | None:
        """``cond(g)`` [B, upsample_initial_channel, 1], the reference's offset added after ``conv_pre``."""
        return None if g is None or not hasattr(self, "cond") else self.cond(g)
