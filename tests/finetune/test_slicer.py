"""The slicer: cuts at silences with upstream's semantics, constraints, normalisation and file names."""
from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from gsv_core.audio import save_wav
from gsv_core.finetune.slicer import (SlicerError, SlicerParams, centred_rms, find_chunks, normalize_chunk,
                                     slice_folder)

SR = 32000


def _tone(seconds: float, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def _bursts(lengths=(4.5, 5.0, 4.2), gap=1.0, lead=0.2) -> tuple[np.ndarray, list[tuple[float, float]]]:
    parts, spans, pos = [_silence(lead)], [], lead
    for k, length in enumerate(lengths):
        parts.append(_tone(length, 200 + 50 * k))
        spans.append((pos, pos + length))
        pos += length
        if k < len(lengths) - 1:
            parts.append(_silence(gap))
            pos += gap
    return np.concatenate(parts), spans


def test_cuts_at_the_silences_between_bursts():
    wav, spans = _bursts()
    chunks = find_chunks(wav, SR, SlicerParams())
    assert len(chunks) == 3
    for (start, end), (a, b) in zip(chunks, spans):
        # every burst lies inside its chunk, and at most max_sil_kept (0.5 s) of silence is kept on each side
        assert start / SR <= a + 0.02 and end / SR >= b - 0.02
        assert a - start / SR <= 0.5 + 0.02 and end / SR - b <= 0.5 + 0.02
    # cuts lie inside the gaps: no chunk boundary falls inside a burst
    for start, end in chunks:
        for a, b in spans:
            assert not (a + 0.02 < start / SR < b - 0.02) and not (a + 0.02 < end / SR < b - 0.02)


def test_short_gaps_and_short_clips_are_not_cut():
    # a 0.2 s gap is shorter than min_interval (300 ms): one chunk
    wav = np.concatenate([_tone(3.0), _silence(0.2), _tone(3.0)])
    assert len(find_chunks(wav, SR, SlicerParams())) == 1
    # a long gap after a clip shorter than min_length (4 s) does not cut either
    wav = np.concatenate([_tone(2.0), _silence(1.0), _tone(3.0)])
    assert len(find_chunks(wav, SR, SlicerParams())) == 1
    # ... but it does with a smaller min_length
    assert len(find_chunks(wav, SR, SlicerParams(min_length_ms=1000))) == 2


def test_long_leading_silence_is_removed_and_trailing_silence_cut():
    wav = np.concatenate([_silence(2.0), _tone(5.0), _silence(2.0)])
    chunks = find_chunks(wav, SR, SlicerParams())
    assert len(chunks) == 1
    start, end = chunks[0]
    assert 1.45 <= start / SR <= 2.0  # at most 0.5 s of the leading silence kept
    assert 7.0 <= end / SR <= 7.55


def test_centred_rms_frames():
    x = np.ones(100, dtype=np.float32)
    rms = centred_rms(x, 20, 10)
    assert rms.shape[0] == 1 + 100 // 10
    assert rms[0] == pytest.approx(np.sqrt(10 / 20))  # half of the first window is padding
    assert rms[5] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs", [
    dict(min_length_ms=200, min_interval_ms=300),
    dict(min_interval_ms=5, hop_size_ms=10),
    dict(max_sil_kept_ms=5, hop_size_ms=10),
    dict(hop_size_ms=0),
    dict(normalize_max=1.5),
    dict(alpha=-0.1),
])
def test_constraints(kwargs):
    with pytest.raises(SlicerError):
        SlicerParams(**kwargs).validate()


def test_normalisation_mix():
    x = np.array([0.0, 0.5, -0.25], dtype=np.float32)
    out = normalize_chunk(x, 0.9, 0.25)
    np.testing.assert_allclose(out, x / 0.5 * 0.225 + 0.75 * x, rtol=1e-6)
    assert np.all(normalize_chunk(np.zeros(4, np.float32), 0.9, 0.25) == 0)


def test_slice_folder_writes_named_chunks(tmp_path):
    src = tmp_path / "long"
    wav, _ = _bursts()
    save_wav(src / "talk.wav", wav, SR)
    (src / "notes.txt").parent.mkdir(exist_ok=True)
    (src / "notes.txt").write_text("not audio")
    (src / "broken.wav").write_bytes(b"RIFF0000garbage")
    progress = []
    out = slice_folder(src, tmp_path / "out", progress=lambda f, m: progress.append(f))
    assert len(out) == 3 and progress[-1] == 1.0
    assert [p.name for p in out] == sorted(p.name for p in out)
    assert [p for p, _ in out.failed] == [src / "broken.wav"]
    prev_end = -1
    for p in out:
        m = re.fullmatch(r"talk_(\d{10})_(\d{10})\.wav", p.name)
        assert m, p.name
        start, end = int(m.group(1)), int(m.group(2))
        assert start > prev_end - 1 and end > start
        prev_end = end
        data, rate = sf.read(p, dtype="int16")
        assert rate == SR and data.dtype == np.int16
        assert abs(data.shape[0] - (min(end, wav.shape[0]) - start)) <= 1
        # loudness mix: peak 0.5 -> 0.5 / 0.5 * 0.225 + 0.75 * 0.5 = 0.6
        assert np.abs(data).max() / 32767 == pytest.approx(0.6, abs=0.01)


def test_slice_folder_errors(tmp_path):
    with pytest.raises(SlicerError, match="no such file"):
        slice_folder(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlicerError, match="no audio"):
        slice_folder(tmp_path / "empty", tmp_path / "out")
