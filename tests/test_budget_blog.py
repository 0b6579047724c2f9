"""The N+1 budget on the blog example (in-process over httpx, SQLite): the naive endpoints go
over it, the loader endpoints stay within it, and a budget too tight for the loaders names the
loader and the sizes of its batches."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aiodataloader import DataLoader
from aiodataloader.budget import LoaderBudget, LoaderBudgetExceeded, loader_budget
from examples.blog.app import QUERY_COUNT_HEADER, create_app
from examples.blog.db import SeedSize
from examples.blog.loaders import AuthorLoader, CommentsOfPostLoader, TagsOfPostLoader

from .examples_support import needs_blog_dependencies

pytestmark = [pytest.mark.anyio, needs_blog_dependencies]

SMALL = SeedSize(authors=40, posts=300, comments=3_000)
# Every SQL statement SQLAlchemy sends with parameters (each of the blog's does).
SQL = "sqlalchemy.engine.default.DefaultDialect.do_execute"
POSTS_QUERY = """
query LatestPosts($limit: Int!) {
  posts(limit: $limit) { id title author { name } tags comments { body author { name } } }
}
"""


# region budget
def posts_budget(max_sql: int = 5) -> LoaderBudget:
    """What GET /posts?limit=20 should cost: one batch per loader per level (the authors of
    the posts, then the authors of their comments), and one statement per batch plus the
    posts themselves."""
    limits: dict[type[DataLoader[Any, Any]] | str, int] = {
        AuthorLoader: 2,
        CommentsOfPostLoader: 1,
        TagsOfPostLoader: 1,
    }
    return loader_budget(max_batches=limits, max_calls={SQL: max_sql})


# endregion


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(seed_size=SMALL)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://blog") as client:
            yield client


async def get_posts(client: httpx.AsyncClient, path: str) -> int:
    """GET ``path``; the statements the server counted (``X-Query-Count``)."""
    response = await client.get(path, params={"limit": 20})
    assert response.status_code == 200, response.text
    assert len(response.json()) == 20
    return int(response.headers[QUERY_COUNT_HEADER])


async def post_graphql(client: httpx.AsyncClient, path: str) -> int:
    response = await client.post(path, json={"query": POSTS_QUERY, "variables": {"limit": 20}})
    assert response.status_code == 200, response.text
    assert "errors" not in response.json()
    return int(response.headers[QUERY_COUNT_HEADER])


# region budget-test
async def test_the_loader_endpoint_stays_within_the_budget(client: httpx.AsyncClient) -> None:
    with posts_budget() as budget:
        statements = await get_posts(client, "/posts")
    batches = budget.batches()
    assert [len(sizes) for sizes in batches["AuthorLoader"]] == [2]
    assert batches["CommentsOfPostLoader"] == batches["TagsOfPostLoader"] == [[20]]
    # The budget counts exactly the statements the blog counts.
    assert budget.calls() == {SQL: statements} == {SQL: 5}


# endregion


async def test_the_naive_endpoint_goes_over_the_budget(client: httpx.AsyncClient) -> None:
    budget = posts_budget()
    with pytest.raises(LoaderBudgetExceeded) as raised:
        async with budget:
            await get_posts(client, "/naive/posts")
    statements = budget.calls()[SQL]
    assert statements > 200
    assert str(raised.value) == (
        f"loader budget exceeded:\n  {SQL}: {statements} calls; at most 5 allowed\n"
        "batches seen:\n  (none)"
    )


async def test_graphql_stays_within_the_budget_and_its_naive_twin_does_not(
    client: httpx.AsyncClient,
) -> None:
    with posts_budget() as budget:
        assert await post_graphql(client, "/graphql") == 5
    assert budget.calls() == {SQL: 5}

    naive = posts_budget()
    with pytest.raises(LoaderBudgetExceeded, match=rf"\n  {re.escape(SQL)}: \d+ calls; at most 5"):
        async with naive:
            await post_graphql(client, "/naive/graphql")


async def test_a_tight_budget_names_the_loader_and_its_batch_sizes(
    client: httpx.AsyncClient,
) -> None:
    budget = loader_budget(max_batches=1)
    with pytest.raises(LoaderBudgetExceeded) as raised:
        async with budget:
            await get_posts(client, "/posts")
    ((first, second),) = budget.batches()["AuthorLoader"]
    assert str(raised.value).startswith(
        "loader budget exceeded:\n"
        f"  AuthorLoader: 2 batches (sizes {first}, {second}); at most 1 allowed\n"
        "batches seen:\n"
        f"  AuthorLoader: sizes {first}, {second}\n"
    )
