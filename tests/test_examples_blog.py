"""Runs examples/blog in-process over httpx, on a real (smaller) SQLite database.

The point of the example is the number of SQL queries, so the tests assert it exactly: the
loader endpoints make one query per loader per level, the naive ones one per related row.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from examples.blog import queries
from examples.blog.app import QUERY_COUNT_HEADER, create_app
from examples.blog.db import Database, SeedSize
from examples.blog.demo import AUTHOR_QUERY, POSTS_QUERY
from examples.blog.loaders import DatabaseLoader

pytestmark = pytest.mark.anyio

SMALL = SeedSize(authors=40, posts=300, comments=3_000)


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    app = create_app(seed_size=SMALL)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://blog") as client:
        yield client


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> tuple[Any, int]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json(), int(response.headers[QUERY_COUNT_HEADER])


async def graphql(
    client: httpx.AsyncClient, path: str, query: str, **variables: Any
) -> tuple[Any, int]:
    response = await client.post(path, json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"], int(response.headers[QUERY_COUNT_HEADER])


def live_loaders() -> list[DatabaseLoader[Any]]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, DatabaseLoader)]


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


@pytest.mark.parametrize("limit", [20, 100])
async def test_posts_one_query_per_loader_per_level(client: httpx.AsyncClient, limit: int) -> None:
    posts, loader_queries = await get(client, "/posts", limit=limit)
    naive_posts, naive_queries = await get(client, "/naive/posts", limit=limit)

    assert posts == naive_posts
    assert len(posts) == limit
    # posts; their authors, tags and comments; the comments' authors.
    assert loader_queries == 5
    comments = sum(len(post["comments"]) for post in posts)
    assert comments > limit
    # posts; per post its author, tags and comments; per comment its author.
    assert naive_queries == 1 + 3 * limit + comments


async def test_posts_response_shape(client: httpx.AsyncClient) -> None:
    [post], _ = await get(client, "/posts", limit=1)
    assert post["id"] == SMALL.posts  # newest first
    assert set(post) == {"id", "title", "body", "author", "tags", "comments"}
    assert set(post["author"]) == {"id", "name"}
    assert 1 <= len(post["tags"]) <= 4
    assert post["tags"] == sorted(post["tags"])
    for comment in post["comments"]:
        assert set(comment) == {"id", "body", "author"}


async def test_author_with_posts(client: httpx.AsyncClient) -> None:
    author, loader_queries = await get(client, "/authors/7")
    naive_author, naive_queries = await get(client, "/naive/authors/7")

    assert author == naive_author
    assert author["id"] == 7
    assert author["email"] == "author7@example.com"
    assert len(author["posts"]) > 1
    assert loader_queries == 3  # author and posts (one level), then tags
    assert naive_queries == 2 + len(author["posts"])


async def test_graphql_batches_per_level(client: httpx.AsyncClient) -> None:
    data, loader_queries = await graphql(client, "/graphql", POSTS_QUERY, limit=20)
    naive_data, naive_queries = await graphql(client, "/naive/graphql", POSTS_QUERY, limit=20)

    assert data == naive_data
    comments = sum(len(post["comments"]) for post in data["posts"])
    assert loader_queries == 5
    assert naive_queries == 1 + 3 * 20 + comments


async def test_graphql_author(client: httpx.AsyncClient) -> None:
    data, loader_queries = await graphql(client, "/graphql", AUTHOR_QUERY, id=7)
    naive_data, naive_queries = await graphql(client, "/naive/graphql", AUTHOR_QUERY, id=7)

    assert data == naive_data
    assert loader_queries == 3
    assert naive_queries == 2 + len(data["author"]["posts"])


async def test_deep_graphql_query_is_one_query_per_level(client: httpx.AsyncClient) -> None:
    query = "{ posts(limit: 10) { author { posts { comments { author { name } } } } } }"
    data, loader_queries = await graphql(client, "/graphql", query)
    naive_data, naive_queries = await graphql(client, "/naive/graphql", query)

    assert data == naive_data
    # posts, their authors, the authors' posts, those posts' comments, the comments' authors
    assert loader_queries == 5
    assert naive_queries > 100


async def test_batch_window_keeps_counts_and_data() -> None:
    app = create_app(seed_size=SMALL, batch_window_seconds=0.002)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
    ):
        posts, queries = await get(client, "/posts", limit=20)
        naive_posts, _ = await get(client, "/naive/posts", limit=20)
        data, graphql_queries = await graphql(client, "/graphql", POSTS_QUERY, limit=20)
    assert posts == naive_posts
    assert queries == graphql_queries == 5
    assert len(data["posts"]) == 20


async def test_bad_input_is_refused_and_leaves_nothing_behind(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await get(client, "/posts", limit=5)  # the loaders run once, so there would be leftovers
    tasks_before = other_tasks()

    unknown = await client.get("/authors/100000")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "author 100000 not found"}
    assert (await client.get("/naive/authors/100000")).status_code == 404
    assert (await client.get("/authors/abc")).status_code == 422
    for limit in ("0", "101", "-1", "many"):
        response = await client.get("/posts", params={"limit": limit})
        assert response.status_code == 422, limit
        assert response.headers[QUERY_COUNT_HEADER] == "0"
        assert (await client.get("/naive/posts", params={"limit": limit})).status_code == 422

    for document in (
        "{ posts(limit: ",  # syntax error
        "{ nope }",  # unknown field
        "{ posts(limit: 0) { id } }",  # out of range
        '{ author(id: "x") { name } }',  # wrong type
    ):
        response = await client.post("/graphql", json={"query": document})
        body = response.json()
        assert body["errors"], document
        assert body.get("data") is None, document
    missing = await client.post("/graphql", json={"query": "{ author(id: 100000) { name } }"})
    assert missing.json() == {"data": {"author": None}}

    assert other_tasks() <= tasks_before
    assert live_loaders() == []
    db: Database = app.state.db
    assert not db.closed
    assert (await get(client, "/posts", limit=2))[1] == 5


@pytest.mark.parametrize("path", ["/posts", "/naive/posts"])
async def test_request_cancelled_mid_way_leaves_database_usable(
    app: FastAPI, client: httpx.AsyncClient, path: str
) -> None:
    db: Database = app.state.db
    counts = await db.table_counts()
    tasks_before = other_tasks()

    request = asyncio.ensure_future(client.get(path, params={"limit": 100}))
    await asyncio.sleep(0.005)  # a few queries in
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    await asyncio.sleep(0.05)  # let aiosqlite's thread finish the abandoned query
    assert other_tasks() <= tasks_before
    assert live_loaders() == []
    assert await db.table_counts() == counts
    posts, queries = await get(client, path, limit=3)
    assert len(posts) == 3
    assert queries >= 4


async def test_lifespan_seeds_deterministically_and_closes_the_database() -> None:
    size = SeedSize(authors=10, posts=50, comments=200)
    snapshots = []
    for _ in range(2):
        app = create_app(seed_size=size)
        async with app.router.lifespan_context(app):
            db: Database = app.state.db
            counts = await db.table_counts()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                snapshots.append((await get(client, "/posts", limit=50))[0])
        assert db.closed
        with pytest.raises(ValueError, match="no active connection"):
            await db.fetch_all("SELECT 1")
    assert counts["authors"] == 10
    assert counts["posts"] == 50
    assert counts["comments"] == 200
    assert counts["tags"] > 0
    assert counts["post_tags"] >= 50
    assert snapshots[0] == snapshots[1]


async def test_default_database_size() -> None:
    app = create_app()
    async with app.router.lifespan_context(app):
        db: Database = app.state.db
        counts = await db.table_counts()
    assert counts["authors"] == 200
    assert counts["posts"] == 2_000
    assert counts["comments"] == 20_000


async def test_openapi_documents_both_versions(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert {"/posts", "/authors/{author_id}", "/naive/posts", "/naive/authors/{author_id}"} <= set(
        schema["paths"]
    )
    limit = next(p for p in schema["paths"]["/posts"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["minimum"] == 1
    assert limit["schema"]["maximum"] == 100


async def test_add_comment_commits_and_is_read_back(client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"/posts/{SMALL.posts}/comments", json={"author_id": 3, "body": "Batched, finally."}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["body"] == "Batched, finally."
    assert created["author"]["id"] == 3

    [post], _ = await get(client, "/posts", limit=1)
    assert post["comments"][-1] == created
    [naive_post], _ = await get(client, "/naive/posts", limit=1)
    assert naive_post == post


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/posts/100000/comments", {"author_id": 1, "body": "hi"}, 404),
        ("/posts/1/comments", {"author_id": 100000, "body": "hi"}, 422),
        ("/posts/1/comments", {"author_id": 1, "body": ""}, 422),
        ("/posts/1/comments", {"author_id": 1, "body": "x" * 2001}, 422),
        ("/posts/1/comments", {"body": "hi"}, 422),
        ("/posts/x/comments", {"author_id": 1, "body": "hi"}, 422),
    ],
)
async def test_add_comment_refuses_bad_input(
    app: FastAPI, client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int
) -> None:
    db: Database = app.state.db
    counts = await db.table_counts()
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    assert await db.table_counts() == counts


async def test_request_failing_mid_transaction_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    db: Database = app.state.db
    counts = await db.table_counts()
    original = queries.insert_comment

    async def insert_then_fail(*args: Any) -> int:
        await original(*args)
        raise RuntimeError("the request fails after its INSERT")

    monkeypatch.setattr(queries, "insert_comment", insert_then_fail)
    with pytest.raises(RuntimeError, match="after its INSERT"):
        await client.post("/posts/1/comments", json={"author_id": 1, "body": "lost"})
    assert await db.table_counts() == counts  # rolled back

    monkeypatch.setattr(queries, "insert_comment", original)
    response = await client.post("/posts/1/comments", json={"author_id": 1, "body": "kept"})
    assert response.status_code == 201  # the write lock was released
    assert (await db.table_counts())["comments"] == counts["comments"] + 1
    assert live_loaders() == []


async def test_readers_never_see_uncommitted_rows(app: FastAPI) -> None:
    db: Database = app.state.db
    before = await db.table_counts()
    seen_inside = {}

    async def insert_then_abort() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO comments (post_id, author_id, body) VALUES (1, 1, 'x')")
            seen_inside.update(await db.table_counts())
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        await insert_then_abort()
    assert seen_inside == before  # the readers' view while the transaction was open
    assert await db.table_counts() == before


async def test_cancelled_transaction_rolls_back_and_releases_the_lock(app: FastAPI) -> None:
    db: Database = app.state.db
    before = await db.table_counts()
    inserted = asyncio.Event()

    async def insert_then_hang() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO comments (post_id, author_id, body) VALUES (1, 1, 'x')")
            inserted.set()
            await asyncio.Event().wait()  # a client that disconnects here cancels the request

    task = asyncio.ensure_future(insert_then_hang())
    await inserted.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.table_counts() == before

    async with db.transaction() as tx:  # not deadlocked: the lock and the writer are free
        await tx.execute("INSERT INTO comments (post_id, author_id, body) VALUES (1, 1, 'y')")
    assert (await db.table_counts())["comments"] == before["comments"] + 1
