"""The value-cache flow through the public API, with an in-process implementation of the
protocol (Redis itself is tested in test_redis_*.py): one lookup per batch, only misses to
the batch function, one write back, errors never cached, failures never fail a load."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any

import pytest

from aiodataloader import DataLoader
from aiodataloader.value_cache import InvalidationListener, Listeners, ValueCache

from .loader_helpers import Recorder

pytestmark = pytest.mark.anyio


class DictValueCache:
    """A ValueCache over a dict that records every call (a real implementation)."""

    def __init__(self, values: Mapping[Hashable, Any] | None = None) -> None:
        self.values: dict[Hashable, Any] = dict(values or {})
        self.gets: list[list[Hashable]] = []
        self.sets: list[dict[Hashable, Any]] = []
        self.deletes: list[list[Hashable]] = []
        self.broken: Exception | None = None

    async def get_many(self, keys: Sequence[Hashable]) -> Mapping[Hashable, Any]:
        self.gets.append(list(keys))
        if self.broken:
            raise self.broken
        return {key: self.values[key] for key in keys if key in self.values}

    async def set_many(self, values: Mapping[Hashable, Any]) -> None:
        self.sets.append(dict(values))
        if self.broken:
            raise self.broken
        self.values.update(values)

    async def delete_many(self, keys: Sequence[Hashable]) -> None:
        self.deletes.append(list(keys))
        if self.broken:
            raise self.broken
        for key in keys:
            self.values.pop(key, None)


class BroadcastingValueCache(DictValueCache):
    """Also tells its live loaders about deletions (as a Redis channel would)."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners = Listeners()

    def add_listener(self, listener: InvalidationListener) -> None:
        self.listeners.add(listener)

    async def delete_many(self, keys: Sequence[Hashable]) -> None:
        await super().delete_many(keys)
        dropped: Collection[Hashable] = list(keys)
        self.listeners.drop(dropped)


def loader_with(
    value_cache: ValueCache[Any], **options: Any
) -> tuple[DataLoader[Any, Any], list[list[Any]]]:
    recorder = Recorder(lambda key: f"value {key}")
    return DataLoader(recorder, value_cache=value_cache, **options), recorder.calls


async def test_one_lookup_per_batch_and_only_misses_reach_the_batch_function() -> None:
    shared = DictValueCache({2: "shared 2", 4: "shared 4"})
    loader, calls = loader_with(shared)
    values = await asyncio.gather(*(loader.load(key) for key in [1, 2, 3, 4, 5]))
    assert values == ["value 1", "shared 2", "value 3", "shared 4", "value 5"]
    assert shared.gets == [[1, 2, 3, 4, 5]]
    assert calls == [[1, 3, 5]]
    assert shared.sets == [{1: "value 1", 3: "value 3", 5: "value 5"}]


async def test_a_full_hit_never_calls_the_batch_function() -> None:
    shared = DictValueCache({1: "a", 2: "b"})
    loader, calls = loader_with(shared)
    assert await loader.load_many([1, 2]) == ["a", "b"]
    assert calls == []
    assert shared.sets == []


async def test_a_second_request_is_served_by_the_first_ones_write_back() -> None:
    shared = DictValueCache()
    first, first_calls = loader_with(shared)
    assert await first.load_many([1, 2]) == ["value 1", "value 2"]
    await asyncio.sleep(0)  # the write back runs right after the loads are settled
    second, second_calls = loader_with(shared)
    assert await second.load_many([1, 2]) == ["value 1", "value 2"]
    assert first_calls == [[1, 2]]
    assert second_calls == []


async def test_the_per_request_cache_stays_on_top() -> None:
    shared = DictValueCache()
    loader, _ = loader_with(shared)
    await loader.load(1)
    await loader.load(1)
    assert shared.gets == [[1]]


async def test_errors_are_never_written_back() -> None:
    shared = DictValueCache()

    async def fetch(keys: list[int]) -> list[Any]:
        return [ValueError(f"no {key}") if key % 2 else f"value {key}" for key in keys]

    loader: DataLoader[int, Any] = DataLoader(fetch, value_cache=shared)
    results = await loader.load_many([1, 2, 3], return_exceptions=True)
    assert [str(result) for result in results] == ["no 1", "value 2", "no 3"]
    assert shared.sets == [{2: "value 2"}]


async def test_a_failed_batch_writes_nothing() -> None:
    shared = DictValueCache()

    async def fetch(keys: list[int]) -> list[Any]:
        raise RuntimeError("database down")

    loader: DataLoader[int, Any] = DataLoader(fetch, value_cache=shared)
    with pytest.raises(RuntimeError, match="database down"):
        await loader.load(1)
    assert shared.sets == []


async def test_the_cache_key_function_gives_the_shared_key() -> None:
    shared = DictValueCache({"user:1": "shared"})
    recorder = Recorder(lambda key: f"value {key['id']}")
    loader: DataLoader[dict[str, int], str] = DataLoader(
        recorder, cache_key_fn=lambda key: f"user:{key['id']}", value_cache=shared
    )
    assert await loader.load_many([{"id": 1}, {"id": 2}]) == ["shared", "value 2"]
    assert shared.gets == [["user:1", "user:2"]]
    assert shared.sets == [{"user:2": "value 2"}]
    assert recorder.calls == [[{"id": 2}]]


async def test_mapping_results_and_max_batch_size_each_chunk_looks_up_once() -> None:
    shared = DictValueCache({1: "shared 1"})

    async def fetch(keys: list[int]) -> dict[int, str]:
        return {key: f"value {key}" for key in keys}

    loader: DataLoader[int, str | None] = DataLoader(fetch, max_batch_size=2, value_cache=shared)
    assert await loader.load_many([1, 2, 3, 4]) == ["shared 1", "value 2", "value 3", "value 4"]
    assert sorted(sorted(keys) for keys in shared.gets) == [[1, 2], [3, 4]]  # type: ignore[type-var]


async def test_a_failing_value_cache_never_fails_a_load_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared = DictValueCache()
    shared.broken = ConnectionError("cache is down")
    caplog.set_level(logging.WARNING, logger="aiodataloader")
    loader, calls = loader_with(shared, name="users")
    for key in range(5):
        assert await loader.load(key) == f"value {key}"
    assert calls == [[0], [1], [2], [3], [4]]
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failures == [
        "DataLoader(name='users'): the value cache DictValueCache: get_many failed "
        "(ConnectionError: cache is down); loads go to the batch function until it answers "
        "again (logged once)"
    ]
    shared.broken = None
    assert await loader.load(10) == "value 10"
    assert caplog.records[-1].getMessage() == (
        "DataLoader(name='users'): the value cache DictValueCache answers again"
    )


async def test_invalidate_deletes_the_shared_entry_and_the_per_request_one() -> None:
    shared = DictValueCache({1: "old"})
    loader, calls = loader_with(shared)
    assert await loader.load(1) == "old"
    del shared.values[1]
    shared.values[1] = "old"  # still stored: invalidate must delete it
    await loader.invalidate(1)
    assert shared.deletes == [[1]]
    assert await loader.load(1) == "value 1"
    assert calls == [[1]]
    # The request that invalidated a key reads it from the batch function from then on
    # (its own writes), and never writes it back (they may not be committed yet).
    assert shared.gets == [[1]]
    assert shared.sets == []


async def test_invalidate_many_uses_the_cache_key_and_one_call() -> None:
    shared = DictValueCache()
    loader: DataLoader[str, str] = DataLoader(
        Recorder(), cache_key_fn=str.lower, value_cache=shared
    )
    await loader.invalidate_many(["A", "b", "a"])
    assert shared.deletes == [["a", "b"]]


async def test_invalidate_without_a_value_cache_is_clear() -> None:
    recorder = Recorder()
    loader: DataLoader[int, int] = DataLoader(recorder)
    await loader.load(1)
    await loader.invalidate(1)
    await loader.load(1)
    assert recorder.calls == [[1], [1]]


async def test_a_failed_invalidation_is_logged_as_an_error_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared = DictValueCache()
    shared.broken = ConnectionError("cache is down")
    loader, _ = loader_with(shared, name="users")
    await loader.invalidate(1)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == (
        "DataLoader(name='users'): could not invalidate 1 key(s) in the value cache "
        "DictValueCache (ConnectionError: cache is down); other processes may serve the old "
        "values until they expire"
    )


async def test_invalidate_many_refuses_a_non_iterable() -> None:
    loader, _ = loader_with(DictValueCache(), name="users")
    with pytest.raises(TypeError, match=r"DataLoader\(name='users'\).*invalidate_many"):
        await loader.invalidate_many(1)  # type: ignore[arg-type]


async def test_a_broadcast_reaches_every_live_loader_and_none_are_kept_alive() -> None:
    shared = BroadcastingValueCache()
    first, first_calls = loader_with(shared)
    second, second_calls = loader_with(shared)
    await first.load(1)
    await asyncio.sleep(0)  # written back
    await second.load(1)  # from the shared cache, now in second's per-request cache
    assert (first_calls, second_calls) == ([[1]], [])
    await first.invalidate(1)
    await second.load(1)  # dropped from second's cache too: fetched anew
    assert second_calls == [[1]]
    del first, second
    gc.collect()
    assert len(shared.listeners) == 0


async def test_no_value_cache_means_no_lookup_and_no_write() -> None:
    loader, calls = loader_with(None)  # type: ignore[arg-type]
    assert await loader.load(1) == "value 1"
    assert calls == [[1]]


def test_a_value_cache_that_is_not_one_is_refused() -> None:
    with pytest.raises(TypeError) as caught:
        DataLoader(Recorder(), name="users", value_cache={})  # type: ignore[call-overload]
    assert str(caught.value) == (
        "DataLoader(name='users'): value_cache must implement the ValueCache protocol (async "
        "get_many, set_many and delete_many); got {} (type dict), which has no get_many()"
    )


async def test_loads_cancelled_while_the_lookup_runs_leave_nothing_pending() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowValueCache(DictValueCache):
        async def get_many(self, keys: Sequence[Hashable]) -> Mapping[Hashable, Any]:
            started.set()
            await release.wait()
            return {}

    loader, calls = loader_with(SlowValueCache())
    future = loader.load(1)
    await started.wait()
    await loader.cancel_pending()
    assert future.cancelled()
    assert calls == []


def test_a_loader_with_a_redis_value_cache_can_be_built_outside_the_event_loop() -> None:
    from aiodataloader.redis import RedisCache

    shared = RedisCache.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    loader = DataLoader(Recorder(), value_cache=shared.for_loader("users", ttl=1))

    async def load_then_close() -> Any:
        try:
            return await loader.load(7)  # the batch function answers
        finally:
            await shared.aclose()

    assert asyncio.run(load_then_close()) == 7
