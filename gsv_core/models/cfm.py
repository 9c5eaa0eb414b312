"""Conditional flow matching with a DiT velocity estimator: the mel generator of SoVITS v3 / v4.

The CFM turns noise into a 100-band normalised log-mel in ``n`` Euler steps, conditioned on a per-frame feature
``mu`` (the SoVITS encoder output, C2 wide) and on a prompt mel (the reference) that fills the first frames:

    x0 ~ N(0, 1); x[..., :Tp] = 0
    for j in 0..n-1:  x += (1/n) * DiT(x, prompt, mu, t=j/n, d=1/n);  x[..., :Tp] = 0

The DiT (F5-TTS style) sees ``time_embed(t) + d_embed(d)``, a text branch (``mu`` + sinusoidal positions + ConvNeXt-V2
blocks, computed once per call), an input projection of [x, prompt, text] with a convolutional position embedding,
``depth`` AdaLN-Zero transformer blocks and a final AdaLN + projection. Rotary positions (x_transformers' layout:
interleaved pairs, ``inv_freq`` read from the checkpoint) are applied to the first ``dim_head`` channels of the full
q/k projections, i.e. to head 0 only, exactly as the official weights were trained.

Batches may mix items of different lengths and prompt lengths (``x_lens`` / ``prompt_lens``): padded frames are
kept out of every convolution, of the GRN statistics and of attention, so an item's result does not depend on what
it is batched with. With equal lengths the masks are skipped and the arithmetic is upstream's.

Attribute tree = official key tree (``cfm.estimator.*``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

MEL_BANDS = 100
TEXT_MAX_POS = 4096  # the text branch's sinusoidal table length; later frames reuse the last position
ROPE_BASE = 10000.0


@dataclass(frozen=True)
class DiTConfig:
    dim: int = 1024
    depth: int = 22
    heads: int = 16
    dim_head: int = 64
    ff_inner: int = 2048  # dim * ff_mult
    text_dim: int = 512
    conv_layers: int = 4
    mel_dim: int = MEL_BANDS


def _mask_time(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """x [B, T, C]; mask [B, T] bool or None."""
    return x if mask is None else x.masked_fill(~mask[..., None], 0.0)


# ----------------------------------------------------------------------------------------------------------------
# embeddings


class TimestepEmbedding(nn.Module):
    """Scalar per item -> [B, dim]: 256 sinusoidal features (scale 1000, [sin | cos]) and a 2-layer SiLU MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device).float() * -(math.log(10000) / (half - 1)))
        arg = 1000 * t.unsqueeze(1) * freqs.unsqueeze(0)
        feats = torch.cat((arg.sin(), arg.cos()), dim=-1).to(t.dtype)
        return self.time_mlp(feats)


def text_positions(length: int, dim: int, device, dtype) -> torch.Tensor:
    """[length, dim] = [cos | sin] of pos * 10000^(-2i/dim), positions capped at TEXT_MAX_POS - 1."""
    freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=device)[: dim // 2].float() / dim))
    pos = torch.arange(length, device=device, dtype=torch.float32).long().clamp(max=TEXT_MAX_POS - 1)
    angles = torch.outer(pos, freqs).float()
    return torch.cat((torch.cos(angles), torch.sin(angles)), dim=-1).to(dtype)


class GRN(nn.Module):
    """Global response normalisation: L2 norm over time, divided by its channel mean."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        gx = torch.norm(_mask_time(x, mask), p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, inner)
        self.grn = GRN(inner)
        self.pwconv2 = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, T, C] (zero at padded frames when ``mask`` is given)."""
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = F.gelu(self.pwconv1(self.norm(h)))
        h = self.pwconv2(self.grn(h, mask))
        return _mask_time(x + h, mask)


class TextEmbedding(nn.Module):
    """The condition branch: mu [B, T, C2] + positions -> ConvNeXt-V2 blocks."""

    def __init__(self, text_dim: int, conv_layers: int, conv_mult: int = 2):
        super().__init__()
        self.text_dim = text_dim
        self.text_blocks = nn.ModuleList(ConvNeXtV2Block(text_dim, text_dim * conv_mult) for _ in range(conv_layers))

    def forward(self, text: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not len(self.text_blocks):
            return text
        x = _mask_time(text + text_positions(text.size(1), self.text_dim, text.device, text.dtype), mask)
        for block in self.text_blocks:
            x = block(x, mask)
        return x


class ConvPositionEmbedding(nn.Module):
    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16):
        super().__init__()
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2), nn.Mish(),
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=kernel_size // 2), nn.Mish(),
        )

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = _mask_time(x, mask)
        if mask is None:
            return self.conv1d(x.transpose(1, 2)).transpose(1, 2)
        h = x.transpose(1, 2)
        m = mask[:, None, :].to(h.dtype)
        h = F.mish(self.conv1d[0](h)) * m  # padded frames stay zero between the two convolutions
        h = F.mish(self.conv1d[2](h))
        return _mask_time(h.transpose(1, 2), mask)


class InputEmbedding(nn.Module):
    def __init__(self, mel_dim: int, text_dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(mel_dim * 2 + text_dim, out_dim)
        self.conv_pos_embed = ConvPositionEmbedding(out_dim)

    def forward(self, x, cond, text_embed, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.proj(torch.cat((x, cond, text_embed), dim=-1))
        return self.conv_pos_embed(x, mask) + x


class RotaryEmbedding(nn.Module):
    """x_transformers' rotary table. ``inv_freq`` is a persistent buffer: the official files store it (in fp16)
    and the model must use those rounded values."""

    def __init__(self, dim_head: int):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (ROPE_BASE ** (torch.arange(0, dim_head, 2).float() / dim_head)))

    def forward(self, length: int) -> torch.Tensor:
        """[1, length, dim_head] angles, each frequency repeated for the two channels of its pair."""
        inv = self.inv_freq.float()
        t = torch.arange(length, device=inv.device).float()
        freqs = torch.einsum("i,j->ij", t, inv)
        return torch.stack((freqs, freqs), dim=-1).reshape(1, length, -1)

    def cos_sin(self, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) of the angles, computed once per sequence length and reused by every layer and step."""
        angles = self.forward(length)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the first ``cos.size(-1)`` channels of x [B, T, C] by interleaved pairs (rope = (cos, sin) of the
    angles); the remaining channels pass through unrotated."""
    cos, sin = rope
    rot = cos.size(-1)
    xr, xp = x[..., :rot], x[..., rot:]
    pairs = xr.unflatten(-1, (-1, 2))
    rotated_half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    out = xr * cos + rotated_half * sin
    return torch.cat((out.to(x.dtype), xp), dim=-1)


# ----------------------------------------------------------------------------------------------------------------
# transformer


class AdaLayerNormZero(nn.Module):
    """LayerNorm (no affine) modulated by the time vector; returns the modulated x and the 4 later terms."""

    def __init__(self, dim: int, chunks: int = 6):
        super().__init__()
        self.linear = nn.Linear(dim, dim * chunks)

    def forward(self, x: torch.Tensor, emb: torch.Tensor):
        shift, scale, gate, shift_ff, scale_ff, gate_ff = self.linear(F.silu(emb)).chunk(6, dim=1)
        x = F.layer_norm(x, (x.size(-1),), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
        return x, gate, shift_ff, scale_ff, gate_ff


class AdaLayerNormZeroFinal(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim * 2)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(emb)).chunk(2, dim=1)
        return F.layer_norm(x, (x.size(-1),), eps=1e-6) * (1 + scale)[:, None, :] + shift[:, None, :]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor, rope, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = apply_rotary(self.to_q(x), rope)
        k = apply_rotary(self.to_k(x), rope)
        v = self.to_v(x)
        q, k, v = (y.view(b, t, self.heads, -1).transpose(1, 2) for y in (q, k, v))
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = self.to_out[1](self.to_out[0](out.transpose(1, 2).reshape(b, t, -1)))
        return _mask_time(out, mask)


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner: int, dropout: float = 0.0):
        super().__init__()
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(dim, inner), nn.GELU(approximate="tanh")), nn.Dropout(dropout), nn.Linear(inner, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_inner: int, dropout: float = 0.1):
        super().__init__()
        self.attn_norm = AdaLayerNormZero(dim)
        self.attn = Attention(dim, heads, dim_head, dropout)
        self.ff = FeedForward(dim, ff_inner, dropout)

    def forward(self, x, t, rope, mask=None):
        h, gate, shift_ff, scale_ff, gate_ff = self.attn_norm(x, t)
        x = x + gate.unsqueeze(1) * self.attn(h, rope, mask)
        h = F.layer_norm(x, (x.size(-1),), eps=1e-6) * (1 + scale_ff[:, None]) + shift_ff[:, None]
        return x + gate_ff.unsqueeze(1) * self.ff(h)


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig, dropout: float = 0.1):
        super().__init__()
        self.cfg = cfg
        self.time_embed = TimestepEmbedding(cfg.dim)
        self.d_embed = TimestepEmbedding(cfg.dim)
        self.text_embed = TextEmbedding(cfg.text_dim, cfg.conv_layers)
        self.input_embed = InputEmbedding(cfg.mel_dim, cfg.text_dim, cfg.dim)
        self.rotary_embed = RotaryEmbedding(cfg.dim_head)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(cfg.dim, cfg.heads, cfg.dim_head, cfg.ff_inner, dropout) for _ in range(cfg.depth)
        )
        self.norm_out = AdaLayerNormZeroFinal(cfg.dim)
        self.proj_out = nn.Linear(cfg.dim, cfg.mel_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, text_embed: torch.Tensor, t_emb: torch.Tensor,
                mask: Optional[torch.Tensor] = None, rope=None, mask_convs: bool = True,
                grad_ckpt: bool = False) -> torch.Tensor:
        """x, cond: [B, T, 100]; text_embed: [B, T, text_dim] (from ``text_embed``); t_emb: [B, dim]
        (time_embed(t) + d_embed(d)); mask: [B, T] bool or None; rope: ``rotary_embed.cos_sin(T)`` (computed when
        None). Returns the velocity [B, T, 100].

        ``mask_convs=False`` masks attention only, as upstream's training does (padded frames then reach the
        position convolution)."""
        if rope is None:
            rope = self.rotary_embed.cos_sin(x.size(1), x.dtype)
        h = self.input_embed(x, cond, text_embed, mask if mask_convs else None)
        for block in self.transformer_blocks:
            if grad_ckpt and torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                h = checkpoint(block, h, t_emb, rope, mask, use_reentrant=False)
            else:
                h = block(h, t_emb, rope, mask)
        return self.proj_out(self.norm_out(h, t_emb))


# ----------------------------------------------------------------------------------------------------------------
# sampler

NoiseFn = Callable[[int, int], torch.Tensor]  # (item index, frames) -> [100, frames]


class CFM(nn.Module):
    def __init__(self, estimator: DiT):
        super().__init__()
        self.estimator = estimator

    @torch.no_grad()
    def inference(self, mu: torch.Tensor, prompt: torch.Tensor, n_steps: int, *,
                  x_lens: Optional[Sequence[int]] = None, prompt_lens: Optional[Sequence[int]] = None,
                  noise: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                  temperature: float = 1.0,
                  on_step: Optional[Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]] = None
                  ) -> torch.Tensor:
        """Sample mels [B, 100, T] (prompt frames zero) for mu [B, T, C2] and prompt mels [B or 1, 100, Tp].

        ``x_lens`` / ``prompt_lens`` (per item, default T / Tp) allow items of different lengths in one batch; the
        prompt of item b is ``prompt[b, :, :prompt_lens[b]]``. ``noise`` [B, 100, T] replaces the draw from
        ``generator`` (upstream draws ``randn(B, 100, T)``). ``on_step(j, x, t, v)`` observes each Euler step.
        """
        est = self.estimator
        b, frames, _ = mu.shape
        dtype, device = mu.dtype, mu.device
        if noise is None:
            noise = torch.randn((b, est.cfg.mel_dim, frames), generator=generator, device=device, dtype=dtype)
        x = noise.to(device=device, dtype=dtype) * temperature
        tp = prompt.size(-1)
        x_lens = [frames] * b if x_lens is None else [int(n) for n in x_lens]
        p_lens = [tp] * b if prompt_lens is None else [int(n) for n in prompt_lens]
        ragged = any(n != frames for n in x_lens)
        uneven_prompts = any(n != tp for n in p_lens)

        steps = torch.arange(frames, device=device)
        mask = (steps[None] < torch.tensor(x_lens, device=device)[:, None]) if ragged else None
        if uneven_prompts:
            keep = steps[None] >= torch.tensor(p_lens, device=device)[:, None]  # [B, T]: frames that are generated
            zero_prompt = lambda y: y * keep[:, None, :].to(y.dtype)  # noqa: E731
        else:
            keep = None
            zero_prompt = lambda y: torch.cat((torch.zeros_like(y[..., :tp]), y[..., tp:]), dim=-1)  # noqa: E731
        cond = torch.zeros_like(x)
        cond[..., :tp] = prompt[..., :tp].to(dtype)
        if keep is not None:
            cond = cond * (~keep)[:, None, :].to(dtype)
        cond = cond.transpose(1, 2)
        x = zero_prompt(x)

        text = est.text_embed(mu if mask is None else _mask_time(mu, mask), mask)
        d = 1.0 / n_steps
        d_emb = est.d_embed(torch.full((b,), d, device=device, dtype=dtype))
        rope = est.rotary_embed.cos_sin(frames, dtype)
        t = 0.0
        for j in range(n_steps):
            t_tensor = torch.full((b,), t, device=device, dtype=dtype)
            t_emb = est.time_embed(t_tensor) + d_emb
            v = est(x.transpose(1, 2), cond, text, t_emb, mask, rope)
            if on_step is not None:
                on_step(j, x, t_tensor, v)
            x = zero_prompt(x + d * v.transpose(1, 2))
            t = t + d
        return x

    def training_loss(self, x1: torch.Tensor, x_lens: torch.Tensor, prompt_lens: torch.Tensor, mu: torch.Tensor,
                      shortcut_prob: float = 0.3, grad_ckpt: bool = False) -> torch.Tensor:
        """Upstream's CFM training objective. x1: target mels [B, 100, T] (normalised); mu: [B, T, C2].

        t ~ U(0, 1), x0 ~ N(0, 1), x_t = x0 + t (x1 - x0) with the first ``prompt_lens[b]`` frames zeroed and given
        as the prompt instead; the DiT predicts the velocity x1 - x0 at step size d = 0. With probability
        ``shortcut_prob`` the target is instead the mean velocity of two half steps of size d = 2^-k (k in 2..7,
        predicted without gradient; d < 0.01 is fed as 0) and the model is asked for one step of 2d. The loss is
        the mean over items of the MSE over frames [prompt_len, x_len)."""
        import random

        est = self.estimator
        b, _, frames = x1.shape
        device = mu.device
        t = torch.rand([b], device=device, dtype=x1.dtype)
        x0 = torch.randn_like(x1)
        vt = x1 - x0
        xt = x0 + t[:, None, None] * vt
        dt = torch.zeros_like(t)
        steps = torch.arange(frames, device=device)
        in_prompt = (steps[None] < prompt_lens.to(device)[:, None])[:, None, :]  # [B, 1, T]
        cond = (x1 * in_prompt).transpose(1, 2)
        xt = xt.masked_fill(in_prompt, 0.0)
        mask = steps[None] < x_lens.to(device)[:, None]
        text = est.text_embed(mu)
        rope = est.rotary_embed.cos_sin(frames, x1.dtype)

        def velocity(x, time, d):
            t_emb = est.time_embed(time) + est.d_embed(d)
            return est(x.transpose(1, 2), cond, text, t_emb, mask, rope, mask_convs=False,
                       grad_ckpt=grad_ckpt).transpose(1, 2)

        if random.random() < shortcut_prob:
            d = 1 / torch.pow(2, torch.randint(2, 8, (b,), device=device))
            d_in = d.clone()
            d_in[d_in < 1e-2] = 0
            with torch.no_grad():
                v1 = velocity(xt, t, d_in)
                v2 = velocity(xt + d[:, None, None] * v1, t + d, d_in)
            vt = (v1 + v2) / 2
            dt = 2 * d
        pred = velocity(xt, t, dt)
        loss = 0
        for i in range(b):
            p, n = int(prompt_lens[i]), int(x_lens[i])
            loss = loss + F.mse_loss(pred[i, :, p:n], vt[i, :, p:n])
        return loss / b


__all__ = ["CFM", "DiT", "DiTConfig", "MEL_BANDS", "apply_rotary", "text_positions"]
