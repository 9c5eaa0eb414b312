#!/usr/bin/env bash
# The GPU check of issue 15 (bench/gpu_check.py): parity on CUDA (fp32 and fp16), an end-to-end synthesis per
# version, the engine benchmark in fp16 with and without CUDA graphs, one AMP finetuning epoch per trainer, a
# 2-process DDP step on 2 GPUs. One table; exit status non-zero on any failure. Without a GPU it says so, runs its
# CPU part and exits 0.
#
#   bash scripts/gpu_check.sh [--skip-bench] [--skip-train] [--json out.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" bench/gpu_check.py "$@"
