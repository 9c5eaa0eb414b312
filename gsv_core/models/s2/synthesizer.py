"""SynthesizerTrn: the s2 SoVITS model of GPT-SoVITS v1 / v2 / v2Pro / v2ProPlus.

Semantic tokens (25 Hz) + target phones + reference spectrogram(s) -> 32 kHz waveform:

    codes -> codebook vectors, repeated to 50 Hz -> enc_p (with MRTE timbre) -> (m_p, logs_p)
    z_p = m_p + noise * exp(logs_p) * noise_scale -> flow^-1 (conditioned on ge) -> dec -> audio

``ge`` is the timbre vector of the reference(s) (MelStyleEncoder; v2Pro/v2ProPlus add a projected speaker-
verification embedding and a PReLU), averaged over references. The module attribute tree is the official
checkpoint key tree, ``enc_q`` (posterior encoder, training only) included.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ...errors import CheckpointError, GSVError, ModelMismatchError, UnsupportedVersionError
from .configs import S2_VERSIONS
from .flow import CouplingFlow, PosteriorEncoder
from .generator import Generator
from .quantizer import ResidualVectorQuantizer
from .ref_encoder import MelStyleEncoder
from .layers import sequence_mask
from .text_encoder import SSL_DIM, TextEncoder
from gsv_core.versions import VERSIONS

PRO_VERSIONS = tuple(v for v, m in VERSIONS.items() if m.speaker_embedding)  # gsv_core.versions
SV_DIM = 20480  # ERes2NetV2 embedding width fed to sv_emb
MRTE_GE_DIM = 512  # MRTE adds ge to its 512-wide hidden state
N_SYMBOLS = {"v1": 322, "v2": 732, "v2Pro": 732, "v2ProPlus": 732}
REF_BINS_V2 = 704  # v2+ reference encoders read only the first 704 of 1025 spectrogram bins (0 to ~11 kHz)

@dataclass(frozen=True)
class ReferenceCondition:
    """What :meth:`SynthesizerTrn.decode` derives from the reference(s) alone (:meth:`~SynthesizerTrn.
    reference_condition`): per reference set and model, not per sentence. Tensors on the model's device and dtype;
    None everywhere for a model decoded without a reference."""

    ge: torch.Tensor | None  # [1, gin, 1] averaged timbre (after the SV projection + PReLU for Pro models)
    ge_mrte: torch.Tensor | None  # [1, 512, 1] what MRTE adds
    flow: tuple  # per flow step: its WaveNet's cond_layer(ge) (None for the channel flips)
    dec: torch.Tensor | None  # [1, upsample_initial_channel, 1] the decoder's cond(ge)
    references: int
    version: str


class SynthesizerTrn(nn.Module):
    def __init__(self, *, version: str, spec_channels: int, segment_size: int, inter_channels: int,
                 hidden_channels: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int,
                 p_dropout: float, resblock: str, resblock_kernel_sizes: Sequence[int],
                 resblock_dilation_sizes: Sequence[Sequence[int]], upsample_rates: Sequence[int],
                 upsample_initial_channel: int, upsample_kernel_sizes: Sequence[int], gin_channels: int,
                 codebook_size: int = 1024):
        super().__init__()
        if version not in S2_VERSIONS:
            raise UnsupportedVersionError(f"SoVITS version {version!r} is not supported ({', '.join(S2_VERSIONS)})")
        self.version = version
        self.is_pro = version in PRO_VERSIONS
        self.segment_size = segment_size  # training slice, in frames
        self.samples_per_frame = 1
        for r in upsample_rates:
            self.samples_per_frame *= r

        # registration order = official key order
        self.enc_p = TextEncoder(inter_channels, hidden_channels, filter_channels, n_heads, n_layers, kernel_size,
                                 p_dropout, N_SYMBOLS[version])
        self.dec = Generator(inter_channels, resblock, resblock_kernel_sizes, resblock_dilation_sizes, upsample_rates,
                             upsample_initial_channel, upsample_kernel_sizes, gin_channels=gin_channels)
        self.enc_q = PosteriorEncoder(spec_channels, inter_channels, hidden_channels, 5, 1, 16, gin_channels)
        self.flow = CouplingFlow(inter_channels, hidden_channels, 5, 1, 4, gin_channels=gin_channels)
        self.ref_bins = spec_channels if version == "v1" else REF_BINS_V2
        self.ref_enc = MelStyleEncoder(self.ref_bins, gin_channels)
        self.ssl_proj = nn.Conv1d(SSL_DIM, SSL_DIM, 2, stride=2)  # 50 Hz HuBERT frames -> 25 Hz tokens
        self.quantizer = ResidualVectorQuantizer(SSL_DIM, n_q=1, bins=codebook_size)
        if self.is_pro:
            self.sv_emb = nn.Linear(SV_DIM, gin_channels)
            self.ge_to512 = nn.Linear(gin_channels, MRTE_GE_DIM)
            self.prelu = nn.PReLU(num_parameters=gin_channels)

    # ---------------------------------------------------------------------------------------------------------
    # semantic tokens

    def extract_latent(self, ssl: torch.Tensor) -> torch.Tensor:
        """HuBERT features [B, 768, T50] -> semantic codes [B, n_q=1, T50 // 2]."""
        return self.quantizer.encode(self.ssl_proj(ssl)).transpose(0, 1)

    # ---------------------------------------------------------------------------------------------------------
    # timbre

    def timbre(self, spec: torch.Tensor, mask: torch.Tensor | None = None, sv_emb: torch.Tensor | None = None,
               capture: dict[str, torch.Tensor] | None = None, tag: str = "") -> torch.Tensor:
        """Linear spectrogram [B, 1025, T] (+ SV embedding [B, 20480] for Pro) -> ge [B, gin, 1].

        ``mask`` [B, 1, T] marks valid frames (None: all valid). ``capture``/``tag`` record intermediates.
        """
        spec = spec[:, : self.ref_bins]
        if mask is not None:
            spec = spec * mask
        ge = self.ref_enc(spec, mask)
        _put(capture, "ref_enc_out" + tag, ge)
        if self.is_pro:
            if sv_emb is None:
                raise GSVError(f"A {self.version} model needs a speaker-verification embedding for every reference")
            proj = self.sv_emb(sv_emb.to(device=ge.device, dtype=ge.dtype))
            _put(capture, "sv_emb_proj" + tag, proj)
            ge = self.prelu(ge + proj.unsqueeze(-1))
            _put(capture, "ge_after_prelu" + tag, ge)
        return ge

    def mrte_timbre(self, ge: torch.Tensor | None) -> torch.Tensor | None:
        """The ge handed to MRTE: 512 wide; Pro models project their wider ge down."""
        if ge is None or not self.is_pro:
            return ge
        return self.ge_to512(ge.transpose(1, 2)).transpose(1, 2)

    # ---------------------------------------------------------------------------------------------------------
    # inference

    @torch.no_grad()
    def reference_condition(self, refer, sv_emb: Sequence[torch.Tensor] | torch.Tensor | None = None,
                            capture: dict[str, torch.Tensor] | None = None) -> "ReferenceCondition":
        """Everything decoding derives from the reference(s) alone, computed once: the averaged timbre ``ge``, its
        512-wide MRTE projection, the flow's and the decoder's conditioning projections of ``ge``.

        ``refer`` and ``sv_emb`` as in :meth:`decode`. Pass the result as ``decode(..., condition=...)`` for every
        sentence spoken with these references: the same operations on the same tensors, so the same audio."""
        device, dtype = self.ssl_proj.weight.device, self.ssl_proj.weight.dtype
        refs = [] if refer is None else (list(refer) if isinstance(refer, (list, tuple)) else [refer])
        if self.is_pro:
            if not refs:
                raise GSVError(f"A {self.version} model needs at least one reference spectrogram")
            svs = list(sv_emb) if isinstance(sv_emb, (list, tuple)) else ([sv_emb] if sv_emb is not None else [])
            if len(svs) != len(refs):
                raise GSVError(f"{len(refs)} reference(s) but {len(svs)} speaker-verification embedding(s); "
                               f"a {self.version} model needs exactly one per reference")
        else:
            svs = [None] * len(refs)

        ge = None
        if refs:
            ges = [self.timbre(r.to(device=device, dtype=dtype), sv_emb=s, capture=capture, tag=f"_ref{j}")
                   for j, (r, s) in enumerate(zip(refs, svs))]
            ge = ges[0] if len(ges) == 1 else torch.stack(ges).mean(0)
        _put(capture, "ge_final", ge)
        ge_mrte = self.mrte_timbre(ge)
        if self.is_pro:
            _put(capture, "ge512", ge_mrte.transpose(1, 2))
        return ReferenceCondition(ge, ge_mrte, self.flow.conditions(ge), self.dec.condition(ge), len(refs),
                                  self.version)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, text: torch.Tensor, refer=None, noise_scale: float = 0.5, speed: float = 1.0,
               sv_emb: Sequence[torch.Tensor] | torch.Tensor | None = None, generator: torch.Generator | None = None,
               capture: dict[str, torch.Tensor] | None = None,
               condition: "ReferenceCondition | None" = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Semantic codes [n_q=1, B, T] + phone ids [B, N] -> audio [B, 1, frames * 640].

        ``refer``: one spectrogram [1, 1025, T_ref] or a list of them (their ge are averaged). ``sv_emb``: for Pro
        models, one [1, 20480] embedding per reference (list, in the same order). ``condition``: the references'
        :meth:`reference_condition`, computed once and reused (then ``refer``/``sv_emb`` are not needed).
        frames = 2T at speed 1, else int(2T / speed) + 1. The prior noise is drawn even when ``noise_scale`` is 0,
        so the random stream advances exactly as upstream's. ``noise``: the prior noise [B, inter_channels, frames]
        drawn by the caller instead (token-level streaming draws it frame by frame, see
        :mod:`gsv_core.engine.streaming`). ``capture``: optional dict that receives the intermediates.
        """
        if condition is None:
            condition = self.reference_condition(refer, sv_emb, capture)
        z, mask = self.latent(codes, text, condition=condition, noise_scale=noise_scale, speed=speed,
                              generator=generator, noise=noise, capture=capture)
        return self.vocode(z, mask, condition)

    @torch.no_grad()
    def latent(self, codes: torch.Tensor, text: torch.Tensor, *, condition: "ReferenceCondition",
               noise_scale: float = 0.5, speed: float = 1.0, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None,
               capture: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first half of :meth:`decode`: codes + phones -> the flow's output ``z`` [B, inter, frames] and its
        mask [B, 1, frames], ready for :meth:`vocode` (whole or a window of frames)."""
        if condition.version != self.version:
            raise GSVError(f"a reference condition of a SoVITS {condition.version} model cannot drive a "
                           f"{self.version} model")
        ge, ge_mrte = condition.ge, condition.ge_mrte

        _, batch, t_codes = codes.shape
        content = self.quantizer.decode(codes, repeat=2)  # 25 Hz -> 50 Hz by nearest repetition
        y_lengths = torch.full((batch,), 2 * t_codes, dtype=torch.long, device=codes.device)
        text_lengths = torch.full((batch,), text.size(-1), dtype=torch.long, device=text.device)
        _put(capture, "y_lengths", y_lengths)

        _, m_p, logs_p, mask = self.enc_p(content, y_lengths, text, text_lengths, ge_mrte, speed)
        _put(capture, "enc_p_m_p", m_p)
        _put(capture, "enc_p_logs_p", logs_p)
        _put(capture, "enc_p_y_mask", mask)

        # drawn on the generator's device (a CPU generator with a CUDA model would fail), then moved: on one device
        # this is the plain draw, and a CPU generator gives the same noise whichever device the model runs on
        if noise is None:
            noise_device = m_p.device if generator is None else generator.device
            noise = torch.randn(m_p.shape, generator=generator, device=noise_device, dtype=m_p.dtype).to(m_p.device)
        elif tuple(noise.shape) != tuple(m_p.shape):
            raise GSVError(f"prior noise of shape {tuple(noise.shape)} given for a latent of shape {tuple(m_p.shape)}")
        z_p = m_p + noise.to(device=m_p.device, dtype=m_p.dtype) * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, mask, g=ge, reverse=True, conds=condition.flow)
        _put(capture, "flow_out_z", z)
        return z, mask

    @torch.no_grad()
    def vocode(self, z: torch.Tensor, mask: torch.Tensor, condition: "ReferenceCondition") -> torch.Tensor:
        """The second half of :meth:`decode`: latent frames (all or a window) -> audio [B, 1, frames * hop]."""
        return self.dec(z * mask, g=condition.ge, cond=condition.dec)

    # ---------------------------------------------------------------------------------------------------------
    # training

    def forward_train(self, ssl: torch.Tensor, y: torch.Tensor, y_lengths: torch.Tensor, text: torch.Tensor,
                      text_lengths: torch.Tensor, sv_emb: torch.Tensor | None = None,
                      segment_frames: int | None = None):
        """The training pass (upstream ``SynthesizerTrn.forward``).

        ssl: HuBERT features [B, 768, T] (T = the padded spectrogram length); y: linear spectrograms [B, 1025, T];
        text: phone ids [B, N]; sv_emb: [B, 20480] for Pro models. Returns, in upstream's order,
        ``(y_hat [B, 1, seg * hop], commit_loss, ids_slice [B], y_mask, y_mask, (z, z_p, m_p, logs_p, m_q, logs_q),
        quantized)``.

        The quantizer is frozen: ssl_proj and the nearest-code lookup run in float32 outside autocast and without
        gradient (upstream's eval-mode quantizer returns a plain codebook lookup, so nothing flows back there either),
        and the commitment loss is 0. ``segment_frames`` overrides the decoded slice length (default: the config's
        segment_size // hop).
        """
        seg = int(segment_frames or self.segment_size)
        y_mask = sequence_mask(y_lengths, y.size(2), y.dtype)
        if self.is_pro and sv_emb is None:
            raise GSVError(f"A {self.version} model needs a speaker-verification embedding per training item")
        ge = self.timbre(y, y_mask, sv_emb if self.is_pro else None)
        ge_mrte = self.mrte_timbre(ge)

        with torch.no_grad(), torch.autocast(device_type=ssl.device.type, enabled=False):
            proj = self.ssl_proj(ssl.to(self.ssl_proj.weight.dtype))
            codes = self.quantizer.encode(proj)
            quantized = self.quantizer.decode(codes, repeat=2)  # 25 Hz codes -> 50 Hz frames (nearest)
        commit_loss = torch.zeros((), device=ssl.device)

        _, m_p, logs_p, _ = self.enc_p(quantized, y_lengths, text, text_lengths, ge_mrte)
        z, m_q, logs_q, y_mask = self.enc_q(y, y_lengths, g=ge)
        z_p = self.flow(z, y_mask, g=ge)

        z_slice, ids_slice = rand_slice_segments(z, y_lengths, seg)
        y_hat = self.dec(z_slice, g=ge)
        return y_hat, commit_loss, ids_slice, y_mask, y_mask, (z, z_p, m_p, logs_p, m_q, logs_q), quantized

    # ---------------------------------------------------------------------------------------------------------
    # weights

    def load_exported_weights(self, weight: Mapping[str, torch.Tensor]) -> None:
        """Load an exported (``enc_q``-less) state dict; anything else missing or unexpected is an error."""
        result = self.load_state_dict(weight, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("enc_q.")]
        if missing or result.unexpected_keys:
            raise ModelMismatchError(
                f"SoVITS {self.version} weights do not fit the model built from their config: "
                f"{len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
            )


def slice_segments(x: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """x [B, C, T], starts [B] -> x[b, :, starts[b] : starts[b] + size] for every b ([B, C, size]).

    A tensor shorter than ``start + size`` is zero-padded on the right first (a clip shorter than the slice)."""
    need = int(starts.max().item()) + size if starts.numel() else size
    if x.size(2) < need:
        x = torch.nn.functional.pad(x, (0, need - x.size(2)))
    idx = starts.to(x.device).long()[:, None] + torch.arange(size, device=x.device)[None, :]
    return torch.gather(x, 2, idx[:, None, :].expand(-1, x.size(1), -1))


def rand_slice_segments(x: torch.Tensor, lengths: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random window of ``size`` frames inside each item's valid length (upstream's rule: start =
    int(U[0, 1) * (length - size + 1)), the uniforms drawn on the CPU generator), clamped at 0 for short items."""
    top = (lengths.to("cpu") - size + 1).to(torch.float32)
    starts = (torch.rand([x.size(0)], device="cpu") * top).to(torch.long).clamp_(min=0)
    starts = starts.to(x.device)
    return slice_segments(x, starts, size), starts


def _put(capture: dict[str, torch.Tensor] | None, name: str, value: torch.Tensor | None) -> None:
    if capture is not None and value is not None:
        capture[name] = value.detach()


def build_synthesizer(hps: Mapping[str, Any], version: str) -> SynthesizerTrn:
    """Build the model described by a checkpoint's config (plain nested dict: ``hps["model"]``, ``hps["data"]``).

    ``version`` in {'v1', 'v2', 'v2Pro', 'v2ProPlus'} (from the checkpoint loader) decides the symbol table, the
    reference-encoder input width and the Pro extras; every size comes from the config. ``semantic_frame_rate`` is
    taken as 25 Hz whatever the config says, as upstream's inference does.
    """
    if version not in S2_VERSIONS:
        raise UnsupportedVersionError(f"SoVITS version {version!r} is not supported ({', '.join(S2_VERSIONS)})")
    try:
        model, data = hps["model"], hps["data"]
        train = hps.get("train") or {}
        kwargs = {k: model[k] for k in (
            "inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
            "p_dropout", "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes", "upsample_rates",
            "upsample_initial_channel", "upsample_kernel_sizes", "gin_channels")}
        spec_channels = int(data["filter_length"]) // 2 + 1
        segment_size = int(train.get("segment_size", 20480)) // int(data["hop_length"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"The SoVITS config lacks a required entry: {exc}") from exc
    problems = []
    if version not in PRO_VERSIONS and kwargs["gin_channels"] != MRTE_GE_DIM:
        problems.append(f"gin_channels must be {MRTE_GE_DIM} for {version} (ge feeds MRTE directly), "
                        f"not {kwargs['gin_channels']}")
    if str(kwargs["resblock"]) != "1":
        problems.append(f"resblock type {kwargs['resblock']!r} is not used by any official model (only '1' is)")
    if kwargs["hidden_channels"] % kwargs["n_heads"]:
        problems.append(f"hidden_channels {kwargs['hidden_channels']} is not divisible by n_heads {kwargs['n_heads']}")
    if problems:
        raise CheckpointError("Unsupported SoVITS config: " + "; ".join(problems))
    return SynthesizerTrn(version=version, spec_channels=spec_channels, segment_size=segment_size, **kwargs)
