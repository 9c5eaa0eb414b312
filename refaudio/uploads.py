"""Uploads to the RefAudio workbench: a ``.list`` with its audio (loose files and/or zips), and product zips.

Uploads are staged in ``OUTPUT_DIR/refaudio/uploads/<kind>_<time>/`` and only what was uploaded can be used:

* a ``.list`` row may name its audio by a relative path inside the upload (a zip keeps its folders) or by a bare
  file name that exactly one uploaded file has. An absolute path or a ``..`` part is refused, so a crafted list
  cannot make the server copy its own files into the library; two uploaded files of the same name in different
  folders (``spkA/0001.wav``, ``spkB/0001.wav``) are told apart by their folders, and a bare name that several
  uploads share is refused rather than guessed;
* zips go through :mod:`gsv_core.formats.safezip` (no zip-slip, links or bombs; ``MAX_UNPACKED_MB``);
* an import's staging folder is deleted once the clips are copied into the library; product zips loaded by the
  TTS tab stay until they are a day old (their audio and models are used by the next syntheses).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Sequence

from gsv_core.errors import GSVError
from gsv_core.formats import listfile, safezip

STAGING_MAX_AGE_S = 24 * 3600


class UploadError(GSVError):
    """An upload that cannot be used as given."""


@dataclass
class StagedList:
    folder: Path  # the staging folder (delete it when done)
    list_path: Path  # the rewritten .list naming staged files by absolute path
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (line, audio as written, reason)
    rows: int = 0  # rows of the rewritten list (0: nothing to import)


def staging_folder(out_root: Path, kind: str) -> Path:
    """A new folder under ``out_root/uploads``; folders of earlier uploads older than a day are removed first."""
    root = Path(out_root) / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > STAGING_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue
    folder = root / f"{kind}_{time.strftime('%Y%m%d-%H%M%S')}_{time.monotonic_ns() % 10**9}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def _stage_files(files: Sequence[Any], stage: Path, max_bytes: int) -> list[Path]:
    staged: list[Path] = []
    for n, f in enumerate(files):
        src = Path(str(f))
        if src.suffix.lower() == ".zip":
            try:
                staged += safezip.extract(src, stage / f"zip{n}_{src.stem}", max_bytes=max_bytes)
            except safezip.ZipError as exc:
                raise UploadError(str(exc)) from None
        else:
            target = stage / f"file{n}" / src.name  # one folder per upload: equal names never overwrite
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            staged.append(target)
    return staged


def stage_list_upload(out_root: Path, files: Sequence[Any], max_bytes: int = safezip.DEFAULT_MAX_BYTES) -> StagedList:
    """Stage an uploaded ``.list`` and its audio and rewrite the list so each usable row names a staged file."""
    if not files:
        raise UploadError("Upload a .list with its audio files (or a zip of both).")
    stage = staging_folder(out_root, "import")
    try:
        staged = _stage_files(files, stage, max_bytes)
        lists = [p for p in staged if p.suffix.lower() == ".list"]
        if len(lists) != 1:
            raise UploadError(f"Upload exactly one .list file (with its audio files or a zip of both); found "
                              f"{len(lists)}.")
        src_list = lists[0]
        audio = [p for p in staged if p != src_list]
        by_name: dict[str, list[Path]] = {}
        for p in audio:
            by_name.setdefault(p.name, []).append(p)
        try:
            parsed = listfile.read_list(src_list, strict=False, shown=src_list.name)
        except listfile.ListFormatError as exc:
            raise UploadError(str(exc)) from None
        out = StagedList(stage, src_list.with_name(src_list.stem + ".staged.list"))
        rows = []
        for row in parsed.rows:
            found, why = _find_upload(row.audio, src_list.parent, stage, by_name)
            if found is None:
                out.refused.append((row.line, row.audio, why))
                continue
            rows.append((str(found), row.speaker, row.lang or row.lang_code, row.text))
        listfile.write_list(out.list_path, rows)
        out.rows = len(rows)
        return out
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _find_upload(raw: str, list_dir: Path, stage: Path, by_name: dict[str, list[Path]]):
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":") or ".." in parts:
        return None, ("an absolute path or '..' cannot name an uploaded file: name the file relative to the .list "
                      "and upload it with the .list")
    if not parts:
        return None, "the audio path is empty"
    rel = PurePosixPath(*parts)
    # a path with folders may sit anywhere in the upload; a bare name only beside the .list (else: by unique name)
    bases = [list_dir, *(d for d in stage.iterdir() if d.is_dir())] if len(parts) > 1 else [list_dir]
    for base in bases:
        candidate = base.joinpath(*rel.parts)
        if candidate.is_file() and candidate.resolve().is_relative_to(stage.resolve()):
            return candidate, ""
    same = by_name.get(parts[-1], []) or by_name.get(_as_uploaded(parts[-1]), [])
    if len(same) == 1 and len(parts) == 1:
        return same[0], ""
    if len(same) > 1:
        return None, (f"{len(same)} uploaded files are named {parts[-1]!r}: upload them in a zip that keeps their "
                      "folders so each row finds its own")
    if len(same) == 1:
        return None, (f"{raw!r} is not among the uploaded files (one file is named {parts[-1]!r}, in another "
                      "folder); upload a zip that keeps the folders")
    return None, f"{raw!r} is not among the uploaded files"


def _as_uploaded(name: str) -> str:
    """The name an uploaded file of this name gets on the server (the browser upload renames a few, e.g. the
    Windows device names: ``aux.wav`` arrives as ``_aux.wav``), so a .list naming ``aux.wav`` still finds it."""
    try:
        from gradio_client.utils import strip_invalid_filename_characters
    except ImportError:  # pragma: no cover - uploads come through Gradio, which brings gradio_client
        return name
    return strip_invalid_filename_characters(name)


def stage_product_zip(out_root: Path, zip_file: Any, max_bytes: int = safezip.DEFAULT_MAX_BYTES) -> Path:
    """Unpack an uploaded product zip into a staging folder (kept a day: the TTS tab synthesises from it)."""
    if not zip_file:
        raise UploadError("Upload a product zip (exported from the RefAudio tab's Products).")
    stage = staging_folder(out_root, "preset")
    try:
        safezip.extract(Path(str(zip_file)), stage / "zip", max_bytes=max_bytes)
    except safezip.ZipError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise UploadError(str(exc)) from None
    return stage / "zip"


__all__ = ["StagedList", "UploadError", "stage_list_upload", "stage_product_zip", "staging_folder"]
