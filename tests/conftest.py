"""Shared pytest fixtures.

Parity tests read the upstream golden data from ``GSV_PARITY_DIR`` (default ``../shared/fixtures/gsv_parity``
relative to the repository root), so the same tests run unchanged on another fixture set of the same format.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]


def parity_dir_path() -> Path:
    raw = os.environ.get("GSV_PARITY_DIR")
    return Path(raw).expanduser().resolve() if raw else (REPO_ROOT / ".." / "shared" / "fixtures" / "gsv_parity").resolve()


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    path = parity_dir_path()
    if not (path / "README.md").is_file():
        pytest.fail(f"parity fixture folder not found: {path} (set GSV_PARITY_DIR)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
