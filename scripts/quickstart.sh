#!/usr/bin/env bash
# Install streamasr and transcribe the sample files in assets/ with the bundled default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/python.sh
"$PY" -m streamasr transcribe assets/sample_* --format txt
