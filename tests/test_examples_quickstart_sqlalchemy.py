"""Runs examples/quickstart_sqlalchemy.py (the README's FastAPI + SQLAlchemy quickstart) over
httpx, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aiodataloader.asgi import Loaders
from examples.quickstart_sqlalchemy import (
    Author,
    AuthorLoader,
    Book,
    RequestSession,
    app,
    registry,
)

from .asgi_client import asgi_client
from .examples_support import postgres_database

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'quickstart.sqlite3'}"
    else:
        async with postgres_database("quickstart") as url:
            yield url


@pytest.fixture
async def client(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    async with app.router.lifespan_context(app):
        sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
        async with sessionmaker.begin() as session:
            session.add_all(
                [Author(id=1, name="Ursula K. Le Guin"), Author(id=2, name="Terry Pratchett")]
            )
            await session.flush()
            session.add_all(
                [
                    Book(id=1, author_id=1, title="The Dispossessed"),
                    Book(id=2, author_id=2, title="Small Gods"),
                    Book(id=3, author_id=1, title="The Lathe of Heaven"),
                ]
            )
        async with asgi_client(app) as client:
            yield client


class CountingAuthorLoader(AuthorLoader):
    """The quickstart's loader, recording each batch it is asked for."""

    batches: list[list[int]] = []

    async def batch_load_fn(self, keys: list[int]) -> dict[int, Author]:
        CountingAuthorLoader.batches.append(list(keys))
        return await super().batch_load_fn(keys)


async def counting_author_loader(scope: Loaders) -> CountingAuthorLoader:
    return CountingAuthorLoader(await scope.aget(RequestSession))


async def test_author_with_books(client: httpx.AsyncClient) -> None:
    response = await client.get("/authors/1")
    assert response.status_code == 200
    assert response.json() == {
        "name": "Ursula K. Le Guin",
        "books": ["The Dispossessed", "The Lathe of Heaven"],
    }


async def test_author_without_books_loads_an_empty_list(client: httpx.AsyncClient) -> None:
    """default_factory=list: a key the batch's mapping leaves out loads [], not None."""
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with sessionmaker.begin() as session:
        session.add(Author(id=3, name="Anonymous"))
    response = await client.get("/authors/3")
    assert response.status_code == 200
    assert response.json() == {"name": "Anonymous", "books": []}


async def test_unknown_author_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/authors/99")
    assert response.status_code == 404
    assert response.json() == {"detail": "author 99 not found"}
    assert (await client.get("/authors/x")).status_code == 422
    for too_large in (2**31, 2**63):  # over PostgreSQL's INTEGER, over SQLite's
        response = await client.get(f"/authors/{too_large}")
        assert response.status_code == 422
        assert "less than or equal to 2147483647" in response.text


async def test_books_load_their_authors_in_one_batch(client: httpx.AsyncClient) -> None:
    CountingAuthorLoader.batches.clear()
    with registry.override(AuthorLoader, counting_author_loader):
        response = await client.get("/books")
    assert response.json() == [
        {"title": "The Dispossessed", "author": "Ursula K. Le Guin"},
        {"title": "Small Gods", "author": "Terry Pratchett"},
        {"title": "The Lathe of Heaven", "author": "Ursula K. Le Guin"},
    ]
    assert CountingAuthorLoader.batches == [[1, 2]]  # one query, each author once


async def test_concurrent_requests_each_share_one_session(client: httpx.AsyncClient) -> None:
    """50 requests at once, each running two loaders' batches concurrently on its session."""
    responses = await asyncio.gather(*(client.get(f"/authors/{1 + i % 2}") for i in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    engine = app.state.sessionmaker.kw["bind"]
    assert engine.pool.checkedout() == 0
