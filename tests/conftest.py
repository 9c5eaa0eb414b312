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


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory, parity_dir):
    """Pipeline-shaped tiny feature models and reference wavs, built once per test session.

    BERT has hidden size 1024 and HuBERT 768 (the widths the fixture GPT/SoVITS expect); the speaker model is a
    small ERes2NetV2 whose forward3 still yields the 20480 values v2Pro/v2ProPlus need."""
    import numpy as np
    import soundfile as sf
    import torch

    from gsv_core.models.sv import ERes2NetV2
    from helpers.tiny_models import build_tiny_bert, build_tiny_hubert

    tmp = tmp_path_factory.mktemp("tiny_assets")
    torch.manual_seed(0)
    sv = ERes2NetV2(baseWidth=8, scale=2, expansion=16, m_channels=16, num_blocks=[1, 1, 1, 1]).eval()
    torch.save(sv.state_dict(), tmp / "sv.ckpt")
    inputs = np.load(parity_dir / "s2_inputs.npz")
    sf.write(tmp / "ref.wav", inputs["wav32"], 32000)
    sf.write(tmp / "aux.wav", inputs["wav32_b"], 32000)
    return {
        "bert": build_tiny_bert(tmp / "bert"),
        "hubert": build_tiny_hubert(tmp / "hubert"),
        "sv": tmp / "sv.ckpt",
        "ref": tmp / "ref.wav",
        "aux": tmp / "aux.wav",
        "dir": tmp,
    }
