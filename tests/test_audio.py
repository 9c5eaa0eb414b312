"""gsv_core.audio: loading (files, bytes, Gradio tuples), resampling, reference checks, int16 conversion, saving.

All audio is generated here (numpy tones and noise written with soundfile; mp3/m4a with PyAV's encoders).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gsv_core import audio as A
from gsv_core.audio import (
    audio_duration,
    check_reference,
    is_silent,
    load_audio,
    peak_limit,
    save_wav,
    to_int16,
)
from gsv_core.errors import AudioError, GSVError


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spec) * sr / len(wav))


def encode_with_pyav(path: Path, wav: np.ndarray, sr: int, codec: str, fmt: str | None = None) -> None:
    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV has no {codec} encoder")
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(wav[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# ---------------------------------------------------------------------------------------------------------------
# loading files

def test_wav_round_trip_is_exact_int16(tmp_path):
    x = tone(440, 1.0, 32000, amp=0.7) + np.float32(0.01)
    path = save_wav(tmp_path / "a.wav", x, 32000)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (32000, 1, "PCM_16", 32000)
    y, sr = load_audio(path)
    assert sr == 32000 and y.dtype == np.float32 and y.shape == (32000,)
    # loading scales int16 by 1/32768, saving uses upstream's trunc(x * 32768): the round trip is exact in int16
    np.testing.assert_array_equal((y * 32768).astype(np.int32), to_int16(x).astype(np.int32))
    assert np.max(np.abs(y - x)) <= 1 / 32768 + 1e-7


@pytest.mark.parametrize("fmt,subtype,ext", [("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"), ("WAV", "PCM_24", "wav")])
def test_soundfile_formats(tmp_path, fmt, subtype, ext):
    x = tone(1000, 1.0, 24000)
    path = tmp_path / f"a.{ext}"
    sf.write(str(path), x, 24000, format=fmt, subtype=subtype)
    y, sr = load_audio(str(path))
    assert sr == 24000
    assert abs(len(y) - 24000) <= 8
    assert abs(dominant_freq(y, sr) - 1000) < 5
    if fmt != "OGG":  # lossless
        np.testing.assert_allclose(y[: len(x)], x, atol=1 / 32767)


def test_stereo_is_averaged_or_kept(tmp_path):
    left, right = tone(300, 0.5, 16000, 0.4), tone(700, 0.5, 16000, 0.2)
    path = tmp_path / "st.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    mono, sr = load_audio(path)
    assert mono.shape == (8000,) and sr == 16000
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-6)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (8000, 2)
    np.testing.assert_allclose(both[:, 0], left, atol=1e-6)
    np.testing.assert_allclose(both[:, 1], right, atol=1e-6)
    # mono=False on a mono file still gives [T, C]
    sf.write(str(tmp_path / "m.wav"), left, 16000, subtype="FLOAT")
    assert load_audio(tmp_path / "m.wav", mono=False)[0].shape == (8000, 1)


def test_raw_bytes(tmp_path):
    x = tone(500, 0.5, 22050)
    buf = io.BytesIO()
    sf.write(buf, x, 22050, format="WAV", subtype="PCM_16")
    y, sr = load_audio(buf.getvalue(), sr=16000)
    assert sr == 16000 and abs(len(y) - 8000) <= 1
    assert abs(dominant_freq(y, sr) - 500) < 5
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioError, match="cannot decode"):
        load_audio(b"this is not audio at all" * 40)


def test_mp3_and_m4a_through_pyav(tmp_path):
    x = tone(1000, 2.0, 32000)
    mp3 = tmp_path / "voice.mp3"
    encode_with_pyav(mp3, x, 32000, "libmp3lame")
    y, sr = load_audio(mp3)
    assert sr == 32000
    assert abs(len(y) - len(x)) < 0.05 * 32000
    assert abs(dominant_freq(y, sr) - 1000) < 3
    y16, sr16 = load_audio(mp3, sr=16000)
    assert sr16 == 16000 and abs(dominant_freq(y16, sr16) - 1000) < 3
    assert abs(audio_duration(mp3) - 2.0) < 0.1
    # raw mp3 bytes go to PyAV after soundfile declines (or soundfile's own mp3 support reads them)
    yb, srb = load_audio(mp3.read_bytes())
    assert srb == 32000 and abs(dominant_freq(yb, srb) - 1000) < 3

    m4a = tmp_path / "voice.m4a"
    encode_with_pyav(m4a, x, 32000, "aac", fmt="mp4")
    y, sr = load_audio(m4a)
    assert sr == 32000 and abs(dominant_freq(y, sr) - 1000) < 3
    assert abs(audio_duration(m4a) - 2.0) < 0.1


# ---------------------------------------------------------------------------------------------------------------
# Gradio tuples

def test_gradio_int16_tuple():
    x = tone(440, 0.25, 48000, amp=0.5)
    pcm = (x * 32767).astype(np.int16)
    y, sr = load_audio((48000, pcm))
    assert sr == 48000 and y.dtype == np.float32
    np.testing.assert_allclose(y, pcm / 32768.0, atol=1e-7)
    assert np.max(np.abs(y)) <= 1.0
    # the full int16 range maps into [-1, 1]
    extremes, _ = load_audio((16000, np.array([-32768, 32767, 0], dtype=np.int16)))
    assert extremes[0] == -1.0 and 0.9999 < extremes[1] < 1.0 and extremes[2] == 0.0


def test_gradio_stereo_int32_float_and_order():
    left = (tone(200, 0.1, 8000) * 2**31).astype(np.int32)
    right = np.zeros_like(left)
    y, sr = load_audio((8000, np.stack([left, right], axis=1)))
    np.testing.assert_allclose(y, left / 2**31 / 2, atol=1e-7)
    f64 = tone(200, 0.1, 8000).astype(np.float64)
    y2, _ = load_audio((8000, f64))
    assert y2.dtype == np.float32
    np.testing.assert_allclose(y2, f64, atol=1e-7)
    y3, sr3 = load_audio((f64, 8000))  # (samples, rate) is understood too
    assert sr3 == 8000 and np.array_equal(y3, y2)
    # a [C, T] array (channels first) is turned around rather than read as 800 channels
    y4, _ = load_audio((8000, np.stack([f64, f64])))
    assert y4.shape == (800,)


def test_gradio_bad_tuples():
    with pytest.raises(AudioError, match="no audio given"):
        load_audio(None)
    with pytest.raises(AudioError, match="not plausible"):
        load_audio((0, np.zeros(100, dtype=np.int16)))
    with pytest.raises(AudioError, match="not plausible"):
        load_audio((10_000_000, np.zeros(100, dtype=np.int16)))
    with pytest.raises(AudioError, match="no samples"):
        load_audio((16000, np.zeros(0, dtype=np.int16)))
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio((16000, np.array([0.0, np.inf, 0.1])))
    with pytest.raises(AudioError, match="dimensions"):
        load_audio((16000, np.zeros((4, 4, 4))))
    with pytest.raises(AudioError, match="not plausible"):
        load_audio((16000, np.zeros(100)), sr=-5)


# ---------------------------------------------------------------------------------------------------------------
# resampling

@pytest.mark.parametrize("src,dst", [(44100, 16000), (16000, 32000), (48000, 32000), (22050, 16000)])
def test_resampling_keeps_frequency_and_length(tmp_path, src, dst):
    x = tone(1000, 2.0, src)
    path = tmp_path / "t.wav"
    sf.write(str(path), x, src, subtype="FLOAT")
    y, sr = load_audio(path, sr=dst)
    assert sr == dst
    assert abs(len(y) - len(x) * dst / src) <= 1
    assert abs(dominant_freq(y, sr) - 1000) <= dst / len(y)  # within one FFT bin
    # amplitude kept away from the edges (soxr HQ passband is flat)
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert abs(np.max(np.abs(mid)) - 0.5) < 0.01


def test_resample_equals_soxr_hq():
    import soxr

    x = np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 0.1
    y, _ = load_audio((44100, x), sr=16000)
    np.testing.assert_allclose(y, soxr.resample(x, 44100, 16000, quality="HQ"), atol=1e-6)
    same, _ = load_audio((16000, x), sr=16000)
    np.testing.assert_array_equal(same, x)


# ---------------------------------------------------------------------------------------------------------------
# broken files

def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(AudioError, match="not found") as err:
        load_audio(tmp_path / "nope.wav")
    assert "nope.wav" in str(err.value)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty \(0 bytes\)") as err:
        load_audio(tmp_path / "empty.wav")
    assert "empty.wav" in str(err.value)
    with pytest.raises(AudioError, match="not a file"):
        load_audio(tmp_path)
    assert issubclass(AudioError, GSVError)


@pytest.mark.parametrize("name", ["noise.wav", "noise.mp3", "noise.flac", "noise.bin"])
def test_corrupt_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="cannot decode") as err:
        load_audio(path)
    assert name in str(err.value)


def test_truncated_wav(tmp_path):
    x = tone(440, 1.0, 16000)
    full = tmp_path / "full.wav"
    sf.write(str(full), x, 16000, subtype="PCM_16")
    data = full.read_bytes()
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(data[:44])
    with pytest.raises(AudioError, match="no samples") as err:
        load_audio(header_only)
    assert "header_only.wav" in str(err.value)
    half_header = tmp_path / "half_header.wav"
    half_header.write_bytes(data[:20])
    with pytest.raises(AudioError, match="cannot decode"):
        load_audio(half_header)
    # cut in the middle of the data: what is there is decoded (like ffmpeg does), nothing invented
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 2 * 4000])
    y, sr = load_audio(cut)
    assert sr == 16000 and len(y) == 4000
    np.testing.assert_allclose(y, x[:4000], atol=1 / 32767)


def test_nan_in_float_wav(tmp_path):
    x = tone(440, 0.5, 16000)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite") as err:
        load_audio(path)
    assert "nan.wav" in str(err.value)


def test_absurd_rate_in_header(tmp_path):
    path = tmp_path / "slow.wav"
    sf.write(str(path), np.zeros(100, dtype=np.float32), 100, subtype="PCM_16")
    with pytest.raises(AudioError, match="100 Hz is not plausible") as err:
        load_audio(path)
    assert "slow.wav" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# silence, reference rule, peak limit

def test_silence(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(16000 * 4, dtype=np.float32), 16000, subtype="PCM_16")
    wav, sr = load_audio(path)
    assert is_silent(wav)
    assert check_reference(wav, sr) == 4.0  # the duration rule alone does not judge content
    assert not is_silent(tone(440, 1.0, 16000, amp=0.01))  # -40 dBFS
    noise = np.random.default_rng(2).uniform(-1, 1, 16000).astype(np.float32)
    assert is_silent(noise * 10 ** (-70 / 20))
    assert not is_silent(noise * 10 ** (-50 / 20))
    assert is_silent(noise * 10 ** (-50 / 20), threshold_db=-40)
    assert is_silent(np.zeros(0, dtype=np.float32))


@pytest.mark.parametrize("seconds,shown", [(1.0, "1.00 s"), (30.0, "30.00 s"), (2.99, "2.99 s"), (10.5, "10.50 s")])
def test_reference_duration_rejected(tmp_path, seconds, shown):
    wav = tone(300, seconds, 16000)
    with pytest.raises(AudioError) as err:
        check_reference(wav, 16000, source=tmp_path / "ref.wav")
    msg = str(err.value)
    assert shown in msg and "between 3 and 10 seconds" in msg and "ref.wav" in msg
    assert ("too short" in msg) == (seconds < 3)


def test_reference_duration_accepted():
    assert check_reference(np.zeros(48000), 16000) == 3.0  # upstream: 48000 <= samples <= 160000 at 16 kHz
    assert check_reference(np.zeros(160000), 16000) == 10.0
    assert check_reference(np.zeros(32000 * 5), 32000) == 5.0
    with pytest.raises(AudioError):
        check_reference(np.zeros(160001), 16000)
    with pytest.raises(AudioError, match="between 1 and 2 seconds"):
        check_reference(np.zeros(16000 * 3), 16000, min_s=1, max_s=2)


def test_reference_from_file_one_and_thirty_seconds(tmp_path):
    for seconds in (1, 30):
        path = tmp_path / f"ref_{seconds}s.flac"
        sf.write(str(path), tone(200, seconds, 44100), 44100, format="FLAC")
        wav, sr = load_audio(path, sr=16000)
        with pytest.raises(AudioError, match=rf"{seconds}\.00 s long"):
            check_reference(wav, sr, source=path)


def test_peak_limit_upstream_rule():
    x = np.array([0.1, -1.5, 0.75], dtype=np.float32)
    out = peak_limit(x)
    np.testing.assert_allclose(out, x / 1.5, rtol=1e-6)
    assert x[1] == -1.5  # input untouched
    big = np.array([3.0, -1.0], dtype=np.float32)
    np.testing.assert_allclose(peak_limit(big), [1.5, -0.5])  # divided by min(2, peak) = 2
    small = np.array([0.2, -0.9], dtype=np.float32)
    np.testing.assert_array_equal(peak_limit(small), small)
    one = np.array([1.0, -1.0], dtype=np.float32)
    np.testing.assert_array_equal(peak_limit(one), one)


# ---------------------------------------------------------------------------------------------------------------
# int16 and saving

def test_to_int16_matches_upstream_formula():
    x = np.random.default_rng(3).uniform(-0.9999, 0.9999, 5000).astype(np.float32)
    np.testing.assert_array_equal(to_int16(x), (x * 32768).astype(np.int16))
    edge = np.array([1.0, -1.0, 0.5, -0.5, 1.7, -3.0, 0.0, -0.00002, 0.99999], dtype=np.float32)
    assert to_int16(edge).tolist() == [32767, -32768, 16384, -16384, 32767, -32768, 0, 0, 32767]
    pcm = np.array([1, -2, 3], dtype=np.int16)
    assert to_int16(pcm) is pcm


def test_save_wav_atomic_and_creates_folders(tmp_path):
    target = tmp_path / "deep" / "er" / "out.wav"
    save_wav(target, tone(440, 0.5, 32000), 32000)
    assert target.is_file() and sf.info(str(target)).subtype == "PCM_16"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.wav"]
    before = target.read_bytes()
    bad = tone(440, 0.5, 32000)
    bad[5] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        save_wav(target, bad, 32000)
    assert target.read_bytes() == before  # old file untouched
    # a failure during the write (disk full, ...) leaves neither a damaged file nor a temporary behind
    def failing_write(*args, **kwargs):
        raise OSError(28, "No space left on device")

    import soundfile

    original = soundfile.write
    soundfile.write = failing_write
    try:
        with pytest.raises(AudioError, match="No space left") as err:
            save_wav(target, tone(220, 0.5, 32000), 32000)
    finally:
        soundfile.write = original
    assert "out.wav" in str(err.value)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.wav"]
    # overwriting works, stereo [T, 2] is kept
    st = np.stack([tone(440, 0.25, 16000), tone(880, 0.25, 16000)], axis=1)
    save_wav(target, st, 16000)
    info = sf.info(str(target))
    assert (info.channels, info.samplerate, info.frames) == (2, 16000, 4000)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # normal permissions, not mkstemp's 0600


def test_save_wav_rejects_nonsense(tmp_path):
    with pytest.raises(AudioError, match="no audio to save"):
        save_wav(tmp_path / "x.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="not plausible"):
        save_wav(tmp_path / "x.wav", np.zeros(10, dtype=np.float32), 5)
    assert not (tmp_path / "x.wav").exists()


def test_audio_duration_reads_header_only(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(str(path), np.zeros(16000 * 7 + 8000, dtype=np.int16), 16000, subtype="PCM_16")

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio_duration decoded the file")

    monkeypatch.setattr(A, "load_audio", no_decoding)
    monkeypatch.setattr(A, "_decode_soundfile", no_decoding)
    monkeypatch.setattr(A, "_decode_pyav", no_decoding)
    assert audio_duration(path) == 7.5
    with pytest.raises(AudioError, match="not found"):
        audio_duration(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        audio_duration(tmp_path / "empty.wav")
