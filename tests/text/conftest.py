"""Fixtures of the text tests: the Japanese/Korean/Cantonese parity folder.

``GSV_PARITY_LANG_DIR`` names it (default ``<repo>/../shared/fixtures/gsv_parity_lang``), so the same tests run on
another fixture set of the same format.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def parity_lang_dir_path() -> Path:
    raw = os.environ.get("GSV_PARITY_LANG_DIR")
    if raw:
        return Path(raw).expanduser().resolve()
    return (REPO_ROOT / ".." / "shared" / "fixtures" / "gsv_parity_lang").resolve()


@pytest.fixture(scope="session")
def parity_lang_dir() -> Path:
    path = parity_lang_dir_path()
    if not any(path.glob("text_*_frontend.json")):
        pytest.fail(f"Japanese/Korean/Cantonese parity fixtures not found in {path} (set GSV_PARITY_LANG_DIR)")
    return path
