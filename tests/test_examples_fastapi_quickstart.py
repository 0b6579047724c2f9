"""Runs examples/fastapi_quickstart.py (the README quickstart) over httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from aiodataloader.fastapi import get_loader
from examples.fastapi_quickstart import UserLoader, app

from .asgi_client import asgi_client

pytestmark = pytest.mark.anyio


class CountingUserLoader(UserLoader):
    """The quickstart's loader, recording each batch it is asked for."""

    def __init__(self, batches: list[list[int]]) -> None:
        super().__init__()
        self.batches = batches

    async def batch_load_fn(self, keys: list[int]) -> dict[int, str]:
        self.batches.append(list(keys))
        return await super().batch_load_fn(keys)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        yield client


@pytest.fixture
def batches() -> Iterator[list[list[int]]]:
    """Every batch of every request, through the documented override of get_loader()."""
    batches: list[list[int]] = []
    app.dependency_overrides[get_loader(UserLoader)] = lambda: CountingUserLoader(batches)
    yield batches
    app.dependency_overrides.clear()


async def test_read_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/2")
    assert response.status_code == 200
    assert response.json() == {"id": 2, "name": "Grace Hopper"}


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/99")
    assert response.status_code == 404
    assert response.json() == {"detail": "user 99 not found"}


async def test_bad_id_is_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/users/abc")).status_code == 422
    assert (await client.get("/users", params={"ids": "x"})).status_code == 422


async def test_many_loads_one_batch_per_request(
    client: httpx.AsyncClient, batches: list[list[int]]
) -> None:
    response = await client.get("/users", params={"ids": [1, 2, 3, 99, 1]})
    assert response.json() == [
        {"id": 1, "name": "Ada Lovelace"},
        {"id": 2, "name": "Grace Hopper"},
        {"id": 3, "name": "Barbara Liskov"},
        {"id": 99, "name": None},
        {"id": 1, "name": "Ada Lovelace"},
    ]
    assert batches == [[1, 2, 3, 99]]  # one batch, each key once

    await client.get("/users", params={"ids": [1, 2]})
    assert batches[1:] == [[1, 2]]  # a new request gets a new loader: nothing cached across
