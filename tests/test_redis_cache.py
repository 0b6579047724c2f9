"""RedisCache against the real Redis server: keys, serialization, leases, stampede modes and
invalidation between two processes' worth of clients."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
import redis.asyncio as redis_asyncio

from aiodataloader import DataLoader
from aiodataloader.redis import RedisCache, RedisValueCache
from aiodataloader.serialization import JsonSerializer, MsgspecSerializer, PydanticSerializer

from .loader_helpers import Recorder
from .services import require_redis, unique_name

pytestmark = pytest.mark.anyio


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    name: str


class UserModel(pydantic.BaseModel):
    id: int
    name: str


@pytest.fixture
def names() -> tuple[str, str]:
    """A key prefix and a channel no other test run uses."""
    name = unique_name("aiodataloader_test")
    return f"{name}:", f"{name}:invalidate"


async def new_cache(names: tuple[str, str], **options: Any) -> RedisCache:
    prefix, channel = names
    # Generous timeout: this file tests behaviour, not speed (faults are in another file).
    options.setdefault("timeout", 1.0)
    cache = RedisCache.from_url(require_redis(), key_prefix=prefix, channel=channel, **options)
    await cache.start()
    return cache


@pytest.fixture
async def shared(names: tuple[str, str]) -> AsyncIterator[RedisCache]:
    cache = await new_cache(names)
    yield cache
    keys = [key async for key in cache.client.scan_iter(f"{names[0]}*")]
    if keys:
        await cache.client.delete(*keys)
    await cache.aclose()


async def stored(shared: RedisCache, namespace: str) -> dict[str, bytes]:
    keys = sorted([key.decode() async for key in shared.client.scan_iter(f"{namespace}*")])
    values = await shared.client.mget(keys) if keys else []
    return dict(zip(keys, values, strict=True))


async def settle() -> None:
    """Let a batch's write back (after its loads are settled) reach Redis."""
    for _ in range(50):
        await asyncio.sleep(0.01)


async def test_a_second_loader_is_served_from_redis_with_one_lookup(shared: RedisCache) -> None:
    users = shared.for_loader("users", ttl=60)
    first = Recorder(lambda key: {"id": key})
    await DataLoader(first, value_cache=users).load_many([1, 2])
    await settle()
    second = Recorder(lambda key: {"id": key})
    loader = DataLoader(second, value_cache=users)
    assert await loader.load_many([1, 2, 3]) == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert (first.calls, second.calls) == ([[1, 2]], [[3]])
    assert shared.stats.lookup_round_trips == 2
    assert (shared.stats.hits, shared.stats.misses) == (2, 3)


async def test_keys_hold_name_version_prefix_and_the_cache_key_as_json(
    shared: RedisCache, names: tuple[str, str]
) -> None:
    users = shared.for_loader("users", ttl=60, version=3).with_prefix("tenant:7")
    loader: DataLoader[tuple[str, int], str] = DataLoader(
        Recorder(lambda key: "v"),
        cache_key_fn=lambda key: (key[0].lower(), key[1]),
        value_cache=users,
    )
    await loader.load(("Org", 5))
    await settle()
    assert await stored(shared, names[0]) == {
        f'{names[0]}users:v3:tenant%3A7:["org",5]': b'"v"',
    }
    ttl = await shared.client.pttl(f'{names[0]}users:v3:tenant%3A7:["org",5]')
    assert 55_000 < ttl <= 60_000


async def test_versions_and_prefixes_never_share_entries(shared: RedisCache) -> None:
    v1 = shared.for_loader("users", ttl=60, version=1)
    for value_cache in (v1, shared.for_loader("users", ttl=60, version=2), v1.with_prefix("a")):
        recorder = Recorder(lambda key: key)
        await DataLoader(recorder, value_cache=value_cache).load(1)
        await settle()
        assert recorder.calls == [[1]]


async def test_json_is_the_default_and_never_pickle(shared: RedisCache) -> None:
    users = shared.for_loader("users", ttl=60)
    assert repr(users.serializer) == "JsonSerializer()"
    await DataLoader(Recorder(lambda key: {"id": key, "tags": ["a"]}), value_cache=users).load(1)
    await settle()
    [data] = (await stored(shared, users.namespace)).values()
    assert json.loads(data) == {"id": 1, "tags": ["a"]}


@pytest.mark.parametrize(
    "serializer",
    [MsgspecSerializer(User), MsgspecSerializer(User, msgpack=True), PydanticSerializer(User)],
    ids=["msgspec-json", "msgspec-msgpack", "pydantic-dataclass"],
)
async def test_typed_serializers_return_the_value_type(shared: RedisCache, serializer: Any) -> None:
    users: RedisValueCache[User] = shared.for_loader("users", ttl=60, serializer=serializer)
    await DataLoader(Recorder(lambda key: User(key, f"user {key}")), value_cache=users).load(1)
    await settle()
    recorder = Recorder()
    assert await DataLoader(recorder, value_cache=users).load(1) == User(1, "user 1")
    assert recorder.calls == []


async def test_pydantic_models(shared: RedisCache) -> None:
    users = shared.for_loader("users", ttl=60, serializer=PydanticSerializer(UserModel))
    await DataLoader(Recorder(lambda key: UserModel(id=key, name="n")), value_cache=users).load(1)
    await settle()
    assert await DataLoader(Recorder(), value_cache=users).load(1) == UserModel(id=1, name="n")


async def test_a_value_that_cannot_be_serialized_is_refused_and_the_load_succeeds(
    shared: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    users = shared.for_loader("users", ttl=60)
    loader = DataLoader(Recorder(lambda key: User(key, "n")), value_cache=users, name="users")
    assert await loader.load(1) == User(1, "n")
    await loader.load(2)
    await settle()
    assert await stored(shared, users.namespace) == {}
    [record] = [r for r in caplog.records if "refused" in r.getMessage()]
    assert record.getMessage() == (
        "RedisValueCache('users', version=1) refused to store the value of key 1: "
        "JsonSerializer() cannot serialize a User (TypeError: Object of type User is not JSON "
        "serializable). The load succeeded; values of this type are not shared. Pass a "
        "serializer for this value type (MsgspecSerializer or PydanticSerializer)"
    )
    assert shared.stats.serialization_errors == 2


async def test_stored_bytes_of_another_shape_are_a_miss(
    shared: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    users = shared.for_loader("users", ttl=60, serializer=MsgspecSerializer(User))
    await shared.client.set(users.namespace + "1", b'{"not": "a user"}')
    recorder = Recorder(lambda key: User(key, "fresh"))
    assert await DataLoader(recorder, value_cache=users).load(1) == User(1, "fresh")
    assert recorder.calls == [[1]]
    assert any("cannot read the stored value" in r.getMessage() for r in caplog.records)


async def test_keys_that_cannot_be_shared_go_to_the_batch_function(
    shared: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    users = shared.for_loader("users", ttl=60)
    recorder = Recorder(lambda key: "v")
    loader: DataLoader[frozenset[int], str] = DataLoader(recorder, value_cache=users)
    assert await loader.load(frozenset({1})) == "v"
    assert recorder.calls == [[frozenset({1})]]
    assert any(
        "cache keys of type frozenset cannot be shared" in r.getMessage() for r in caplog.records
    )


async def test_invalidate_reaches_the_live_loaders_of_another_client(
    shared: RedisCache, names: tuple[str, str]
) -> None:
    """Two RedisCache objects with their own connections: as two worker processes."""
    other = await new_cache(names)
    try:
        database = {1: "old"}
        here = Recorder(database.__getitem__)
        there = Recorder(database.__getitem__)
        loader_here = DataLoader(here, value_cache=shared.for_loader("users", ttl=60))
        loader_there = DataLoader(there, value_cache=other.for_loader("users", ttl=60))
        assert await loader_there.load(1) == "old"
        await settle()
        assert await loader_here.load(1) == "old"
        assert here.calls == []  # served by Redis
        database[1] = "new"
        await loader_here.invalidate(1)
        for _ in range(500):  # the message arrives within milliseconds; 5 s of slack
            if other.stats.invalidations_received:
                break
            await asyncio.sleep(0.01)
        assert other.stats.invalidations_received == 1
        # Dropped from the other client's live loader, and from Redis: fetched anew.
        assert await loader_there.load(1) == "new"
        assert there.calls == [[1], [1]]
    finally:
        await other.aclose()


async def test_a_value_read_before_an_invalidation_is_never_written_after_it(
    shared: RedisCache,
) -> None:
    users = shared.for_loader("users", ttl=60)
    fetching = asyncio.Event()
    invalidated = asyncio.Event()

    async def slow_fetch(keys: list[int]) -> list[str]:
        fetching.set()
        await invalidated.wait()  # the row changes (and is invalidated) meanwhile
        return ["stale"] * len(keys)

    reader = DataLoader(slow_fetch, value_cache=users)
    load = asyncio.ensure_future(reader.load(1))
    await fetching.wait()
    await DataLoader(Recorder(), value_cache=users).invalidate(1)
    invalidated.set()
    assert await load == "stale"  # the load itself succeeds with what it read
    await settle()
    assert await stored(shared, users.namespace) == {}
    assert shared.stats.writes_skipped == 1


@pytest.mark.parametrize(("stampede", "fetches"), [("fetch", 2), ("wait", 1)])
async def test_stampede_modes(names: tuple[str, str], stampede: str, fetches: int) -> None:
    """Two callers miss one key at once: 'fetch' fetches twice, 'wait' once."""
    caches = [await new_cache(names, stampede=stampede, stampede_wait=5.0) for _ in range(2)]
    try:
        calls: list[list[int]] = []

        async def fetch(keys: list[int]) -> list[str]:
            calls.append(keys)
            await asyncio.sleep(0.05)
            return ["v"] * len(keys)

        loaders = [DataLoader(fetch, value_cache=c.for_loader("hot", ttl=60)) for c in caches]
        assert await asyncio.gather(*(loader.load(1) for loader in loaders)) == ["v", "v"]
        assert len(calls) == fetches
    finally:
        keys = [key async for key in caches[0].client.scan_iter(f"{names[0]}*")]
        if keys:
            await caches[0].client.delete(*keys)
        for cache in caches:
            await cache.aclose()


async def test_bad_options_are_refused_with_their_name() -> None:
    client = redis_asyncio.Redis.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(
        ValueError, match=r"RedisCache: timeout must be a number of seconds > 0; got 0"
    ):
        RedisCache(client, timeout=0)
    with pytest.raises(
        ValueError, match=r"RedisCache: stampede must be 'fetch' or 'wait'; got 'x'"
    ):
        RedisCache(client, stampede="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"RedisCache: client must be a redis.asyncio.Redis; got 1"):
        RedisCache(1)  # type: ignore[arg-type]
    decoding = redis_asyncio.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisCache(decoding)
    cache = RedisCache(client)
    with pytest.raises(ValueError, match=r"for_loader\('users'\): ttl must be a number"):
        cache.for_loader("users", ttl=-1)
    with pytest.raises(ValueError, match=r"for_loader\('users'\): version must be an int >= 0"):
        cache.for_loader("users", ttl=1, version="2")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"serializer must have dumps\(value\) -> bytes"):
        cache.for_loader("users", ttl=1, serializer=object())  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"with_prefix: prefix must be a str; got 7"):
        cache.for_loader("users", ttl=1).with_prefix(7)  # type: ignore[arg-type]
    await client.aclose()
    await decoding.aclose()


def test_json_serializer_refuses_nan() -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        JsonSerializer[float]().dumps(float("nan"))
