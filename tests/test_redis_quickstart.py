"""The README's shared-cache quickstart runs, against the real Redis, and says what it says."""

from __future__ import annotations

import pytest
import redis.asyncio as redis_asyncio

from examples import shared_cache_quickstart

from .services import require_redis, unique_name

pytestmark = pytest.mark.anyio


async def test_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    redis_url = require_redis()
    prefix = unique_name("aiodataloader_quickstart") + ":"
    shared_cache_quickstart.QUERIES.clear()
    try:
        await shared_cache_quickstart.main(redis_url, key_prefix=prefix)
    finally:
        client = redis_asyncio.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert capsys.readouterr().out.splitlines() == [
        "[User(id=1, name='Ada'), User(id=2, name='Grace')]",
        "User(id=1, name='Ada')",
        "queries: [[1, 2]]",
        "User(id=1, name='Ada Lovelace')",
        "queries: [[1, 2], [1]]",
    ]
