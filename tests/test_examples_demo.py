"""Runs the blog demo end to end, as a user does: a real uvicorn server, real requests, the
printed report, then ``--serve`` until Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from demo import report as demo
from demo.server import REPO_ROOT

from .examples_support import needs_blog_dependencies, postgres_database

pytestmark = needs_blog_dependencies


def check_report(out: str) -> None:
    rows = {}
    for endpoint in demo.ENDPOINTS:
        [line] = [line for line in out.splitlines() if line.startswith(endpoint.label)]
        naive, loaders = line[len(endpoint.label) :].split()[:2]
        rows[endpoint.label] = (naive, loaders)
    # One query per loader per level, against one per row.
    assert rows["REST GET /posts?limit=20"] == ("251", "5")
    assert rows["GraphQL posts(limit: 20) {author tags comments {author}}"] == ("251", "5")
    assert rows["REST GET /authors/{id}"][1] == "3"
    assert rows["GraphQL author(id) {posts {tags}}"][1] == "3"
    assert "latency p50 / p95 (ms)" in out
    assert "naive and loader responses: identical" in out
    assert "bad input: all 9 checks passed" in out
    assert "FAILED" not in out
    assert re.search(r"^Conclusion: .* 5 instead of 251 \(50x fewer\)", out, re.MULTILINE)


def test_demo_reports_then_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "demo", "--quick", "--serve"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("serving at") or time.monotonic() > deadline:
                break
        out = "".join(lines)
        check_report(out)
        match = re.search(r"API docs (http://127\.0\.0\.1:\d+)/docs", lines[-1])
        assert match, out
        url = match.group(1)
        assert httpx.get(f"{url}/docs").status_code == 200
        assert httpx.get(f"{url}/posts", params={"limit": 1}).status_code == 200

        process.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = process.communicate(timeout=30)
        assert process.returncode == 0, out + rest
        try:
            httpx.get(f"{url}/healthz")
        except httpx.TransportError:
            pass  # the server went down with the demo
        else:
            raise AssertionError("the server outlived the demo")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.anyio
async def test_demo_on_postgresql() -> None:
    """``--database-url``: the server creates and seeds the tables, and the report holds."""
    async with postgres_database("demo") as url:
        with anyio.fail_after(300):
            result = await anyio.run_process(
                [sys.executable, "-m", "demo", "--quick", "--database-url", url],
                cwd=REPO_ROOT,
                check=False,
            )
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out
    assert "aiodataloader demo: blog example on postgresql+asyncpg://" in out
    check_report(out)


@pytest.mark.slow
@pytest.mark.skipif(
    not (
        os.environ.get("AIODATALOADER_TEST_DEMO_FROM_SCRATCH") == "1"
        or (os.environ.get("CI") == "true" and sys.version_info[:2] == (3, 11))
    ),
    reason="installs from PyPI: runs in CI once (on Python 3.11), or with "
    "AIODATALOADER_TEST_DEMO_FROM_SCRATCH=1",
)
def test_demo_session_from_scratch_and_again(tmp_path: Path) -> None:
    """The README's demo command, `nox -s demo`, on a new virtualenv, then on the same one."""
    command = [sys.executable, "-m", "nox", "--envdir", str(tmp_path), "-s", "demo"]
    command += ["--", "--quick"]

    first = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Creating virtual environment" in first.stderr
    check_report(first.stdout)

    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Reusing existing virtual environment" in again.stderr
    check_report(again.stdout)
