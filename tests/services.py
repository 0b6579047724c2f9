"""The servers some tests need: PostgreSQL and Redis on 127.0.0.1.

Where a server does not answer, a test that needs it is skipped with a message saying how to
start it; with ``CI=true`` it fails instead, so CI can never pass by skipping them.

Override the addresses with ``AIODATALOADER_TEST_POSTGRES_URL`` (a SQLAlchemy URL on asyncpg)
and ``AIODATALOADER_TEST_REDIS_URL``.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "AIODATALOADER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AIODATALOADER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def _require(name: str, url: str, default_port: int) -> str:
    if _answers(url, default_port):
        return url
    message = f"{name} does not answer at {url}; start it with: {_HOW_TO_START[name]}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: tests that need {name} must run)")
    pytest.skip(message)


def require_postgres() -> str:
    """The SQLAlchemy URL of the test PostgreSQL server, or skip (fail in CI)."""
    return _require("PostgreSQL", POSTGRES_URL, 5432)


def require_redis() -> str:
    """The URL of the test Redis server, or skip (fail in CI)."""
    return _require("Redis", REDIS_URL, 6379)


def unique_name(prefix: str) -> str:
    """A name no other test run uses at the same time (a database, a schema, a key prefix)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
