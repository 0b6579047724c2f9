"""examples/blog behind a real uvicorn server: a tiny connection pool under 50 concurrent
requests, hostile GraphQL documents while /healthz keeps answering, and a body over the limit
refused before it is sent. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import QueuePool

from demo.report import POSTS_QUERY
from examples.blog.app import QUERY_COUNT_HEADER, create_app
from examples.blog.db import Database, SeedSize

from .examples_support import needs_blog_dependencies, uvicorn_server

pytestmark = [pytest.mark.anyio, needs_blog_dependencies]

SMALL = SeedSize(authors=40, posts=300, comments=3_000)


def pool(app: FastAPI) -> QueuePool:
    db: Database = app.state.db
    assert isinstance(db.engine.pool, QueuePool)
    return db.engine.pool


async def wait_for_idle_pool(app: FastAPI) -> int:
    """Connections still checked out once every request's teardown had time to finish."""
    for _ in range(500):  # the teardown runs after the last byte was sent: give it up to 10 s
        if pool(app).checkedout() == 0:
            return 0
        await asyncio.sleep(0.02)
    return pool(app).checkedout()


async def test_fifty_concurrent_requests_on_a_pool_of_two(blog_database_url: str | None) -> None:
    """Every request uses three loaders (whose batches run concurrently) and one session;
    with two connections for all of them, none may wait for a second connection."""
    app = create_app(
        blog_database_url, seed_size=SMALL, pool_size=2, max_overflow=0, pool_timeout=20
    )
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(50):
        match i % 3:
            case 0:  # AuthorLoader, PostsOfAuthorLoader, TagsOfPostLoader
                requests.append(("GET", f"/authors/{1 + i % SMALL.authors}", {}))
            case 1:  # the session, then AuthorLoader, CommentsOfPostLoader, TagsOfPostLoader
                requests.append(("GET", "/posts", {"params": {"limit": 10}}))
            case _:
                body = {"query": POSTS_QUERY, "variables": {"limit": 10}}
                requests.append(("POST", "/graphql", {"json": body}))
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)

    async with (
        uvicorn_server(app) as url,
        httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client,
    ):
        responses = await asyncio.gather(
            *(client.request(method, path, **kwargs) for method, path, kwargs in requests)
        )
        assert [r.status_code for r in responses] == [200] * 50, [
            r.text for r in responses if r.status_code != 200
        ][:3]
        assert all("errors" not in r.json() for r in responses if r.request.method == "POST")
        assert {int(r.headers[QUERY_COUNT_HEADER]) for r in responses} <= {3, 5}
        assert pool(app).size() == 2
        assert await wait_for_idle_pool(app) == 0


HOSTILE = [
    "{ posts(limit: 100) { " + "author { posts { " * 5 + "id" + " } }" * 5 + " } }",
    "{ posts(limit: 100) { " + "author { posts { " * 25 + "id" + " } }" * 25 + " } }",
    "{ "
    + " ".join(f"a{i}: posts(limit: 100) {{ comments {{ id }} }}" for i in range(1_000))
    + " }",
    "{ posts(limit: 100) { comments { author { posts { comments { id } } } } } }",
]


async def test_hostile_graphql_is_refused_while_healthz_answers(
    blog_database_url: str | None,
) -> None:
    app = create_app(blog_database_url, seed_size=SMALL)
    async with (
        uvicorn_server(app) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as attacker,
        httpx.AsyncClient(base_url=url, timeout=60) as monitor,
    ):
        refused: list[float] = []
        done = asyncio.Event()

        async def attack() -> None:
            try:
                for _ in range(5):
                    for document in HOSTILE:
                        started = time.perf_counter()
                        response = await attacker.post("/graphql", json={"query": document})
                        refused.append(time.perf_counter() - started)
                        body = response.json()
                        assert body["data"] is None
                        assert body["errors"], document[:80]
            finally:
                done.set()

        async def watch() -> int:
            answered = 0
            while not done.is_set():
                response = await monitor.get("/healthz")
                assert response.status_code == 200
                answered += 1
                await asyncio.sleep(0.005)
            return answered

        _, answered = await asyncio.gather(attack(), watch())
        assert len(refused) == 20
        # Generous: refusing takes milliseconds; running any of these took seconds to minutes.
        assert max(refused) < 10, refused
        assert answered >= 1
        assert (await monitor.get("/posts", params={"limit": 1})).status_code == 200


async def test_a_50_mib_body_is_refused_before_it_is_sent() -> None:
    app = create_app(seed_size=SMALL)
    async with uvicorn_server(app) as url:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            writer.write(
                b"POST /graphql HTTP/1.1\r\nHost: blog\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
                + b'{"query": "'
            )
            await writer.drain()
            # The server answers without waiting for the other 50 MiB.
            status = await asyncio.wait_for(reader.readline(), 30)
            assert status.startswith(b"HTTP/1.1 413"), status
        finally:
            writer.close()

        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
        assert await wait_for_idle_pool(app) == 0
