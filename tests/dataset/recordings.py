"""Test recordings made in the test: espeak-ng English speech with pauses, mixed with music-like tones (a bass line
below 100 Hz, bell tones at 7-10 kHz) and white noise; a sparse three-hour WAV that costs almost no disk."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please put the book on the table.",
    "It is a beautiful day and we are going to the park.",
    "My favorite fruits are apples and bananas.",
    "He gets up at seven o'clock every morning.",
    "The train leaves the station at noon.",
    "She reads a new story to the children every night.",
    "We need more water for the garden.",
    "The music was loud but the people were happy.",
    "Open the window and let the fresh air in.",
    "Our teacher told us a funny story today.",
    "The cat is sleeping under the warm blanket.",
    "Turn left at the second street and walk straight on.",
    "I would like a cup of tea with milk.",
    "The children are playing football in the yard.",
    "Tomorrow we will visit our friends in the city.",
]
BASS_HZ = (55.0, 65.4, 73.4, 82.4)
BELL_HZ = (7040.0, 8372.0, 9397.0)


def espeak_exe() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng; scripts/test.sh installs it)")
    return exe


def speech_track(folder: Path, sentences, sr: int, pause_s: float = 1.2) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """espeak-ng sentences one after another with pauses; returns the track and each sentence's sample span."""
    from gsv_core.audio import load_audio

    exe = espeak_exe()
    folder.mkdir(parents=True, exist_ok=True)
    pieces, spans, pos = [np.zeros(int(0.8 * sr), np.float32)], [], int(0.8 * sr)
    for i, text in enumerate(sentences):
        path = folder / f"s{i:02d}.wav"
        if not path.is_file():
            subprocess.run([exe, "-v", "en-us", "-s", "160", "-w", str(path), text], check=True,
                           capture_output=True, timeout=60)
        wav, _ = load_audio(path, sr=sr)
        wav = 0.6 * wav / max(1e-6, float(np.max(np.abs(wav))))
        pieces.append(wav.astype(np.float32))
        spans.append((pos, pos + wav.shape[0]))
        pos += wav.shape[0]
        gap = int(pause_s * sr)
        pieces.append(np.zeros(gap, np.float32))
        pos += gap
    return np.concatenate(pieces), spans


def music_and_noise(n: int, sr: int, seed: int = 0, noise_rms: float = 0.01) -> np.ndarray:
    """A bass line (one note per 0.5 s), decaying bell tones every 0.25 s, and white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    note = (t // 0.5).astype(int)
    bass_f = np.array(BASS_HZ)[note % len(BASS_HZ)]
    bass = 0.15 * np.sin(2 * np.pi * np.cumsum(bass_f) / sr)
    bells = np.zeros(n)
    for k, start in enumerate(np.arange(0, n / sr, 0.25)):
        a = int(start * sr)
        b = min(n, a + int(0.25 * sr))
        tt = np.arange(b - a) / sr
        bells[a:b] += 0.08 * np.sin(2 * np.pi * BELL_HZ[k % len(BELL_HZ)] * tt) * np.exp(-tt * 6)
    return (bass + bells + noise_rms * rng.standard_normal(n)).astype(np.float32)


def mixed_recording(folder: Path, seconds: float = 60.0, sr: int = 44100) -> tuple[Path, list[str], np.ndarray]:
    """About ``seconds`` of speech + music + noise as a WAV; returns it, the sentences said, and the clean speech."""
    speech, spans = speech_track(folder / "espeak", SENTENCES, sr)
    n = int(seconds * sr)
    if speech.shape[0] < n:
        speech = np.pad(speech, (0, n - speech.shape[0]))
    said = [s for s, (a, b) in zip(SENTENCES, spans) if b <= n]
    speech = speech[:n]
    mix = np.clip(speech + music_and_noise(n, sr), -1, 1)
    path = folder / "podcast.wav"
    sf.write(path, mix, sr, subtype="PCM_16")
    return path, said, speech


def tone_power_db(wav: np.ndarray, sr: int, freqs, skip_s: float = 1.0) -> float:
    """Mean power (dB) of ``wav`` at the given frequencies (one DFT bin each, Hann window over the middle)."""
    seg = np.asarray(wav, dtype=np.float64)[int(skip_s * sr):-int(skip_s * sr) or None]
    spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size))) ** 2
    hz = np.fft.rfftfreq(seg.size, 1 / sr)
    return float(10 * np.log10(np.mean([spec[np.argmin(np.abs(hz - f))] for f in freqs]) + 1e-20))


def band_power_db(wav: np.ndarray, sr: int, lo: float, hi: float) -> float:
    seg = np.asarray(wav, dtype=np.float64)
    spec = np.abs(np.fft.rfft(seg)) ** 2
    hz = np.fft.rfftfreq(seg.size, 1 / sr)
    return float(10 * np.log10(spec[(hz >= lo) & (hz < hi)].sum() + 1e-20))


def sparse_long_wav(path: Path, hours: float = 3.0, sr: int = 8000, burst_every_s: float = 600.0,
                    burst_s: float = 6.0) -> Path:
    """A 16-bit mono WAV of ``hours`` whose samples are zero except a tone burst every ``burst_every_s``: the
    header states the full length, the zeros are a hole in a sparse file (almost no disk)."""
    n = int(hours * 3600 * sr)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16", format="WAV") as f:
        f.write(np.zeros(1, np.int16))
    header = path.stat().st_size - 2
    with open(path, "r+b") as fh:
        fh.truncate(header + 2 * n)
        t = np.arange(int(burst_s * sr)) / sr
        burst = (0.5 * np.sin(2 * np.pi * 300 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) * 32767).astype("<i2")
        for start in np.arange(30.0, hours * 3600 - burst_s, burst_every_s):
            fh.seek(header + 2 * int(start * sr))
            fh.write(burst.tobytes())
    # fix the RIFF/data sizes for the new length
    import struct

    with open(path, "r+b") as fh:
        data = fh.read(header)
        pos = data.find(b"data")
        fh.seek(4)
        fh.write(struct.pack("<I", header + 2 * n - 8))
        fh.seek(pos + 4)
        fh.write(struct.pack("<I", 2 * n))
    return path
