"""The one place where refaudio turns a user-given name into a file path.

Every file the workbench reads back for a user (clip audio, result audio, spectrograms, exports) or deletes must lie
inside one of its roots: the library folder and the output folder. :class:`PathGuard` resolves a path (relative
paths against a root), follows symlinks, and refuses anything that ends up outside every root, any ``..`` part and
NUL bytes. Names written to disk are built from ids or passed through :func:`safe_name`, never from transcripts.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Optional, Union

from gsv_core.errors import GSVError

PathLike = Union[str, os.PathLike]

#: audio formats accepted into the library (the original extension is kept)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".webm")


class UnsafePathError(GSVError):
    """A file parameter that points outside the library and output folders (or is malformed)."""


class PathGuard:
    """Resolves file parameters to paths inside ``roots`` (the first root is the default base of relative paths)."""

    def __init__(self, roots: Iterable[PathLike]):
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        if not self.roots:
            raise ValueError("PathGuard needs at least one root folder")

    def inside(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def resolve(self, value: Optional[PathLike], base: Optional[PathLike] = None, must_exist: bool = True,
                what: str = "file") -> Path:
        """The absolute, symlink-free path of ``value`` if it lies inside a root, else :class:`UnsafePathError`.

        Relative values are taken relative to ``base`` (default: the first root); ``base`` itself must be inside
        a root."""
        if value is None or str(value).strip() == "":
            raise UnsafePathError(f"No {what} was given.")
        text = os.fspath(value)
        if "\x00" in text:
            raise UnsafePathError(f"The {what} name {text!r} contains a NUL byte.")
        parts = re.split(r"[\\/]+", text)
        if ".." in parts:
            raise UnsafePathError(f"The {what} {text!r} contains '..'; only files inside the library and output "
                                  "folders can be used.")
        raw = Path(text).expanduser()
        if not raw.is_absolute():
            anchor = Path(base).expanduser().resolve() if base is not None else self.roots[0]
            if not self.inside(anchor):
                raise UnsafePathError(f"The base folder {anchor} is outside the library and output folders.")
            raw = anchor / raw
        resolved = raw.resolve()  # follows symlinks: a link pointing outside is caught below
        if not self.inside(resolved):
            raise UnsafePathError(f"The {what} {text!r} is outside the library and output folders "
                                  f"({', '.join(str(r) for r in self.roots)}); it cannot be used.")
        if must_exist and not resolved.is_file():
            raise UnsafePathError(f"The {what} {text!r} does not exist (or is not a file).")
        return resolved

    def relative(self, path: PathLike) -> str:
        """``path`` relative to the root that holds it (posix separators), for storing in the database."""
        p = Path(path).resolve()
        for root in self.roots:
            if p == root or p.is_relative_to(root):
                return p.relative_to(root).as_posix()
        raise UnsafePathError(f"{p} is outside the library and output folders.")

    def delete_file(self, value: PathLike, base: Optional[PathLike] = None) -> bool:
        """Delete one file inside a root; False when it was already gone. A symlink whose target lies outside the
        roots is refused like any outside path (its target is never touched)."""
        path = self.resolve(value, base=base, must_exist=False)
        if path.is_file():
            path.unlink()
            return True
        return False

    def delete_tree(self, value: PathLike, base: Optional[PathLike] = None) -> bool:
        """Delete a folder strictly below a root (never a root itself)."""
        path = self.resolve(value, base=base, must_exist=False, what="folder")
        if path in self.roots:
            raise UnsafePathError(f"Refusing to delete the root folder {path}.")
        if path.is_dir():
            shutil.rmtree(path)
            return True
        return False


def safe_name(text: str, fallback: str = "item", limit: int = 60) -> str:
    """A file-name-safe version of ``text`` (letters, digits, CJK, ``-_.``), never empty, never dots only."""
    cleaned = re.sub(r"[^\w\-.]+", "_", str(text), flags=re.UNICODE).strip("._")[:limit]
    return cleaned or fallback


def audio_extension(path: PathLike) -> str:
    ext = Path(path).suffix.lower()
    return ext if ext in AUDIO_EXTENSIONS else ""



