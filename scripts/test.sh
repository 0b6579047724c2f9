#!/usr/bin/env bash
# Every check CI runs: ruff, mypy, pyright and the test suite on each Python from 3.10 to
# 3.13 that this machine has (all four are required when CI=true). Needs only Python 3.10+
# with pip; installs nox in .venv-tools. Extra arguments go to nox, e.g.
#   bash scripts/test.sh -s tests-3.12 -- -k loader
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# pyenv keeps each Python in a folder of its own, not always on PATH: add them for nox.
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for version in 3.10 3.11 3.12 3.13; do
    dir=$(ls -d "$pyenv_root/versions/$version".*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ]; then PATH="$PATH:$dir"; fi
done
export PATH

# shellcheck source=scripts/virtualenv.sh
source scripts/virtualenv.sh
tools=.venv-tools
if ! "$tools/bin/python" -c "import nox" >/dev/null 2>&1; then
    ensure_virtualenv "$tools"
    "$tools/bin/python" -m pip install --quiet --upgrade pip
    "$tools/bin/python" -m pip install --quiet "nox>=2025.2"
fi

error_on_missing=()
if [ "${CI:-}" = "true" ]; then error_on_missing=(--error-on-missing-interpreters); fi
exec "$tools/bin/nox" "${error_on_missing[@]}" "$@"
