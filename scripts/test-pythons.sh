#!/usr/bin/env bash
# Run the test suite on every CPython >= 3.10 found on PATH and in pyenv, each in its own
# virtual environment under .venvs/<version>. `--ends` runs only the oldest and the newest
# found (what CI does); a machine with a single Python runs just that one.
# Extra arguments go to pytest, e.g. `scripts/test-pythons.sh --ends tests/test_exit.py`.
set -euo pipefail
cd "$(dirname "$0")/.."

ends=0
if [ "${1:-}" = "--ends" ]; then
    ends=1
    shift
fi

candidates=()
for minor in $(seq 10 20); do
    found=$(command -v "python3.$minor" 2>/dev/null || true)
    [ -n "$found" ] && candidates+=("$found")
done
if command -v pyenv >/dev/null 2>&1; then
    for interpreter in "$(pyenv root)"/versions/*/bin/python; do
        [ -x "$interpreter" ] && candidates+=("$interpreter")
    done
fi
found=$(command -v python3 2>/dev/null || true)
[ -n "$found" ] && candidates+=("$found")

# version<TAB>interpreter for each CPython >= 3.10, one per version.
listing=$(
    for interpreter in "${candidates[@]}"; do
        "$interpreter" -c 'import sys
if sys.implementation.name == "cpython" and sys.version_info >= (3, 10):
    print("%d.%d.%d\t%s" % (*sys.version_info[:3], sys.executable))' 2>/dev/null || true
    done | sort -t. -k1,1n -k2,2n -k3,3n | awk -F'\t' '!seen[$1]++'
)
if [ -z "$listing" ]; then
    echo "test-pythons: no CPython >= 3.10 found" >&2
    exit 1
fi
if [ "$ends" = 1 ]; then
    listing=$(printf '%s\n' "$listing" | sed -n '1p;$p' | awk -F'\t' '!seen[$1]++')
fi

status=0
while IFS=$'\t' read -r version interpreter; do
    venv=".venvs/$version"
    echo "== Python $version ($interpreter)"
    if [ ! -x "$venv/bin/python" ]; then
        "$interpreter" -m venv "$venv"
    fi
    if ! log=$("$venv/bin/python" -m pip install --disable-pip-version-check -e '.[dev]' 2>&1); then
        printf '%s\n' "$log" >&2
        echo "test-pythons: installing into $venv failed" >&2
        status=1
        continue
    fi
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" || status=1
done <<< "$listing"
exit "$status"
