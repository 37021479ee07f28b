#!/usr/bin/env bash
# Run the whole order saga on this machine: one command on a fresh checkout.
#
#   scripts/run-local.sh [--services NAME ...] [--env KEY=VALUE ...]
#
# Needs Python 3.11, PostgreSQL and RabbitMQ. Creates .venv in the repository root when it
# is missing, installs the project into it when pyproject.toml changed since the last
# install, then runs `python -m scripts.run_local` with the arguments given.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

is_py311() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' >/dev/null 2>&1
}

venv=".venv"
stamp="$venv/.run-local-installed"

if [[ ! -x "$venv/bin/python" ]]; then
    python=""
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
            python="$(command -v "$candidate")"
            break
        fi
    done
    if [[ -z "$python" ]]; then
        echo "run-local: Python 3.11 is required but neither python3.11 nor python3 is 3.11." >&2
        echo "run-local: install it (e.g. 'apt-get install python3.11 python3.11-venv') and retry." >&2
        exit 1
    fi
    echo "run-local: creating $venv with $python ..."
    if ! "$python" -m venv "$venv"; then
        echo "run-local: could not create $venv; on Debian/Ubuntu install python3.11-venv." >&2
        rm -rf "$venv"
        exit 1
    fi
elif ! is_py311 "$venv/bin/python"; then
    echo "run-local: $root/$venv is not a Python 3.11 environment; remove it and retry." >&2
    exit 1
fi

if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
    echo "run-local: installing the project into $venv (pip install -e .) ..."
    if ! output="$("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e . 2>&1)"; then
        printf '%s\n' "$output" >&2
        echo "run-local: pip install -e . failed (output above)." >&2
        exit 1
    fi
    touch "$stamp"
fi

exec "$venv/bin/python" -m scripts.run_local "$@"
