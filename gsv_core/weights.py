"""Where GPT/SoVITS weights are found, and the rule every front end applies to a model path it is given.

Lists: the weight folders of the settings (``GPT_WEIGHT_DIRS`` / ``SOVITS_WEIGHT_DIRS``: finetuned voices) and the
official base models under ``PRETRAINED_DIR`` (what ``python -m gsv_core.download --version ...`` fetches), so a
user with only the base models can synthesise zero-shot, as upstream's webui lists them.

The model-folder rule: a model path given by the UI, the HTTP API or a CLI that runs jobs (sweeps, eval) must name
an existing file inside :func:`model_roots`: the weight folders, the pretrained folder, the RefAudio library and the
folder product zips are unpacked in. Anything else is refused with one message that does not say whether the file
exists, so a caller cannot probe the server's disk or make it unpickle arbitrary files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .errors import GSVError

GPT_SUFFIXES = (".ckpt",)
SOVITS_SUFFIXES = (".pth", ".pth.xz")
KINDS = ("GPT", "SoVITS")


class ModelPathError(GSVError):
    """A model path outside the model folders, or not a file there."""


@dataclass(frozen=True)
class WeightFile:
    label: str  # "SoVITS_weights_v2Pro/voice_e8_s200.pth" or "pretrained · v2Pro/s2Gv2Pro.pth"
    path: str  # absolute
    kind: str  # GPT | SoVITS
    pretrained: bool = False

    def choice(self) -> tuple[str, str]:
        return self.label, self.path


def _natural(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def _folder_files(folders: Iterable[Path], suffixes: Sequence[str], kind: str) -> list[WeightFile]:
    out: list[WeightFile] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for p in sorted((p for p in folder.iterdir() if p.is_file() and _has_suffix(p, suffixes)), key=_natural):
            out.append(WeightFile(f"{folder.name}/{p.name}", str(p.resolve()), kind))
    return out


def pretrained_files(settings: Any) -> list[WeightFile]:
    """The official base GPT/SoVITS files present under the pretrained folder (every version the downloader
    knows), labelled with the versions they serve."""
    from .download import ITEMS, file_path

    found: dict[str, WeightFile] = {}
    versions: dict[str, list[str]] = {}
    for item in ITEMS:
        if item.setting is not None or item.archive is not None:
            continue  # feature models (BERT, HuBERT, SV, G2PW), not voices
        for rel in item.files:
            rel = rel[0] if isinstance(rel, tuple) else rel
            path = file_path(item, rel, settings)
            if not path.is_file():
                continue
            kind = "GPT" if _has_suffix(path, GPT_SUFFIXES) else "SoVITS" if _has_suffix(path, SOVITS_SUFFIXES) else None
            if kind is None:
                continue
            key = str(path.resolve())
            versions.setdefault(key, []).append(item.key)
            found[key] = WeightFile("", key, kind, pretrained=True)
    out = []
    for key, wf in found.items():
        label = f"pretrained {'/'.join(versions[key])} · {Path(key).name}"
        out.append(WeightFile(label, wf.path, wf.kind, True))
    return out


def list_weights(settings: Any, kind: str) -> list[WeightFile]:
    """Every ``kind`` (GPT or SoVITS) file: the weight folders first (in their configured order, naturally sorted),
    then the pretrained base models; each path once."""
    if kind not in KINDS:
        raise ValueError(f"kind must be GPT or SoVITS, not {kind!r}")
    folders = settings.gpt_weight_dirs if kind == "GPT" else settings.sovits_weight_dirs
    suffixes = GPT_SUFFIXES if kind == "GPT" else SOVITS_SUFFIXES
    out, seen = [], set()
    for wf in [*_folder_files(folders, suffixes, kind), *(w for w in pretrained_files(settings) if w.kind == kind)]:
        if wf.path not in seen:
            seen.add(wf.path)
            out.append(wf)
    return out


def no_models_message(settings: Any) -> str:
    """'' when both kinds have at least one file, else what to do (download the base models or add weights)."""
    missing = [k for k in KINDS if not list_weights(settings, k)]
    if not missing:
        return ""
    return ("No " + " and no ".join(f"{k} model" for k in missing) + " found. Download the official base models "
            "(`python -m gsv_core.download --version v2ProPlus`), or put finetuned GPT weights (.ckpt) in "
            + ", ".join(Path(d).name for d in settings.gpt_weight_dirs) + " and SoVITS weights (.pth) in "
            + ", ".join(Path(d).name for d in settings.sovits_weight_dirs) + ", then press Refresh.")


def model_roots(settings: Any) -> list[Path]:
    """Folders model files may be read from when a path comes from the UI, the API or a job CLI."""
    s = settings
    roots = [*s.gpt_weight_dirs, *s.sovits_weight_dirs, s.pretrained_dir, Path(s.refaudio_db).parent / "library",
             Path(s.output_dir) / "refaudio" / "uploads"]  # product zips unpacked by the TTS tab
    return [Path(r).expanduser().resolve() for r in roots]


def check_model_path(settings: Any, path: Any, kind: str, extra_roots: Sequence[Path] = ()) -> str:
    """``path`` (as given) when it names a file inside :func:`model_roots` (or ``extra_roots``); else a
    :class:`ModelPathError` that reads the same whether or not the file exists."""
    if path is None or str(path).strip() == "":
        raise ModelPathError(f"No {kind} model was chosen.")
    p = Path(str(path)).expanduser()
    roots = [*model_roots(settings), *(Path(r).expanduser().resolve() for r in extra_roots)]
    try:
        real: Optional[Path] = p.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        real = None
    if real is None or not real.is_file() or not any(real.is_relative_to(r) for r in roots):
        raise ModelPathError(f"{kind} model {p.name!r} is not one of the listed models: choose one from the list "
                             f"(press Refresh), or put the file in a weight folder or the pretrained folder.")
    return str(p)


__all__ = ["GPT_SUFFIXES", "KINDS", "ModelPathError", "SOVITS_SUFFIXES", "WeightFile", "check_model_path", "default_comparison",
           "list_weights", "model_roots", "no_models_message", "pretrained_files"]


def default_comparison(settings: Any, kind: str) -> tuple[Optional[str], Optional[str]]:
    """(baseline, finetuned) paths an A/B form starts with: the newest finetuned file as "finetuned", and as
    "baseline" the official base model of the same version when it is present (else the oldest other finetuned
    file, else that same file). Both are None when there is no file of ``kind``."""
    files = list_weights(settings, kind)
    tuned = [w for w in files if not w.pretrained]
    base = [w for w in files if w.pretrained]

    def mtime(w: WeightFile) -> float:
        try:
            return Path(w.path).stat().st_mtime
        except OSError:
            return 0.0

    finetuned = max(tuned, key=mtime) if tuned else None
    baseline = None
    if base:
        hint = Path(finetuned.path).parent.name if finetuned else ""
        # weight folders carry upstream's version suffix (SoVITS_weights_v2ProPlus); prefer that version's base
        matching = [w for w in base if any(hint.endswith("_" + v) for v in w.label.split(" ", 2)[1].split("/"))]
        baseline = (matching or base)[0]
    elif len(tuned) > 1:
        baseline = min((w for w in tuned if w is not finetuned), key=mtime)
    else:
        baseline = finetuned  # a single file: both sides start on it; the user picks the other
    return (baseline.path if baseline else None), (finetuned.path if finetuned else None)
