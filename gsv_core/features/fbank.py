"""Kaldi-compatible log mel filterbank (``compute-fbank-feats``), written from the Kaldi algorithm in plain torch.

The speaker model was trained on Kaldi fbank features, so its embedding is only meaningful for features computed
exactly the Kaldi way: frames cut with Kaldi's edge rule, per-frame DC removal, pre-emphasis that repeats the first
sample, the Povey window, a zero-padded power-of-two FFT, triangular bins on Kaldi's mel scale
(``1127 ln(1 + f/700)``) that ignore the Nyquist bin, and a log floored at float32 epsilon.

The waveform is a float signal in [-1, 1] (no int16 scaling, as GPT-SoVITS feeds it). Half/bfloat16 inputs are
processed in float32 (FFT support for them is patchy and fp16 power spectra overflow) and cast back at the end.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from gsv_core.constants import ConstantCache
from gsv_core.errors import AudioError

# Kaldi floors both the log energy and the log mel energies at std::numeric_limits<float>::epsilon().
FLOAT_EPS = float(torch.finfo(torch.float32).eps)

_mel_bank_cache = ConstantCache("kaldi mel banks")


def mel_scale(freq_hz: Tensor | float) -> Tensor | float:
    if isinstance(freq_hz, Tensor):
        return 1127.0 * torch.log1p(freq_hz / 700.0)
    return 1127.0 * math.log1p(freq_hz / 700.0)


def _window(kind: str, length: int, blackman_coeff: float) -> Tensor:
    # Kaldi's windows are symmetric: the phase runs over length - 1 intervals.
    n = torch.arange(length, dtype=torch.float64, device="cpu")  # built on the CPU, moved by the caller
    phase = 2.0 * math.pi * n / (length - 1)
    if kind == "povey":
        return (0.5 - 0.5 * torch.cos(phase)).pow(0.85)
    if kind == "hanning":
        return 0.5 - 0.5 * torch.cos(phase)
    if kind == "hamming":
        return 0.54 - 0.46 * torch.cos(phase)
    if kind == "rectangular":
        return torch.ones(length, dtype=torch.float64, device="cpu")
    if kind == "blackman":
        return blackman_coeff - 0.5 * torch.cos(phase) + (0.5 - blackman_coeff) * torch.cos(2.0 * phase)
    raise ValueError(f"unknown window type {kind!r} (povey, hanning, hamming, rectangular, blackman)")


def mel_banks(
    num_bins: int,
    fft_size: int,
    sample_frequency: float,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Triangular Kaldi mel filters, shape (num_bins, fft_size // 2 + 1); the Nyquist column is zero.

    Cached per (bins, FFT size, rate, band edges, device, dtype): the speaker encoder calls this per utterance.
    """
    key = (num_bins, fft_size, float(sample_frequency), float(low_freq), float(high_freq), str(device), dtype)
    return _mel_bank_cache.get(key, lambda: _mel_banks(num_bins, fft_size, sample_frequency, low_freq, high_freq,
                                                       device, dtype))


def _mel_banks(num_bins, fft_size, sample_frequency, low_freq, high_freq, device, dtype) -> Tensor:
    nyquist = 0.5 * sample_frequency
    high = high_freq + nyquist if high_freq <= 0.0 else high_freq
    if num_bins < 3 or not (0.0 <= low_freq < high <= nyquist):
        raise ValueError(f"bad mel options: {num_bins} bins, low {low_freq} Hz, high {high} Hz, nyquist {nyquist} Hz")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high)
    step = (mel_high - mel_low) / (num_bins + 1)
    edges = mel_low + step * torch.arange(num_bins + 2, dtype=torch.float64, device="cpu")  # moved at the end
    left, center, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    # Kaldi evaluates the filters only on the fft_size / 2 bins below Nyquist.
    bin_mel = mel_scale(sample_frequency / fft_size * torch.arange(fft_size // 2, dtype=torch.float64,
                                                                   device="cpu"))[None, :]
    rising = (bin_mel - left) / (center - left)
    falling = (right - bin_mel) / (right - center)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1)).to(device=device, dtype=dtype)


def _frame_indices(num_samples: int, size: int, shift: int, snip_edges: bool) -> Tensor:
    if snip_edges:
        count = 1 + (num_samples - size) // shift
        starts = torch.arange(count, device="cpu") * shift  # indices built on the CPU, moved by the caller
    else:
        # Frames are centred on multiples of the shift; samples beyond either end are mirrored (x[-1] = x[0]).
        count = (num_samples + shift // 2) // shift
        starts = torch.arange(count, device="cpu") * shift + shift // 2 - size // 2
    idx = starts[:, None] + torch.arange(size, device="cpu")[None, :]
    idx = torch.where(idx < 0, -idx - 1, idx)
    return torch.where(idx >= num_samples, 2 * num_samples - 1 - idx, idx)


def kaldi_fbank(
    wave: Tensor,
    num_mel_bins: int = 80,
    sample_frequency: float = 16000.0,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    dither: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    window_type: str = "povey",
    blackman_coeff: float = 0.42,
    round_to_power_of_two: bool = True,
    snip_edges: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    use_power: bool = True,
    use_log_fbank: bool = True,
    use_energy: bool = False,
    raw_energy: bool = True,
    energy_floor: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Kaldi fbank of a mono waveform ``[T]`` or ``[1, T]`` -> ``[frames, num_mel_bins (+1 with use_energy)]``.

    Defaults are Kaldi's except ``num_mel_bins`` (80, what the speaker model uses; Kaldi's default is 23). With
    ``use_energy`` the log frame energy is the first column.
    """
    if wave.dim() == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.dim() != 1:
        raise AudioError(f"fbank expects a mono waveform [samples] or [1, samples], got shape {tuple(wave.shape)}")
    out_dtype = wave.dtype if wave.is_floating_point() else torch.float32
    work_dtype = torch.float64 if out_dtype == torch.float64 else torch.float32
    x = wave.to(work_dtype)
    device = x.device

    size = int(sample_frequency * frame_length_ms * 0.001)
    shift = int(sample_frequency * frame_shift_ms * 0.001)
    if size < 2 or shift < 1:
        raise ValueError(f"frame length {frame_length_ms} ms / shift {frame_shift_ms} ms too small at {sample_frequency} Hz")
    if x.numel() < size:
        raise AudioError(
            f"audio too short for fbank: {x.numel()} samples, need at least one {frame_length_ms:g} ms frame ({size})"
        )
    fft_size = 1 << (size - 1).bit_length() if round_to_power_of_two else size
    if fft_size % 2:
        raise ValueError(f"FFT size {fft_size} must be even: use round_to_power_of_two or change frame_length_ms")

    frames = x[_frame_indices(x.numel(), size, shift, snip_edges).to(device)]
    if dither != 0.0:
        noise_device = generator.device if generator is not None else device
        noise = torch.randn(frames.shape, generator=generator, dtype=work_dtype, device=noise_device)
        frames = frames + dither * noise.to(device)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)

    def log_energy(f: Tensor) -> Tensor:
        energy = f.pow(2).sum(dim=1).clamp(min=FLOAT_EPS).log()
        return energy.clamp(min=math.log(energy_floor)) if energy_floor > 0.0 else energy

    if use_energy and raw_energy:
        energy = log_energy(frames)
    if preemphasis_coefficient != 0.0:
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - preemphasis_coefficient * previous
    frames = frames * _window(window_type, size, blackman_coeff).to(device=device, dtype=work_dtype)
    if use_energy and not raw_energy:
        energy = log_energy(frames)

    spectrum = torch.fft.rfft(frames, n=fft_size).abs()
    if use_power:
        spectrum = spectrum.pow(2)
    banks = mel_banks(num_mel_bins, fft_size, sample_frequency, low_freq, high_freq, device, work_dtype)
    feats = spectrum @ banks.T
    if use_log_fbank:
        feats = feats.clamp(min=FLOAT_EPS).log()
    if use_energy:
        feats = torch.cat([energy[:, None], feats], dim=1)
    return feats.to(out_dtype)
