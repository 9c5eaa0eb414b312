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
        """A dropdown choice: the label is also the value, so the page (and Gradio's /config) never carries the
        server's absolute paths; :func:`check_model_path` turns a label back into its file."""
        return self.label, self.label


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
            if rel in item.vocoder:
                continue  # the v3/v4 vocoders are not voices
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
    out, seen, labels = [], set(), set()
    for wf in [*_folder_files(folders, suffixes, kind), *(w for w in pretrained_files(settings) if w.kind == kind)]:
        if wf.path not in seen:
            seen.add(wf.path)
            label, n = wf.label, 1
            while label in labels:  # two folders of the same name: labels stay unique (they are the values)
                n += 1
                label = f"{wf.label} #{n}"
            labels.add(label)
            out.append(WeightFile(label, wf.path, wf.kind, wf.pretrained))
    return out


def label_for(settings: Any, path: Any, kind: str) -> Optional[str]:
    """The list label of the model file ``path`` (None when it is not listed)."""
    try:
        real = str(Path(str(path)).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):
        return None
    return next((w.label for w in list_weights(settings, kind) if w.path == real), None)


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
    """The absolute path of the model named by ``path``: a list label (what the app's dropdowns send) or a file
    inside :func:`model_roots` (or ``extra_roots``); else a :class:`ModelPathError` that reads the same whether or
    not the file exists."""
    if path is None or str(path).strip() == "":
        raise ModelPathError(f"No {kind} model was chosen.")
    if kind in KINDS:
        listed = next((w.path for w in list_weights(settings, kind) if w.label == str(path).strip()), None)
        if listed is not None:
            return listed
    p = Path(str(path)).expanduser()
    roots = [*model_roots(settings), *(Path(r).expanduser().resolve() for r in extra_roots)]
    try:
        real: Optional[Path] = p.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        real = None
    if real is None or not real.is_file() or not any(real.is_relative_to(r) for r in roots):
        raise ModelPathError(f"{kind} model {p.name!r} is not one of the listed models: choose one from the list "
                             f"(press Refresh), or put the file in a weight folder or the pretrained folder.")
    return str(real)


__all__ = ["GPT_SUFFIXES", "KINDS", "ModelPathError", "SOVITS_SUFFIXES", "WeightFile", "check_model_path", "default_comparison", "label_for",
           "list_weights", "model_roots", "no_models_message", "pretrained_files", "sovits_options", "sovits_version",
           "super_sampler_available", "super_sampler_dir", "version_weight_dir"]


# -- SoVITS v3/v4 helpers -------------------------------------------------------------------------------------------

#: where the optional AP-BWE weights (v3 super-sampling) go, relative to PRETRAINED_DIR; upstream keeps them in
#: tools/AP_BWE_main/24kto48k/ (also looked up next to an upstream install's pretrained_models folder)
SUPER_SAMPLER_SUBDIR = "AP_BWE_main/24kto48k"
SUPER_SAMPLER_FILES = ("g_24kto48k.zip", "config.json")


def super_sampler_dir(settings: Any) -> Path:
    """The AP-BWE folder: ``PRETRAINED_DIR/AP_BWE_main/24kto48k`` or, when only that exists, upstream's
    ``tools/AP_BWE_main/24kto48k`` beside a ``GPT_SoVITS/pretrained_models`` folder."""
    pre = Path(settings.pretrained_dir)
    primary = pre / SUPER_SAMPLER_SUBDIR
    upstream = pre.resolve().parent.parent / "tools" / SUPER_SAMPLER_SUBDIR
    for folder in (primary, upstream):
        if all((folder / n).is_file() for n in SUPER_SAMPLER_FILES):
            return folder
    return primary


def super_sampler_available(settings: Any) -> bool:
    """Whether v3's super-sampling can run (the UI shows the option only then)."""
    folder = super_sampler_dir(settings)
    return all((folder / n).is_file() for n in SUPER_SAMPLER_FILES)


_version_cache: dict[tuple[str, int, int], str] = {}


def sovits_version(path: Any) -> str:
    """The model version of a SoVITS file (v1, v2, v2Pro, v2ProPlus, v3, v4), read safely and cached by path, size
    and mtime. Check the path with :func:`check_model_path` first when it comes from a user."""
    from .checkpoints import load_sovits_checkpoint

    p = Path(str(path))
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _version_cache:
        _version_cache[key] = load_sovits_checkpoint(p).model_version
    return _version_cache[key]


def sovits_options(settings: Any, path: Any) -> dict[str, Any]:
    """What a synthesis form offers for a SoVITS file: its ``version``, whether it is a CFM model (v3/v4), the
    ``sample_steps`` choices and ``default_sample_steps`` (v3/v4; empty/0 otherwise) and whether
    ``super_sampling`` can be offered (v3 with the AP-BWE weights present). The path must pass the model-folder
    rule."""
    from .versions import version as version_info

    v = version_info(sovits_version(check_model_path(settings, path, "SoVITS")))
    return {"version": v.name, "cfm": v.cfm, "sample_steps": v.sample_steps,
            "default_sample_steps": v.default_sample_steps,
            "super_sampling": bool(v.super_sampling_rate) and super_sampler_available(settings)}


def version_weight_dir(settings: Any, kind: str, version: str) -> Path:
    """Where finetuned ``kind`` weights of ``version`` are exported: upstream's folder of that version
    (``SoVITS_weights_v3``, ``GPT_weights_v4``, ...) when it is one of the configured weight folders, else the first
    weight folder."""
    from .versions import version as version_info

    folders = [Path(d) for d in (settings.gpt_weight_dirs if kind == "GPT" else settings.sovits_weight_dirs)]
    v = version_info(version)
    wanted = v.gpt_folder if kind == "GPT" else v.sovits_folder
    return next((d for d in folders if d.name == wanted), folders[0])


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
