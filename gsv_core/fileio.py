"""Atomic file writes: the one place that writes a temporary file beside the target and renames it over it, so a
crash or a full disk never leaves a half-written file under the real name.

    write_bytes_atomic(path, data)                 # bytes
    write_text_atomic(path, text); write_json_atomic(path, obj)
    with atomic_path("out.wav") as tmp:            # any writer that takes a path: sf.write, torch.save, csv, ...
        sf.write(tmp, audio, sr)                   # tmp keeps the target's suffix (format detection works)
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder (same suffix); when the block ends without an error the
    file is flushed to the device (unless ``fsync=False``) and renamed over ``path``; on an error it is removed
    and ``path`` is left as it was. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``; the folder is
    created if needed. ``fsync=False`` skips the flush to the device (many small cache files)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike, *, fsync: bool = False) -> Path:
    """Copy a file so that ``dst`` is either absent/old or complete."""
    import shutil

    with atomic_path(dst, fsync=fsync) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, fsync: bool = True, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n", fsync=fsync)


__all__ = ["atomic_path", "copy_atomic", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]
