"""The one path policy for server files named by the UI, the HTTP API or a job the app runs.

A path typed into a form or sent to an ``api_name`` may only name something inside the app's own folders (outputs,
datasets, experiments, reports, the RefAudio library, weight folders, pretrained models), the user's ``DATA_DIRS`` or
Gradio's folder of fresh uploads. Anything else is refused with one message that reads the same whether the path
exists or not, so an API caller can neither read nor probe the rest of the disk; file contents never appear in a
message. Symbolic links are followed before the check (a link inside an allowed folder pointing outside is
refused). Model files have their own, narrower rule (:mod:`gsv_core.weights`). See docs/security.md.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from .errors import GSVError
from .messages import keyed


class PathRefused(GSVError):
    """A path outside the folders the app may read, or not the kind of thing asked for."""


def upload_dir() -> Path:
    """Where Gradio keeps uploads (``GRADIO_TEMP_DIR`` or the system temp folder's ``gradio``)."""
    raw = os.environ.get("GRADIO_TEMP_DIR")
    return Path(raw).expanduser().resolve() if raw else (Path(tempfile.gettempdir()) / "gradio").resolve()


def readable_roots(settings: Any, extra: Iterable[os.PathLike | str] = ()) -> list[Path]:
    s = settings
    roots = [*getattr(s, "data_dirs", ()), s.output_dir, getattr(s, "datasets_dir", None) or s.output_dir,
             s.experiments_dir, s.reports_dir, Path(s.refaudio_db).parent,
             *s.gpt_weight_dirs, *s.sovits_weight_dirs, s.pretrained_dir, s.whisper_dir, upload_dir(), *extra]
    out = []
    for r in roots:
        try:
            out.append(Path(r).expanduser().resolve())
        except (OSError, RuntimeError):
            continue
    return out


def refusal(what: str, raw: Any, settings: Any) -> PathRefused:
    name = Path(str(raw)).name or str(raw)
    data = ", ".join(str(d) for d in getattr(settings, "data_dirs", ())) or "DATA_DIRS"
    return keyed(PathRefused, "path.refused_data", what=what, name=name, data=data)


def check_readable(settings: Any, raw: Any, what: str = "file", kind: str = "file",
                   extra_roots: Iterable[os.PathLike | str] = ()) -> Path:
    """The resolved path of ``raw`` when it lies inside :func:`readable_roots` (and is a ``kind``: file, dir or
    any); else a :class:`PathRefused` that does not say whether it exists."""
    if raw is None or not str(raw).strip():
        raise keyed(PathRefused, "path.none", what=what)
    text = str(raw).strip()
    if "\x00" in text:
        raise refusal(what, raw, settings)
    p = Path(text).expanduser()
    try:
        real: Optional[Path] = p.resolve(strict=False)
    except (OSError, RuntimeError, ValueError):
        real = None
    roots = readable_roots(settings, extra_roots)
    if real is None or not any(real == r or real.is_relative_to(r) for r in roots):
        raise refusal(what, raw, settings)
    if not real.exists():
        raise keyed(PathRefused, "path.missing", what=what, name=p.name)
    if kind == "file" and not real.is_file():
        raise keyed(PathRefused, "path.is_folder", what=what, name=p.name)
    if kind == "dir" and not real.is_dir():
        raise keyed(PathRefused, "path.not_folder", what=what, name=p.name)
    return real


def is_readable(settings: Any, raw: Any, extra_roots: Iterable[os.PathLike | str] = ()) -> bool:
    try:
        check_readable(settings, raw, kind="any", extra_roots=extra_roots)
        return True
    except PathRefused:
        return False


def check_inside(root: os.PathLike | str, raw: Any, what: str = "folder", kind: str = "dir") -> Path:
    """``raw`` (a name relative to ``root`` or a path) resolved, when it lies inside ``root`` (e.g. a run folder
    under REPORTS_DIR that a page may read and write); else a :class:`PathRefused` that does not say whether it
    exists."""
    if raw is None or not str(raw).strip():
        raise keyed(PathRefused, "path.none", what=what)
    base = Path(root).expanduser().resolve()
    p = Path(str(raw).strip()).expanduser()
    try:
        real = (p if p.is_absolute() else base / p).resolve()
    except (OSError, RuntimeError, ValueError):
        real = None
    if real is None or "\x00" in str(raw) or not real.is_relative_to(base):
        raise keyed(PathRefused, "path.outside", what=what, name=p.name, base=base.name)
    if not real.exists():
        raise keyed(PathRefused, "path.missing_plain", what=what, name=p.name)
    if kind == "dir" and not real.is_dir():
        raise keyed(PathRefused, "path.not_folder", what=what, name=p.name)
    return real


__all__ = ["PathRefused", "check_inside", "check_readable", "is_readable", "readable_roots", "refusal", "upload_dir"]
