"""Small building blocks shared by the s2 modules.

Weight-normalised convolutions are written out here instead of using ``torch.nn.utils.weight_norm`` (deprecated)
or its parametrisation (which renames the keys): the official checkpoints store every such layer as
``bias`` / ``weight_g`` / ``weight_v`` and our attribute tree must be that key tree.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def sequence_mask(lengths: torch.Tensor, max_len: int, dtype: torch.dtype) -> torch.Tensor:
    """[B] lengths -> [B, 1, max_len] mask of 1 (valid) / 0 (padding) in ``dtype``."""
    steps = torch.arange(max_len, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(1).to(dtype)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a [B, C, T] tensor (parameters named gamma/beta as upstream)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.transpose(1, -1), (x.size(1),), self.gamma, self.beta, self.eps)
        return y.transpose(1, -1)


class _WeightNormed(nn.Module):
    """Holds ``bias``, ``weight_g``, ``weight_v`` (in the official key order) and rebuilds ``g * v / ||v||``.

    ``||v||`` is taken over every axis but 0, like the classic ``weight_norm(dim=0)``; for transposed convolutions
    axis 0 is the input channel, hence their ``weight_g`` is [C_in, 1, 1].

    Outside autograd and in eval mode the rebuilt weight is cached: the decoder's weights are tens of millions of
    values and would otherwise be re-normalised on every call. The cache is dropped whenever the parameters could
    have changed (``.to()``, ``load_state_dict``, ``train()``/``eval()``, in-place edits via the version counter).
    """

    def _init_from(self, proto: nn.Module) -> None:
        if proto.bias is not None:
            self.bias = nn.Parameter(proto.bias.detach())
        else:
            self.register_parameter("bias", None)
        v = proto.weight.detach()
        self.weight_g = nn.Parameter(torch.norm_except_dim(v, 2, 0))
        self.weight_v = nn.Parameter(v.clone())
        self._cache: tuple | None = None

    def normalized_weight(self) -> torch.Tensor:
        v, g = self.weight_v, self.weight_g
        if self.training or torch.is_grad_enabled() or v.is_meta or v.is_inference():
            return torch._weight_norm(v, g, 0)
        key = (v.data_ptr(), g.data_ptr(), v._version, g._version, v.dtype, v.device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, torch._weight_norm(v, g, 0))
        return self._cache[1]

    def _apply(self, fn, recurse=True):
        self._cache = None
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache = None
        return super()._load_from_state_dict(*args, **kwargs)


class WNConv1d(_WeightNormed):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        self._init_from(nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias))
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.normalized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class WNConvTranspose1d(_WeightNormed):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self._init_from(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, padding))
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x, self.normalized_weight(), self.bias, self.stride, self.padding)


class WNConv2d(_WeightNormed):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self._init_from(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding))
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)
