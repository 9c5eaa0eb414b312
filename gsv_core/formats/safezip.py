"""Unpacking zip archives that come from users (product and preset zips, .list + audio zips, downloaded G2PW).

One rule for every caller: the whole archive is refused when any member has an absolute name, a drive letter, a
backslash or a ``..`` part, is a symlink, or when the archive holds too many members; members are extracted
one by one while the bytes actually written are counted, so an archive whose headers understate its size (a zip
bomb) stops at ``max_bytes`` instead of filling the disk. Extraction goes to a temporary folder beside ``dest``
that becomes ``dest`` only when everything succeeded; on any failure nothing is left behind.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from ..errors import GSVError

DEFAULT_MAX_BYTES = 2 * 2**30
DEFAULT_MAX_MEMBERS = 20000
_CHUNK = 1 << 20


class ZipError(GSVError):
    """An archive that is not a zip, or one refused as unsafe or too large."""


def _unsafe_reason(info: zipfile.ZipInfo) -> Optional[str]:
    name = info.filename
    pp = PurePosixPath(name)
    if pp.is_absolute() or name.startswith("/"):
        return "an absolute path"
    if "\\" in name or ":" in name:
        return "a Windows path (backslash or drive letter)"
    if ".." in pp.parts:
        return "a '..' part"
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return "a symbolic link"
    return None


def check_archive(zip_path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_members: int = DEFAULT_MAX_MEMBERS, shown: Optional[str] = None) -> list[zipfile.ZipInfo]:
    """The members of a zip after the name, link, count and declared-size checks (:class:`ZipError` otherwise)."""
    name = shown or Path(zip_path).name
    try:
        with zipfile.ZipFile(zip_path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ZipError(f"{name} is not a readable zip file ({exc})") from None
    if len(infos) > max_members:
        raise ZipError(f"{name} holds {len(infos)} files, more than the {max_members} allowed; refused")
    for info in infos:
        why = _unsafe_reason(info)
        if why:
            raise ZipError(f"{name}: unsafe entry {info.filename!r} ({why}); the whole file is refused")
    declared = sum(i.file_size for i in infos)
    if declared > max_bytes:
        raise ZipError(f"{name} unpacks to {declared / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB "
                       "allowed (MAX_UNPACKED_MB in my_config.py); refused")
    return infos


def extract(zip_path: str | os.PathLike, dest: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES,
            max_members: int = DEFAULT_MAX_MEMBERS, shown: Optional[str] = None,
            keep: Optional[Callable[[str], bool]] = None) -> list[Path]:
    """Unpack ``zip_path`` into the new folder ``dest`` (absent or empty) and return the files written.
    ``keep(name)`` may skip members (their bytes are not written)."""
    name = shown or Path(zip_path).name
    infos = check_archive(zip_path, max_bytes=max_bytes, max_members=max_members, shown=shown)
    dest = Path(dest)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()  # an empty folder made for it is fine
    if dest.exists():
        raise ZipError(f"cannot unpack {name}: {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".unzip", dir=dest.parent))
    written = 0
    files: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as z:
            for info in infos:
                if info.is_dir() or (keep is not None and not keep(info.filename)):
                    continue
                target = staging.joinpath(*PurePosixPath(info.filename).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > max_bytes:
                            raise ZipError(f"{name} unpacks to more than the {max_bytes / 2**20:.0f} MiB allowed "
                                           "(MAX_UNPACKED_MB; its headers understate its size); refused")
                        out.write(chunk)
                files.append(Path(info.filename))
        os.replace(staging, dest)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ZipError(f"{name} is damaged ({exc})") from None
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ZipError(f"{name} could not be unpacked ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [dest.joinpath(*PurePosixPath(str(f)).parts) for f in files]


__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_MEMBERS", "ZipError", "check_archive", "extract"]
