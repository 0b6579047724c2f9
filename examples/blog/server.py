"""Run the blog app on a real uvicorn server in a child process, for the demo and benchmark.

The server gets its own process (and so its own core and GIL), so the client that measures
it does not slow it down.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class BlogServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def blog_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    batch_window_ms: float | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[BlogServer]:
    """Start ``python -m examples.blog`` on ``host:port`` (a free port if 0), wait until it
    answers, and stop it (SIGTERM, so the lifespan closes the database) when the block exits.
    """
    port = port or free_port(host)
    command = [sys.executable, "-m", "examples.blog", "--host", host, "--port", str(port)]
    if batch_window_ms is not None:
        command += ["--batch-window-ms", str(batch_window_ms)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory(prefix="blog-server-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        server = BlogServer(f"http://{host}:{port}", process, log_path)
        try:
            _wait_until_ready(server, startup_timeout)
            yield server
        finally:
            _stop(process)


def _wait_until_ready(server: BlogServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"the blog server exited with code {server.process.returncode}:\n"
                    + server.log()
                )
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the blog server did not start in {timeout:.0f} s:\n" + server.log()
                )
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
