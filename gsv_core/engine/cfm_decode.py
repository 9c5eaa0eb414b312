"""The SoVITS v3 / v4 decode path: semantic tokens -> CFM mel -> vocoder audio, as upstream's TTS.py runs it.

    reference: prompt tokens + phones + 32 kHz spectrogram -> (ge, fea_ref);  reference audio -> log-mel (24 kHz
               v3 / 32 kHz v4) -> normalised;  both cropped to T_min = min(len) and then to their last T_ref frames
    fragment:  tokens + phones (+ ge, speed) -> fea [1, C2, T] -> chunks of T_chunk - T_min frames, each sampled by
               the CFM after [fea_ref | chunk] with the previous mel as prompt (chunk 0: the reference mel; then the
               last T_min frames of the previous result) -> concatenated mel -> denormalise -> vocoder

Two ways to decode several fragments:

* :func:`decode_fragments`: every fragment as upstream's sequential path (``using_vocoder_synthesis``) computes it,
  with the CFM steps of all fragments batched (round r samples chunk r of every fragment that has one, items padded
  and masked). A fragment's audio does not depend on what it is batched with and each fragment draws its own noise,
  so it matches the engine's rule that a sentence is the same alone or in a batch.
* :func:`decode_parallel_sola`: upstream's parallel path (``using_vocoder_synthesis_batched_infer``): all fragments'
  features laid end to end, cut into overlapping chunks sampled in one CFM call, vocoded once and re-joined with
  SOLA. Faster for many short fragments, but a fragment's audio depends on its neighbours.

Nothing here holds state: the functions take the loaded models (``SynthesizerTrnV3``, a vocoder) and tensors.
Noise comes from a :data:`Noise` callable (``shape -> tensor``): :func:`generator_noise` wraps a seeded
``torch.Generator``; tests replay upstream's recorded draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch.nn import functional as F

from ..features.spectrogram import mel_spectrogram

SPEC_MIN, SPEC_MAX = -12.0, 2.0  # the CFM's mel normalisation range (upstream's spec_min / spec_max)
SOLA_SEARCH = 320  # samples the SOLA join may shift the next fragment by


@dataclass(frozen=True)
class CFMSpec:
    """Per-version constants of TTS.py (mel settings of the reference, vocoder rate, chunking)."""

    version: str
    mel_rate: int  # rate of the reference audio the prompt mel is computed from
    n_fft: int
    hop: int
    out_rate: int  # vocoder output rate
    upsample: int  # vocoder samples per mel frame
    t_ref: int  # longest prompt kept
    t_chunk: int  # prompt + generated frames per CFM call
    overlap: int = 12  # frames shared by consecutive chunks in the parallel (SOLA) path


SPECS = {
    "v3": CFMSpec("v3", 24000, 1024, 256, 24000, 256, 468, 934),
    "v4": CFMSpec("v4", 32000, 1280, 320, 48000, 480, 500, 1000),
}

Noise = Callable[[tuple], torch.Tensor]  # shape -> standard normal tensor of that shape


def spec_for(version: str) -> CFMSpec:
    try:
        return SPECS[version]
    except KeyError:
        raise ValueError(f"SoVITS {version} has no CFM decode path (v3 and v4 do)") from None


def norm_spec(x: torch.Tensor) -> torch.Tensor:
    return (x - SPEC_MIN) / (SPEC_MAX - SPEC_MIN) * 2 - 1


def denorm_spec(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2 * (SPEC_MAX - SPEC_MIN) + SPEC_MIN


def reference_mel(wav: torch.Tensor, version: str) -> torch.Tensor:
    """Reference waveform at ``SPECS[version].mel_rate`` ([T] or [1, T], mono) -> raw log-mel [1, 100, frames]
    (upstream ``mel_fn`` / ``mel_fn_v4``), computed in float32."""
    s = spec_for(version)
    wav = wav.float()
    if wav.dim() == 1:
        wav = wav[None]
    return mel_spectrogram(wav, n_fft=s.n_fft, num_mels=100, sr=s.mel_rate, hop=s.hop, win=s.n_fft)


def generator_noise(generator: Optional[torch.Generator], device, dtype) -> Noise:
    """Noise drawn from ``generator`` (None: the global RNG, as upstream)."""
    return lambda shape: torch.randn(shape, generator=generator, device=device, dtype=dtype)


# ----------------------------------------------------------------------------------------------------------------
# reference


@dataclass
class CFMReference:
    """What every fragment of a request shares: timbre ``ge`` and the cropped prompt (features + normalised mel)."""

    version: str
    ge: torch.Tensor  # [1, gin, 1]
    fea: torch.Tensor  # [1, C2, T_min]
    mel: torch.Tensor  # [1, 100, T_min] normalised
    fea_full: Optional[torch.Tensor] = None  # the prompt features before cropping (for checks)

    @property
    def frames(self) -> int:
        return int(self.mel.size(-1))

    @property
    def spec(self) -> CFMSpec:
        return SPECS[self.version]

    @property
    def chunk_len(self) -> int:
        return self.spec.t_chunk - self.frames


@torch.no_grad()
def prepare_reference(model, prompt_codes: torch.Tensor, prompt_phones: torch.Tensor, refer_spec: torch.Tensor,
                      ref_wav: Optional[torch.Tensor] = None, *, ref_mel: Optional[torch.Tensor] = None,
                      ge: Optional[torch.Tensor] = None) -> CFMReference:
    """prompt_codes [1, 1, N], prompt_phones [1, P], refer_spec [1, 1025, T] (32 kHz linear spectrogram), and the
    reference audio at the version's mel rate (``ref_wav``) or its raw log-mel (``ref_mel``) -> CFMReference."""
    version = model.version
    s = spec_for(version)
    dtype = model.ssl_proj.weight.dtype
    if ge is None:
        ge = model.timbre(refer_spec)
    fea = model.encode(prompt_codes, prompt_phones, ge)
    if ref_mel is None:
        if ref_wav is None:
            raise ValueError("prepare_reference needs the reference audio (ref_wav) or its mel (ref_mel)")
        ref_mel = reference_mel(ref_wav.to(fea.device), version)
    mel = norm_spec(ref_mel.to(fea.device).float())
    t_min = min(mel.size(2), fea.size(2))
    mel, fea_c = mel[:, :, :t_min], fea[:, :, :t_min]
    if t_min > s.t_ref:
        mel, fea_c = mel[:, :, -s.t_ref:], fea_c[:, :, -s.t_ref:]
    return CFMReference(version, ge, fea_c, mel.to(dtype), fea)


@torch.no_grad()
def encode_fragment(model, ref: CFMReference, codes: torch.Tensor, phones: torch.Tensor,
                    speed: float = 1.0) -> torch.Tensor:
    """Target tokens [1, 1, N] + phones [1, P] -> fea [1, C2, T] (T ~ N * 3.875 v3 / 4 v4, divided by speed)."""
    return model.encode(codes, phones, ref.ge, speed)


# ----------------------------------------------------------------------------------------------------------------
# sampling


@torch.no_grad()
def sample_mels(model, ref: CFMReference, feas: Sequence[torch.Tensor], steps: int, noises: Sequence[Noise],
                max_batch: int = 8, on_call: Optional[Callable[[dict], None]] = None) -> list[torch.Tensor]:
    """Normalised mels [1, 100, T_i] for fragment features ``feas`` [1, C2, T_i], each chunked as upstream's
    sequential path does, with the CFM calls of all fragments batched round by round (``max_batch`` items per
    call). ``noises[i]`` draws fragment i's noise, one [1, 100, T] tensor per chunk in order. ``on_call`` sees each
    CFM call's inputs and output (tests)."""
    chunk_len = ref.chunk_len
    t_min = ref.frames
    n = len(feas)
    pos = [0] * n
    prompt_mel = [ref.mel] * n
    prompt_fea = [ref.fea] * n
    outs: list[list[torch.Tensor]] = [[] for _ in range(n)]
    while True:
        active = [i for i in range(n) if pos[i] < feas[i].size(2)]
        if not active:
            break
        for start in range(0, len(active), max_batch):
            group = active[start : start + max_batch]
            chunks = [feas[i][:, :, pos[i] : pos[i] + chunk_len] for i in group]
            mus = [torch.cat([prompt_fea[i], c], 2)[0].transpose(0, 1) for i, c in zip(group, chunks)]  # [T, C2]
            x_lens = [m.size(0) for m in mus]
            p_lens = [prompt_mel[i].size(2) for i in group]
            t_max, p_max = max(x_lens), max(p_lens)
            mu = torch.stack([F.pad(m, (0, 0, 0, t_max - m.size(0))) for m in mus])
            prompt = torch.cat([F.pad(prompt_mel[i], (0, p_max - p)) for i, p in zip(group, p_lens)])
            noise = torch.cat([F.pad(noises[i]((1, 100, t)), (0, t_max - t)) for i, t in zip(group, x_lens)])
            out = model.cfm.inference(mu, prompt, steps, x_lens=x_lens, prompt_lens=p_lens, noise=noise)
            if on_call is not None:
                on_call({"items": group, "mu": mu, "prompt": prompt, "x_lens": x_lens, "prompt_lens": p_lens,
                         "noise": noise, "out": out})
            for b, (i, chunk) in enumerate(zip(group, chunks)):
                res = out[b : b + 1, :, p_lens[b] : x_lens[b]]
                outs[i].append(res)
                prompt_mel[i] = res[:, :, -t_min:]
                prompt_fea[i] = chunk[:, :, -t_min:]
                pos[i] += chunk_len
    return [torch.cat(o, 2) for o in outs]


@torch.no_grad()
def vocode(vocoder, mel: torch.Tensor) -> torch.Tensor:
    """Normalised mel [1, 100, T] -> audio [T * upsample] (float32)."""
    p = next(vocoder.parameters())
    return vocoder(denorm_spec(mel).to(device=p.device, dtype=p.dtype))[0, 0].float()


@torch.no_grad()
def decode_fragments(model, vocoder, ref: CFMReference, fragments: Sequence[tuple[torch.Tensor, torch.Tensor]],
                     steps: int = 32, speed: float = 1.0, noises: Optional[Sequence[Noise]] = None,
                     max_batch: int = 8) -> list[torch.Tensor]:
    """Audio [T_i * upsample] at ``SPECS[version].out_rate`` for each (codes [1, 1, N], phones [1, P]) fragment.

    ``noises``: one per fragment (default: the global RNG). CFM calls are batched across fragments."""
    feas = [encode_fragment(model, ref, c, p, speed) for c, p in fragments]
    if noises is None:
        noises = [generator_noise(None, ref.mel.device, ref.mel.dtype)] * len(feas)
    mels = sample_mels(model, ref, feas, steps, noises, max_batch)
    return [vocode(vocoder, m) for m in mels]


# ----------------------------------------------------------------------------------------------------------------
# upstream's parallel path


def sola_join(fragments: Sequence[torch.Tensor], overlap: int, search: int = SOLA_SEARCH) -> tuple[torch.Tensor, list[int]]:
    """Join audio fragments that overlap by ``overlap`` samples: fragment i+1 is shifted by the lag (0..search)
    maximising the normalised cross-correlation with fragment i's tail, then cross-faded with a Hann window.
    Returns the joined audio and the chosen lags."""
    frags = [f.float() for f in fragments]
    out: list[torch.Tensor] = []
    lags: list[int] = []
    window = None
    for i in range(len(frags) - 1):
        f1, f2 = frags[i], frags[i + 1]
        tail = f1[-overlap:]
        head = f2[: overlap + search]
        corr = F.conv1d(head.view(1, 1, -1), tail.view(1, 1, -1)).view(-1)
        energy = F.conv1d(head.view(1, 1, -1) ** 2, torch.ones_like(tail).view(1, 1, -1)).view(-1) + 1e-8
        lag = int((corr / energy.sqrt()).argmax())
        lags.append(lag)
        out.append(f1[:-overlap])
        if window is None:
            window = torch.hann_window(2 * overlap, device=f1.device, dtype=f1.dtype)
        shifted = f2[lag:].clone()
        shifted[:overlap] = window[:overlap] * shifted[:overlap] + window[overlap:] * tail
        frags[i + 1] = shifted
    out.append(frags[-1])
    return torch.cat(out, 0).to(fragments[0].dtype), lags


@torch.no_grad()
def decode_parallel_sola(model, vocoder, ref: CFMReference, fragments: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         steps: int = 32, speed: float = 1.0, noise: Optional[Noise] = None,
                         capture: Optional[dict] = None) -> list[torch.Tensor]:
    """Upstream's ``using_vocoder_synthesis_batched_infer``: one CFM call over overlapping chunks of all fragments'
    features laid end to end, one vocoder call, SOLA joins, then cut back into fragments (the last one takes what
    is left). ``noise`` draws the [B, 100, T] batch noise once (default: the global RNG)."""
    s = ref.spec
    chunk_len, ov, up = ref.chunk_len, s.overlap, s.upsample
    feas = [encode_fragment(model, ref, c, p, speed) for c, p in fragments]
    lens = [f.size(2) for f in feas]
    padded = F.pad(torch.cat(feas, 2), (ov, 0))
    chunks, pos, pad_len = [], 0, 0
    while True:
        if pos > 0:
            pos -= ov
        chunk = padded[:, :, pos : pos + chunk_len]
        pos += chunk_len
        if chunk.size(-1) == 0:
            break
        pad_len = chunk_len - chunk.size(2)
        chunks.append(F.pad(chunk, (0, pad_len)) if pad_len else chunk)
    batch = torch.cat(chunks, 0)
    mu = torch.cat([ref.fea.expand(batch.size(0), -1, -1), batch], 2).transpose(1, 2)
    if noise is None:
        noise = generator_noise(None, mu.device, mu.dtype)
    eps = noise((batch.size(0), 100, mu.size(1)))
    pred = model.cfm.inference(mu, ref.mel, steps, noise=eps)
    if capture is not None:
        capture.update(feas=feas, mu=mu, noise=eps, out=pred)
    pred = pred[:, :, -chunk_len:]
    mel = pred.permute(1, 0, 2).reshape(pred.size(1), -1).unsqueeze(0)
    if capture is not None:
        capture["vocoder_in"] = denorm_spec(mel)
    audio = vocode(vocoder, mel)
    pieces = [audio[i : i + chunk_len * up] for i in range(0, audio.size(-1), chunk_len * up)]
    audio, lags = sola_join(pieces, ov * up)
    if capture is not None:
        capture["seg_idx"] = lags
    audio = audio[ov * up : -pad_len * up] if pad_len > 0 else audio[ov * up :]
    out = []
    for n in lens:
        out.append(audio[: n * up])
        audio = audio[n * up :]
    return out


# ----------------------------------------------------------------------------------------------------------------
# v3 super-sampling (AP-BWE 24 -> 48 kHz)


def super_sampler_available(folder: str | Path) -> bool:
    """Whether the AP-BWE 24->48 kHz weights (g_24kto48k.zip + config.json) are in ``folder`` (hide the option
    otherwise)."""
    from ..models.ap_bwe import weights_present

    return weights_present(folder)


__all__ = ["CFMReference", "CFMSpec", "Noise", "SPECS", "decode_fragments", "decode_parallel_sola", "denorm_spec",
           "encode_fragment", "generator_noise", "norm_spec", "prepare_reference", "reference_mel", "sample_mels",
           "sola_join", "spec_for", "super_sampler_available", "vocode"]
