"""The frozen residual vector quantizer that turns 25 Hz SSL features into semantic tokens and back.

Key tree: ``vq.layers.<i>._codebook.{inited, cluster_size, embed, embed_avg}`` (buffers). The official models are
trained with the codebook frozen, so only nearest-code search and lookup are implemented here; ``cluster_size``,
``embed_avg`` and ``inited`` are carried along unchanged so that saved files keep upstream's format.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Codebook(nn.Module):
    def __init__(self, dim: int, size: int):
        super().__init__()
        # upstream starts from zeros and k-means on the first batch; inited=0 records that this has not happened
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(size))
        self.register_buffer("embed", torch.zeros(size, dim))
        self.register_buffer("embed_avg", torch.zeros(size, dim))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """[N, D] -> [N] index of the closest code (squared Euclidean), searched in float32 for stable ties."""
        e = self.embed.float()
        x = x.float()
        # argmin ||x - e||^2 == argmax (2 x.e - ||e||^2): ||x||^2 is the same for every code
        return (2 * (x @ e.t()) - e.pow(2).sum(1)).argmax(dim=-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embed)


class _Level(nn.Module):
    def __init__(self, dim: int, size: int):
        super().__init__()
        self._codebook = Codebook(dim, size)


class _Levels(nn.Module):
    def __init__(self, n_q: int, dim: int, size: int):
        super().__init__()
        self.layers = nn.ModuleList(_Level(dim, size) for _ in range(n_q))


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, dim: int = 768, n_q: int = 1, bins: int = 1024):
        super().__init__()
        self.vq = _Levels(n_q, dim, bins)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T] features -> [n_q, B, T] codes."""
        b, d, t = x.shape
        residual = x.transpose(1, 2).reshape(b * t, d)
        codes = []
        for level in self.vq.layers:
            idx = level._codebook.nearest(residual)
            codes.append(idx.view(b, t))
            if len(codes) < len(self.vq.layers):
                residual = residual - level._codebook.lookup(idx)
        return torch.stack(codes)

    def decode(self, codes: torch.Tensor, repeat: int = 1) -> torch.Tensor:
        """[n_q, B, T] codes -> [B, D, T * repeat] (sum of the levels' vectors; ``repeat`` = nearest upsampling)."""
        if repeat != 1:
            codes = codes.repeat_interleave(repeat, dim=-1)
        out = None
        for level, idx in zip(self.vq.layers, codes):
            vec = level._codebook.lookup(idx)
            out = vec if out is None else out + vec
        return out.transpose(1, 2)
