"""Run the blog app on a real uvicorn server in a child process.

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

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BlogServer:
    """A ``python -m examples.blog`` child process serving on ``url``."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        batch_window_ms: float | None = None,
        database_url: str | None = None,
        redis_url: str | None = None,
    ) -> BlogServer:
        """Start the server on ``host:port`` (a free port if 0); see :meth:`wait_until_ready`."""
        port = port or free_port(host)
        command = [sys.executable, "-m", "examples.blog", "--host", host, "--port", str(port)]
        if batch_window_ms is not None:
            command += ["--batch-window-ms", str(batch_window_ms)]
        if database_url is not None:
            command += ["--database-url", database_url]
        if redis_url is not None:
            command += ["--redis-url", redis_url]
        fd, log_name = tempfile.mkstemp(prefix="blog-server-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            # cwd: `python -m` imports `examples` from the repository root.
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        return cls(f"http://{host}:{port}", process, Path(log_name))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the blog server exited with code {self.process.returncode}:\n"
                        + self.log()
                    )
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the blog server did not start in {timeout:.0f} s")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, so uvicorn shuts down gracefully and the lifespan closes the database."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_path.unlink(missing_ok=True)


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
    database_url: str | None = None,
    redis_url: str | None = None,
) -> Iterator[BlogServer]:
    """A running blog server for the duration of the block."""
    server = BlogServer.start(
        host=host,
        port=port,
        batch_window_ms=batch_window_ms,
        database_url=database_url,
        redis_url=redis_url,
    )
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()
