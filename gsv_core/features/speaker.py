"""Speaker vectors for SoVITS v2Pro/v2ProPlus: 16 kHz waveform -> Kaldi fbank -> ERes2NetV2.forward3.

Two embeddings come out of the same network (:data:`EMBEDDING_KINDS`, :meth:`SpeakerEncoder.embed`):

- ``"forward3"`` (:meth:`SpeakerEncoder.forward`): the 20480-d time-averaged feature map that v2Pro/v2ProPlus
  SoVITS is *conditioned on*. Comparing it between a synthesis and its reference rewards copying the
  conditioning, so it is not a fair speaker-similarity score;
- ``"segment"`` (:meth:`SpeakerEncoder.segment_embedding`): the model's own 192-d speaker-verification embedding
  (statistics pooling + linear head), the one to score speaker similarity with.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsv_core.errors import AudioError, GSVError, ModelMismatchError
from gsv_core.features.fbank import kaldi_fbank
from gsv_core.models.sv import ERes2NetV2, config_from_state_dict

SAMPLE_RATE = 16000
# The speaker model was trained on exactly these features (GPT-SoVITS sv.py); everything else is Kaldi's default.
FBANK_OPTIONS = dict(num_mel_bins=80, sample_frequency=SAMPLE_RATE, dither=0.0)
#: the embeddings :meth:`SpeakerEncoder.embed` returns: the verification embedding and SoVITS' conditioning vector
EMBEDDING_KINDS = ("segment", "forward3")
#: longer audio is embedded window by window (bounded memory)
WINDOW_SECONDS = 20.0
ARCH_ARGS = {"baseWidth", "scale", "expansion", "m_channels", "num_blocks", "feat_dim", "embedding_size",
             "pooling_func", "two_emb_layer"}


class SpeakerEncoder(nn.Module):
    """Holds the speaker model as ``.model``; ``.to(device, dtype)`` moves it, features follow the weights."""

    def __init__(self, model: ERes2NetV2):
        super().__init__()
        self.model = model.eval()

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Tensor], **arch) -> "SpeakerEncoder":
        """Build from a bare ERes2NetV2 state dict. Architecture arguments not given are read off the shapes,
        so the official 20480-d model and small test models load through the same call."""
        config = dict(arch)
        if not ARCH_ARGS <= set(arch):
            config = {**config_from_state_dict(state_dict, feat_dim=arch.get("feat_dim", 80)), **arch}
        with torch.device("meta"):
            model = ERes2NetV2(**config)
        try:
            model.load_state_dict(state_dict, strict=True, assign=True)
        except RuntimeError as err:
            raise ModelMismatchError(f"speaker model weights do not fit ERes2NetV2({config}): {err}") from None
        return cls(model.float())

    def train(self, mode: bool = True) -> "SpeakerEncoder":
        # A frozen feature extractor: BatchNorm must keep using its running statistics.
        return super().train(False)

    @property
    def _param(self) -> Tensor:
        return next(self.model.parameters())

    def fbank(self, wav16: Tensor) -> Tensor:
        """[T] or [B, T] float waveform(s) at 16 kHz -> [B, frames, 80] on the model's device and dtype."""
        wav16 = torch.as_tensor(wav16, device=self._param.device)
        if wav16.dim() == 1:
            wav16 = wav16.unsqueeze(0)
        if wav16.dim() != 2 or wav16.shape[0] == 0:
            raise AudioError(f"speaker encoder expects a 16 kHz waveform [T] or a batch [B, T], got {tuple(wav16.shape)}")
        p = self._param
        wav16 = wav16.to(device=p.device, dtype=torch.float32)
        return torch.stack([kaldi_fbank(w, **FBANK_OPTIONS) for w in wav16]).to(p.dtype)

    @torch.no_grad()
    def forward(self, wav16: Tensor) -> Tensor:
        """The GPT-SoVITS speaker vector: [B, 20480] for the official model (forward3)."""
        return self.model.forward3(self.fbank(wav16))

    @torch.no_grad()
    def segment_embedding(self, wav16: Tensor) -> Tensor:
        """The model's own speaker embedding [B, embedding_size] (192-d officially), for similarity scoring."""
        return self.model(self.fbank(wav16))

    @torch.no_grad()
    def embed(self, wav16: Tensor, kind: str = "segment") -> Tensor:
        """[B, D] embedding of ``kind`` (one of :data:`EMBEDDING_KINDS`): ``segment`` = 192-d verification
        embedding, ``forward3`` = the 20480-d SoVITS conditioning vector.

        A single waveform longer than :data:`WINDOW_SECONDS` is embedded in windows of that length whose vectors
        are averaged (weighted by their length), so memory stays bounded however long the audio is (a two-minute
        clip would otherwise cost gigabytes in the network's activations); references (3-10 s) are one window."""
        if kind not in EMBEDDING_KINDS:
            raise GSVError(f"unknown speaker embedding kind {kind!r}: use one of {', '.join(EMBEDDING_KINDS)}")
        run = self.segment_embedding if kind == "segment" else self.forward
        wav16 = torch.as_tensor(wav16, device=self._param.device)
        window = int(WINDOW_SECONDS * SAMPLE_RATE)
        if wav16.dim() != 1 or wav16.shape[0] <= window + window // 2:
            return run(wav16)
        total, parts = 0, None
        for start in range(0, wav16.shape[0], window):
            piece = wav16[start:start + window]
            if piece.shape[0] < SAMPLE_RATE and start:  # a tail under a second joins no average
                break
            vec = run(piece).float() * piece.shape[0]
            parts = vec if parts is None else parts + vec
            total += piece.shape[0]
        return (parts / total).to(self._param.dtype)


def cosine_similarity(a: Tensor | Sequence[float], b: Tensor | Sequence[float]) -> Tensor:
    """Cosine similarity of embeddings of any size: [D] or [B, D] each (broadcast over B), computed in float32."""
    a = torch.as_tensor(a).float()
    b = torch.as_tensor(b).to(a.device).float()
    if a.shape[-1] != b.shape[-1]:
        raise ModelMismatchError(f"cannot compare embeddings of size {a.shape[-1]} and {b.shape[-1]}")
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)
