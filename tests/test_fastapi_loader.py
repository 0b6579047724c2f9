"""get_loader(cls) in real FastAPI apps over httpx: identity, sharing, overrides, OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, current_loaders
from aiodataloader.fastapi import get_loader
from tests import typing_fastapi
from tests.typing_fastapi import PostLoader, UserLoader

from .asgi_client import asgi_client

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
