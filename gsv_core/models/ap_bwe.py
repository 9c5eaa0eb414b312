"""AP-BWE bandwidth extension (24 -> 48 kHz), the optional "super-sampling" of SoVITS v3 output.

Upstream (tools/audio_sr.py) resamples the 24 kHz audio to 48 kHz, takes a log-amplitude + phase STFT, predicts
the wide-band amplitude (as a residual) and phase with two interacting ConvNeXt stacks, and inverts the STFT. The
weights (``g_24kto48k.zip``, a torch file ``{"generator": state}``, plus its ``config.json``) are not among the
Hugging Face pretrained files; without them :func:`load_super_sampler` raises a CheckpointError naming the folder,
and callers hide the option (:func:`weights_present`).

Deviation: upstream resamples with torchaudio's sinc resampler; we use soxr (``gsv_core.audio.resample``), so the
band-limited input differs slightly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError

WEIGHTS_NAME = "g_24kto48k.zip"
CONFIG_NAME = "config.json"


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> Linear x3 -> GELU -> Linear, layer-scaled residual; [B, C, T]."""

    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, dim * 3)
        self.pwconv2 = nn.Linear(dim * 3, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2))
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + h.transpose(1, 2)


class APNetBWE(nn.Module):
    def __init__(self, h: Mapping[str, Any]):
        super().__init__()
        ch, layers, bins = int(h["ConvNeXt_channels"]), int(h["ConvNeXt_layers"]), int(h["n_fft"]) // 2 + 1
        self.conv_pre_mag = nn.Conv1d(bins, ch, 7, 1, padding=3)
        self.norm_pre_mag = nn.LayerNorm(ch, eps=1e-6)
        self.conv_pre_pha = nn.Conv1d(bins, ch, 7, 1, padding=3)
        self.norm_pre_pha = nn.LayerNorm(ch, eps=1e-6)
        self.convnext_mag = nn.ModuleList(ConvNeXtBlock(ch, 1 / layers) for _ in range(layers))
        self.convnext_pha = nn.ModuleList(ConvNeXtBlock(ch, 1 / layers) for _ in range(layers))
        self.norm_post_mag = nn.LayerNorm(ch, eps=1e-6)
        self.norm_post_pha = nn.LayerNorm(ch, eps=1e-6)
        self.linear_post_mag = nn.Linear(ch, bins)
        self.linear_post_pha_r = nn.Linear(ch, bins)
        self.linear_post_pha_i = nn.Linear(ch, bins)

    def forward(self, log_amp: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, bins, T] narrow-band log amplitude and phase -> wide-band (log amplitude, phase)."""
        tnorm = lambda norm, x: norm(x.transpose(1, 2)).transpose(1, 2)  # noqa: E731
        xm = tnorm(self.norm_pre_mag, self.conv_pre_mag(log_amp))
        xp = tnorm(self.norm_pre_pha, self.conv_pre_pha(phase))
        for block_m, block_p in zip(self.convnext_mag, self.convnext_pha):
            xm = xm + xp
            xp = xp + xm
            xm, xp = block_m(xm), block_p(xp)
        xm = self.norm_post_mag(xm.transpose(1, 2))
        amp = log_amp + self.linear_post_mag(xm).transpose(1, 2)
        xp = self.norm_post_pha(xp.transpose(1, 2))
        pha = torch.atan2(self.linear_post_pha_i(xp), self.linear_post_pha_r(xp)).transpose(1, 2)
        return amp, pha


class SuperSampler:
    """24 kHz audio -> 48 kHz with AP-BWE."""

    def __init__(self, model: APNetBWE, config: Mapping[str, Any]):
        self.model = model.eval()
        self.config = dict(config)
        self.n_fft, self.hop, self.win = int(config["n_fft"]), int(config["hop_size"]), int(config["win_size"])
        self.sample_rate = int(config.get("hr_sampling_rate", 48000))

    def to(self, *args, **kwargs) -> "SuperSampler":
        self.model.to(*args, **kwargs)
        return self

    @torch.no_grad()
    def __call__(self, audio: torch.Tensor | np.ndarray, sr: int) -> tuple[np.ndarray, int]:
        """Mono audio [T] at ``sr`` -> (float32 audio at ``sample_rate``, sample_rate)."""
        from ..audio import resample

        wav = np.asarray(audio.detach().float().cpu() if isinstance(audio, torch.Tensor) else audio, np.float32)
        wav = resample(wav, sr, self.sample_rate) if sr != self.sample_rate else wav
        p = next(self.model.parameters())
        x = torch.from_numpy(wav).to(p.device)[None]
        window = torch.hann_window(self.win, device=x.device)
        spec = torch.stft(x, self.n_fft, self.hop, self.win, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
        log_amp, phase = torch.log(spec.abs() + 1e-4), torch.angle(spec)
        amp, pha = self.model(log_amp.to(p.dtype), phase.to(p.dtype))
        mag = torch.exp(amp.float())
        out = torch.istft(torch.complex(mag * torch.cos(pha.float()), mag * torch.sin(pha.float())), self.n_fft,
                          self.hop, self.win, window=window, center=True)
        return out[0].cpu().numpy().astype(np.float32), self.sample_rate


def weights_present(folder: str | Path) -> bool:
    f = Path(folder)
    return (f / WEIGHTS_NAME).is_file() and (f / CONFIG_NAME).is_file()


def load_super_sampler(folder: str | Path, device: str | torch.device = "cpu") -> SuperSampler:
    """The AP-BWE model from ``folder`` (g_24kto48k.zip + config.json, upstream tools/AP_BWE_main/24kto48k/)."""
    from ..checkpoints import read_file_bytes, safe_torch_load

    f = Path(folder)
    if not weights_present(f):
        raise CheckpointError(
            f"Super-sampling (AP-BWE, 24 -> 48 kHz) needs {WEIGHTS_NAME} and {CONFIG_NAME} in {f}, which are not "
            "there. They are not part of the pretrained downloads: get them from the AP-BWE project "
            "(upstream: tools/AP_BWE_main/24kto48k/) or synthesise without super-sampling.")
    try:
        config = json.loads((f / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{f / CONFIG_NAME} is not readable JSON: {exc}") from exc
    expected = "the AP-BWE generator weights (g_24kto48k.zip)"
    _, data = read_file_bytes(f / WEIGHTS_NAME, expected)
    obj = safe_torch_load(data, f / WEIGHTS_NAME, expected)
    state = obj.get("generator") if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{f / WEIGHTS_NAME}: no 'generator' state dict")
    try:
        model = APNetBWE(config)
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{f}: AP-BWE weights do not fit its config.json ({str(exc).splitlines()[0]})") from None
    return SuperSampler(model, config).to(device)


__all__ = ["APNetBWE", "SuperSampler", "load_super_sampler", "weights_present"]
