"""ERes2NetV2 speaker model (3D-Speaker), as GPT-SoVITS v2Pro/v2ProPlus use it for timbre conditioning.

The attribute tree is the checkpoint's key tree (``pretrained_eres2netv2w24s4ep4.ckpt`` loads with strict=True).
GPT-SoVITS does not use the 192-d speaker embedding; it takes ``forward3``: the fused last-stage feature map
flattened over channel x frequency and averaged over time (2048 x 10 = 20480 values for the official model).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsv_core.errors import ModelMismatchError

POOLINGS = ("TSTP", "TAP", "TSDP")


class AFF(nn.Module):
    """Attentional feature fusion: a learned per-position mix of two maps of equal shape."""

    def __init__(self, channels: int, r: int = 4):
        super().__init__()
        inner = channels // r
        self.local_att = nn.Sequential(
            nn.Conv2d(2 * channels, inner, 1),
            nn.BatchNorm2d(inner),
            nn.SiLU(),
            nn.Conv2d(inner, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        # weight in (0, 2): x gets w, y gets 2 - w, so equal inputs pass through unchanged.
        w = 1.0 + torch.tanh(self.local_att(torch.cat([x, y], dim=1)))
        return x * w + y * (2.0 - w)


class Bottleneck(nn.Module):
    """Res2Net-style block: the 1x1 expansion is split into `scale` groups processed as a cascade of 3x3 convs,
    each fed with its own group plus the previous group's output (added, or AFF-fused in the deep stages)."""

    def __init__(self, in_ch: int, planes: int, stride: int, base_width: float, scale: int, expansion: int, fuse: bool):
        super().__init__()
        width = int(math.floor(planes * base_width / 64.0))
        self.width = width
        self.conv1 = nn.Conv2d(in_ch, width * scale, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(scale))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale))
        self.fuse_models = nn.ModuleList(AFF(width, r=4) for _ in range(scale - 1)) if fuse else None
        self.conv3 = nn.Conv2d(width * scale, planes * expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * expansion)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != planes * expansion:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, planes * expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * expansion),
            )

    @staticmethod
    def act(x: Tensor) -> Tensor:
        return F.hardtanh(x, 0.0, 20.0)  # the 3D-Speaker "ReLU" is clipped at 20

    def forward(self, x: Tensor) -> Tensor:
        groups = torch.split(self.act(self.bn1(self.conv1(x))), self.width, dim=1)
        outs = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i == 0:
                h = groups[0]
            elif self.fuse_models is None:
                h = h + groups[i]
            else:
                h = self.fuse_models[i - 1](h, groups[i])
            h = self.act(bn(conv(h)))
            outs.append(h)
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        return self.act(out + self.shortcut(x))


class ERes2NetV2(nn.Module):
    def __init__(
        self,
        baseWidth: float = 26,
        scale: int = 2,
        expansion: int = 2,
        m_channels: int = 64,
        num_blocks: Sequence[int] = (3, 4, 6, 3),
        feat_dim: int = 80,
        embedding_size: int = 192,
        pooling_func: str = "TSTP",
        two_emb_layer: bool = False,
    ):
        super().__init__()
        if pooling_func not in POOLINGS:
            raise ValueError(f"pooling_func {pooling_func!r} not supported (one of {', '.join(POOLINGS)})")
        if len(num_blocks) != 4:
            raise ValueError(f"num_blocks needs 4 stage sizes, got {list(num_blocks)}")
        self.feat_dim = feat_dim
        self.pooling_func = pooling_func
        self.two_emb_layer = two_emb_layer
        m = m_channels
        self.conv1 = nn.Conv2d(1, m, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        in_ch = m
        for i, (n, fuse) in enumerate(zip(num_blocks, (False, False, True, True))):
            planes, first_stride = m * 2**i, 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(in_ch, planes, first_stride if j == 0 else 1, baseWidth, scale, expansion, fuse))
                in_ch = planes * expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        # Stage 3 is brought to stage 4's resolution and fused bottom-up with it.
        self.layer3_ds = nn.Conv2d(m * 4 * expansion, m * 8 * expansion, 3, stride=2, padding=1, bias=False)
        self.fuse34 = AFF(m * 8 * expansion, r=4)
        n_stats = 2 if pooling_func == "TSTP" else 1
        self.seg_1 = nn.Linear(int(feat_dim / 8) * m * 8 * expansion * n_stats, embedding_size)
        if two_emb_layer:
            self.seg_bn_1 = nn.BatchNorm1d(embedding_size, affine=False)
            self.seg_2 = nn.Linear(embedding_size, embedding_size)

    def feature_map(self, fbank: Tensor) -> Tensor:
        """[B, frames, feat_dim] -> fused map [B, C, feat_dim / 8, frames / 8]."""
        if fbank.dim() == 2:
            fbank = fbank.unsqueeze(0)
        x = fbank.transpose(1, 2).unsqueeze(1)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x3 = self.layer3(x)
        return self.fuse34(self.layer4(x3), self.layer3_ds(x3))

    def forward(self, fbank: Tensor) -> Tensor:
        """Segment embedding [B, embedding_size] (statistics pooling + linear head)."""
        x = self.feature_map(fbank)
        mean = x.mean(dim=-1).flatten(1)
        std = torch.sqrt(x.var(dim=-1) + 1e-8).flatten(1)
        stats = {"TSTP": lambda: torch.cat([mean, std], dim=1), "TAP": lambda: mean, "TSDP": lambda: std}
        emb = self.seg_1(stats[self.pooling_func]())
        if self.two_emb_layer:
            emb = self.seg_2(self.seg_bn_1(F.relu(emb)))
        return emb

    def forward3(self, fbank: Tensor) -> Tensor:
        """The GPT-SoVITS speaker vector: [B, C * feat_dim / 8], time-averaged fused map."""
        return self.feature_map(fbank).flatten(1, 2).mean(dim=-1)


def config_from_state_dict(sd: Mapping[str, Tensor], feat_dim: int = 80) -> dict:
    """Constructor arguments of the ERes2NetV2 whose state dict has these shapes (tensors may be on meta).

    ``feat_dim`` cannot be told apart from the pooling statistics count by shapes alone, so it is given (80 for
    every GPT-SoVITS model); the pooling is then TSTP (mean + std) or, with one statistic, TAP.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise ModelMismatchError(f"not an ERes2NetV2 state dict: key {key!r} is missing")
        return tuple(sd[key].shape)

    m = shape("conv1.weight")[0]
    num_blocks = []
    for stage in range(1, 5):
        idx = {int(mt.group(1)) for k in sd if (mt := re.match(rf"layer{stage}\.(\d+)\.", k))}
        if not idx or idx != set(range(len(idx))):
            raise ModelMismatchError(f"not an ERes2NetV2 state dict: blocks of layer{stage} are {sorted(idx)}")
        num_blocks.append(len(idx))
    scale = len({k for k in sd if re.match(r"layer1\.0\.convs\.\d+\.weight$", k)})
    expansion = shape("layer1.0.conv3.weight")[0] // m
    # Block widths are floor(planes * baseWidth / 64); any baseWidth reproducing all four gives the same model.
    widths = [shape(f"layer{s}.0.convs.0.weight")[0] for s in range(1, 5)]
    base_width = next(
        (bw for bw in range(1, 65) if all(math.floor(m * 2**s * bw / 64.0) == w for s, w in enumerate(widths))),
        None,
    )
    if base_width is None or scale < 1 or expansion < 1:
        raise ModelMismatchError(f"ERes2NetV2 shapes are inconsistent (widths {widths}, scale {scale}, m {m})")
    embedding_size, seg_in = shape("seg_1.weight")
    per_stat = int(feat_dim / 8) * m * 8 * expansion
    n_stats, rest = divmod(seg_in, per_stat)
    if rest or n_stats not in (1, 2):
        raise ModelMismatchError(f"seg_1 input {seg_in} does not fit feat_dim {feat_dim} ({per_stat} per statistic)")
    return dict(
        baseWidth=base_width,
        scale=scale,
        expansion=expansion,
        m_channels=m,
        num_blocks=num_blocks,
        feat_dim=feat_dim,
        embedding_size=embedding_size,
        pooling_func="TSTP" if n_stats == 2 else "TAP",
        two_emb_layer="seg_2.weight" in sd,
    )
