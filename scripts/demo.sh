#!/usr/bin/env bash
# Set up .venv and run the demo: an instrumented Typer app, inspect, status, upload.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py
