"""python -m gsv_core.finetune: help, clear errors, settings stored in the experiment, the slicer command."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gsv_core.finetune.__main__ import COMMANDS, _parse_set, main

REPO = Path(__file__).resolve().parents[2]


def _run(args, tmp_path, **env):
    e = {"GSV_HOME": str(tmp_path), "GSV_EXPERIMENTS_DIR": str(tmp_path / "exp"), "PYTHONPATH": str(REPO),
         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    import os

    return subprocess.run([sys.executable, "-m", "gsv_core.finetune", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **e})


def test_help_lists_every_command(tmp_path):
    out = _run(["--help"], tmp_path)
    assert out.returncode == 0
    for cmd in COMMANDS:
        assert cmd in out.stdout
    assert "torchrun" in out.stdout


def test_unknown_experiment_and_bad_options_are_clear(tmp_path):
    out = _run(["status", "--name", "nope"], tmp_path)
    assert out.returncode == 2 and "no experiment named 'nope'" in out.stderr
    out = _run(["data", "--name", "../escape", "--list", "x.list"], tmp_path)
    assert out.returncode == 2 and "experiment name" in out.stderr
    out = _run(["data", "--name", "v", "--list", str(tmp_path / "missing.list")], tmp_path)
    assert out.returncode == 2 and "missing.list" in out.stderr
    with pytest.raises(Exception, match="SECTION.KEY=VALUE"):
        _parse_set(["lr=1"])
    assert _parse_set(["s2.lr=5e-5", "cleaning.max_seconds=12", "s1.lora=true"]) == {
        "s2": {"lr": 5e-5}, "cleaning": {"max_seconds": 12}, "s1": {"lora": True}}


def test_settings_are_stored_and_unknown_options_refused(tmp_path, monkeypatch):
    lst = tmp_path / "a.list"
    lst.write_text("", encoding="utf-8")
    out = _run(["data", "--name", "v", "--list", str(lst), "--version", "v2", "--s2-epochs", "3",
                "--set", "s2.bogus=1"], tmp_path)
    assert out.returncode == 2 and "unknown SoVITS training option" not in out.stderr  # data does not read s2
    saved = json.loads((tmp_path / "exp" / "v" / "experiment.json").read_text(encoding="utf-8"))["config"]
    assert saved["version"] == "v2" and saved["s2"]["epochs"] == 3 and saved["source"] == str(lst.resolve())
    # a later command needs only the name; the stored settings come back
    out = _run(["train-s2", "--name", "v"], tmp_path)
    assert out.returncode == 2 and "unknown SoVITS training option(s): bogus" in out.stderr


def test_slice_command_cuts_at_silences(tmp_path):
    sr = 32000
    parts = []
    rng = np.random.default_rng(0)
    for k in range(3):
        t = np.arange(int(5.0 * sr)) / sr
        parts.append(0.4 * np.sin(2 * np.pi * (150 + 40 * k) * t) * (1 + 0.3 * rng.standard_normal(len(t)) * 0.1))
        parts.append(np.zeros(int(1.0 * sr)))
    src = tmp_path / "rec"
    src.mkdir()
    sf.write(src / "long.wav", np.concatenate(parts).astype(np.float32), sr)
    out = _run(["slice", str(src), str(tmp_path / "clips")], tmp_path)
    assert out.returncode == 0, out.stderr
    clips = sorted((tmp_path / "clips").glob("long_*.wav"))
    assert len(clips) == 3 and "3 clips written" in out.stdout
