#!/usr/bin/env bash
# Create/refresh the project's virtual environment (.venv) from requirements files. Idempotent and quick when
# nothing changed (a stamp file holds the hash of the requirements).
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$REQ")"
if [ ! -f "$stamp" ]; then
  # torch first and pinned: a torch pulled in unpinned by another package would bring GBs of CUDA wheels.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -r "$REQ"
  # packages whose declared dependencies must not be installed (requirements-nodeps.txt says why)
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  touch "$stamp"
fi
