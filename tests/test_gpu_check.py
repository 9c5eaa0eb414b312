"""scripts/gpu_check.sh on a machine without CUDA: it says so, runs its CPU part (parity of the plain and
static-cache GPT and of every SoVITS version through the reference condition), prints its table and exits 0."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the full check belongs to scripts/gpu_check.sh")
def test_script_without_cuda_runs_its_cpu_part_and_exits_0(tmp_path):
    out = tmp_path / "table.json"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no CUDA GPU" in proc.stdout and "0 failed" in proc.stdout
    rows = json.loads(out.read_text())
    checks = [r for r in rows if not r.get("figure")]
    assert len(checks) == 4 and all(r["ok"] for r in checks), rows
    assert "tokens exact" in checks[1]["detail"] and "bit for bit" in checks[3]["detail"]
