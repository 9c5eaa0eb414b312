"""Whisper models for the ASR tab and the dataset flow: the CTranslate2 conversions faster-whisper publishes
(Systran/faster-whisper-*, large-v3-turbo, distil-*), fetched by faster-whisper's own downloader (huggingface_hub)
into ``WHISPER_DIR/<size>`` so the ASR tab lists them by that name::

    python -m gsv_core.download --asr large-v3          # also tiny, base, small, medium, large-v3-turbo, *.en ...
    python -m gsv_core.download --list                  # shows which are present
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from .service import ASRError, is_model_dir

#: shown by ``--list`` even when absent (the others of faster-whisper's list are accepted too)
RECOMMENDED = ("tiny", "base", "small", "medium", "large-v3", "large-v3-turbo")


def sizes() -> list[str]:
    """Every name faster-whisper's downloader knows (tiny.en ... large-v3, turbo, distil-*)."""
    from faster_whisper import available_models

    return list(available_models())


def repo_of(size: str) -> str:
    from faster_whisper import utils

    return getattr(utils, "_MODELS", {}).get(size, size)


def folder(whisper_dir: str | os.PathLike, size: str) -> Path:
    return Path(whisper_dir) / size


def present(whisper_dir: str | os.PathLike, size: str) -> bool:
    f = folder(whisper_dir, size)
    return is_model_dir(f) and (f / "tokenizer.json").is_file()


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def check_size(size: str) -> str:
    name = (size or "").strip()
    known = sizes()
    if name not in known:
        raise ASRError(f"unknown Whisper model {name!r}; choose from {', '.join(known)}")
    return name


def fetch(whisper_dir: str | os.PathLike, size: str, endpoint: Optional[str] = None) -> Path:
    """Download one model with faster-whisper's downloader into ``WHISPER_DIR/<size>``; an interrupted download
    resumes (huggingface_hub keeps the partial files in the folder's ``.cache``). Errors propagate as raised by
    huggingface_hub (the download command turns them into readable reasons)."""
    from faster_whisper import utils

    import warnings

    name = check_size(size)
    target = folder(whisper_dir, name)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    if endpoint:
        os.environ["HF_ENDPOINT"] = endpoint
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # huggingface_hub's deprecation notes about faster-whisper's arguments
            utils.download_model(name, output_dir=str(target))
    except BaseException:
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # nothing fetched: leave no empty model folder for the ASR tab to list
        raise
    if not present(whisper_dir, name):
        raise ASRError(f"the download of Whisper {name} finished but {target} is not a complete model folder")
    return target


def status(whisper_dir: Any) -> list[tuple[str, str, int, Path]]:
    """``(name, present|missing, bytes, folder)`` for the recommended sizes and every other model folder found."""
    from .service import model_names

    rows = []
    names = list(RECOMMENDED)
    for extra in model_names(whisper_dir) if whisper_dir else []:
        if extra not in names:
            names.append(extra)
    for name in names:
        f = folder(whisper_dir, name)
        ok = is_model_dir(f)
        rows.append((name, "present" if ok else "missing", folder_size(f) if ok else 0, f))
    return rows


__all__ = ["RECOMMENDED", "check_size", "fetch", "folder", "present", "repo_of", "sizes", "status"]
