"""Runs examples/blog in-process over httpx, on real (smaller) SQLite and PostgreSQL databases.

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
from sqlalchemy import QueuePool, func, select

from aiodataloader.asgi import Loaders
from demo.report import AUTHOR_QUERY, POSTS_QUERY
from examples.blog import queries
from examples.blog.app import QUERY_COUNT_HEADER, create_app
from examples.blog.db import Database, SeedSize, SharedSession, count_queries
from examples.blog.loaders import AuthorLoader, CommentsOfPostLoader, SessionLoader, save
from examples.blog.models import Author, Comment

from .examples_support import needs_blog_dependencies

pytestmark = [pytest.mark.anyio, needs_blog_dependencies]

SMALL = SeedSize(authors=40, posts=300, comments=3_000)


@pytest.fixture
async def app(blog_database_url: str | None) -> AsyncIterator[FastAPI]:
    app = create_app(blog_database_url, seed_size=SMALL)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://blog") as client:
        yield client


def database(app: FastAPI) -> Database:
    db: Database = app.state.db
    return db


def checked_out(app: FastAPI) -> int:
    """Connections of the app's pool in use right now."""
    pool = database(app).engine.pool
    assert isinstance(pool, QueuePool)  # the async engines' default, SQLite files included
    return pool.checkedout()


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


def live_loaders() -> list[SessionLoader[Any]]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, SessionLoader)]


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
    query = (
        "{ posts(limit: 10) { author { posts(limit: 5) { comments(limit: 5) { author { name } } } }"
        " } }"
    )
    data, loader_queries = await graphql(client, "/graphql", query)
    naive_data, naive_queries = await graphql(client, "/naive/graphql", query)

    assert data == naive_data
    # posts, their authors, the authors' posts, those posts' comments, the comments' authors
    assert loader_queries == 5
    assert naive_queries > 100


@pytest.mark.parametrize(
    ("document", "message"),
    [
        # Author -> posts -> author -> posts ...: the work multiplies at every level.
        (
            "{ posts(limit: 100) { " + "author { posts { " * 5 + "id" + " } }" * 5 + " } }",
            "'anonymous' exceeds maximum operation depth of 5",
        ),
        (
            "{ posts(limit: 100) { " + "author { posts { " * 25 + "id" + " } }" * 25 + " } }",
            "'anonymous' exceeds maximum operation depth of 5",
        ),
        (
            "{ " + " ".join(f"a{i}: posts(limit: 100) {{ id }}" for i in range(1_000)) + " }",
            "Document contains more than 1000 tokens",
        ),
        (
            "{ " + " ".join(f"a{i}: posts(limit: 1) {{ id }}" for i in range(11)) + " }",
            "11 aliases found. Allowed: 10",
        ),
        # Five levels, no alias, yet millions of fields; through a fragment or a variable too.
        (
            "{ posts(limit: 100) { comments { author { posts { comments { id } } } } } }",
            "the query would resolve about 12,760,101 fields, more than the 20,000 allowed",
        ),
        (
            "{ posts(limit: 100) { ...F } } "
            "fragment F on Post { comments { author { posts { comments { id } } } } }",
            "more than the 20,000 allowed",
        ),
        (
            "query($n: Int!) { posts { comments(limit: $n) { author { posts { id } } } } }",
            "more than the 20,000 allowed",
        ),
        ("{ posts(limit: 101) { id } }", "limit must be between 1 and 100, got 101"),
        ("{ posts(limit: 1) { comments(limit: 1000) { id } } }", "limit must be between 1 and 100"),
    ],
    ids=[
        "5-pairs",
        "25-pairs",
        "1000-aliases",
        "11-aliases",
        "5-levels-of-lists",
        "via-fragment",
        "via-variable",
        "top-limit",
        "nested-limit",
    ],
)
async def test_hostile_graphql_is_refused(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, document: str, message: str
) -> None:
    response = await client.post("/graphql", json={"query": document, "variables": {"n": 1}})
    body = response.json()
    assert body["data"] is None
    assert message in body["errors"][0]["message"]
    logged = [r for r in caplog.records if r.name.startswith("strawberry")]
    if "limit must be" in message:  # raised while resolving: logged
        assert logged
    else:  # refused before it runs, and not logged (an attacker could flood the logs)
        assert response.headers[QUERY_COUNT_HEADER] == "0"
        assert logged == []


async def test_the_largest_allowed_queries_run(client: httpx.AsyncClient) -> None:
    data, queries = await graphql(client, "/graphql", POSTS_QUERY, limit=100)
    assert len(data["posts"]) == 100
    assert queries == 5


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
        "{ author(id: 9223372036854775808) { name } }",  # not a GraphQL Int (32 bits)
    ):
        response = await client.post("/graphql", json={"query": document})
        body = response.json()
        assert body["errors"], document
        assert body.get("data") is None, document
    missing = await client.post("/graphql", json={"query": "{ author(id: 100000) { name } }"})
    assert missing.json() == {"data": {"author": None}}

    assert other_tasks() <= tasks_before
    assert live_loaders() == []
    assert checked_out(app) == 0
    assert (await get(client, "/posts", limit=2))[1] == 5


TOO_LARGE = "Input should be less than or equal to 2147483647"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        # Ids the database cannot hold: refused before they reach the driver.
        ("GET", "/authors/9223372036854775808", None, 422, TOO_LARGE),
        ("GET", "/authors/2147483648", None, 422, TOO_LARGE),  # over PostgreSQL's INTEGER
        ("GET", "/naive/authors/99999999999999999999999", None, 422, TOO_LARGE),
        (
            "POST",
            "/posts/9223372036854775808/comments",
            '{"author_id": 1, "body": "x"}',
            422,
            TOO_LARGE,
        ),
        (
            "POST",
            "/posts/1/comments",
            '{"author_id": 9223372036854775808, "body": "x"}',
            422,
            TOO_LARGE,
        ),
        # Values whose echo in a 422 cannot be rendered as JSON.
        (
            "POST",
            "/posts/1/comments",
            '{"author_id": 1e400, "body": "x"}',
            422,
            "Input should be a valid integer",
        ),
        (
            "POST",
            "/posts/1/comments",
            '{"author_id": "\\ud800", "body": "x"}',
            422,
            "Input should be a valid integer",
        ),
        (
            "POST",
            "/posts/1/comments",
            '{"author_id": 1, "body": "\\ud800"}',
            422,
            "unable to parse raw data as a unicode string",
        ),
        (
            "POST",
            "/posts/1/comments",
            '{"author_id": 1, "body": "x", "\\ud800": 1}',
            422,
            "unable to parse raw data as a unicode string",
        ),
        # A JSON document that is not a GraphQL request.
        ("POST", "/graphql", '"{ posts { id } }"', 400, "the request body must be a JSON object"),
        ("POST", "/graphql", "[1, 2]", 400, "got a JSON list"),
    ],
)
async def test_hostile_input_gets_a_clear_4xx(
    app: FastAPI,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: str | None,
    status: int,
    message: str,
) -> None:
    counts = await database(app).table_counts()
    headers = {"content-type": "application/json"}
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.text
    assert await database(app).table_counts() == counts
    assert checked_out(app) == 0


async def test_body_over_the_limit_is_413_without_reading_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    chunks_read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(1_000):  # 64 MB, if it were all read
            chunks_read += 1
            yield b"x" * 65_536

    chunked = await client.post(
        "/graphql", content=body(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert chunks_read < 10  # refused at the limit, not after the whole body

    declared = await client.post(
        "/posts/1/comments",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == 413
    assert "Content Too Large" in declared.text
    # Just under the limit is read as usual.
    small = await client.post("/graphql", json={"query": "{ posts(limit: 1) { id } }"})
    assert small.status_code == 200


@pytest.mark.parametrize("path", ["/posts", "/naive/posts"])
async def test_request_cancelled_mid_way_leaves_database_usable(
    app: FastAPI, client: httpx.AsyncClient, path: str
) -> None:
    counts = await database(app).table_counts()
    tasks_before = other_tasks()

    request = asyncio.ensure_future(client.get(path, params={"limit": 100}))
    await asyncio.sleep(0.005)  # a few queries in
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request

    for _ in range(500):  # let the teardown and the driver finish the abandoned query
        if checked_out(app) == 0 and not live_loaders():
            break
        await asyncio.sleep(0.01)
    assert checked_out(app) == 0
    assert other_tasks() <= tasks_before
    assert live_loaders() == []
    assert await database(app).table_counts() == counts
    posts, queries = await get(client, path, limit=3)
    assert len(posts) == 3
    assert queries >= 4


async def test_lifespan_seeds_deterministically_and_disposes_the_engine() -> None:
    size = SeedSize(authors=10, posts=50, comments=200)
    snapshots = []
    for _ in range(2):
        app = create_app(seed_size=size)
        async with app.router.lifespan_context(app):
            db = database(app)
            counts = await db.table_counts()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                snapshots.append((await get(client, "/posts", limit=50))[0])
        assert checked_out(app) == 0
    assert counts["authors"] == 10
    assert counts["posts"] == 50
    assert counts["comments"] == 200
    assert counts["tags"] > 0
    assert counts["post_tags"] >= 50
    assert snapshots[0] == snapshots[1]


async def test_default_database_size() -> None:
    app = create_app()
    async with app.router.lifespan_context(app):
        counts = await database(app).table_counts()
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


async def test_add_comment_reads_its_own_write_through_the_loaders(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    [before], _ = await get(client, "/posts", limit=1)

    response = await client.post(
        f"/posts/{SMALL.posts}/comments", json={"author_id": 3, "body": "Batched, finally."}
    )
    assert response.status_code == 201, response.text
    post = response.json()
    # The endpoint loaded the post's comments before its INSERT, and answers with what its
    # loaders read after it: the new comment is there, on top of the old ones.
    assert post["comments"][:-1] == before["comments"]
    created = post["comments"][-1]
    assert created["body"] == "Batched, finally."
    assert created["author"]["id"] == 3
    # post; author check; comments before; INSERT; then the read-back: author, tags,
    # comments, comment authors (the comment authors' batch may join the post author's one).
    assert 7 <= int(response.headers[QUERY_COUNT_HEADER]) <= 9

    [after], _ = await get(client, "/posts", limit=1)
    assert after == post  # committed
    [naive_post], _ = await get(client, "/naive/posts", limit=1)
    assert naive_post == post
    assert checked_out(app) == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "detail"),
    [
        ("/posts/100000/comments", {"author_id": 1, "body": "hi"}, 404, "post 100000 not found"),
        ("/posts/1/comments", {"author_id": 100000, "body": "hi"}, 422, "author 100000 does"),
        ("/posts/1/comments", {"author_id": 1, "body": ""}, 422, "at least 1 character"),
        ("/posts/1/comments", {"author_id": 1, "body": "x" * 2001}, 422, "at most 2000"),
        ("/posts/1/comments", {"body": "hi"}, 422, "Field required"),
        ("/posts/1/comments", {"author_id": "1", "body": "hi"}, 422, "valid integer"),
        ("/posts/x/comments", {"author_id": 1, "body": "hi"}, 422, "valid integer"),
        ("/posts/0/comments", {"author_id": 1, "body": "hi"}, 422, "greater than or equal to 1"),
    ],
)
async def test_add_comment_refuses_bad_input(
    app: FastAPI,
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    counts = await database(app).table_counts()
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    assert detail in response.text
    assert await database(app).table_counts() == counts


async def test_request_failing_after_its_insert_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = await database(app).table_counts()
    original = queries.add

    async def insert_then_fail(*args: Any) -> None:
        await original(*args)
        raise RuntimeError("the request fails after its INSERT")

    monkeypatch.setattr(queries, "add", insert_then_fail)
    with pytest.raises(RuntimeError, match="after its INSERT"):
        await client.post("/posts/1/comments", json={"author_id": 1, "body": "lost"})
    assert await database(app).table_counts() == counts  # never committed: rolled back
    assert checked_out(app) == 0

    monkeypatch.setattr(queries, "add", original)
    response = await client.post("/posts/1/comments", json={"author_id": 1, "body": "kept"})
    assert response.status_code == 201
    assert (await database(app).table_counts())["comments"] == counts["comments"] + 1
    assert live_loaders() == []


async def test_other_sessions_never_see_uncommitted_rows(app: FastAPI) -> None:
    db = database(app)
    before = await db.table_counts()
    async with db.sessionmaker() as writer:
        writer.add(Comment(post_id=1, author_id=1, body="x"))
        await writer.flush()
        seen_by_writer = await writer.scalar(select(func.count()).select_from(Comment))
        seen_by_others = await db.table_counts()
        await writer.rollback()
    assert seen_by_writer == before["comments"] + 1
    assert seen_by_others == before
    assert await db.table_counts() == before


async def test_save_primes_what_it_wrote_and_forgets_what_was_cached(app: FastAPI) -> None:
    """``save()`` in a scope of the test's own: the loaders see the writes before any commit,
    an author written is served from the cache, and nothing is committed."""
    db = database(app)
    counts = await db.table_counts()

    async def session_of_this_test(scope: Loaders) -> AsyncIterator[SharedSession]:
        async with db.sessionmaker() as session:  # a scope with no request: no app to ask
            yield SharedSession(session)

    with app.state.registry.override(SharedSession, session_of_this_test):
        async with Loaders(registry=app.state.registry) as scope:
            comments = await scope.aget(CommentsOfPostLoader)
            authors = await scope.aget(AuthorLoader)
            before = await comments.load(1)
            assert await authors.load(10**6) is None

            author = Author(id=10**6, name="Barbara Liskov", email="liskov@example.com")
            with count_queries() as counter:
                comment = Comment(post_id=1, author_id=author.id, body="Substitutable")
                await save(scope, author, comment)
                assert counter.count == 2  # the two INSERTs
                assert await authors.load(author.id) is author  # primed: no query
                assert counter.count == 2
                after = await comments.load(1)  # forgotten: read again, write included
                assert counter.count == 3
            assert after[:-1] == before
            assert (after[-1].author_id, after[-1].body) == (author.id, "Substitutable")

    assert await db.table_counts() == counts  # the session closed uncommitted: rolled back
