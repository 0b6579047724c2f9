"""The README's short code blocks, each a region of this file (``# region NAME``) that
tests/test_readme.py compares with the README byte for byte, run here in context.

The regions are written as a reader sees them, untyped where the README is; the context around
them (a fake database, a strawberry ``User`` type) is what the README leaves to the reader.
"""

import asyncio
import warnings
from typing import Any, TypedDict

import httpx
import pytest
import strawberry
from starlette.exceptions import StarletteDeprecationWarning

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderRegistry

with warnings.catch_warnings():
    # Starlette >= 1.2 prefers httpx2 for its TestClient; plain httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PEOPLE: dict[int, dict[str, Any]] = {1: {"id": 1, "name": "Alice"}, 2: {"id": 2, "name": "Bob"}}
batches: list[list[int]] = []


async def fetch_users(ids: list[int]) -> list[Any]:
    batches.append(list(ids))
    return [PEOPLE.get(i) for i in ids]


class FakeUserLoader(DataLoader[int, Any]):
    async def batch_load_fn(self, keys: list[int]) -> list[Any]:
        return [{"id": key, "name": "fake"} for key in keys]


def test_typed_loader() -> None:
    # region typed-loader
    class User(TypedDict):
        id: int
        name: str


    class UserLoader(DataLoader[int, User | None]):
        async def batch_load_fn(self, keys: list[int]) -> list[User | None]:
            return await fetch_users(keys)  # async def fetch_users(ids: list[int]) -> list[User | None]


    users = UserLoader()  # or DataLoader(fetch_users): DataLoader[int, User | None] is inferred
    # endregion

    async def main() -> list[User | None]:
        return await users.load_many([1, 3])

    assert asyncio.run(main()) == [PEOPLE[1], None]


@pytest.mark.anyio
async def test_batch_schedule_fn_widens_the_window() -> None:
    class UserLoader(DataLoader[int, Any]):
        async def batch_load_fn(self, keys: list[int]) -> list[Any]:
            return await fetch_users(keys)

    batches.clear()
    # region batch-schedule-fn
    loop = asyncio.get_running_loop()
    users = UserLoader(batch_schedule_fn=lambda dispatch: loop.call_later(0.002, dispatch))
    # endregion

    first = users.load(1)
    for _ in range(5):  # well past the default window of two loop iterations
        await asyncio.sleep(0)
    assert list(await asyncio.gather(first, users.load(2))) == [PEOPLE[1], PEOPLE[2]]
    assert batches == [[1, 2]]


def starlette_app() -> Any:
    class Database:
        async def posts_by_author(self, ids: list[int]) -> list[list[dict[str, Any]]]:
            return [[{"title": f"post of {i}"}] for i in ids]

    # region starlette
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from aiodataloader import DataLoader
    from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, loaders_from


    class UserLoader(DataLoader[int, dict]):  # needs no arguments: no registration
        async def batch_load_fn(self, keys):
            return await fetch_users(keys)


    class PostLoader(DataLoader[int, list[dict]]):  # needs the database: register a factory
        def __init__(self, db):
            super().__init__()
            self.db = db

        async def batch_load_fn(self, keys):
            return await self.db.posts_by_author(keys)


    registry = LoaderRegistry()
    # A factory receives the request's Loaders container; .connection is the request.
    registry.register(PostLoader, lambda scope: PostLoader(scope.connection.app.state.db))


    async def user(request):
        loaders = loaders_from(request)
        user_id = request.path_params["user_id"]
        user = await loaders.get(UserLoader).load(user_id)  # typed: UserLoader
        posts = await loaders.get(PostLoader).load(user_id)
        return JSONResponse({**user, "posts": posts})


    app = Starlette(
        routes=[Route("/users/{user_id:int}", user)],
        middleware=[Middleware(LoaderMiddleware, registry=registry)],
    )
    # endregion
    app.state.db = Database()
    return app, registry, UserLoader


@pytest.mark.anyio
async def test_starlette() -> None:
    app, _, _ = starlette_app()
    async with client_for(app) as client:
        response = await client.get("/users/2")
    assert response.json() == {"id": 2, "name": "Bob", "posts": [{"title": "post of 2"}]}


def fastapi_app(registry: LoaderRegistry, UserLoader: Any) -> Any:
    # region fastapi
    from typing import Annotated

    from fastapi import Depends, FastAPI

    from aiodataloader.asgi import LoaderMiddleware
    from aiodataloader.fastapi import get_loader

    app = FastAPI()
    app.add_middleware(LoaderMiddleware, registry=registry)

    Users = Annotated[UserLoader, Depends(get_loader(UserLoader))]


    @app.get("/users/{user_id}")
    async def read_user(user_id: int, users: Users):
        return await users.load(user_id)
    # endregion
    return app


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.anyio
async def test_fastapi_and_its_override() -> None:
    from aiodataloader.fastapi import get_loader

    _, registry, UserLoader = starlette_app()
    app = fastapi_app(registry, UserLoader)
    async with client_for(app) as client:
        assert (await client.get("/users/1")).json() == PEOPLE[1]
        # region override-fastapi
        app.dependency_overrides[get_loader(UserLoader)] = lambda: FakeUserLoader()
        # endregion
        assert (await client.get("/users/1")).json() == {"id": 1, "name": "fake"}


@pytest.mark.anyio
async def test_override_on_the_registry() -> None:
    app, registry, UserLoader = starlette_app()

    class FakeUserLoader(UserLoader):  # type: ignore[misc,valid-type]  # the registry checks the class
        async def batch_load_fn(self, keys: list[int]) -> list[Any]:
            return [{"id": key, "name": "fake"} for key in keys]

    # region override-registry
    registry.register(UserLoader, lambda scope: FakeUserLoader())
    # endregion
    async with client_for(app) as client:
        assert (await client.get("/users/1")).json()["name"] == "fake"


def test_websockets() -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import WebSocketRoute

    from aiodataloader.asgi import LoaderMiddleware

    class UserLoader(DataLoader[int, Any]):
        async def batch_load_fn(self, keys: list[int]) -> list[Any]:
            return await fetch_users(keys)

    # region websockets
    from aiodataloader.asgi import Loaders, loaders_from


    async def feed(websocket):
        await websocket.accept()
        loaders = loaders_from(websocket)
        async for message in websocket.iter_json():
            loaders.clear_all()  # fresh data for every message
            await websocket.send_json(await loaders.get(UserLoader).load(message["id"]))


    async def feed_with_message_scope(websocket):
        await websocket.accept()
        registry = loaders_from(websocket).registry
        async for message in websocket.iter_json():
            async with Loaders(websocket, registry) as loaders:  # torn down after each message
                await websocket.send_json(await loaders.get(UserLoader).load(message["id"]))
    # endregion
    routes = [WebSocketRoute("/feed", feed), WebSocketRoute("/scoped", feed_with_message_scope)]
    app = Starlette(routes=routes, middleware=[Middleware(LoaderMiddleware)])
    with TestClient(app) as client:
        for path in ["/feed", "/scoped"]:
            with client.websocket_connect(path) as websocket:
                for user_id in [1, 2]:
                    websocket.send_json({"id": user_id})
                    assert websocket.receive_json() == PEOPLE[user_id]


# The GraphQL block at module level: strawberry resolves the "User" annotation by name here.
@strawberry.type
class User:
    id: int
    name: str


class UserLoader(DataLoader[int, User]):
    async def batch_load_fn(self, keys: list[int]) -> list[User]:
        return [User(**PEOPLE[key]) for key in await fetch_users_ids(keys)]


async def fetch_users_ids(keys: list[int]) -> list[int]:
    batches.append(list(keys))
    return keys


class SchemaBuiltLater:
    """The block hands ``schema`` to GraphQL before the schema (which needs its Post type)
    can exist; this stands in for it until the test builds it."""

    schema: strawberry.Schema

    def __getattr__(self, name: str) -> Any:
        return getattr(self.schema, name)


schema: Any = SchemaBuiltLater()
registry = LoaderRegistry()

# region graphql
import strawberry
from strawberry.asgi import GraphQL

from aiodataloader.asgi import LoaderMiddleware, current_loaders


@strawberry.type
class Post:
    author_id: strawberry.Private[int]

    @strawberry.field
    async def author(self) -> "User":
        return await current_loaders().get(UserLoader).load(self.author_id)


graphql_app = LoaderMiddleware(GraphQL(schema), registry=registry)
# endregion


@strawberry.type
class Query:
    @strawberry.field
    def posts(self) -> list[Post]:
        return [Post(author_id=i) for i in [1, 2, 1]]


@pytest.mark.anyio
async def test_graphql_resolvers_share_one_loader() -> None:
    schema.schema = strawberry.Schema(query=Query)
    batches.clear()
    async with client_for(graphql_app) as client:
        response = await client.post("/", json={"query": "{ posts { author { name } } }"})
    names = [post["author"]["name"] for post in response.json()["data"]["posts"]]
    assert names == ["Alice", "Bob", "Alice"]
    assert batches == [[1, 2]]
