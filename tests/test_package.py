"""The package as users meet it: its imports, its marker files and the README quickstart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiodataloader

ROOT = Path(__file__).resolve().parent.parent


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


def test_importing_the_core_imports_no_web_framework() -> None:
    code = (
        "import sys, aiodataloader\n"
        "frameworks = ('starlette', 'fastapi', 'anyio', 'httpx')\n"
        "print(sorted(m for m in frameworks if m in sys.modules))"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_package_is_typed_and_versioned() -> None:
    assert (Path(aiodataloader.__file__).parent / "py.typed").is_file()
    assert aiodataloader.__version__ == "0.6.0"
    assert aiodataloader.__all__ == ["BatchLoadFn", "BatchScheduleFn", "DataLoader", "__version__"]


def test_issue_quickstart_runs_unchanged_with_two_batches() -> None:
    result = run_python("-W", "error", "examples/core_quickstart.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Fetching users with IDs: [1, 2]",
        "{'id': 1, 'name': 'Alice'} {'id': 2, 'name': 'Bob'} {'id': 1, 'name': 'Alice'}",
        "Fetching users with IDs: [3, 4]",
        "[{'id': 2, 'name': 'Bob'}, {'id': 3, 'name': 'Charlie'}, None]",
    ]


def test_typed_quickstart_runs() -> None:
    result = run_python("-W", "error", "tests/typing_core.py")
    assert result.returncode == 0, result.stderr
