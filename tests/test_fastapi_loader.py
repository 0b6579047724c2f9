"""get_loader, get_resource and RequestLoaders in real FastAPI apps: identity, one session per
request shared with the loaders, overrides, OpenAPI, websockets, misuse."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Request, WebSocket
from starlette.exceptions import StarletteDeprecationWarning

from aiodataloader import DataLoader
from aiodataloader.asgi import (
    LoaderMiddleware,
    LoaderRegistry,
    Loaders,
    current_loaders,
    loaders_from,
)
from aiodataloader.fastapi import RequestLoaders, get_loader, get_resource
from tests import typing_fastapi, typing_scope
from tests.typing_fastapi import PostLoader, UserLoader

from .asgi_client import asgi_client

with warnings.catch_warnings():
    # Starlette >= 1.2 prefers httpx2 for its TestClient; plain httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.anyio


class CountingLoader(DataLoader[int, str]):
    batches: list[list[int]] = []  # shared on purpose: the test reads it
    closed = 0

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        CountingLoader.batches.append(keys)
        return [f"v{k}" for k in keys]

    async def aclose(self) -> None:
        CountingLoader.closed += 1


@pytest.fixture(autouse=True)
def reset_counts() -> None:
    CountingLoader.batches, CountingLoader.closed = [], 0


client_for = asgi_client


Counting = Annotated[CountingLoader, Depends(get_loader(CountingLoader))]


# Module level: FastAPI resolves the (string) annotations in the function's globals.
async def first_name(loader: Counting) -> str:
    return await loader.load(1)


async def both(loader: Counting, first: Annotated[str, Depends(first_name)]) -> list[str]:
    return [first, await loader.load(2)]


def test_get_loader_returns_the_same_callable_per_class() -> None:
    assert get_loader(UserLoader) is get_loader(UserLoader)
    assert get_loader(UserLoader) is not get_loader(PostLoader)  # type: ignore[comparison-overlap]
    assert get_loader(UserLoader).__name__ == "get_loader(UserLoader)"


@pytest.mark.parametrize("bad", [int, "UserLoader", UserLoader(), None])
def test_get_loader_rejects_what_is_not_a_dataloader_subclass(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"expected a DataLoader subclass, got "):
        get_loader(bad)


async def test_endpoint_and_sub_dependencies_share_one_loader_per_request() -> None:
    app = FastAPI()
    app.add_middleware(LoaderMiddleware)

    @app.get("/items")
    async def items(
        loader: Counting, pair: Annotated[list[str], Depends(both)], bg: BackgroundTasks
    ) -> dict[str, Any]:
        assert current_loaders().get(CountingLoader) is loader

        async def later() -> None:
            await loader.load(3)  # still open: teardown waits for background tasks

        bg.add_task(later)
        return {"pair": pair, "many": await loader.load_many([1, 2, 4])}

    async with client_for(app) as client:
        for _ in range(3):
            response = await client.get("/items")
            assert response.json() == {"pair": ["v1", "v2"], "many": ["v1", "v2", "v4"]}
    # Sub-dependencies resolve one after another, so three batches, all from one loader
    # (its cache answers 1 and 2 the second time); the background task ran before teardown.
    assert CountingLoader.batches == [[1], [2], [4], [3]] * 3
    assert CountingLoader.closed == 3


async def test_the_dependency_adds_nothing_to_openapi() -> None:
    async with client_for(typing_fastapi.app) as client:
        schema = (await client.get("/openapi.json")).json()
    parameters = schema["paths"]["/users/{user_id}"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["user_id"]
    assert "requestBody" not in schema["paths"]["/users/{user_id}"]["get"]


async def test_the_typing_module_app_answers() -> None:
    async with client_for(typing_fastapi.app) as client:
        response = await client.get("/users/7", headers={"x-prefix": "p"})
    assert response.json() == {"name": "user7", "posts": ["p7"]}


async def test_dependency_overrides_replace_the_loader() -> None:
    class FakeUsers(UserLoader):
        async def batch_load_fn(self, keys: list[int]) -> list[str]:
            return [f"fake{k}" for k in keys]

    app = typing_fastapi.app
    app.dependency_overrides[get_loader(UserLoader)] = lambda: FakeUsers()
    try:
        async with client_for(app) as client:
            response = await client.get("/users/7")
    finally:
        app.dependency_overrides.clear()
    assert response.json() == {"name": "fake7", "posts": ["post7"]}


async def test_without_the_middleware_the_dependency_fails_clearly() -> None:
    app = FastAPI()

    @app.get("/")
    async def endpoint(loader: Counting) -> str:
        return await loader.load(1)

    async with client_for(app) as client:
        with pytest.raises(
            RuntimeError,
            match=r"LoaderMiddleware is not installed\. Install it with `app\.add_middleware",
        ):
            await client.get("/")


# --- resources: one object per request, shared by the endpoint and the loaders' factories ----


class Session:
    opened: list[Session] = []

    def __init__(self) -> None:
        self.closed = False
        Session.opened.append(self)


class BooksLoader(DataLoader[int, str]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"book{k}" for k in keys]


async def open_session() -> AsyncIterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.closed = True


async def books(scope: Loaders) -> BooksLoader:
    return BooksLoader(await scope.aget(Session))


shared_registry = LoaderRegistry()
shared_registry.register(Session, open_session)
shared_registry.register(BooksLoader, books)

SessionDep = Annotated[Session, Depends(get_resource(Session))]
BooksDep = Annotated[BooksLoader, Depends(get_loader(BooksLoader))]

shared_app = FastAPI()
shared_app.add_middleware(LoaderMiddleware, registry=shared_registry)


@shared_app.get("/books/{book_id}")
async def read_book(
    book_id: int, session: SessionDep, books: BooksDep, scope: RequestLoaders
) -> dict[str, Any]:
    return {
        "title": await books.load(book_id),
        "one session": books.session is session is await scope.aget(Session),
        "current": current_loaders() is scope,
    }


@shared_app.websocket("/ws")
async def book_titles(websocket: WebSocket, session: SessionDep, books: BooksDep) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"{await books.load(int(text))} {books.session is session}")


def test_get_resource_returns_the_same_callable_per_class() -> None:
    assert get_resource(Session) is get_resource(Session)
    assert get_resource(Session).__name__ == "get_resource(Session)"
    assert get_resource(BooksLoader) is get_loader(BooksLoader)  # one dependency per class


@pytest.mark.parametrize("bad", ["Session", Session(), None])
def test_get_resource_rejects_what_is_not_a_class(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"expected a class \(a DataLoader subclass or a resource"):
        get_resource(bad)


async def test_the_endpoint_and_the_loaders_share_one_session_per_request() -> None:
    Session.opened = []
    async with client_for(shared_app) as client:
        for book_id in (1, 2):
            response = await client.get(f"/books/{book_id}")
            assert response.json() == {
                "title": f"book{book_id}",
                "one session": True,
                "current": True,
            }
        schema = (await client.get("/openapi.json")).json()
    assert len(Session.opened) == 2
    assert all(session.closed for session in Session.opened)  # closed after each response
    parameters = schema["paths"]["/books/{book_id}"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["book_id"]


def test_resources_and_loaders_on_a_websocket_route() -> None:
    Session.opened = []
    with TestClient(shared_app) as client, client.websocket_connect("/ws") as ws:
        for key in (3, 4):
            ws.send_text(str(key))
            assert ws.receive_text() == f"book{key} True"
    assert len(Session.opened) == 1
    assert Session.opened[0].closed


@pytest.mark.parametrize("maker", [get_loader, get_resource])
def test_depends_on_the_maker_itself_fails_when_the_route_is_declared(maker: Any) -> None:
    app = FastAPI()
    name = maker.__name__
    with pytest.raises(
        TypeError,
        match=rf"{name} makes a dependency: call it with the class, `Depends\({name}\(\w+\)\)`, "
        rf"not `Depends\({name}\)`",
    ):

        @app.get("/")
        async def endpoint(loader: Any = Depends(maker)) -> None:
            raise AssertionError


# --- overrides: registry.override reaches every path; dependency_overrides only FastAPI's ---


class FakeBooks(BooksLoader):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"fake{k}" for k in keys]


async def fake_books(scope: Loaders) -> BooksLoader:
    return FakeBooks(await scope.aget(Session))


@shared_app.get("/everywhere/{book_id}")
async def every_path(book_id: int, request: Request, books: BooksDep) -> list[str]:
    return [
        await books.load(book_id),
        await (await loaders_from(request).aget(BooksLoader)).load(book_id),
        await (await current_loaders().aget(BooksLoader)).load(book_id),
    ]


async def test_registry_override_reaches_every_access_path_and_is_undone() -> None:
    async with client_for(shared_app) as client:
        with shared_registry.override(BooksLoader, fake_books):
            assert (await client.get("/everywhere/5")).json() == ["fake5"] * 3
        assert (await client.get("/everywhere/5")).json() == ["book5"] * 3


async def test_dependency_overrides_reach_only_what_fastapi_injects() -> None:
    shared_app.dependency_overrides[get_loader(BooksLoader)] = lambda: FakeBooks(Session())
    try:
        async with client_for(shared_app) as client:
            response = await client.get("/everywhere/5")
    finally:
        shared_app.dependency_overrides.clear()
    assert response.json() == ["fake5", "book5", "book5"]


async def test_the_scope_typing_module_app_answers_with_every_factory_shape() -> None:
    async with client_for(typing_scope.app) as client:
        response = await client.get("/names/7", headers={"x-user": "ada"})
    assert response.json() == {
        "name": "ada@session:7",
        "shared": True,
        "tenant": "testserver",
        "tags": ["tag7"],
        "built": ["Clock", "Ledger", "Cache"],
    }
