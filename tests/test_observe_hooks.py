"""Observers: batch start and end, cache hits, per loader and global; a failing observer
never fails a load and is logged once per hook."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import types
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from aiodataloader import DataLoader
from aiodataloader.observe import (
    BatchInfo,
    LoaderObserver,
    add_global_observer,
    observe,
    remove_global_observer,
)

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Recording(LoaderObserver):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.batches: list[BatchInfo] = []

    def on_batch_start(self, batch: BatchInfo) -> None:
        self.batches.append(batch)
        self.events.append(("start", batch.name, list(batch.keys), batch.size))

    def on_batch_end(self, batch: BatchInfo) -> None:
        self.events.append(("end", batch.name, batch.failed_keys, type(batch.error).__name__))

    def on_cache_hit(self, loader: DataLoader[Any, Any], key: Any) -> None:
        self.events.append(("hit", loader.name, key))


async def double(keys: list[int]) -> list[int]:
    return [key * 2 for key in keys]


@pytest.fixture
def global_observer() -> Iterator[Recording]:
    observer = Recording()
    add_global_observer(observer)
    try:
        yield observer
    finally:
        remove_global_observer(observer)


async def test_an_observer_sees_each_batch_and_each_hit() -> None:
    observer = Recording()
    loader = observe(DataLoader(double, name="Doubles"), observer)
    assert list(await asyncio.gather(loader.load(1), loader.load(2), loader.load(1))) == [2, 4, 2]
    assert await loader.load(2) == 4

    assert observer.events == [
        ("hit", "Doubles", 1),
        ("start", "Doubles", [1, 2], 2),
        ("end", "Doubles", 0, "NoneType"),
        ("hit", "Doubles", 2),
    ]
    batch = observer.batches[0]
    assert batch.loader is loader
    assert batch.duration > 0
    assert not batch.cancelled


async def test_the_name_is_the_class_name_for_an_unnamed_loader() -> None:
    class UserLoader(DataLoader[int, int]):
        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return keys

    observer = Recording()
    await observe(UserLoader(), observer).load(7)
    assert observer.events[0] == ("start", "UserLoader", [7], 1)


async def test_a_batch_knows_the_context_of_each_caller() -> None:
    observer = Recording()
    loader = observe(DataLoader(double), observer)

    async def resolver(name: str, key: int) -> int:
        request_id.set(name)
        return await loader.load(key)

    results = await asyncio.gather(resolver("a", 1), resolver("b", 2), resolver("c", 1))
    assert list(results) == [2, 4, 2]
    (batch,) = observer.batches
    # One context per key sent; "c" was a hit on the key "a" had sent.
    assert [caller.get(request_id) for caller in batch.callers] == ["a", "b"]


async def test_hooks_run_in_the_batch_task_around_the_batch_function() -> None:
    seen: list[str] = []

    class SetsContext(LoaderObserver):
        def on_batch_start(self, batch: BatchInfo) -> None:
            request_id.set(f"batch of {batch.size}")

    async def reads_context(keys: list[int]) -> list[int]:
        seen.append(request_id.get())
        return keys

    await observe(DataLoader(reads_context), SetsContext()).load_many([1, 2])
    assert seen == ["batch of 2"]
    assert request_id.get() == "-"  # the batch task's context, not the caller's


async def test_a_failed_batch_reaches_on_batch_end() -> None:
    async def broken(keys: list[int]) -> list[int]:
        raise ConnectionError("database went away")

    observer = Recording()
    loader = observe(DataLoader(broken, name="Broken"), observer)
    with pytest.raises(ConnectionError):
        await loader.load_many([1, 2])
    assert observer.events[-1] == ("end", "Broken", 2, "ConnectionError")
    assert isinstance(observer.batches[0].error, ConnectionError)


async def test_keys_rejected_in_place_are_counted_on_the_batch() -> None:
    async def half(keys: list[int]) -> list[int | Exception]:
        return [KeyError(key) if key % 2 else key for key in keys]

    observer = Recording()
    loader = observe(DataLoader(half, name="Half"), observer)
    await loader.load_many([1, 2, 3], return_exceptions=True)
    assert observer.events[-1] == ("end", "Half", 2, "NoneType")


async def test_a_cancelled_batch_is_visible_to_observers() -> None:
    started = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("never reached")

    observer = Recording()
    loader = observe(DataLoader(slow, name="Slow"), observer)
    pending = loader.load(1)
    await started.wait()
    await loader.cancel_pending()
    assert pending.cancelled()
    assert observer.events[-1] == ("end", "Slow", 0, "CancelledError")
    assert observer.batches[0].cancelled


async def test_a_global_observer_sees_every_loader(global_observer: Recording) -> None:
    loader = DataLoader(double, name="Built after")
    await loader.load(1)
    await loader.load(1)
    assert global_observer.events == [
        ("start", "Built after", [1], 1),
        ("end", "Built after", 0, "NoneType"),
        ("hit", "Built after", 1),
    ]
    assert loader.stats.cache_hits == 1


async def test_a_loader_built_before_a_global_observer_reports_batches_only() -> None:
    loader = DataLoader(double, name="Built before")
    observer = Recording()
    add_global_observer(observer)
    try:
        await loader.load(1)
        await loader.load(1)  # a hit, not reported: the loader was not observed when built
    finally:
        remove_global_observer(observer)
    await loader.load(2)  # removed: not reported
    assert [event[0] for event in observer.events] == ["start", "end"]
    assert loader.stats.cache_hits is None


async def test_own_and_global_observers_are_called_in_that_order(
    global_observer: Recording,
) -> None:
    order: list[str] = []

    class Own(LoaderObserver):
        def on_batch_start(self, batch: BatchInfo) -> None:
            order.append("own")

    class Last(LoaderObserver):
        def on_batch_start(self, batch: BatchInfo) -> None:
            order.append("global")

    last = Last()
    add_global_observer(last)
    try:
        await observe(DataLoader(double), Own()).load(1)
    finally:
        remove_global_observer(last)
    assert order == ["own", "global"]
    assert len(global_observer.batches) == 1


async def test_an_observer_that_raises_is_logged_once_per_hook_and_never_fails_a_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(LoaderObserver):
        def on_batch_start(self, batch: BatchInfo) -> None:
            raise RuntimeError("start hook bug")

        def on_batch_end(self, batch: BatchInfo) -> None:
            raise RuntimeError("end hook bug")

        def on_cache_hit(self, loader: DataLoader[Any, Any], key: Any) -> None:
            raise RuntimeError("hit hook bug")

    after = Recording()
    loader = observe(observe(DataLoader(double), Broken()), after)
    with caplog.at_level(logging.ERROR, logger="aiodataloader"):
        for key in range(3):
            assert await loader.load(key) == key * 2
            assert await loader.load(key) == key * 2  # a hit

    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "Broken.on_batch_start raised; the load goes on. Logged once for this observer and hook.",
        "Broken.on_batch_end raised; the load goes on. Logged once for this observer and hook.",
        "Broken.on_cache_hit raised; the load goes on. Logged once for this observer and hook.",
    ]
    assert all(record.exc_info is not None for record in caplog.records)
    # The observer after the broken one still sees everything.
    assert [event[0] for event in after.events] == ["start", "end", "hit"] * 3


def test_observe_refuses_what_is_not_a_loader_or_an_observer() -> None:
    with pytest.raises(TypeError, match=r"^observe\(\) expects a DataLoader; got str$"):
        observe("loader", Recording())  # type: ignore[type-var]
    loader = DataLoader(double, name="Doubles")
    with pytest.raises(
        TypeError,
        match=(
            r"^observe\(DataLoader\(name='Doubles'\)\): expected a LoaderObserver \(methods "
            r"on_batch_start, on_batch_end, on_cache_hit\); got object without on_batch_start, "
            r"on_batch_end, on_cache_hit$"
        ),
    ):
        observe(loader, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^add_global_observer\(\): .* got int without"):
        add_global_observer(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^remove_global_observer\(\): .* is not a global"):
        remove_global_observer(Recording())


async def test_changing_an_option_keeps_the_callers_of_queued_loads() -> None:
    observer = Recording()
    loader = observe(DataLoader(double), observer)

    async def resolver(name: str, key: int) -> int:
        request_id.set(name)
        return await loader.load(key)

    first = asyncio.ensure_future(resolver("a", 1))
    await asyncio.sleep(0)  # "a" is queued
    loader.max_batch_size = 10  # recomputes the loader's plain attributes
    assert list(await asyncio.gather(first, resolver("b", 2))) == [2, 4]
    (batch,) = observer.batches
    assert [caller.get(request_id) for caller in batch.callers] == ["a", "b"]


async def test_a_task_is_one_caller_of_a_batch() -> None:
    observer = Recording()
    loader = observe(DataLoader(double), observer)
    request_id.set("the endpoint")
    await loader.load_many([1, 2, 3])  # three keys, one task
    await loader.load_many([4, 5])  # the same task, another batch: a caller again
    first, second = observer.batches
    assert [caller.get(request_id) for caller in first.callers] == ["the endpoint"]
    assert [caller.get(request_id) for caller in second.callers] == ["the endpoint"]
    assert (first.size, second.size) == (3, 2)


async def test_an_observed_loader_refuses_bad_keys_as_any_loader_does() -> None:
    loader = observe(DataLoader(double, name="Doubles"), Recording())
    with pytest.raises(TypeError, match=r"^The loader\.load\(\) function must be called with a"):
        loader.load(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"the cache key must be hashable; got \[1\]"):
        loader.load([1])  # type: ignore[arg-type]
    assert await loader.load(1) == 2


async def test_an_observed_loader_reloads_a_cancelled_key_for_its_new_caller() -> None:
    observer = Recording()
    loader = observe(DataLoader(double), observer)
    loader.load(1).cancel()  # queued, then given up by its caller

    async def resolver(name: str, key: int) -> int:
        request_id.set(name)
        return await loader.load(key)

    assert await asyncio.create_task(resolver("b", 1)) == 2
    (batch,) = observer.batches
    assert list(batch.keys) == [1]
    # Not a hit, and only the caller still waiting is a caller of the batch.
    assert [caller.get(request_id) for caller in batch.callers] == ["b"]
    assert loader.stats.cache_hits == 0


async def test_a_caller_that_gives_up_a_load_and_makes_it_again_stays_a_caller() -> None:
    observer = Recording()
    loader = observe(DataLoader(double), observer)
    request_id.set("the endpoint")
    first = loader.load(1)  # the task's first load in this batch: its context is kept here
    second = loader.load(2)
    first.cancel()
    again = loader.load(1)  # takes the cancelled load's place in the batch
    assert list(await asyncio.gather(second, again)) == [4, 2]
    (batch,) = observer.batches
    assert list(batch.keys) == [1, 2]
    assert [caller.get(request_id) for caller in batch.callers] == ["the endpoint"]


async def test_an_observed_batch_function_that_loads_its_own_key_is_refused() -> None:
    observer = Recording()

    class SelfLoading(DataLoader[int, int]):
        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return [key if key != 2 else await self.load(2) for key in keys]

    loader = observe(SelfLoading(name="self"), observer)
    with pytest.raises(RuntimeError, match=r"a key of the very batch it is computing"):
        await asyncio.wait_for(loader.load_many([1, 2]), 10)
    assert observer.events[-1] == ("end", "self", 2, "RuntimeError")
    # The loader stays usable, and observed: a hit is still a hit.
    assert await loader.load(1) == 1
    assert await loader.load(1) == 1
    assert observer.events[-1:] == [("hit", "self", 1)]


async def test_an_observed_loader_is_freed_as_soon_as_it_is_dropped() -> None:
    class CountsHits(LoaderObserver):  # keeps no batch (a BatchInfo holds its loader)
        hits = 0

        def on_cache_hit(self, loader: DataLoader[Any, Any], key: Any) -> None:
            self.hits += 1

    counts = CountsHits()
    loader = observe(DataLoader(double), counts)
    assert await loader.load_many([1, 2, 1]) == [2, 4, 2]
    assert counts.hits == 1
    gone = weakref.ref(loader)
    del loader
    assert gone() is None  # no reference cycle: freed without the garbage collector


async def test_an_observer_that_keeps_the_default_on_cache_hit_is_not_called_per_hit(
    global_observer: Recording,
) -> None:
    class BatchesOnly(LoaderObserver):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def on_batch_start(self, batch: BatchInfo) -> None:
            self.sizes.append(batch.size)

    default_hook = LoaderObserver.on_cache_hit.__code__
    calls: list[object] = []

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is default_hook:
            calls.append(frame)

    batches_only = BatchesOnly()
    loader = observe(DataLoader(double, name="Doubles"), batches_only)
    sys.setprofile(profile)
    try:
        assert await loader.load_many([1, 2, 1, 2]) == [2, 4, 2, 4]
    finally:
        sys.setprofile(None)
    assert calls == []
    assert batches_only.sizes == [2]
    # The hits are still counted, and told to the observers that want them.
    assert loader.stats.cache_hits == 2
    assert [event for event in global_observer.events if event[0] == "hit"] == [
        ("hit", "Doubles", 1),
        ("hit", "Doubles", 2),
    ]
