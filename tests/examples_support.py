"""What the example tests share: a PostgreSQL database of their own, and a real uvicorn server
in the test's event loop (so a test can look at the app's engine while it serves)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import pytest
import uvicorn
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from .services import require_postgres, unique_name


def _at_least(package: str, wanted: tuple[int, ...]) -> bool:
    return tuple(int(part) for part in version(package).split(".")[: len(wanted)]) >= wanted


#: The blog example runs on FastAPI >= 0.165 (``max_body_size``) and Strawberry >= 0.341; both
#: need Python 3.11, so on 3.10 (where the library and its other tests run) its tests skip.
needs_blog_dependencies = pytest.mark.skipif(
    not (_at_least("fastapi", (0, 165)) and _at_least("strawberry-graphql", (0, 341))),
    reason="the blog example needs FastAPI >= 0.165 and Strawberry >= 0.341 (Python 3.11+)",
)


@asynccontextmanager
async def postgres_database(prefix: str = "blog") -> AsyncIterator[str]:
    """The URL of a new, empty database on the test server, dropped afterwards.

    Skips the test where no server answers (fails with ``CI=true``).
    """
    server_url = require_postgres()
    name = unique_name(f"aiodataloader_{prefix}")
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def uvicorn_server(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 (a free port), lifespan included; its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        for _ in range(3000):  # up to a minute: seeding the database takes a moment
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if not server.started:
            raise RuntimeError("uvicorn did not start") from (
                task.exception() if task.done() else None
            )
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()
