"""Managing finetune experiments: what an experiment holds, and deleting it (the Finetune tab's "Delete experiment",
``python -m gsv_core.finetune delete``).

An experiment is its folder under ``EXPERIMENTS_DIR`` (settings, cleaned data, features, training states,
selection reports). The exported weights (``<name>_e<N>...pth`` / ``<name>-e<N>.ckpt`` in the weight folders) are
models the TTS tab uses; they are deleted only when asked for (``with_exports``)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from gsv_core.errors import GSVError
from gsv_core.messages import keyed

from .layout import ExperimentLayout


class ExperimentDeleteError(GSVError):
    """An experiment that cannot be deleted as asked."""


def experiment_summary(settings: Any, name: str) -> dict:
    """``{"name", "folder", "bytes", "exports": {"sovits": [...], "gpt": [...]}}`` of a saved experiment."""
    from .pipeline import Experiment

    exp = Experiment.open(settings, name)
    folder = exp.layout.root if hasattr(exp.layout, "root") else exp.layout.experiment_json.parent
    size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())
    return {"name": exp.config.name, "folder": str(folder), "bytes": size, "exports": exp.exports()}


def delete_experiment(settings: Any, name: str, confirm: bool = False, with_exports: bool = False,
                      running: Optional[str] = None) -> dict:
    """Delete experiment ``name``'s folder (and, with ``with_exports``, its exported weights). Needs ``confirm``
    (keyed ``library.confirm_delete``); refused while ``running`` (the experiment a job is training) is this one.
    Returns what was removed."""
    layout = ExperimentLayout.under(settings.experiments_dir, name)  # checks the name (no paths)
    folder = layout.experiment_json.parent
    if not layout.experiment_json.is_file():
        raise keyed(ExperimentDeleteError, "library.not_found", what=f"experiment {name}")
    if confirm is not True:
        raise keyed(ExperimentDeleteError, "library.confirm_delete", what=f"experiment {name}")
    if running and running == layout.name:
        raise keyed(ExperimentDeleteError, "job.busy", what=f"finetuning {name}")
    summary = experiment_summary(settings, name)
    root = Path(settings.experiments_dir).resolve()
    real = folder.resolve()
    if real == root or not real.is_relative_to(root) or folder.is_symlink():
        raise ExperimentDeleteError(f"{folder} is not an experiment folder inside {root}.")
    removed = []
    if with_exports:
        for path in summary["exports"]["sovits"] + summary["exports"]["gpt"]:
            p = Path(path)
            if p.is_file():
                p.unlink()
                removed.append(str(p))
    shutil.rmtree(real)
    return {"name": summary["name"], "folder": str(real), "bytes": summary["bytes"], "exports_removed": removed,
            "exports_kept": [] if with_exports else summary["exports"]["sovits"] + summary["exports"]["gpt"]}
