"""Token-level streaming: SoVITS audio while the GPT is still predicting the fragment's semantic tokens.

Every ``chunk_tokens`` new tokens (``first_chunk_tokens`` for the first piece, so the first audio comes early), the
tokens so far go through the SoVITS text encoder and flow (cheap, and bidirectional: they see every token so far),
and only a window of the latent frames goes through the decoder (the expensive part):

* left context: the decoder window starts ``context_frames`` before the first sample not yet emitted, so the
  convolutions at the emitted edge see real frames, not zero padding;
* right context: the last ``hold_frames`` frames are decoded again with the next chunk instead of being emitted,
  because their audio changes once the encoder sees the tokens after them;
* the join: the last ``crossfade_frames`` of each piece are kept back and cross-faded (raised cosine) with the same
  samples of the next decode. Both decodes lie on one time grid (the same latent frames; at speed 1 frame ``j`` is
  always token ``j // 2``), so no phase search (SOLA) is needed: what differs at the join is the small change of the
  latent when more tokens are known, and the fade spreads it over 40 ms.

The prior noise is drawn frame by frame (:func:`frame_noise`): on the CPU the first ``n`` frames of the noise are the
same numbers whatever the total length, so the streamed pieces use exactly the noise of the whole-fragment decode
with the same seed, and the joined stream differs from the non-streamed audio only by the context effects above.
After the last token, the remaining frames are decoded and emitted, so the stream has exactly the frames (and the
duration) of the whole decode.

Upstream's streaming modes (api_v2 ``streaming_mode``) reuse the previous chunk's latent for the overlap and join
with SOLA; this module is our own design of the same idea.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

#: sample 16 normal numbers at a time: torch's CPU normal sampler transforms aligned blocks of 16, so a draw of
#: ``16 k`` numbers is a prefix of any longer draw of a multiple of 16 with the same generator state
_BLOCK = 16


@dataclass(frozen=True)
class StreamPlan:
    """How a fragment is cut into streamed pieces (semantic tokens are 25 per second; SoVITS frames 50)."""

    chunk_tokens: int = 24
    first_chunk_tokens: int = 12
    context_frames: int = 8
    hold_frames: int = 8
    crossfade_frames: int = 2

    def __post_init__(self) -> None:
        for name in ("chunk_tokens", "first_chunk_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("context_frames", "hold_frames", "crossfade_frames"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must not be negative")

    @classmethod
    def with_chunk(cls, chunk_tokens: Optional[int]) -> "StreamPlan":
        """The default plan, or one that decodes every ``chunk_tokens`` tokens (the first piece after half)."""
        if not chunk_tokens:
            return cls()
        n = int(chunk_tokens)
        return cls(chunk_tokens=n, first_chunk_tokens=max(1, (n + 1) // 2))


def frame_noise(generator: Optional[torch.Generator], frames: int, channels: int, device: Any,
                dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise [1, channels, frames] drawn frame-major in blocks of 16, so that (on the CPU) the noise
    of the first ``n`` frames does not depend on ``frames``: a stream can draw the longest possible noise up front
    and the whole decode of the same seed draws the same numbers for its frames."""
    count = frames * channels
    padded = max(_BLOCK, math.ceil(count / _BLOCK) * _BLOCK)
    noise_device = device if generator is None else generator.device
    flat = torch.randn(padded, generator=generator, device=noise_device, dtype=torch.float32)
    noise = flat[:count].view(frames, channels).t().unsqueeze(0)
    return noise.to(device=device, dtype=dtype)


def latent_frames(tokens: int, speed: float) -> int:
    """SoVITS latent frames for ``tokens`` semantic tokens at ``speed`` (as the text encoder sizes them)."""
    return 2 * tokens if speed == 1 else int(2 * tokens / speed) + 1


class ChunkDecoder:
    """The audio of one fragment, piece by piece, as its semantic tokens grow (see the module docstring).

    ``push(tokens, final)`` takes every token so far (1-D) and returns the float32 samples that are final now (maybe
    none); after ``push(..., final=True)`` the pieces joined are the whole fragment."""

    def __init__(self, sovits, text_ids: torch.Tensor, condition, *, noise_scale: float, speed: float,
                 generator: Optional[torch.Generator], max_tokens: int, plan: StreamPlan = StreamPlan()):
        self.sovits, self.condition, self.plan = sovits, condition, plan
        self.text = text_ids
        self.noise_scale, self.speed = float(noise_scale), float(speed)
        self.hop = int(sovits.samples_per_frame)
        ref = sovits.ssl_proj.weight
        channels = sovits.enc_p.out_channels  # the latent width (inter_channels)
        self.noise = frame_noise(generator, latent_frames(max(1, max_tokens), self.speed), int(channels),
                                 ref.device, ref.dtype)
        self.emitted = 0  # samples handed out so far
        self.tail: Optional[np.ndarray] = None  # the previous decode's samples [emitted, emitted + fade)
        self.decoded_tokens = 0
        self.finished = False

    def due(self, available: int) -> bool:
        """Whether ``available`` tokens are enough for the next piece."""
        step = self.plan.first_chunk_tokens if self.decoded_tokens == 0 else self.plan.chunk_tokens
        return available - self.decoded_tokens >= step

    def push(self, tokens: torch.Tensor, final: bool) -> np.ndarray:
        if self.finished:
            raise RuntimeError("this fragment's stream has already ended")
        count = int(tokens.numel())
        frames = latent_frames(count, self.speed)
        if frames > self.noise.shape[-1]:  # more tokens than announced: draw afresh (never in normal use)
            self.noise = torch.cat([self.noise, torch.randn(*self.noise.shape[:2], frames - self.noise.shape[-1],
                                                            device=self.noise.device, dtype=self.noise.dtype)], -1)
        fade = self.plan.crossfade_frames * self.hop
        end_frame = frames if final else frames - self.plan.hold_frames
        keep_back = 0 if final else fade
        if end_frame * self.hop - keep_back <= self.emitted:
            if final:  # nothing new (cannot happen: the final decode always covers the kept-back tail)
                self.finished = True
            return np.zeros(0, dtype=np.float32)  # too few frames beyond the held-back ones: ask again next token
        self.decoded_tokens = count
        device = self.noise.device
        codes = tokens.to(device).reshape(1, 1, -1)
        text = self.text.to(device).reshape(1, -1)
        z, mask = self.sovits.latent(codes, text, condition=self.condition, noise_scale=self.noise_scale,
                                     speed=self.speed, noise=self.noise[:, :, :frames])
        start_frame = max(0, self.emitted // self.hop - self.plan.context_frames)
        audio = self.sovits.vocode(z[:, :, start_frame:end_frame], mask[:, :, start_frame:end_frame],
                                   self.condition)
        audio = audio[0, 0].float().cpu().numpy()
        piece = audio[self.emitted - start_frame * self.hop:].copy()
        if self.tail is not None and len(self.tail):
            n = min(len(self.tail), len(piece))
            ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n + 2, dtype=np.float64)[1:-1])
            piece[:n] = (self.tail[:n] * (1.0 - ramp) + piece[:n] * ramp).astype(np.float32)
        if final:
            self.tail = None
            self.finished = True
        else:
            self.tail = piece[len(piece) - keep_back:].copy() if keep_back else None
            piece = piece[: len(piece) - keep_back]
        self.emitted += len(piece)
        return piece.astype(np.float32, copy=False)
