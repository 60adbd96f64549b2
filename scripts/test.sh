#!/usr/bin/env bash
# The test command: set up .venv, lint and type-check once, then run the whole suite on the
# oldest and the newest CPython >= 3.10 this machine has (scripts/test-pythons.sh --ends;
# one run when it has only one). Extra arguments go to pytest, e.g.
# `scripts/test.sh tests/test_spool.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
.venv/bin/python -m mypy
exec bash scripts/test-pythons.sh --ends -n 4 "$@"
