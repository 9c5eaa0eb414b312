"""python -m gsv_core.inspect: kind, version, config summary, parameter count, or a clear error."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gsv_core.checkpoints import load_gpt_checkpoint, load_sovits_checkpoint
from gsv_core.inspect import main


def _run_json(capsys, *paths):
    status = main([*map(str, paths), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return status, lines


def test_inspect_every_fixture_checkpoint(parity_dir, capsys):
    gpts = sorted(parity_dir.glob("s1_*.ckpt"))
    sovits = sorted(parity_dir.glob("s2_*.pth.xz"))
    status, out = _run_json(capsys, *gpts, *sovits, parity_dir / "sv_eres2netv2_tiny.ckpt")
    assert status == 0
    for f, d in zip(gpts, out):
        ck = load_gpt_checkpoint(f)
        assert d["kind"].startswith("GPT") and d["parameters"] == sum(t.numel() for t in ck.weight.values())
        assert d["config"]["layers"] == ck.config["model"]["n_layer"]
    for f, d in zip(sovits, out[len(gpts):]):
        ck = load_sovits_checkpoint(f)
        assert d["kind"].startswith("SoVITS") and d["version"] == ck.model_version
        assert d["parameters"] > 0 and d["config"]["sampling_rate"] == 32000
    assert out[-1]["kind"].startswith("speaker-verification")


def test_inspect_model_folders(parity_dir, capsys):
    status, out = _run_json(capsys, parity_dir / "bert_tiny", parity_dir / "hubert_tiny")
    assert status == 0
    assert out[0]["version"] == "bert" and out[1]["version"] == "hubert"
    assert out[0]["parameters"] > 0 and out[0]["config"]["hidden_size"] > 0


def test_inspect_errors_are_one_line_and_exit_nonzero(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    proc = subprocess.run(
        [sys.executable, "-m", "gsv_core.inspect", str(bad), str(tmp_path / "absent.ckpt")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    errs = proc.stderr.strip().splitlines()
    assert len(errs) == 2 and all(e.startswith("error: ") for e in errs), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "not a PyTorch checkpoint" in errs[0] and "not found" in errs[1]


def test_inspect_human_output(parity_dir, capsys):
    f = sorted(parity_dir.glob("s2_*.pth.xz"))[-1]
    assert main([str(f)]) == 0
    text = capsys.readouterr().out
    assert "kind:" in text and "parameters:" in text and load_sovits_checkpoint(f).model_version in text
