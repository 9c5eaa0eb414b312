#!/usr/bin/env bash
# Set up everything the test suite needs (system packages, .venv with test requirements) and run all tests
# offline. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k checkpoints`.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use (installed only when missing; needs root or sudo):
# chromium + fonts-wqy-microhei for the browser tests (Chinese must render), espeak-ng and sox to make test speech,
# ffmpeg for Gradio's streamed audio output.
APT_PACKAGES=(chromium fonts-wqy-microhei espeak-ng sox ffmpeg)
# open-jtalk-mecab-naist-jdic: the OpenJTalk dictionary the Japanese front end reads (gsv_core/text/ja.py)
APT_PACKAGES+=(open-jtalk-mecab-naist-jdic)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "error: missing system packages ${missing[*]} and no root/sudo to install them" >&2; exit 1
    fi
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

bash scripts/setup_env.sh requirements-dev.txt

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
export GSV_PARITY_DIR="${GSV_PARITY_DIR:-$(cd .. && pwd)/shared/fixtures/gsv_parity}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
