"""The blog example with a shared value cache: two app instances (as two workers) on one
PostgreSQL database and one Redis. Warm reads skip SQL; a comment added on one instance is
read by the other at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aiodataloader.redis import RedisCache
from examples.blog.app import QUERY_COUNT_HEADER, create_app
from examples.blog.db import SeedSize

from .examples_support import needs_blog_dependencies, postgres_database
from .services import require_redis, unique_name

pytestmark = [pytest.mark.anyio, needs_blog_dependencies]

SMALL = SeedSize(authors=40, posts=300, comments=3_000)


@pytest.fixture
async def workers() -> AsyncIterator[list[httpx.AsyncClient]]:
    redis_url = require_redis()
    name = unique_name("aiodataloader_blog")
    async with AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(postgres_database())
        clients = []
        caches = []
        for _ in range(2):
            shared = RedisCache.from_url(
                redis_url, timeout=1.0, key_prefix=f"{name}:", channel=f"{name}:invalidate"
            )
            caches.append(shared)
            app: FastAPI = create_app(database_url, seed_size=SMALL, shared_cache=shared)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://blog")
            clients.append(await stack.enter_async_context(client))
        yield clients
        keys = [key async for key in caches[0].client.scan_iter(f"{name}:*")]
        if keys:
            await caches[0].client.delete(*keys)


async def get_posts(client: httpx.AsyncClient, limit: int = 20) -> tuple[Any, int]:
    response = await client.get("/posts", params={"limit": limit})
    assert response.status_code == 200, response.text
    return response.json(), int(response.headers[QUERY_COUNT_HEADER])


async def test_warm_posts_take_at_most_two_queries_on_another_worker(
    workers: list[httpx.AsyncClient],
) -> None:
    first, second = workers
    cold, cold_queries = await get_posts(first)
    assert cold_queries == 5  # posts; authors, tags, comments; comment authors
    warm, warm_queries = await get_posts(second)
    assert warm == cold
    assert warm_queries <= 2


async def test_a_comment_added_on_one_worker_is_read_on_the_other(
    workers: list[httpx.AsyncClient],
) -> None:
    first, second = workers
    [post], _ = await get_posts(second, limit=1)  # cached in Redis by the second worker
    response = await first.post(
        f"/posts/{post['id']}/comments", json={"author_id": 3, "body": "Shared, finally."}
    )
    assert response.status_code == 201, response.text
    assert response.json()["comments"][-1]["body"] == "Shared, finally."  # own write
    [after], _ = await get_posts(second, limit=1)
    assert after == response.json()
    [again], _ = await get_posts(first, limit=1)
    assert again == response.json()
