"""LoaderRegistry(value_caches=...): the registry gives a shared value cache to every loader
it builds (per class, and per request where the choice depends on the request)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, Loaders, loaders_from
from aiodataloader.value_cache import ValueCache

from .asgi_client import asgi_client
from .test_value_cache_flow import DictValueCache

pytestmark = pytest.mark.anyio

CALLS: list[list[int]] = []


class NameLoader(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        CALLS.append(keys)
        return [f"name {key}" for key in keys]


class OwnCacheLoader(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        CALLS.append(keys)
        return [f"own {key}" for key in keys]


def app_with(registry: LoaderRegistry) -> Starlette:
    async def names(request: Request) -> JSONResponse:
        loaders = loaders_from(request)
        return JSONResponse(await loaders.get(NameLoader).load_many([1, 2]))

    async def own(request: Request) -> JSONResponse:
        return JSONResponse(await loaders_from(request).get(OwnCacheLoader).load(1))

    app = Starlette(routes=[Route("/names", names), Route("/own", own)])
    app.add_middleware(LoaderMiddleware, registry=registry)
    return app


@pytest.fixture(autouse=True)
def no_calls() -> None:
    CALLS.clear()


async def test_every_loader_built_gets_its_value_cache() -> None:
    caches: dict[type[Any], ValueCache[Any]] = {NameLoader: DictValueCache()}
    registry = LoaderRegistry(value_caches=lambda cls, scope: caches.get(cls))
    async with asgi_client(app_with(registry)) as client:
        for _ in range(3):
            assert (await client.get("/names")).json() == ["name 1", "name 2"]
    assert CALLS == [[1, 2]]  # the other requests were served by the shared cache


async def test_a_loader_with_a_value_cache_of_its_own_keeps_it() -> None:
    own = DictValueCache({1: "from its own cache"})
    registry = LoaderRegistry(value_caches=lambda cls, scope: DictValueCache())
    registry.register(OwnCacheLoader, lambda: OwnCacheLoader(value_cache=own))
    async with asgi_client(app_with(registry)) as client:
        assert (await client.get("/own")).json() == "from its own cache"
    assert CALLS == []


async def test_the_choice_can_depend_on_the_request() -> None:
    tenants = {"a": DictValueCache(), "b": DictValueCache()}

    def per_tenant(cls: type[DataLoader[Any, Any]], scope: Loaders) -> ValueCache[Any]:
        return tenants[scope.connection.headers["x-tenant"]]

    async with asgi_client(app_with(LoaderRegistry(value_caches=per_tenant))) as client:
        for tenant in ("a", "b", "a", "b"):
            await client.get("/names", headers={"x-tenant": tenant})
    assert CALLS == [[1, 2], [1, 2]]  # once per tenant
    assert tenants["a"].values == tenants["b"].values == {1: "name 1", 2: "name 2"}


def test_value_caches_must_be_callable() -> None:
    with pytest.raises(TypeError) as caught:
        LoaderRegistry(value_caches={})  # type: ignore[arg-type]
    assert str(caught.value) == (
        "LoaderRegistry: value_caches must be callable as value_caches(cls, scope) -> "
        "ValueCache | None; got {}"
    )
