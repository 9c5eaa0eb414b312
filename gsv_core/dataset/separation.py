"""Vocal / background separation with python-audio-separator (UVR's models: BS-/Mel-Band-Roformer, MDX23C, the VR
models HP2/HP5 and DeEcho-DeReverb that upstream GPT-SoVITS's UVR5 tool offers).

The library is used as it is; we only feed it a long recording window by window
(:func:`gsv_core.dataset.audiostream.process_windows`: 30 s windows with 2 s of context on each side, joined with a
crossfade), because it loads a whole file into memory. Model files live in ``PRETRAINED_DIR/uvr`` and are fetched
by the library's own downloader (``python -m gsv_core.download --separator bs-roformer``): it also stores the
model lists (``download_checks.json``) and configuration files it reads when loading, so a model that was
downloaded once loads without network access. A model that is not there is a :class:`SeparationModelMissing`
naming that command.

audio-separator is installed without its optional MDX-Net/ONNX converter (``onnx2torch`` pulls a torchvision that
cannot load next to the CPU build of torch 2.13), so MDX-Net ``.onnx`` models are not offered; the Roformer,
MDX23C and VR models need only torch (see docs/dataset.md).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gsv_core.errors import GSVError

#: the sample rate the UVR models run at
SEPARATION_SR = 44100
MODEL_LIST_FILE = "download_checks.json"
DOWNLOAD_COMMAND = "python -m gsv_core.download --separator"
#: stem names (lower case) that hold the voice; the other stems are the background
VOICE_STEMS = ("vocals", "vocal", "voice", "no echo", "no reverb", "dry", "no noise", "speech", "dialog")


class SeparationError(GSVError):
    """The separation model cannot be loaded or run."""


class SeparationModelMissing(SeparationError):
    """The chosen separation model is not downloaded; the message names the download command."""


@dataclass(frozen=True)
class SeparationModel:
    key: str  # short name for the command line and the UI
    filename: str  # the file name audio-separator knows the model by
    label: str
    arch: str


#: recommended models (any other model file audio-separator lists can be given by its file name)
SEPARATION_MODELS: tuple[SeparationModel, ...] = (
    SeparationModel("bs-roformer", "model_bs_roformer_ep_317_sdr_12.9755.ckpt",
                    "BS-Roformer vocals/instrumental (vocals SDR 12.9; best quality, slow on a CPU)", "Roformer"),
    SeparationModel("mel-roformer", "model_mel_band_roformer_ep_3005_sdr_11.4360.ckpt",
                    "Mel-Band-Roformer vocals/instrumental (vocals SDR 11.4)", "Roformer"),
    SeparationModel("hp2", "2_HP-UVR.pth", "UVR HP2 vocals/instrumental (VR; upstream's UVR5 default, fast)", "VR"),
    SeparationModel("hp5", "5_HP-Karaoke-UVR.pth", "UVR HP5: the main voice only, backing vocals removed (VR)",
                    "VR"),
    SeparationModel("deecho-dereverb", "UVR-DeEcho-DeReverb.pth", "UVR DeEcho-DeReverb: removes echo and reverb "
                    "from a voice track (VR)", "VR"),
)
MODELS_BY_KEY = {m.key: m for m in SEPARATION_MODELS}
DEFAULT_MODEL = "bs-roformer"


def model_dir(settings: Any) -> Path:
    return Path(settings.pretrained_dir) / "uvr"


def resolve_filename(model: str) -> str:
    """A short name of :data:`SEPARATION_MODELS` or a model file name -> the file name."""
    name = (model or "").strip()
    if not name:
        raise SeparationError("no separation model chosen")
    if name in MODELS_BY_KEY:
        return MODELS_BY_KEY[name].filename
    if "/" in name or "\\" in name or name.startswith("."):
        raise SeparationError(f"separation model {name!r}: give a model name ({', '.join(MODELS_BY_KEY)}) or a "
                              "model file name, not a path")
    return name


def key_of(filename: str) -> str:
    for m in SEPARATION_MODELS:
        if m.filename == filename:
            return m.key
    return filename


def is_present(directory: str | os.PathLike, model: str) -> bool:
    d = Path(directory)
    try:
        f = d / resolve_filename(model)
    except SeparationError:
        return False
    return f.is_file() and f.stat().st_size > 0 and (d / MODEL_LIST_FILE).is_file()


def present_models(directory: str | os.PathLike) -> list[str]:
    """Models found in ``directory``: the recommended ones by short name, others by file name."""
    d = Path(directory)
    if not (d / MODEL_LIST_FILE).is_file():
        return []
    out = [m.key for m in SEPARATION_MODELS if is_present(d, m.key)]
    known = {m.filename for m in SEPARATION_MODELS}
    for f in sorted(d.iterdir()):
        if f.is_file() and f.suffix in (".ckpt", ".pth", ".th") and f.name not in known and f.stat().st_size > 0:
            out.append(f.name)
    return out


def missing_message(model: str, shown_dir: str) -> str:
    filename = resolve_filename(model)
    return (f"separation model {filename} is not in {shown_dir}: run {DOWNLOAD_COMMAND} {key_of(filename)} "
            f"(audio-separator's downloader; the file and its model list are stored there)")


def _stem_of(path: str) -> str:
    m = re.search(r"_\(([^)]+)\)", Path(path).name)
    return (m.group(1) if m else Path(path).stem).strip()


class VocalSeparator:
    """One loaded audio-separator model; ``separate_window(mono 44.1 kHz) -> (voice, background)``."""

    def __init__(self, directory: str | os.PathLike, model: str, work_dir: str | os.PathLike,
                 shown_dir: Optional[str] = None):
        self.directory = Path(directory)
        self.filename = resolve_filename(model)
        self.work_dir = Path(work_dir)
        if not is_present(self.directory, self.filename):
            raise SeparationModelMissing(missing_message(self.filename, shown_dir or str(self.directory)))
        try:
            from audio_separator.separator import Separator
        except ImportError as exc:
            raise SeparationError(f"vocal separation needs the audio-separator package ({exc}); run "
                                  "scripts/setup_env.sh (it installs it)") from None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._out_dir = self.work_dir / "stems"
        try:
            self._sep = Separator(log_level=logging.ERROR, model_file_dir=str(self.directory),
                                  output_dir=str(self._out_dir), output_format="WAV", use_soundfile=True,
                                  normalization_threshold=1.0, amplification_threshold=0.0,
                                  sample_rate=SEPARATION_SR)
            self._sep.load_model(self.filename)
        except SystemExit:  # the library exits the process on a corrupt model file
            raise SeparationError(f"the separation model {self.filename} could not be loaded (a corrupt or "
                                  f"incomplete file?): delete it and run {DOWNLOAD_COMMAND} "
                                  f"{key_of(self.filename)}") from None
        except GSVError:
            raise
        except Exception as exc:  # noqa: BLE001 - the library's load errors, turned into one readable message
            raise SeparationError(f"the separation model {self.filename} could not be loaded: "
                                  f"{' '.join(str(exc).split())[:300]}") from None

    def separate_window(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import soundfile as sf

        x = np.asarray(window, dtype=np.float32)
        if x.size == 0:
            return x, x
        shutil.rmtree(self._out_dir, ignore_errors=True)
        self._out_dir.mkdir(parents=True, exist_ok=True)
        src = self.work_dir / "window.wav"
        sf.write(str(src), x, SEPARATION_SR, subtype="FLOAT")
        try:
            files = self._sep.separate(str(src))
        except SystemExit:
            raise SeparationError(f"the separation model {self.filename} stopped with an error") from None
        except Exception as exc:  # noqa: BLE001
            raise SeparationError(f"separation failed: {' '.join(str(exc).split())[:300]}") from None
        stems: dict[str, np.ndarray] = {}
        for f in files:
            p = Path(f) if Path(f).is_absolute() else self._out_dir / f
            y, rate = sf.read(str(p), dtype="float32", always_2d=True)
            y = y.mean(axis=1)
            if rate != SEPARATION_SR:
                from gsv_core.audio import resample

                y = resample(y, rate, SEPARATION_SR)
            stems[_stem_of(str(p))] = _fit(y, x.shape[0])
        if not stems:
            raise SeparationError(f"the separation model {self.filename} wrote no output")
        voice_name = next((n for n in stems if n.lower() in VOICE_STEMS), None)
        if voice_name is None:
            voice_name = next(iter(stems))
        voice = stems.pop(voice_name)
        background = np.sum(list(stems.values()), axis=0).astype(np.float32) if stems else (x - voice)
        return voice, background

    def close(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if y.shape[0] >= n:
        return y[:n]
    return np.pad(y, (0, n - y.shape[0]))


def download(directory: str | os.PathLike, model: str) -> Path:
    """Fetch a model with audio-separator's own downloader (model file, its configuration and the model lists)
    into ``directory``; returns the model file. Network failures raise :class:`SeparationError`."""
    filename = resolve_filename(model)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    try:
        from audio_separator.separator import Separator

        sep = Separator(log_level=logging.WARNING, model_file_dir=str(d), output_dir=str(d), info_only=True)
        sep.download_model_and_data(filename)
    except ImportError as exc:
        raise SeparationError(f"downloading separation models needs audio-separator ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - network and lookup failures, one readable line
        raise SeparationError(f"could not fetch {filename}: {' '.join(str(exc).split())[:300]}") from None
    if not is_present(d, filename):
        raise SeparationError(f"the download of {filename} finished but the file is missing in {d}")
    return d / filename


__all__ = ["DEFAULT_MODEL", "MODELS_BY_KEY", "SEPARATION_MODELS", "SEPARATION_SR", "SeparationError",
           "SeparationModel", "SeparationModelMissing", "VocalSeparator", "download", "is_present", "key_of",
           "missing_message", "model_dir", "present_models", "resolve_filename"]
