"""GraphQL resolvers reach the request's loaders through current_loaders() (Strawberry ASGI)."""

from __future__ import annotations

import pytest
import strawberry
from strawberry.asgi import GraphQL

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, current_loaders

from .asgi_client import asgi_client

pytestmark = pytest.mark.anyio

batches: list[list[int]] = []


class AuthorNames(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        batches.append(keys)
        return [f"author{k}" for k in keys]


@strawberry.type
class Post:
    id: int
    author_id: strawberry.Private[int]

    @strawberry.field
    async def author(self) -> str:
        return await current_loaders().get(AuthorNames).load(self.author_id)


@strawberry.type
class Query:
    @strawberry.field
    def posts(self) -> list[Post]:
        return [Post(id=i, author_id=i % 3) for i in range(9)]


app = LoaderMiddleware(GraphQL(strawberry.Schema(query=Query)))


async def test_resolvers_share_one_loader_per_request() -> None:
    batches.clear()
    async with asgi_client(app) as client:
        for _ in range(2):
            response = await client.post("/graphql", json={"query": "{ posts { id author } }"})
            posts = response.json()["data"]["posts"]
            assert [p["author"] for p in posts] == [f"author{i % 3}" for i in range(9)]
    assert batches == [[0, 1, 2], [0, 1, 2]]  # one batch per request, none shared between them
