"""Runs examples/starlette_minimal.py (plain Starlette, no FastAPI) over httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from examples.starlette_minimal import UserLoader, app

from .asgi_client import asgi_client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


async def test_users_load_in_one_batch(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[list[int]] = []
    original = UserLoader.batch_load_fn

    async def recording(self: UserLoader, keys: list[int]) -> list[str | None]:
        batches.append(list(keys))
        return await original(self, keys)

    monkeypatch.setattr(UserLoader, "batch_load_fn", recording)

    response = await client.get("/users", params={"ids": "3,1,7,3"})
    assert response.status_code == 200
    assert response.json() == [
        {"id": 3, "name": "Barbara Liskov"},
        {"id": 1, "name": "Ada Lovelace"},
        {"id": 7, "name": None},
        {"id": 3, "name": "Barbara Liskov"},
    ]
    assert batches == [[3, 1, 7]]


async def test_bad_ids_are_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/users", params={"ids": "1,x"})
    assert response.status_code == 422


async def test_no_ids_no_batch(client: httpx.AsyncClient) -> None:
    response = await client.get("/users")
    assert response.json() == []
