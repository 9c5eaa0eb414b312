"""Audio in and out: loading from files, bytes or Gradio tuples, resampling, reference checks and WAV saving.

Everything a user can get wrong (a missing or corrupt file, silence, NaN samples, a reference of the wrong length)
raises :class:`~gsv_core.errors.AudioError` with a message that names the file. No torchaudio: WAV/FLAC/OGG go
through soundfile, every other container or codec (mp3, m4a, aac, opus, ...) through PyAV, and resampling is soxr
at quality ``"HQ"`` (the resampler family behind librosa's default ``res_type="soxr_hq"``, which upstream
GPT-SoVITS uses to load references at 16 kHz).

    wav, sr = load_audio("ref.mp3", sr=16000)        # float32 mono, 16 kHz
    check_reference(wav, sr, source="ref.mp3")        # upstream's 3-10 s rule
    save_wav("output/out.wav", wav, sr)              # 16-bit PCM, written atomically
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import AudioError
from .messages import keyed

#: sample rates outside this range are refused as absurd (telephone 8 kHz and DXD 384 kHz are inside)
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000

#: extensions read with soundfile first; every other one goes to PyAV first (each falls back to the other)
SOUNDFILE_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".snd", ".caf", ".w64", ".rf64"})

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, tuple]


# ----------------------------------------------------------------------------------------------------------------
# helpers

def _check_rate(sr: Any, what: str, name: str) -> int:
    """An integer sample rate in the sane range, or an AudioError naming ``name``."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float, np.floating)):
        raise AudioError(f"{name}: {what} sample rate must be a number of Hz, not {sr!r}")
    if isinstance(sr, (float, np.floating)):
        if not math.isfinite(sr) or sr != int(sr):
            raise AudioError(f"{name}: {what} sample rate {sr!r} is not a whole number of Hz")
    sr = int(sr)
    if not (MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE):
        raise AudioError(
            f"{name}: {what} sample rate {sr} Hz is not plausible (expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)"
        )
    return sr


def _to_float32(data: np.ndarray, name: str) -> np.ndarray:
    """Integer PCM scaled to [-1, 1]; float data converted to float32 unchanged."""
    data = np.asarray(data)
    kind = data.dtype.kind
    if kind == "f":
        return data.astype(np.float32, copy=False)
    if kind == "i":
        scale = float(2 ** (8 * data.dtype.itemsize - 1))
        return (data.astype(np.float64) / scale).astype(np.float32)
    if kind == "u":
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        return ((data.astype(np.float64) - half) / half).astype(np.float32)
    raise AudioError(f"{name}: unsupported sample type {data.dtype} (expected integer PCM or float samples)")


def _as_frames_by_channels(data: np.ndarray, name: str) -> np.ndarray:
    """Shape ``[T, C]``. 1-D is mono; 2-D is ``[T, C]`` as Gradio and soundfile give it (a clearly transposed
    ``[C, T]`` array, few rows and many columns, is turned around)."""
    if data.ndim == 1:
        return data[:, None]
    if data.ndim == 2:
        rows, cols = data.shape
        if cols > 16 and rows <= 16 and cols > rows:
            data = data.T
        return data
    raise AudioError(f"{name}: audio array has {data.ndim} dimensions; expected [samples] or [samples, channels]")


def _finish(data: np.ndarray, file_sr: int, sr: int | None, mono: bool, name: str) -> tuple[np.ndarray, int]:
    data = _as_frames_by_channels(data, name)
    data = _to_float32(data, name)
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{name}: the audio contains no samples")
    if not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise AudioError(f"{name}: the audio contains {bad} NaN or infinite sample value(s)")
    if mono:
        data = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    out_sr = file_sr
    if sr is not None:
        target = _check_rate(sr, "requested", name)
        if target != file_sr:
            data = resample(data, file_sr, target)
        out_sr = target
    return np.ascontiguousarray(data, dtype=np.float32), out_sr


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr "HQ" resampling of ``[T]`` or ``[T, C]`` float audio (float32 out)."""
    import soxr

    orig_sr = _check_rate(orig_sr, "source", "resample")
    target_sr = _check_rate(target_sr, "target", "resample")
    wav = np.asarray(wav, dtype=np.float32)
    if orig_sr == target_sr:
        return wav.copy()
    return np.asarray(soxr.resample(wav, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------------
# decoders: each returns (data [T, C] or [T], sample_rate) or raises any exception (turned into AudioError above)

def _decode_soundfile(src: Any) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(src, dtype="float32", always_2d=True)
    return data, int(rate)


def _decode_pyav(src: Any) -> tuple[np.ndarray, int]:
    import av

    with av.open(src, mode="r") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream in the container")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        # planar float32 at the stream's own rate and layout; soxr does any rate change afterwards
        converter = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        for frame in container.decode(stream):
            for out in converter.resample(frame):
                chunks.append(out.to_ndarray())
        for out in converter.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros((0, 1), dtype=np.float32), rate
    return np.concatenate(chunks, axis=1).T, rate


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _decode(src_for: Any, name: str, soundfile_first: bool) -> tuple[np.ndarray, int]:
    """Try both decoders (the likely one first); AudioError naming ``name`` when neither can read the data."""
    order = ["soundfile", "pyav"] if soundfile_first else ["pyav", "soundfile"]
    errors: list[str] = []
    for backend in order:
        if backend == "pyav" and not _pyav_available():
            errors.append("PyAV: not installed (pip install av) so only WAV/FLAC/OGG can be read")
            continue
        try:
            src = src_for()
            data, rate = _decode_soundfile(src) if backend == "soundfile" else _decode_pyav(src)
        except Exception as exc:  # any decoder failure on user data is reported, never raised raw
            errors.append(f"{'soundfile' if backend == 'soundfile' else 'PyAV'}: {_short(exc)}")
            continue
        return data, rate
    # the reader matching the file type speaks first; the fallback's complaint would only confuse
    raise keyed(AudioError, "audio.undecodable", name=name, error=errors[0])


# ----------------------------------------------------------------------------------------------------------------
# public API

def load_audio(source: AudioSource, sr: int | None = None, mono: bool = True,
               max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Load audio as float32 samples and their sample rate.

    ``source`` is a file path (WAV/FLAC/OGG through soundfile; mp3, m4a, aac, opus and any other format PyAV's
    FFmpeg reads), raw file bytes, or a ``(sample_rate, array)`` tuple as Gradio's ``gr.Audio(type="numpy")``
    gives it (int16/int32/uint8 PCM or float, ``[T]`` or ``[T, C]``).

    Integer PCM is scaled to [-1, 1]; float data is kept as it is (a float file may peak above 1, as in upstream,
    where :func:`peak_limit` handles it). Several channels are averaged when ``mono`` (the default; the result is
    ``[T]``), otherwise the result is ``[T, C]``. With ``sr`` the audio is resampled with soxr "HQ".
    ``max_seconds``: a file longer than this is refused from its header, before anything is decoded (a huge upload
    must not be read into memory to find out it is too long).
    """
    if source is None:
        raise keyed(AudioError, "audio.none")
    if isinstance(source, tuple):
        return _load_tuple(source, sr, mono)
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        name = f"<{len(raw)} bytes of audio>"
        if not raw:
            raise AudioError("<audio bytes>: empty data, there is no audio to read")
        data, rate = _decode(lambda: io.BytesIO(raw), name, soundfile_first=True)
        return _finish(data, _check_rate(rate, "file", name), sr, mono, name)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        name = str(path)
        if not path.exists():
            raise keyed(AudioError, "audio.not_found", name=name)
        if not path.is_file():
            raise AudioError(f"{name}: is not a file (a folder or device), cannot read audio from it")
        if path.stat().st_size == 0:
            raise keyed(AudioError, "audio.empty_file", name=name)
        if max_seconds is not None:
            check_duration(path, max_seconds)
        first = path.suffix.lower() in SOUNDFILE_EXTENSIONS
        data, rate = _decode(lambda: str(path), name, soundfile_first=first)
        return _finish(data, _check_rate(rate, "file", name), sr, mono, name)
    if isinstance(source, np.ndarray):
        raise AudioError("a bare array has no sample rate: pass (sample_rate, array) as Gradio does")
    raise TypeError(f"load_audio: unsupported source type {type(source).__name__}")


def _load_tuple(source: tuple, sr: int | None, mono: bool) -> tuple[np.ndarray, int]:
    name = "<recorded/uploaded audio>"
    if len(source) != 2:
        raise AudioError(f"{name}: expected (sample_rate, samples), got a tuple of {len(source)} items")
    first, second = source
    if isinstance(first, np.ndarray) and not isinstance(second, np.ndarray):
        first, second = second, first  # (samples, sample_rate) is accepted too
    rate = _check_rate(first, "given", name)
    if second is None:
        raise AudioError(f"{name}: no samples given")
    data = np.asarray(second)
    if data.dtype == object or data.dtype.kind not in "iuf":
        raise AudioError(f"{name}: samples must be numbers, not {data.dtype}")
    return _finish(data, rate, sr, mono, name)


def check_duration(path: str | os.PathLike, max_seconds: float) -> float:
    """The file's duration from its header; an AudioError naming the limit when it is longer than ``max_seconds``
    (a file whose header states nothing is decoded once to find out)."""
    seconds = audio_duration(path)
    if seconds > max_seconds:
        minutes = max_seconds / 60
        limit = f"{minutes:g} min" if max_seconds >= 120 else f"{max_seconds:g} s"
        raise AudioError(f"{Path(path).name}: {seconds / 60:.1f} min of audio is longer than the {limit} allowed "
                         "here (MAX_AUDIO_MINUTES in my_config.py for inputs; references are 3-10 s)")
    return seconds


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds read from the file's header (soundfile) or container metadata (PyAV); only a
    container that does not state its duration is decoded to count the samples."""
    p = Path(path).expanduser()
    name = str(p)
    if not p.is_file():
        raise AudioError(f"{name}: audio file not found" if not p.exists() else f"{name}: is not a file")
    if p.stat().st_size == 0:
        raise keyed(AudioError, "audio.empty_file", name=name)
    order = ["soundfile", "pyav"] if p.suffix.lower() in SOUNDFILE_EXTENSIONS else ["pyav", "soundfile"]
    for backend in order:
        try:
            if backend == "soundfile":
                import soundfile as sf

                info = sf.info(name)
                if info.samplerate > 0 and info.frames >= 0:
                    return float(info.frames) / float(info.samplerate)
            elif _pyav_available():
                duration = _pyav_duration(name)
                if duration is not None:
                    return duration
        except Exception:  # unreadable header: try the other reader, then a full decode that reports errors
            continue
    # no metadata anywhere: decode and count
    wav, rate = load_audio(p, mono=True)
    return wav.shape[0] / rate


def _pyav_duration(name: str) -> float | None:
    import av

    with av.open(name, mode="r") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream in the container")
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return float(container.duration) / 1_000_000.0  # AV_TIME_BASE units
    return None


def check_reference(
    wav: np.ndarray, sr: int, min_s: float = 3.0, max_s: float = 10.0, source: str | os.PathLike | None = None
) -> float:
    """Upstream's reference rule: between ``min_s`` and ``max_s`` seconds (3-10 s), bounds included.

    Returns the duration in seconds; raises AudioError stating the actual duration and the allowed range.
    ``source`` (the file name) is put in the message when given.
    """
    name = str(source) if source is not None else "reference audio"
    rate = _check_rate(sr, "reference", name)
    wav = np.asarray(wav)
    samples = int(wav.shape[0]) if wav.ndim >= 1 else 0
    duration = samples / rate
    if samples < min_s * rate or samples > max_s * rate:
        side = "too short" if samples < min_s * rate else "too long"
        raise keyed(AudioError, "audio.ref_length", name=name, duration=duration, side=side, min_s=min_s, max_s=max_s)
    return duration


def peak_db(wav: np.ndarray) -> float:
    """Peak level in dBFS (``-inf`` for all-zero or empty audio)."""
    wav = np.asarray(wav)
    if wav.size == 0:
        return float("-inf")
    if not np.isfinite(wav).all():
        raise AudioError("the audio contains NaN or infinite sample values")
    peak = float(np.max(np.abs(wav.astype(np.float64))))
    return 20.0 * math.log10(peak) if peak > 0 else float("-inf")


def is_silent(wav: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the loudest sample stays below ``threshold_db`` dBFS (empty audio is silent)."""
    return peak_db(wav) < threshold_db


def peak_limit(wav: np.ndarray) -> np.ndarray:
    """Upstream's rule for the 32 kHz reference: if the peak exceeds 1, divide by ``min(2, peak)``.

    (A peak above 2 is therefore only halved, as upstream does.) Returns a new float32 array.
    """
    out = np.array(wav, dtype=np.float32, copy=True)
    if out.size == 0:
        return out
    peak = float(np.max(np.abs(out)))
    if peak > 1.0:
        out /= np.float32(min(2.0, peak))
    return out


def to_int16(wav: np.ndarray) -> np.ndarray:
    """Float audio to int16 as upstream TTS.py does: ``x * 32768`` truncated toward zero, clipped to int16.

    (Upstream's bare ``astype(np.int16)`` would wrap a sample of exactly +1.0 around; we clip it to 32767.)
    int16 input is returned unchanged.
    """
    wav = np.asarray(wav)
    if wav.dtype == np.int16:
        return wav
    if wav.dtype.kind in "iu":
        wav = _to_float32(wav, "to_int16")
    scaled = np.trunc(wav.astype(np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def save_wav(path: str | os.PathLike, wav: np.ndarray, sr: int) -> Path:
    """Write ``[T]`` or ``[T, C]`` audio as 16-bit PCM WAV, atomically (temporary file in the same folder, then
    rename; parent folders are created). Float input is converted with :func:`to_int16`. Returns the path."""
    import soundfile as sf

    target = Path(path).expanduser()
    name = str(target)
    rate = _check_rate(sr, "output", name)
    data = np.asarray(wav)
    if data.ndim not in (1, 2):
        raise AudioError(f"{name}: cannot save an audio array with {data.ndim} dimensions")
    if data.size == 0:
        raise AudioError(f"{name}: there is no audio to save (0 samples)")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise AudioError(f"{name}: refusing to save audio that contains NaN or infinite samples")
    pcm = to_int16(_as_frames_by_channels(data, name) if data.ndim == 2 else data)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioError(f"{name}: cannot create the folder {target.parent} ({exc.strerror or exc})") from None
    from .fileio import atomic_path

    try:
        with atomic_path(target) as tmp:
            sf.write(tmp, pcm, rate, subtype="PCM_16", format="WAV")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a saved wav is as readable as any other
    except OSError as exc:
        raise AudioError(f"{name}: cannot write the WAV file ({exc.strerror or exc})") from None
    return target
