#!/usr/bin/env bash
# Set up (first run only) and start GSV Playground on http://127.0.0.1:9874 (see config.py / my_config.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements.txt
exec .venv/bin/python main_launcher.py "$@"
