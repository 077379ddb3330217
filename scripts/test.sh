#!/usr/bin/env bash
# Install streamasr with its test dependencies and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
python3 -m mypy streamasr scripts
python3 -m pytest -q
