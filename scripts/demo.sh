#!/usr/bin/env bash
# The blog demo on a fresh machine: needs only Python 3.10+ (with pip or venv).
#
#   bash scripts/demo.sh            # the report: SQL queries and latency, naive vs loaders
#   bash scripts/demo.sh --serve    # the report, then keep serving (prints the API docs URL)
#   bash scripts/demo.sh --quick    # fewer requests
#
# Creates (or reuses) a virtualenv in .venv-demo, installs the project with its FastAPI extra
# and the demo's dependencies (only when they changed), and runs `python -m examples.blog.demo`.
# Safe to run again. Environment: PYTHON (interpreter to use), DEMO_VENV (virtualenv folder).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${DEMO_VENV:-.venv-demo}
# The project with its FastAPI extra, and what the example app and the demo run on.
requirements=(-e ".[fastapi]" "uvicorn>=0.32" "aiosqlite>=0.20" "strawberry-graphql>=0.250" "httpx>=0.28")

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python python3.13 python3.12 python3.11 python3.10; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

venv_works() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys, pip' >/dev/null 2>&1
}

if ! venv_works; then
    python=$(find_python) || {
        echo "demo.sh: Python 3.10 or newer is needed (set PYTHON=/path/to/python3)" >&2
        exit 1
    }
    echo "creating the virtualenv $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    if ! "$python" -m venv "$venv" 2>/dev/null || ! venv_works; then
        # Some distributions ship Python without the venv module (Debian: python3-venv).
        rm -rf "$venv"
        echo "python -m venv is not available; using virtualenv instead"
        if ! "$python" -m virtualenv --version >/dev/null 2>&1; then
            "$python" -m pip install --quiet --user virtualenv 2>/dev/null ||
                "$python" -m pip install --quiet --user --break-system-packages virtualenv
        fi
        "$python" -m virtualenv --quiet "$venv"
    fi
fi

# Reinstall only when the project's metadata or this list changed.
stamp="$venv/.demo-installed"
wanted=$(cat pyproject.toml; printf '%s\n' "${requirements[@]}")
wanted=$(printf '%s' "$wanted" | "$venv/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "installing aiodataloader[fastapi] and the demo's dependencies into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
    echo "$wanted" >"$stamp"
fi

exec "$venv/bin/python" -m examples.blog.demo "$@"
