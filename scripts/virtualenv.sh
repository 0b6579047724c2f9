# Sourced by demo.sh and test.sh: `ensure_virtualenv DIR` creates DIR as a virtualenv of a
# Python >= 3.10 (PYTHON, else the first found) unless a working one is there already.
# Falls back to virtualenv where Python has no venv module (Debian without python3-venv).

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

virtualenv_works() {
    [ -x "$1/bin/python" ] && "$1/bin/python" -c 'import sys, pip' >/dev/null 2>&1
}

ensure_virtualenv() {
    local dir=$1 python
    virtualenv_works "$dir" && return 0
    python=$(find_python) || {
        echo "Python 3.10 or newer is needed (set PYTHON=/path/to/python3)" >&2
        return 1
    }
    echo "creating the virtualenv $dir with $("$python" --version 2>&1)"
    rm -rf "$dir"
    if ! "$python" -m venv "$dir" 2>/dev/null || ! virtualenv_works "$dir"; then
        rm -rf "$dir"
        echo "python -m venv is not available; using virtualenv instead"
        if ! "$python" -m virtualenv --version >/dev/null 2>&1; then
            "$python" -m pip install --quiet --user virtualenv 2>/dev/null ||
                "$python" -m pip install --quiet --user --break-system-packages virtualenv
        fi
        "$python" -m virtualenv --quiet "$dir"
    fi
}
