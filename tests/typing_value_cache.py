"""Checked by mypy --strict and pyright strict (not collected by pytest): a loader with a
shared value cache type-checks, and a value cache of the wrong value type does not."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pydantic

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderRegistry, Loaders, ValueCacheChooser
from aiodataloader.redis import RedisCache, RedisValueCache
from aiodataloader.serialization import (
    JsonSerializer,
    MsgspecSerializer,
    PydanticSerializer,
    Serializer,
)
from aiodataloader.value_cache import ValueCache

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value: object, _type: object) -> object:
        return value


@dataclasses.dataclass(frozen=True)
class Author:
    id: int
    name: str


class AuthorModel(pydantic.BaseModel):
    id: int
    name: str


async def fetch_authors(ids: list[int]) -> list[Author | None]:
    return [Author(i, "a") for i in ids]


class AuthorLoader(DataLoader[int, Author | None]):
    async def batch_load_fn(self, keys: list[int]) -> list[Author | None]:
        return await fetch_authors(keys)


class MemoryCache:
    """Any class with the three methods is a ValueCache."""

    def __init__(self) -> None:
        self.values: dict[Hashable, str] = {}

    async def get_many(self, keys: Sequence[Hashable]) -> Mapping[Hashable, str]:
        return {key: self.values[key] for key in keys if key in self.values}

    async def set_many(self, values: Mapping[Hashable, str]) -> None:
        self.values.update(values)

    async def delete_many(self, keys: Sequence[Hashable]) -> None:
        for key in keys:
            self.values.pop(key, None)


async def typed_redis_caches(shared: RedisCache) -> None:
    authors = shared.for_loader(
        "authors", ttl=60, serializer=MsgspecSerializer[Author | None](Author | None)
    )
    assert_type(authors, RedisValueCache[Author | None])
    loader = AuthorLoader(value_cache=authors.with_prefix("tenant-1"))
    assert_type(await loader.load(1), Author | None)
    await loader.invalidate(1)
    await loader.invalidate_many([1, 2])

    by_function = DataLoader(fetch_authors, value_cache=authors)
    assert_type(by_function, DataLoader[int, Author | None])

    models = shared.for_loader("models", ttl=60, serializer=PydanticSerializer(AuthorModel))
    assert_type(models, RedisValueCache[AuthorModel])
    plain = shared.for_loader("plain", ttl=60, serializer=MsgspecSerializer(Author))
    assert_type(plain, RedisValueCache[Author])
    json_values: RedisValueCache[dict[str, int]] = shared.for_loader(
        "json", ttl=60, serializer=JsonSerializer[dict[str, int]]()
    )
    as_protocol: ValueCache[dict[str, int]] = json_values
    serializer: Serializer[Author] = MsgspecSerializer(Author)
    assert_type(serializer.loads(b"{}"), Author)
    del as_protocol


def registry_gives_value_caches(shared: RedisCache) -> LoaderRegistry:
    authors = shared.for_loader(
        "authors", ttl=60, serializer=MsgspecSerializer[Author | None](Author | None)
    )
    caches: dict[type[DataLoader[Any, Any]], RedisValueCache[Any]] = {AuthorLoader: authors}

    def per_tenant(cls: type[DataLoader[Any, Any]], scope: Loaders) -> ValueCache[Any] | None:
        cache = caches.get(cls)
        return None if cache is None else cache.with_prefix(scope.connection.headers["x-tenant"])

    chooser: ValueCacheChooser = per_tenant
    LoaderRegistry(value_caches=lambda cls, scope: caches.get(cls))
    LoaderRegistry(value_caches=lambda cls: None)  # type: ignore[arg-type, misc]  # pyright: ignore[reportArgumentType]
    return LoaderRegistry(value_caches=chooser)


async def any_value_cache() -> None:
    async def fetch(keys: list[int]) -> list[str]:
        return [str(key) for key in keys]

    loader = DataLoader(fetch, value_cache=MemoryCache())
    assert_type(await loader.load(1), str)


async def wrong_code(shared: RedisCache) -> None:
    numbers = shared.for_loader("numbers", ttl=60, serializer=MsgspecSerializer(int))
    # A cache of ints for a loader of authors:
    AuthorLoader(value_cache=numbers)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # The time to live is required:
    shared.for_loader("x")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    # A serializer must produce bytes:
    shared.for_loader("x", ttl=1, serializer=str)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    # invalidate takes keys of the loader's key type:
    await AuthorLoader().invalidate("1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
