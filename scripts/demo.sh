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

# shellcheck source=scripts/virtualenv.sh
source scripts/virtualenv.sh
ensure_virtualenv "$venv"

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
