"""The GAN discriminator used by s2 training: one scale discriminator plus period discriminators.

Key tree (as in the official ``s2D*.pth`` files): ``discriminators.0`` is the scale discriminator,
``discriminators.<1..>`` the period ones, each with weight-normalised ``convs.<i>`` and ``conv_post``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import WNConv1d, WNConv2d
from gsv_core.versions import VERSIONS

LRELU_SLOPE = 0.1
PRO_VERSIONS = tuple(v for v, m in VERSIONS.items() if m.speaker_embedding)  # gsv_core.versions


def discriminator_periods(version: str) -> list[int]:
    return [2, 3, 5, 7, 11, 17, 23] if version in PRO_VERSIONS else [2, 3, 5, 7, 11]


class ScaleDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([
            WNConv1d(1, 16, 15, 1, padding=7),
            WNConv1d(16, 64, 41, 4, groups=4, padding=20),
            WNConv1d(64, 256, 41, 4, groups=16, padding=20),
            WNConv1d(256, 1024, 41, 4, groups=64, padding=20),
            WNConv1d(1024, 1024, 41, 4, groups=256, padding=20),
            WNConv1d(1024, 1024, 5, 1, padding=2),
        ])
        self.conv_post = WNConv1d(1024, 1, 3, 1, padding=1)

    def forward(self, x: torch.Tensor):
        return _conv_stack(self.convs, self.conv_post, x)


def _conv_stack(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor):
    """LeakyReLU after every conv, then the output conv: (flattened scores, every feature map for the FM loss)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class PeriodDiscriminator(nn.Module):
    """Views the waveform as [T / period, period] and convolves along time only."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        pad = ((kernel_size - 1) // 2, 0)
        chans = [1, 32, 128, 512, 1024]
        self.convs = nn.ModuleList(
            [WNConv2d(c_in, c_out, (kernel_size, 1), (stride, 1), pad) for c_in, c_out in zip(chans, chans[1:])]
            + [WNConv2d(1024, 1024, (kernel_size, 1), 1, pad)]
        )
        self.conv_post = WNConv2d(1024, 1, (3, 1), 1, (1, 0))

    def forward(self, x: torch.Tensor):
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
        x = x.view(b, c, -1, self.period)
        return _conv_stack(self.convs, self.conv_post, x)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, version: str = "v2"):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [ScaleDiscriminator()] + [PeriodDiscriminator(p) for p in discriminator_periods(version)]
        )

    def forward(self, real: torch.Tensor, fake: torch.Tensor):
        """Both [B, 1, T]. Returns (scores_real, scores_fake, fmaps_real, fmaps_fake), one entry per discriminator."""
        out = ([], [], [], [])
        for d in self.discriminators:
            s_r, f_r = d(real)
            s_f, f_f = d(fake)
            for lst, item in zip(out, (s_r, s_f, f_r, f_f)):
                lst.append(item)
        return out
