#!/usr/bin/env bash
# Install streamasr with its test dependencies and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
source scripts/python.sh
"$PY" -m mypy streamasr scripts
"$PY" -m pytest -q
