"""The dataset flow's parts on signals made here: streaming reads equal whole-file reads, windowed processing and
its resume, the streaming slicer against the in-memory slicer (byte-identical files), bad input (empty, not audio,
a three-hour file: bounded memory and progress), denoising, loudness, settings checks and proofreading."""
from __future__ import annotations

import dataclasses
import filecmp
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dataset.recordings import sparse_long_wav


@pytest.fixture()
def settings(tmp_path):
    from config import load_settings

    return load_settings(environ={"GSV_HOME": str(tmp_path)}, my_config=tmp_path / "none.py")


def _bursts(sr: int, seed: int = 0, count: int = 10) -> np.ndarray:
    """Tone bursts of 2-7 s with quiet gaps (what the slicer cuts at)."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(count):
        n = int(rng.uniform(2.0, 7.0) * sr)
        t = np.arange(n) / sr
        parts.append((0.5 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32))
        parts.append((0.001 * rng.standard_normal(int(rng.uniform(0.2, 1.5) * sr))).astype(np.float32))
    return np.concatenate(parts)


def _write_av(path: Path, wav: np.ndarray, sr: int, codec: str) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=sr, layout="mono")
        frame_size = 1024
        pts = 0
        for i in range(0, wav.shape[0], frame_size):
            chunk = wav[i:i + frame_size].astype(np.float32)[None, :]
            fmt = "fltp" if codec in ("aac", "mp3", "libmp3lame") else "flt"
            frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
            frame.sample_rate = sr
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_stream_blocks_match_a_whole_read_and_any_format(tmp_path):
    from gsv_core.audio import load_audio
    from gsv_core.dataset.audiostream import AudioStream

    sr = 44100
    wav = _bursts(sr, count=3)
    sf.write(tmp_path / "a.wav", wav, sr, subtype="FLOAT")
    stream = AudioStream(tmp_path / "a.wav", 32000, block_seconds=1.3)
    blocks = list(stream.blocks())
    assert len(blocks) > 5
    got = np.concatenate(blocks)
    whole, _ = load_audio(tmp_path / "a.wav", sr=32000)
    assert abs(got.shape[0] - whole.shape[0]) <= 1
    n = min(got.shape[0], whole.shape[0])
    assert np.max(np.abs(got[:n] - whole[:n])) < 1e-3  # the streaming resampler vs a one-shot resampling
    assert abs(stream.duration - wav.shape[0] / sr) < 1e-6
    m4a = _write_av(tmp_path / "a.m4a", wav, sr, "aac")  # PyAV's FFmpeg path (what soundfile cannot read)
    got = np.concatenate(list(AudioStream(m4a, 16000, block_seconds=2.0).blocks()))
    ref, _ = load_audio(m4a, sr=16000)
    assert abs(got.shape[0] - ref.shape[0]) <= 1 and np.corrcoef(got[:ref.shape[0]], ref[:got.shape[0]])[0, 1] > 0.99


def test_bad_inputs_are_named(tmp_path):
    from gsv_core.dataset.audiostream import AudioStream
    from gsv_core.errors import AudioError

    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        AudioStream(tmp_path / "empty.wav", 16000)
    (tmp_path / "text.mp3").write_text("not audio at all " * 50)
    with pytest.raises(AudioError, match="text.mp3"):
        list(AudioStream(tmp_path / "text.mp3", 16000).blocks())
    sf.write(tmp_path / "nothing.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples|empty"):
        list(AudioStream(tmp_path / "nothing.wav", 16000).blocks())
    with pytest.raises(AudioError, match="not found"):
        AudioStream(tmp_path / "missing.wav", 16000)
    long = sparse_long_wav(tmp_path / "long.wav", hours=3.0)
    with pytest.raises(AudioError, match="longer than"):
        AudioStream(long, 16000, max_seconds=3600)  # refused from the header, before decoding


def test_windows_resume_after_a_cancel_to_the_same_output(tmp_path):
    from gsv_core.dataset.audiostream import AudioStream, StreamCancelled, process_windows

    sr = 16000
    rng = np.random.default_rng(1)
    wav = np.clip(0.2 * rng.standard_normal(int(47.3 * sr)), -0.9, 0.9).astype(np.float32)
    sf.write(tmp_path / "in.wav", wav, sr, subtype="FLOAT")

    def fn(w):  # a window-dependent gain: the crossfade has something to blend
        return (w * np.float32(0.5 + 0.1 * (w.shape[0] % 7)), w * 0 + np.float32(0.25))

    outs = [tmp_path / "full" / "a.wav", tmp_path / "full" / "b.wav"]
    done = process_windows(AudioStream(tmp_path / "in.wav", sr), fn, outs, key="k", block=5.0, context=0.5,
                           crossfade=0.4)
    a, _ = sf.read(done[0], dtype="float32")
    assert a.shape[0] == wav.shape[0] and np.allclose(sf.read(done[1])[0], 0.25, atol=1e-4)
    same, _ = sf.read(process_windows(AudioStream(tmp_path / "in.wav", sr), lambda w: (w,),
                                      [tmp_path / "id.wav"], key="id", block=5.0, context=0.5)[0], dtype="float32")
    assert np.max(np.abs(same - wav)) < 1 / 32767  # identity in, identity out (16-bit rounding only)

    calls = {"n": 0}

    def cancel_after_four():
        calls["n"] += 1
        return calls["n"] > 4

    outs2 = [tmp_path / "resumed" / "a.wav", tmp_path / "resumed" / "b.wav"]
    with pytest.raises(StreamCancelled, match="continues there"):
        process_windows(AudioStream(tmp_path / "in.wav", sr), fn, outs2, key="k", block=5.0, context=0.5,
                        crossfade=0.4, cancel=cancel_after_four)
    assert not outs2[0].exists() and (tmp_path / "resumed" / "a.part.wav").is_file()
    state = json.loads((tmp_path / "resumed" / "a.part.json").read_text())
    assert state["window"] == 4
    seen = []
    process_windows(AudioStream(tmp_path / "in.wav", sr), fn, outs2, key="k", block=5.0, context=0.5,
                    crossfade=0.4, progress=lambda f, m: seen.append(m))
    assert "window 5/" in seen[0]  # continued at the fifth window, not from the start
    assert filecmp.cmp(outs[0], outs2[0], shallow=False) and filecmp.cmp(outs[1], outs2[1], shallow=False)
    assert not list((tmp_path / "resumed").glob("*.part*"))


@pytest.mark.parametrize("sr", [32000, 44100])
def test_streaming_slicer_writes_the_slicers_files(tmp_path, sr):
    from gsv_core.dataset.slicing import slice_stream
    from gsv_core.finetune.slicer import SlicerParams, slice_file

    sf.write(tmp_path / "rec.wav", _bursts(sr, seed=sr), sr, subtype="PCM_16")
    whole = slice_file(tmp_path / "rec.wav", tmp_path / "whole", SlicerParams())
    streamed = slice_stream(tmp_path / "rec.wav", tmp_path / "streamed", SlicerParams())
    assert len(whole) >= 5 and [p.name for p in whole] == [p.name for p in streamed]
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(whole, streamed))


def test_three_hour_recording_streams_in_bounded_memory(tmp_path, settings):
    """A sparse 3-hour WAV (8 kHz, 173 MB as samples, about 2 MB on disk) sliced and normalised by the flow.
    Measured: about 25 s; RSS grew by 40-60 MB (the recording as float32 at 8 kHz alone would be 346 MB)."""
    import psutil

    from gsv_core.dataset.flow import DatasetFlow, FlowConfig
    from gsv_core.finetune.slicer import SlicerParams

    long = sparse_long_wav(tmp_path / "stream.wav", hours=3.0, sr=8000, burst_every_s=600.0, burst_s=6.0)
    flow = DatasetFlow(settings, "long")
    flow.set_inputs([long])
    cfg = FlowConfig(steps=("slice", "normalize"), slicer=SlicerParams(sample_rate=8000))
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = {"rss": base}
    running = threading.Event()
    running.set()

    def watch():
        while running.is_set():
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    seen: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    try:
        summary = flow.run(cfg, progress=lambda f, m: seen.append((f, m)))
    finally:
        running.clear()
        watcher.join()
    grew = (peak["rss"] - base) / 2 ** 20
    print(f"3 h: {time.perf_counter() - t0:.1f} s, RSS +{grew:.0f} MB, {len(seen)} progress calls")
    assert grew < 200, f"RSS grew by {grew:.0f} MB: the recording was not streamed"
    assert summary["steps"]["slice"]["clips"] == 18  # one clip per burst
    assert len(seen) > 100 and [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert any("min" in m for _, m in seen)  # the minutes read so far are shown
    clips = sorted(flow.folder("normalized").glob("*.wav"))
    assert len(clips) == 18 and all(5.0 < sf.info(c).duration < 8.0 for c in clips)


def test_denoise_lowers_noise_and_keeps_the_tone():
    from gsv_core.dataset.cleanup import DenoiseParams, denoise_window

    sr = 16000
    rng = np.random.default_rng(0)
    t = np.arange(10 * sr) / sr
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 25))  # a voice-like harmonic series
    tone = np.where((t > 3) & (t < 7), 0.15 * voiced, 0.0)
    noisy = (tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    out = denoise_window(noisy, sr, DenoiseParams())
    quiet = slice(0, 2 * sr)
    assert 20 * np.log10(np.std(noisy[quiet]) / np.std(out[quiet])) > 8  # 0.8 of the noise: at most 14 dB
    loud = slice(4 * sr, 6 * sr)
    assert abs(20 * np.log10(np.std(out[loud]) / np.std(tone[loud]))) < 2.0  # measured 1.4 dB (weak harmonics)
    with pytest.raises(Exception, match="strength"):
        DenoiseParams(strength=1.5).validate()


def test_loudness_reaches_the_target_under_the_peak_limit(tmp_path):
    import pyloudnorm

    from gsv_core.dataset.cleanup import LoudnessParams, normalize_loudness

    sr = 32000
    t = np.arange(3 * sr) / sr
    quiet = (0.02 * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    sf.write(tmp_path / "q.wav", quiet, sr)
    info = normalize_loudness(tmp_path / "q.wav", tmp_path / "out" / "q.wav", LoudnessParams(target_lufs=-23.0))
    y, _ = sf.read(tmp_path / "out" / "q.wav")
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(y) - (-23.0)) < 0.3 and info["gain_db"] > 10
    spiky = quiet.copy()
    spiky[sr] = 0.9  # one click: the gain must stop at the peak limit
    sf.write(tmp_path / "s.wav", spiky, sr)
    info = normalize_loudness(tmp_path / "s.wav", tmp_path / "out" / "s.wav", LoudnessParams(peak_db=-1.0))
    y, _ = sf.read(tmp_path / "out" / "s.wav")
    assert "peak" in info["note"] and np.max(np.abs(y)) <= 10 ** (-1 / 20) + 1e-3
    sf.write(tmp_path / "short.wav", quiet[:int(0.2 * sr)], sr)
    assert "too short" in normalize_loudness(tmp_path / "short.wav", tmp_path / "out" / "short.wav",
                                             LoudnessParams())["note"]


def test_settings_are_checked(settings):
    from gsv_core.dataset.flow import DatasetFlow, DatasetFlowError, FlowConfig

    with pytest.raises(DatasetFlowError, match="not usable"):
        DatasetFlow(settings, "../x")
    with pytest.raises(DatasetFlowError, match="unknown step"):
        FlowConfig(steps=("slice", "fly")).validate()
    with pytest.raises(DatasetFlowError, match="ASR model"):
        FlowConfig(steps=("transcribe",)).validate()
    with pytest.raises(DatasetFlowError, match="2 s"):
        FlowConfig(steps=("slice",), refpool_seconds=(1.5, 5.0)).validate()
    assert FlowConfig(steps=("slice",), refpool_seconds=(2, 5)).validate().refpool_seconds == (2.0, 5.0)
    flow = DatasetFlow(settings, "none")
    with pytest.raises(DatasetFlowError, match="no recordings"):
        flow.run(FlowConfig(steps=("slice",)))


def test_missing_separation_model_names_the_command(tmp_path, settings):
    from gsv_core.dataset.flow import DatasetFlow, FlowConfig
    from gsv_core.dataset.separation import SeparationModelMissing

    sf.write(tmp_path / "r.wav", _bursts(16000, count=2), 16000)
    flow = DatasetFlow(settings, "sep")
    flow.set_inputs([tmp_path / "r.wav"])
    with pytest.raises(SeparationModelMissing, match="python -m gsv_core.download --separator bs-roformer"):
        flow.run(FlowConfig(steps=("separate", "slice")))


class _FakeASR:
    """A test double of ASRService.transcribe: the clip's name as its text (no model needed here)."""

    def __init__(self):
        self.calls = 0

    def transcribe(self, inputs, options, progress=None, cancel=None):
        from gsv_core.asr import ASRRow

        self.calls += 1
        p = Path(inputs[0])
        return [ASRRow(path=str(p), speaker=options.speaker, lang="en", text=f"words of {p.stem[-4:]}",
                       duration=sf.info(p).duration)]


def test_proofreading_edit_delete_merge_survive_a_rerun(tmp_path, settings):
    from gsv_core.dataset.flow import DatasetFlow, DatasetFlowError, FlowConfig
    from gsv_core.formats import listfile
    from helpers.tiny_whisper import build_tiny_whisper  # noqa: F401  (the model folder check needs a real one)

    sr = 32000
    sf.write(tmp_path / "r.wav", _bursts(sr, count=6), sr)
    model = tmp_path / "whisper" / "m"
    model.mkdir(parents=True)
    for n in ("model.bin", "config.json", "tokenizer.json"):
        (model / n).write_text("{}")
    flow = DatasetFlow(settings, "proof")
    flow.set_inputs([tmp_path / "r.wav"])
    asr = _FakeASR()
    cfg = FlowConfig(steps=("slice", "transcribe"), asr_model=str(model), language="en")
    flow.run(cfg, asr=asr)
    rows = flow.rows()
    assert len(rows) >= 4 and asr.calls == len(rows)
    table = [r.cells() for r in rows]
    table[0][4] = "An edited sentence."
    table[1][2] = "alice"
    rows = flow.save_edits(table)
    assert rows[0].text == "An edited sentence." and rows[1].speaker == "alice"
    rows = flow.delete([rows[2].clip])
    n = len(rows)
    merged = flow.merge(rows[0].clip, rows[1].clip)
    assert len(merged) == n - 1 and merged[0].clip.startswith("merged/")
    assert merged[0].text == f"An edited sentence. {rows[1].text}"
    wa, wb = (sf.info(flow.clip_path(r.clip)).duration for r in rows[:2])
    assert abs(sf.info(flow.clip_path(merged[0].clip)).duration - (wa + wb + 0.15)) < 0.01
    lines = listfile.read_list(flow.list_path).rows
    assert [Path(r.audio).name for r in lines] == [Path(r.clip).name for r in merged]
    assert all(Path(r.audio).is_file() for r in lines)
    with pytest.raises(Exception, match="cannot be used"):
        flow.clip_path("../../secret.wav")
    with pytest.raises(DatasetFlowError, match="two rows"):
        flow.merge(merged[0].clip, "nope.wav")
    # a second run transcribes nothing and keeps every correction
    flow.run(cfg, asr=asr)
    assert asr.calls == n + 1 and [r.cells() for r in flow.rows()] == [r.cells() for r in merged]
    restored = flow.restore()
    assert len(restored) == n  # the deleted row is back; the merge stays
