#!/usr/bin/env bash
# The test command: set up, then lint, type-check and run the whole suite.
# Extra arguments go to pytest (e.g. `scripts/test.sh tests/test_spool.py -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
