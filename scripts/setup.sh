#!/usr/bin/env bash
# Create .venv at the repository root (if needed) and install the project with its dev tools.
# pip's output is shown only when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! log=$(.venv/bin/python -m pip install --disable-pip-version-check -e '.[dev]' 2>&1); then
    printf '%s\n' "$log" >&2
    echo "setup: pip install -e '.[dev]' failed" >&2
    exit 1
fi
