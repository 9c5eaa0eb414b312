"""The mel vocoders of SoVITS v3 and v4.

* v3: NVIDIA's BigVGAN v2 (``bigvgan_v2_24khz_100band_256x``): 100-band log-mel at 24 kHz / hop 256 -> 24 kHz audio.
  Transposed-conv upsampling, AMP residual blocks whose SnakeBeta activations run at twice the rate (x2 Kaiser-sinc
  up, activation, x2 low-pass down) to keep aliasing out; output clamped to [-1, 1] (``use_tanh_at_final`` false).
* v4: a HiFi-GAN generator (x480) from 100-band log-mels at 32 kHz / hop 320 (100 frames/s) -> 48 kHz audio.

Both are inference-only here. The official BigVGAN file stores weight-normalised convolutions (``weight_g`` /
``weight_v``); upstream folds them into plain weights before use (``remove_weight_norm``) and so do we, at load
time (:func:`fold_weight_norm`), so the module trees are those of the folded models.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError, ModelMismatchError

LRELU_SLOPE = 0.1


def fold_weight_norm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``*.weight_g`` + ``*.weight_v`` -> ``*.weight`` = g * v / ||v|| (norm over every axis but 0), in float32."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            stem = key[: -len("_v")]
            g = state.get(stem + "_g")
            if g is None:
                raise CheckpointError(f"weight-norm tensor {key} has no matching {stem}_g")
            out[stem] = torch._weight_norm(value.float(), g.float(), 0)
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------------------------------------------
# BigVGAN (v3)


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """[1, 1, K] Kaiser-windowed sinc low-pass (cutoff as a fraction of the sample rate), normalised to sum 1."""
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    if kernel_size % 2 == 0:
        time = torch.arange(-half, half) + 0.5
    else:
        time = torch.arange(kernel_size) - half
    filt = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (filt / filt.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(c, -1, -1), stride=self.ratio, groups=c)
        return x[..., self.crop_left : -self.crop_right]


class LowPassFilter1d(nn.Module):
    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int = 12):
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(c, -1, -1), stride=self.stride, groups=c)


class DownSample1d(nn.Module):
    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Snake(nn.Module):
    """x + 1/b * sin^2(a x) per channel (SnakeBeta: separate b; Snake: b = a); a, b stored as logs when logscale."""

    def __init__(self, channels: int, beta: bool, logscale: bool):
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        if beta:
            self.beta = nn.Parameter(init.clone())
        else:
            self.register_parameter("beta", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        beta = alpha if self.beta is None else self.beta[None, :, None]
        if self.logscale:
            alpha, beta = torch.exp(alpha), torch.exp(beta)
        s = torch.sin(x * alpha)
        return torch.addcmul(x, s * s, 1.0 / (beta + 1e-9))  # one fused pass over the (2x rate) signal


class AntiAliasedActivation(nn.Module):
    """x2 upsample -> activation -> x2 downsample (upstream ``Activation1d``)."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.act = act
        self.upsample = UpSample1d(2, 12)
        self.downsample = DownSample1d(2, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class AMPBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], snake_beta: bool, logscale: bool):
        super().__init__()
        same = lambda d: (kernel_size * d - d) // 2  # noqa: E731
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=same(d))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, padding=same(1)) for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedActivation(Snake(channels, snake_beta, logscale))
                                         for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            x = x + c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x))))
        return x


class BigVGAN(nn.Module):
    def __init__(self, h: Mapping[str, Any]):
        super().__init__()
        if str(h.get("resblock", "1")) != "1":
            raise CheckpointError(f"BigVGAN resblock type {h.get('resblock')!r} is not supported (the official "
                                  "24 kHz model uses '1')")
        act = h.get("activation", "snakebeta")
        if act not in ("snake", "snakebeta"):
            raise CheckpointError(f"BigVGAN activation {act!r} is not supported (snake / snakebeta)")
        snake_beta, logscale = act == "snakebeta", bool(h.get("snake_logscale", True))
        self.config = dict(h)
        self.sample_rate = int(h.get("sampling_rate", 24000))
        self.hop = int(math.prod(h["upsample_rates"]))
        self.n_kernels = len(h["resblock_kernel_sizes"])
        ch0 = int(h["upsample_initial_channel"])
        self.conv_pre = nn.Conv1d(int(h["num_mels"]), ch0, 7, 1, padding=3)
        self.ups = nn.ModuleList(
            nn.ModuleList([nn.ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)])
            for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"]))
        )
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = ch0 // 2 ** (i + 1)
            for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
                self.resblocks.append(AMPBlock1(ch, k, d, snake_beta, logscale))
        self.activation_post = AntiAliasedActivation(Snake(ch, snake_beta, logscale))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=bool(h.get("use_bias_at_final", True)))
        self.use_tanh = bool(h.get("use_tanh_at_final", True))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, num_mels, T] -> audio [B, 1, T * hop]."""
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up[0](x)
            blocks = self.resblocks[i * self.n_kernels : (i + 1) * self.n_kernels]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / self.n_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.use_tanh else torch.clamp(x, -1.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# v4 HiFi-GAN generator (plain weights, as the official vocoder.pth stores them)

V4_VOCODER_CONFIG = {
    "initial_channel": 100,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "upsample_rates": [10, 6, 2, 2, 2],
    "upsample_initial_channel": 512,
    "upsample_kernel_sizes": [20, 12, 4, 4, 4],
}


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]):
        super().__init__()
        same = lambda d: (kernel_size * d - d) // 2  # noqa: E731
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=same(d))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, padding=same(1)) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGANVocoder(nn.Module):
    """The v4 vocoder: upstream ``models.Generator(initial_channel=100, ..., is_bias=True)`` after weight-norm
    removal. 48 kHz out; conv_post has a bias; final LeakyReLU with torch's default slope 0.01, then tanh."""

    sample_rate = 48000

    def __init__(self, initial_channel: int = 100, resblock_kernel_sizes=(3, 7, 11),
                 resblock_dilation_sizes=((1, 3, 5),) * 3, upsample_rates=(10, 6, 2, 2, 2),
                 upsample_initial_channel: int = 512, upsample_kernel_sizes=(20, 12, 4, 4, 4)):
        super().__init__()
        self.hop = int(math.prod(upsample_rates))
        self.n_kernels = len(resblock_kernel_sizes)
        ch0 = upsample_initial_channel
        self.conv_pre = nn.Conv1d(initial_channel, ch0, 7, 1, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = ch0 // 2 ** (i + 1)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(ch, k, d))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=True)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.n_kernels : (i + 1) * self.n_kernels]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / self.n_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> "HiFiGANVocoder":
        """Build with the widths of ``state`` (upsample_initial_channel from conv_pre) and load it strictly."""
        if "conv_pre.weight" not in state:
            raise CheckpointError("not a v4 vocoder state dict (no conv_pre.weight)")
        cfg = dict(V4_VOCODER_CONFIG)
        cfg["upsample_initial_channel"] = int(state["conv_pre.weight"].shape[0])
        cfg["initial_channel"] = int(state["conv_pre.weight"].shape[1])
        model = cls(**cfg)
        load_strict(model, fold_weight_norm(state), "v4 vocoder")
        return model


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        lines = str(exc).strip().splitlines()
        detail = next((line.strip() for line in lines if "size mismatch" in line), lines[-1] if lines else "")
        raise ModelMismatchError(f"{what} weights do not fit the model built from their config ({detail})") from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelMismatchError(
            f"{what} weights do not fit the model: {len(result.missing_keys)} missing (e.g. {result.missing_keys[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})")


def build_bigvgan(config: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None = None) -> BigVGAN:
    try:
        model = BigVGAN(config)
    except KeyError as exc:
        raise CheckpointError(f"BigVGAN config.json lacks {exc}") from None
    if state is not None:
        load_strict(model, fold_weight_norm(state), "BigVGAN")
    return model


__all__ = ["BigVGAN", "HiFiGANVocoder", "V4_VOCODER_CONFIG", "build_bigvgan", "fold_weight_norm",
           "kaiser_sinc_filter"]
