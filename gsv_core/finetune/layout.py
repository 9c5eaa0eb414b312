"""The on-disk layout of one finetuning experiment.

Feature files keep upstream's names and formats (``2-name2text.txt``, ``3-bert/``, ``4-cnhubert/``, ``5-wav32k/``,
``6-name2semantic.tsv``, ``7-sv_cn/``) so an experiment folder can be inspected with the same habits, and an
utterance is keyed by the base name of its audio file, as upstream does."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsv_core.errors import GSVError

_NAME_RE = re.compile(r"^[\w\u4e00-\u9fff][\w\u4e00-\u9fff.\-]{0,79}$")


class ExperimentError(GSVError):
    """An experiment name or folder that cannot be used."""


def check_experiment_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME_RE.match(name) or ".." in name:
        raise ExperimentError(
            f"experiment name {name!r} is not usable: use 1-80 letters, digits, Chinese characters, '_', '-' or '.' "
            "(no spaces or path separators)")
    return name


@dataclass(frozen=True)
class ExperimentLayout:
    root: Path

    @classmethod
    def under(cls, logs_dir: str | os.PathLike, name: str) -> "ExperimentLayout":
        return cls(Path(logs_dir) / check_experiment_name(name))

    @property
    def name(self) -> str:
        return self.root.name

    # -- data stage ----------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def clips_dir(self) -> Path:  # sliced / renamed clips written by the data stage
        return self.data_dir / "clips"

    @property
    def input_list(self) -> Path:  # the normalised input, absolute paths, before cleaning
        return self.data_dir / "input.list"

    @property
    def cleaning_report_json(self) -> Path:
        return self.data_dir / "cleaning_report.json"

    @property
    def cleaning_report_csv(self) -> Path:
        return self.data_dir / "cleaning_report.csv"

    def split_list(self, split: str) -> Path:
        """``train`` / ``val`` / ``test`` / ``refpool``: GPT-SoVITS ``.list`` files with absolute audio paths."""
        if split not in ("train", "val", "test", "refpool"):
            raise ValueError(split)
        return self.data_dir / f"{split}.list"

    # -- feature stage (upstream names) ----------------------------------------------------------------------------
    @property
    def name2text(self) -> Path:
        return self.root / "2-name2text.txt"

    @property
    def bert_dir(self) -> Path:
        return self.root / "3-bert"

    @property
    def hubert_dir(self) -> Path:
        return self.root / "4-cnhubert"

    @property
    def wav32k_dir(self) -> Path:
        return self.root / "5-wav32k"

    @property
    def name2semantic(self) -> Path:
        return self.root / "6-name2semantic.tsv"

    @property
    def sv_dir(self) -> Path:
        return self.root / "7-sv_cn"

    @property
    def features_manifest(self) -> Path:
        return self.root / "features.json"

    # -- training stages -------------------------------------------------------------------------------------------
    @property
    def s2_dir(self) -> Path:
        return self.root / "s2"

    @property
    def s1_dir(self) -> Path:
        return self.root / "s1"

    @property
    def selection_dir(self) -> Path:
        return self.root / "selection"

    @property
    def experiment_json(self) -> Path:
        return self.root / "experiment.json"


class DiskFullError(GSVError):
    """The disk ran out of space; everything written before stays valid."""


class _DiskGuard:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        import errno

        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"disk full while {self.what}: free some space and run the same command again; everything "
                "finished before this point is kept and will be reused") from exc
        return False


def disk_guard(what: str) -> _DiskGuard:
    """``with disk_guard("writing features"):`` turns ENOSPC/EDQUOT into a :class:`DiskFullError`."""
    return _DiskGuard(what)
