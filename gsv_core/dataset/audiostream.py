"""Long recordings in bounded memory: read block by block, process in overlapping windows, write as it goes.

A podcast or a stream recording can last hours; nothing in the dataset flow holds a whole recording in memory.
:class:`AudioStream` decodes a file block by block (soundfile for WAV/FLAC/OGG, PyAV's FFmpeg for everything else),
mixes it to mono and resamples it with a streaming soxr resampler (the same "HQ" quality as
:func:`gsv_core.audio.resample`). :class:`WavWriter` writes 16-bit WAV incrementally into a ``.part`` file that is
renamed when complete, and can reopen that part after an interruption. :func:`process_windows` runs a function
(separation, denoising) over windows of ``block`` seconds with ``context`` seconds on each side, joins the results
with a short linear crossfade and records after every window where it stands, so an interrupted run continues at
the next window instead of starting the recording over.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from gsv_core.audio import SOUNDFILE_EXTENSIONS, audio_duration, check_duration
from gsv_core.errors import AudioError, GSVError

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


class StreamCancelled(GSVError):
    """A cancel request stopped a streaming step; what was written so far is kept for the next run."""


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class AudioStream:
    """A recording read block by block as mono float32 at ``sr`` Hz.

    ``duration`` comes from the header (PyAV's container metadata for compressed formats), so progress can be
    reported before decoding; ``max_seconds`` refuses a longer file before anything is decoded."""

    def __init__(self, path: str | os.PathLike, sr: int, block_seconds: float = 10.0,
                 max_seconds: Optional[float] = None):
        self.path = Path(path)
        self.sr = int(sr)
        self.block_seconds = float(block_seconds)
        name = str(self.path)
        if not self.path.exists():
            raise AudioError(f"{name}: audio file not found")
        if not self.path.is_file():
            raise AudioError(f"{name}: is not a file")
        if self.path.stat().st_size == 0:
            raise AudioError(f"{self.path.name}: the file is empty (0 bytes), there is no audio to read")
        self.duration = check_duration(self.path, max_seconds) if max_seconds else audio_duration(self.path)

    @property
    def expected_samples(self) -> int:
        return int(round(self.duration * self.sr))

    def _native_blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        """``(mono float32 block, native rate)`` pairs straight from the decoder."""
        first = self.path.suffix.lower() in SOUNDFILE_EXTENSIONS
        errors = []
        for backend in (("soundfile", "pyav") if first else ("pyav", "soundfile")):
            produced = False
            try:
                gen = self._soundfile_blocks() if backend == "soundfile" else self._pyav_blocks()
                for block, rate in gen:
                    produced = True
                    yield block, rate
                if produced:
                    return
                errors.append(f"{backend}: no samples")
            except GSVError:
                raise
            except Exception as exc:  # noqa: BLE001 - a decoder's failure on user data becomes a readable error
                if produced:  # the file broke in the middle: say so, keep what was decoded
                    raise AudioError(f"{self.path.name}: decoding stopped in the middle of the file "
                                     f"({_short(exc)})") from None
                errors.append(f"{backend}: {_short(exc)}")
        if errors and all(e.endswith("no samples") for e in errors):
            raise AudioError(f"{self.path.name}: the file contains no audio samples")
        raise AudioError(f"{self.path.name}: cannot decode this audio (corrupt or unsupported format; {errors[0]})")

    def _soundfile_blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        import soundfile as sf

        with sf.SoundFile(str(self.path)) as f:
            rate = int(f.samplerate)
            frames = max(1, int(self.block_seconds * rate))
            while True:
                data = f.read(frames, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                yield (data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]), rate

    def _pyav_blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        import av

        with av.open(str(self.path), mode="r") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream in the container")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            converter = av.AudioResampler(format="fltp")
            pending: list[np.ndarray] = []
            size = 0
            target = max(1, int(self.block_seconds * rate))
            for frame in container.decode(stream):
                for out in converter.resample(frame):
                    arr = out.to_ndarray()
                    pending.append(arr.mean(axis=0, dtype=np.float32) if arr.shape[0] > 1 else arr[0])
                    size += pending[-1].shape[0]
                if size >= target:
                    yield np.concatenate(pending).astype(np.float32, copy=False), rate
                    pending, size = [], 0
            for out in converter.resample(None):
                arr = out.to_ndarray()
                pending.append(arr.mean(axis=0, dtype=np.float32) if arr.shape[0] > 1 else arr[0])
            if pending:
                yield np.concatenate(pending).astype(np.float32, copy=False), rate

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at ``sr`` (about ``block_seconds`` each); NaN/inf samples are refused."""
        import soxr

        resampler = None
        rate_seen = None
        for block, rate in self._native_blocks():
            if rate <= 0:
                raise AudioError(f"{self.path.name}: the file states no sample rate")
            if not np.isfinite(block).all():
                raise AudioError(f"{self.path.name}: the audio contains NaN or infinite sample values")
            if rate_seen is None:
                rate_seen = rate
                if rate != self.sr:
                    resampler = soxr.ResampleStream(rate, self.sr, 1, dtype="float32", quality="HQ")
            if resampler is None:
                yield block
            else:
                out = resampler.resample_chunk(block, last=False)
                if out.size:
                    yield out
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield tail


class WavWriter:
    """16-bit mono WAV written incrementally to ``<name>.part.wav`` and renamed to ``path`` by :meth:`finish`.

    ``resume=True`` reopens an existing part file and cuts it to ``frames`` (the count recorded after the last
    completed window), so a crash between two windows never leaves half a window in the output."""

    def __init__(self, path: str | os.PathLike, sr: int, resume_frames: Optional[int] = None):
        import soundfile as sf

        self.path = Path(path)
        self.part = part_path(self.path)
        self.sr = int(sr)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_frames is not None and self.part.is_file():
            self._f = sf.SoundFile(str(self.part), mode="r+")
            if self._f.samplerate != self.sr or self._f.channels != 1:
                self._f.close()
                raise AudioError(f"{self.part.name}: a part file of another format is in the way; delete it")
            keep = min(int(resume_frames), self._f.frames)
            self._f.truncate(keep)
            self._f.seek(keep)
            self.frames = keep
        else:
            self._f = sf.SoundFile(str(self.part), mode="w", samplerate=self.sr, channels=1, subtype="PCM_16",
                                   format="WAV")
            self.frames = 0

    def write(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32)
        if x.size:
            self._f.write(np.clip(x, -1.0, 32767 / 32768))
            self.frames += x.shape[0]

    def flush(self) -> None:
        self._f.flush()

    def finish(self) -> Path:
        self._f.close()
        os.replace(self.part, self.path)
        return self.path

    def abort(self) -> None:
        """Close the part file and keep it (an interrupted run resumes from it)."""
        try:
            self._f.close()
        except Exception:  # noqa: BLE001
            pass


def part_path(path: Path) -> Path:
    return path.with_name(path.stem + ".part.wav")


def state_path(path: Path) -> Path:
    return path.with_name(path.stem + ".part.json")


@dataclass
class _Resume:
    window: int = 0
    frames: list[int] | None = None
    stash: list[np.ndarray] | None = None


def _load_resume(outputs: Sequence[Path], key: str) -> _Resume:
    st = state_path(outputs[0])
    if not st.is_file() or not all(part_path(p).is_file() for p in outputs):
        return _Resume()
    try:
        data = json.loads(st.read_text(encoding="utf-8"))
        if data.get("key") != key:
            return _Resume()
        stash = []
        for p in outputs:
            raw = Path(str(state_path(p)) + ".npy")
            stash.append(np.load(raw) if raw.is_file() else np.zeros(0, dtype=np.float32))
        return _Resume(window=int(data["window"]), frames=[int(f) for f in data["frames"]], stash=stash)
    except (OSError, ValueError, KeyError, TypeError):
        return _Resume()


def _save_resume(outputs: Sequence[Path], key: str, window: int, writers: Sequence[WavWriter],
                 stash: Sequence[np.ndarray]) -> None:
    from gsv_core.fileio import write_text_atomic

    for p, s in zip(outputs, stash):
        tmp = Path(str(state_path(p)) + ".tmp.npy")
        np.save(tmp, np.asarray(s, dtype=np.float32))
        os.replace(tmp, Path(str(state_path(p)) + ".npy"))
    for w in writers:
        w.flush()
    write_text_atomic(state_path(outputs[0]), json.dumps({"key": key, "window": window,
                                                          "frames": [w.frames for w in writers]}))


def _clear_resume(outputs: Sequence[Path]) -> None:
    for p in outputs:
        for f in (state_path(p), Path(str(state_path(p)) + ".npy")):
            try:
                f.unlink()
            except FileNotFoundError:
                pass


def process_windows(stream: AudioStream, fn: Callable[[np.ndarray], Sequence[np.ndarray]],
                    outputs: Sequence[Path], *, key: str, block: float = 30.0, context: float = 1.0,
                    crossfade: float = 0.5, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelFn] = None, what: str = "processing") -> list[Path]:
    """Apply ``fn`` to ``stream`` window by window and write its outputs (one WAV per entry of ``outputs``).

    Window ``k`` covers ``[k*block - context, (k+1)*block + context)`` seconds (clipped to the recording); ``fn``
    returns one array per output, each as long as the window. Each output keeps ``[k*block, (k+1)*block)`` of
    window ``k``, the borders blended over ``crossfade`` seconds. After each window the part files and a small
    state file (``key`` identifies the settings) are saved; a later call with the same ``key`` resumes there.
    A cancel request between windows raises :class:`StreamCancelled`."""
    sr = stream.sr
    B = max(1, int(round(block * sr)))
    O = max(0, int(round(context * sr)))
    C = min(2 * (O // 2), max(0, int(round(crossfade * sr))) // 2 * 2)  # even, and at most the context
    half = C // 2
    outputs = [Path(p) for p in outputs]
    resume = _load_resume(outputs, key)
    writers = [WavWriter(p, sr, resume_frames=(resume.frames[i] if resume.frames else None))
               for i, p in enumerate(outputs)]
    stash = list(resume.stash) if resume.stash else [np.zeros(0, dtype=np.float32) for _ in outputs]
    k = resume.window
    expected = max(1, stream.expected_samples)
    total_windows = max(1, -(-expected // B))
    ramp = np.linspace(0.0, 1.0, C, endpoint=False, dtype=np.float32) + np.float32(0.5 / max(C, 1)) if C else None

    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0  # absolute sample index of buf[0]
    want_from = max(0, k * B - O)
    blocks = stream.blocks()
    exhausted = False

    def fill(until: int) -> None:
        """Read blocks until ``until`` (absolute sample) is buffered; what lies before ``want_from`` is dropped
        as soon as it is read, so skipping to a resumed window never holds the skipped audio."""
        nonlocal buf, buf_start, exhausted
        pieces = [buf]
        have = buf_start + buf.shape[0]
        while have < until and not exhausted:
            try:
                b = next(blocks)
            except StopIteration:
                exhausted = True
                break
            b_start = have
            have += b.shape[0]
            if have <= want_from:  # entirely before the window: never kept
                pieces, buf_start = [], have
                continue
            if b_start < want_from:
                b = b[want_from - b_start:]
                pieces, buf_start = [], want_from
            pieces.append(b)
        buf = np.concatenate(pieces) if len(pieces) > 1 else (pieces[0] if pieces else np.zeros(0, np.float32))
        if want_from > buf_start:
            cut = min(buf.shape[0], want_from - buf_start)
            buf = buf[cut:]
            buf_start += cut

    try:
        while True:
            if cancel is not None and cancel():
                raise StreamCancelled(f"{what} stopped at {k * block:.0f} s of {stream.path.name}; the next run "
                                      "continues there")
            start, end = k * B, (k + 1) * B
            want_from = max(0, start - O)
            fill(end + O)
            have_end = buf_start + buf.shape[0]
            if have_end <= start:  # nothing left (the audio ended exactly at a window border)
                for i, w in enumerate(writers):
                    w.write(stash[i][:half])
                break
            lo = max(0, start - O)
            hi = min(have_end, end + O)
            window = buf[lo - buf_start:hi - buf_start]
            if progress is not None:
                progress(min(0.999, start / expected), f"{what} {stream.path.name}: window {k + 1}/{total_windows}")
            results = fn(window)
            if len(results) != len(outputs):
                raise GSVError(f"{what}: expected {len(outputs)} outputs, got {len(results)}")
            last = exhausted and have_end <= end
            for i, (res, w) in enumerate(zip(results, writers)):
                res = np.asarray(res, dtype=np.float32).reshape(-1)
                if res.shape[0] < window.shape[0]:
                    res = np.pad(res, (0, window.shape[0] - res.shape[0]))
                res = res[:window.shape[0]]
                a = start - lo  # offset of `start` inside the window
                stop = (min(end, have_end) if last else end) - lo
                body_from = a
                if k > 0 and half and stash[i].size:
                    n = min(stash[i].size, C, res.shape[0] - (a - half))
                    blend = stash[i][:n] * (1 - ramp[:n]) + res[a - half:a - half + n] * ramp[:n]
                    w.write(blend)
                    body_from = a - half + n
                if last:
                    w.write(res[body_from:stop])
                    stash[i] = np.zeros(0, dtype=np.float32)
                else:
                    w.write(res[body_from:stop - half])
                    stash[i] = res[stop - half:stop + half].copy()
            k += 1
            if last:
                break
            _save_resume(outputs, key, k, writers, stash)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    done = [w.finish() for w in writers]
    _clear_resume(outputs)
    if progress is not None:
        progress(1.0, f"{what} {stream.path.name}: done")
    return done


__all__ = ["AudioStream", "StreamCancelled", "WavWriter", "part_path", "process_windows", "state_path"]
