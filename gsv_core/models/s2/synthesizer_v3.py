"""SynthesizerTrnV3: the SoVITS model of GPT-SoVITS v3 and v4 (semantic tokens -> mel features -> CFM).

    codes (25 Hz) -> codebook vectors x2 (50 Hz) -> enc_p (+ MRTE timbre ge) -> bridge (Conv1d + LeakyReLU)
      -> nearest resampling x1.875 (v3: 93.75 Hz mel frames at 24 kHz / hop 256) or x2 (v4: 100 Hz, 32 kHz / 320)
      -> wns1 (gated WaveNet conditioned on ge) = ``fea`` [B, C2, T]  ->  cfm (DiT flow matching) -> mel -> vocoder

The reference contributes ``ge`` (MelStyleEncoder over the first 704 bins of its 32 kHz linear spectrogram) and
the prompt: its own tokens encoded the same way give the features aligned with its mel. There is no flow, HiFi-GAN
decoder or posterior encoder. ``linear_mel`` is part of the official files but unused by inference.

Several widths are fixed in upstream's code rather than in the config (C2 = 512, 8 wns1 layers, the DiT sizes);
:func:`build_synthesizer_v3` takes them from the weights so any consistently shaped model loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ...errors import CheckpointError, GSVError, ModelMismatchError, UnsupportedVersionError
from ..cfm import CFM, DiT, DiTConfig, MEL_BANDS
from .flow import WaveNet
from .layers import sequence_mask
from .quantizer import ResidualVectorQuantizer
from .ref_encoder import MelStyleEncoder
from .text_encoder import SSL_DIM, TextEncoder

CFM_VERSIONS = ("v3", "v4")
REF_BINS = 704
N_SYMBOLS = 732
#: version -> (nearest-upsampling factor of the 50 Hz encoder output, mel frames per 25 Hz token)
FRAME_RATES = {"v3": (1.875, 3.875), "v4": (2.0, 4.0)}


@dataclass(frozen=True)
class V3Widths:
    """The sizes upstream hard-codes in SynthesizerTrnV3 (official values by default)."""

    fea_channels: int = 512  # C2: bridge output, wns1 width, DiT text_dim
    wns1_layers: int = 8
    dit: DiTConfig = field(default_factory=DiTConfig)

    @classmethod
    def from_weights(cls, weight: Mapping[str, torch.Tensor], prefix: str = "cfm.estimator.") -> "V3Widths":
        def count(stem: str) -> int:
            ids = {k[len(stem):].split(".")[0] for k in weight if k.startswith(stem)}
            return len(ids)

        try:
            c2 = int(weight["bridge.0.weight"].shape[0])
            dim = int(weight[prefix + "proj_out.weight"].shape[1])
            inner = int(weight[prefix + "transformer_blocks.0.attn.to_q.weight"].shape[0])
            ff = int(weight[prefix + "transformer_blocks.0.ff.ff.0.0.weight"].shape[0])
            text_dim = int(weight[prefix + "input_embed.proj.weight"].shape[1]) - 2 * MEL_BANDS
        except KeyError as exc:
            raise CheckpointError(f"SoVITS v3/v4 weights lack {exc}: not a complete CFM model") from None
        dim_head = 64  # DiT default, not passed by upstream
        inv = weight.get(prefix + "rotary_embed.inv_freq")
        if inv is not None:
            dim_head = 2 * int(inv.numel())
        dit = DiTConfig(dim=dim, depth=count(prefix + "transformer_blocks."), heads=inner // dim_head,
                        dim_head=dim_head, ff_inner=ff, text_dim=text_dim,
                        conv_layers=count(prefix + "text_embed.text_blocks."))
        return cls(fea_channels=c2, wns1_layers=count("wns1.enc.in_layers."), dit=dit)


class WNStack(nn.Module):
    """Conv1d -> gated WaveNet (conditioned on ge) -> Conv1d, masked (upstream ``models.Encoder``)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, gin_channels: int):
        super().__init__()
        self.pre = nn.Conv1d(in_channels, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.proj = nn.Conv1d(hidden, out_channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor]) -> torch.Tensor:
        if g is not None:
            g = g.detach()  # as upstream: this stack does not train the reference encoder
        x = self.enc(self.pre(x) * mask, mask, g)
        return self.proj(x) * mask


class SynthesizerTrnV3(nn.Module):
    def __init__(self, *, version: str, inter_channels: int, hidden_channels: int, filter_channels: int,
                 n_heads: int, n_layers: int, kernel_size: int, p_dropout: float, gin_channels: int,
                 widths: V3Widths = V3Widths(), codebook_size: int = 1024):
        super().__init__()
        if version not in CFM_VERSIONS:
            raise UnsupportedVersionError(f"SynthesizerTrnV3 is the v3/v4 model, not {version!r}")
        self.version = version
        self.widths = widths
        self.fea_scale, self.frames_per_token = FRAME_RATES[version]
        c2 = widths.fea_channels
        # registration order = official key order
        self.enc_p = TextEncoder(inter_channels, hidden_channels, filter_channels, n_heads, n_layers, kernel_size,
                                 p_dropout, N_SYMBOLS)
        self.ref_enc = MelStyleEncoder(REF_BINS, gin_channels)
        self.ssl_proj = nn.Conv1d(SSL_DIM, SSL_DIM, 2, stride=2)
        self.quantizer = ResidualVectorQuantizer(SSL_DIM, n_q=1, bins=codebook_size)
        self.bridge = nn.Sequential(nn.Conv1d(inter_channels, c2, 1), nn.LeakyReLU())
        self.wns1 = WNStack(c2, c2, c2, 5, 1, widths.wns1_layers, gin_channels)
        self.linear_mel = nn.Conv1d(c2, MEL_BANDS, 1)
        self.cfm = CFM(DiT(widths.dit))

    # ---------------------------------------------------------------------------------------------------------

    def extract_latent(self, ssl: torch.Tensor) -> torch.Tensor:
        """HuBERT features [B, 768, T50] -> semantic codes [B, 1, T50 // 2]."""
        return self.quantizer.encode(self.ssl_proj(ssl)).transpose(0, 1)

    def timbre(self, refer: torch.Tensor) -> torch.Tensor:
        """Linear spectrogram [B, 1025, T] at 32 kHz -> ge [B, gin, 1] (first 704 bins, all frames valid)."""
        return self.ref_enc(refer[:, :REF_BINS].to(self.ssl_proj.weight.dtype))

    def fea_frames(self, n_tokens: int, speed: float = 1.0) -> int:
        """Valid frames of ``encode``'s output for n tokens (upstream's y_lengths1; one short for v4 at speed != 1)."""
        if speed == 1:
            return int(n_tokens * self.frames_per_token)
        return int(n_tokens * self.frames_per_token / speed) + 1

    @torch.no_grad()
    def encode(self, codes: torch.Tensor, text: torch.Tensor, ge: torch.Tensor, speed: float = 1.0,
               capture: Optional[dict] = None) -> torch.Tensor:
        """codes [n_q=1, B, N], phone ids [B, P], ge [B, gin, 1] -> fea [B, C2, frames] (upstream
        ``decode_encp`` given ge). ``capture`` receives ``enc_p_x`` and ``bridge``."""
        batch, n = codes.size(1), codes.size(-1)
        content = self.quantizer.decode(codes, repeat=2)
        y_lengths = torch.full((batch,), 2 * n, dtype=torch.long, device=codes.device)
        text_lengths = torch.full((batch,), text.size(-1), dtype=torch.long, device=text.device)
        x, _, _, _ = self.enc_p(content, y_lengths, text, text_lengths, ge, speed)
        fea = self.bridge(x)
        if capture is not None:
            capture["enc_p_x"], capture["bridge"] = x.detach(), fea.detach()
        fea = F.interpolate(fea, scale_factor=self.fea_scale, mode="nearest")
        lengths = torch.full((batch,), self.fea_frames(n, speed), dtype=torch.long, device=fea.device)
        mask = sequence_mask(lengths, fea.size(2), fea.dtype)
        return self.wns1(fea, mask, ge)

    @torch.no_grad()
    def decode_encp(self, codes: torch.Tensor, text: torch.Tensor, refer: Optional[torch.Tensor],
                    ge: Optional[torch.Tensor] = None, speed: float = 1.0):
        """Upstream's entry point: ``(fea, ge)``; ge is computed from ``refer`` when not given."""
        if ge is None:
            ge = self.timbre(refer)
        return self.encode(codes, text, ge, speed), ge

    def forward_train(self, ssl: torch.Tensor, spec: torch.Tensor, mel: torch.Tensor, spec_lengths: torch.Tensor,
                      text: torch.Tensor, text_lengths: torch.Tensor, mel_lengths: torch.Tensor,
                      grad_ckpt: bool = False) -> torch.Tensor:
        """Upstream's training pass (``SynthesizerTrnV3.forward``) -> the CFM loss.

        ssl: HuBERT [B, 768, T50]; spec: 32 kHz linear spectrograms [B, 1025, T]; mel: normalised target mels
        [B, 100, T_mel]. The timbre, quantizer and text encoder run in float32 without gradient (enc_p in eval mode,
        the quantizer frozen) and ge reaches wns1 detached, so only bridge, wns1 and the CFM (its LoRA adapters
        when added) learn; a random prompt of up to 2/3 of each mel is given to the CFM."""
        with torch.autocast(device_type=ssl.device.type, enabled=False):
            y_mask = sequence_mask(spec_lengths, spec.size(2), spec.dtype)
            ge = self.ref_enc(spec[:, :REF_BINS] * y_mask, y_mask)
            with torch.no_grad():
                self.ssl_proj.eval()
                self.enc_p.eval()
                codes = self.quantizer.encode(self.ssl_proj(ssl))
                quantized = self.quantizer.decode(codes, repeat=2)
                x, _, _, _ = self.enc_p(quantized, spec_lengths, text, text_lengths, ge)
        fea = F.interpolate(self.bridge(x), scale_factor=self.fea_scale, mode="nearest")
        fea = self.wns1(fea, sequence_mask(mel_lengths, fea.size(2), fea.dtype), ge)
        prompt_max = mel_lengths * 2 / 3
        prompt_lens = (torch.rand([fea.size(0)], device=fea.device) * prompt_max).floor().to(torch.long)
        n = min(mel.size(-1), fea.size(-1))
        return self.cfm.training_loss(mel[:, :, :n], mel_lengths, prompt_lens, fea[:, :, :n].transpose(1, 2),
                                      grad_ckpt=grad_ckpt)

    def decode(self, *args, **kwargs):
        raise GSVError(
            f"SoVITS {self.version} models synthesise through gsv_core.engine.cfm_decode (CFM + vocoder), not "
            "SynthesizerTrn.decode")

    # ---------------------------------------------------------------------------------------------------------

    def load_weights(self, weight: Mapping[str, torch.Tensor]) -> None:
        """Load a full state dict; anything missing or unexpected is an error (rotary inv_freq may be absent:
        files saved with older x_transformers do not carry it, and then the computed values are kept)."""
        result = self.load_state_dict(weight, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("rotary_embed.inv_freq")]
        if missing or result.unexpected_keys:
            raise ModelMismatchError(
                f"SoVITS {self.version} weights do not fit the model: {len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})")


def build_synthesizer_v3(hps: Mapping[str, Any], version: str,
                         weight: Optional[Mapping[str, torch.Tensor]] = None) -> SynthesizerTrnV3:
    """The v3/v4 model for a checkpoint config (plain dict); hard-coded widths from ``weight`` when given, else the
    official ones."""
    if version not in CFM_VERSIONS:
        raise UnsupportedVersionError(f"SoVITS version {version!r} is not a CFM version ({', '.join(CFM_VERSIONS)})")
    try:
        model = hps["model"]
        kwargs = {k: model[k] for k in ("inter_channels", "hidden_channels", "filter_channels", "n_heads",
                                        "n_layers", "kernel_size", "p_dropout", "gin_channels")}
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"The SoVITS config lacks a required entry: {exc}") from exc
    problems = []
    if kwargs["inter_channels"] != kwargs["hidden_channels"]:
        problems.append("inter_channels must equal hidden_channels (the bridge reads the encoder's hidden output)")
    if kwargs["gin_channels"] != 512:
        problems.append(f"gin_channels must be 512 (ge feeds MRTE directly), not {kwargs['gin_channels']}")
    if kwargs["hidden_channels"] % kwargs["n_heads"]:
        problems.append(f"hidden_channels {kwargs['hidden_channels']} is not divisible by n_heads {kwargs['n_heads']}")
    if problems:
        raise CheckpointError("Unsupported SoVITS v3/v4 config: " + "; ".join(problems))
    widths = V3Widths.from_weights(weight) if weight is not None else V3Widths()
    return SynthesizerTrnV3(version=version, widths=widths, **kwargs)


__all__ = ["CFM_VERSIONS", "FRAME_RATES", "SynthesizerTrnV3", "V3Widths", "WNStack", "build_synthesizer_v3"]
