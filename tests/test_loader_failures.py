"""No load ever hangs: failed batches, cancellation and bad results, through the public API."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

import pytest

import aiodataloader
from aiodataloader import DataLoader

from .loader_helpers import id_loader, ticks

T = TypeVar("T")

pytestmark = pytest.mark.anyio


class CustomBaseError(BaseException):
    pass


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Everything the running loop's exception handler receives during the test."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


def flaky_loader(error: BaseException) -> tuple[DataLoader[int, int], list[list[int]]]:
    """Raises ``error`` on the first call, then works."""
    calls: list[list[int]] = []

    async def fn(keys: list[int]) -> list[int]:
        calls.append(keys)
        if len(calls) == 1:
            raise error
        return keys

    return DataLoader(fn, name="flaky"), calls


async def test_batch_function_error_rejects_every_load_with_the_same_error() -> None:
    error = ValueError("database down")
    loader, calls = flaky_loader(error)
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    assert results[0] is error
    assert results[1] is error
    # Not cached: the next load calls the batch function again.
    assert await loader.load_many([1, 2]) == [1, 2]
    assert calls == [[1, 2], [1, 2]]


@pytest.mark.parametrize("error", [asyncio.CancelledError(), CustomBaseError("boom")])
async def test_base_exception_in_batch_function_completes_every_future(
    error: BaseException,
) -> None:
    loader, calls = flaky_loader(error)
    first, second = loader.load(1), loader.load(2)
    with pytest.raises(type(error)):
        await asyncio.wait_for(first, 1)
    assert second.done()
    # The loader keeps working and the keys were evicted.
    assert await loader.load_many([1, 2]) == [1, 2]
    assert calls == [[1, 2], [1, 2]]


async def test_cancel_pending_cancels_in_flight_batches_and_evicts() -> None:
    started = asyncio.Event()
    calls: list[list[int]] = []

    async def slow(keys: list[int]) -> list[int]:
        calls.append(keys)
        if len(calls) == 1:
            started.set()
            await asyncio.sleep(10)
        return keys

    loader = DataLoader(slow)
    first, queued = loader.load(1), None
    await started.wait()
    queued = loader.load(2)
    await asyncio.wait_for(loader.cancel_pending(), 1)
    assert first.cancelled()
    assert queued.cancelled()
    assert await asyncio.wait_for(loader.load_many([1, 2]), 1) == [1, 2]
    assert calls == [[1], [1, 2]]


async def test_cancelled_task_of_the_batch_cancels_its_futures() -> None:
    started = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(10)
        return keys

    loader = DataLoader(slow)
    future = loader.load(1)
    await started.wait()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task() and "_run_batch" in repr(task.get_coro()):
            task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(future), 1)
    assert future.cancelled()


async def test_cancelled_future_is_not_served_from_the_cache(
    loop_errors: list[dict[str, Any]],
) -> None:
    release = asyncio.Event()
    calls: list[list[int]] = []

    async def gated(keys: list[int]) -> list[int]:
        calls.append(keys)
        await release.wait()
        return keys

    loader = DataLoader(gated)
    first = loader.load(1)
    await ticks(3)
    first.cancel()
    second = loader.load(1)
    assert second is not first
    release.set()
    assert await second == 1
    await ticks(3)
    assert calls == [[1], [1]]
    assert loop_errors == []


async def test_wait_for_timeout_does_not_poison_the_key(
    loop_errors: list[dict[str, Any]],
) -> None:
    delays = [0.2, 0.0]
    calls: list[list[int]] = []

    async def slow_then_fast(keys: list[int]) -> list[int]:
        calls.append(keys)
        await asyncio.sleep(delays[len(calls) - 1])
        return keys

    loader = DataLoader(slow_then_fast)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(loader.load(7), 0.01)
    assert await asyncio.wait_for(loader.load(7), 1) == 7
    await asyncio.sleep(0.25)  # the first batch finishes late
    assert calls == [[7], [7]]
    assert loop_errors == []


async def test_old_batch_failing_late_does_not_evict_a_new_entry() -> None:
    release = asyncio.Event()
    calls: list[list[int]] = []

    async def fn(keys: list[int]) -> list[int]:
        calls.append(keys)
        if len(calls) == 1:
            await release.wait()
            raise ValueError("old batch failed")
        return keys

    loader = DataLoader(fn)
    old = loader.load(1)
    await ticks(3)
    loader.clear(1)
    assert await loader.load(1) == 1
    release.set()
    with pytest.raises(ValueError, match="old batch failed"):
        await old
    assert await loader.load(1) == 1
    assert calls == [[1], [1]]


async def test_batch_with_every_load_cancelled_is_not_sent() -> None:
    loader, calls = id_loader()
    futures = [loader.load(k) for k in (1, 2)]
    for future in futures:
        future.cancel()
    await ticks(4)
    assert calls == []
    assert await loader.load(1) == 1


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (None, r"returned None \(type NoneType\)"),
        (42, r"returned 42 \(type int\)"),
        ("ab", r"returned 'ab' \(type str\)"),
        (b"ab", r"returned b'ab' \(type bytes\)"),
        ({1, 2}, r"\(type set\)"),
        ([1], r"returned 1 values for 2 keys"),
        ([1, 2, 3], r"returned 3 values for 2 keys"),
    ],
)
async def test_bad_batch_result_rejects_the_batch_with_a_clear_error(
    returned: object, expected: str
) -> None:
    calls: list[list[int]] = []

    async def bad(keys: list[int]) -> Any:
        calls.append(keys)
        return returned if len(calls) == 1 else keys

    loader: DataLoader[int, Any] = DataLoader(bad, name="users")
    results = await asyncio.gather(loader.load(1), loader.load(2), return_exceptions=True)
    for error in results:
        assert isinstance(error, TypeError)
        message = str(error)
        assert "DataLoader(name='users')" in message
        assert "[1, 2]" in message
    import re

    assert re.search(expected, str(results[0]))
    # The failure is not cached.
    assert await loader.load_many([1, 2]) == [1, 2]


async def test_batch_function_returning_a_non_awaitable_rejects_the_batch() -> None:
    class SyncCallLooksAsync:
        async def __call__(self, keys: list[int]) -> list[int]:
            return keys

    loader = DataLoader(SyncCallLooksAsync(), name="odd")
    # Swap in a sync callable after construction: the dispatch still checks.
    loader.batch_load_fn = lambda keys: keys  # type: ignore[assignment,return-value]
    with pytest.raises(TypeError, match=r"DataLoader\(name='odd'\): the batch function must"):
        await asyncio.wait_for(loader.load(1), 1)


async def test_unawaited_primed_error_is_not_reported(
    loop_errors: list[dict[str, Any]],
) -> None:
    import gc

    loader, _ = id_loader()
    loader.prime(1, ValueError("never loaded"))
    del loader
    gc.collect()
    await ticks(2)
    assert loop_errors == []


async def test_batch_task_survives_garbage_collection_while_pending() -> None:
    # The batch awaits a future that only a weak reference reaches from outside: without a
    # strong reference to the batch task, gc.collect() would destroy it and the load hang.
    import gc
    import weakref

    loop = asyncio.get_running_loop()

    async def fn(keys: list[int]) -> list[int]:
        waiter: asyncio.Future[None] = loop.create_future()
        reference = weakref.ref(waiter)

        def wake() -> None:
            alive = reference()
            if alive is not None:
                alive.set_result(None)

        loop.call_later(0.05, wake)
        await waiter
        return keys

    loader = DataLoader(fn)
    future = loader.load(1)
    await ticks(4)
    gc.collect()
    assert await asyncio.wait_for(future, 1) == 1


async def test_cache_map_that_raises_fails_the_load_and_leaves_no_broken_batch(
    loop_errors: list[dict[str, Any]],
) -> None:
    class FullCache(dict[Any, Any]):
        def __setitem__(self, key: Any, value: Any) -> None:
            if key == "full":
                raise MemoryError("cache is full")
            super().__setitem__(key, value)

    loader, calls = id_loader(cache_map=FullCache())
    with pytest.raises(MemoryError, match="cache is full"):
        loader.load("full")
    await ticks(4)
    assert await loader.load("ok") == "ok"
    assert calls == [["ok"]]
    assert loop_errors == []


def batch_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and "_run_batch" in repr(task.get_coro())
    ]


async def test_batch_task_cancelled_before_its_first_step_settles_its_loads() -> None:
    loader, calls = id_loader()
    future = loader.load(1)
    await asyncio.sleep(0)  # the dispatch callback has created the task; it has not run
    (task,) = batch_tasks()
    task.cancel()
    await ticks(3)
    assert future.cancelled()
    # Nothing is left open or cached: the loader keeps working.
    assert await asyncio.wait_for(loader.load_many([1, 2]), 1) == [1, 2]
    assert calls == [[1, 2]]


async def test_chunk_tasks_cancelled_before_their_first_step_settle_their_loads() -> None:
    loader, calls = id_loader(max_batch_size=2)
    futures = [loader.load(k) for k in range(6)]
    await ticks(2)  # the first task has run and started one task per further chunk
    for task in batch_tasks():
        task.cancel()
    await ticks(3)
    assert [f.result() for f in futures[:2]] == [0, 1]
    assert all(f.cancelled() for f in futures[2:])
    assert await asyncio.wait_for(loader.load_many(range(6)), 1) == list(range(6))
    assert calls == [[0, 1], [2, 3], [4, 5]]


async def test_a_key_cancelled_and_loaded_again_in_one_tick_is_sent_once() -> None:
    loader, calls = id_loader()
    first = loader.load(1)
    first.cancel()
    second = loader.load(1)
    assert await second == 1
    assert calls == [[1]]


async def test_an_endless_iterable_result_is_read_one_item_past_the_keys() -> None:
    pulled: list[int] = []

    def endless() -> Iterator[None]:
        for index in itertools.count():
            if index > 100:  # a loader that reads on would only stop at MemoryError
                raise AssertionError("read far past the keys")
            pulled.append(index)
            yield None

    async def repeat_forever(keys: list[int]) -> Any:  # an iterable: not in the typed contract
        return endless()

    loader: DataLoader[int, None] = DataLoader(repeat_forever, name="endless")
    with pytest.raises(TypeError) as info:
        await asyncio.wait_for(loader.load_many([1, 2, 3]), 10)
    assert pulled == [0, 1, 2, 3]
    message = str(info.value)
    assert "with the same length as the Iterable of keys. DataLoader(name='endless'): " in message
    assert "its iterable went on past 3 values for 3 keys" in message


async def test_a_short_iterator_result_gives_the_wrong_length_error() -> None:
    async def short(keys: list[int]) -> Any:
        return iter(keys[:1])

    loader: DataLoader[int, int] = DataLoader(short, name="short")
    with pytest.raises(TypeError, match=r"it returned 1 values for 2 keys"):
        await asyncio.wait_for(loader.load_many([1, 2]), 10)


async def test_a_failed_batch_is_evicted_even_when_the_key_function_now_fails() -> None:
    key_service_down = False
    calls: list[list[int]] = []

    def cache_key(key: int) -> tuple[str, int]:
        if key_service_down:
            raise RuntimeError("key service down")
        return ("user", key)

    async def fetch(keys: list[int]) -> list[int]:
        nonlocal key_service_down
        calls.append(keys)
        if len(calls) == 1:
            key_service_down = True  # the key function fails while the batch is evicted
            raise ValueError("database down")
        return keys

    loader = DataLoader(fetch, get_cache_key=cache_key)
    with pytest.raises(ValueError, match="database down"):
        await asyncio.wait_for(loader.load(1), 10)
    key_service_down = False
    # Not poisoned: the failure was evicted, so the retry calls the batch function again.
    assert await asyncio.wait_for(loader.load(1), 10) == 1
    assert calls == [[1], [1]]


class CountingFuture(asyncio.Future[Any]):
    """Counts equality tests, the cost of finding a future in a list by value."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountingFuture.comparisons += 1
        return self is other

    __hash__ = asyncio.Future.__hash__


class CountingLoop(asyncio.SelectorEventLoop):
    def create_future(self) -> asyncio.Future[Any]:
        return CountingFuture(loop=self)


def test_retrying_many_cancelled_keys_is_linear() -> None:
    count = 400
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def fetch(keys: list[int]) -> list[int]:
        calls.append(keys)
        if len(calls) == 1:
            await release.wait()
        return keys

    async def scenario() -> list[int]:
        loader = DataLoader(fetch)
        keys = list(range(count))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loader.load_many(keys), 0.01)  # times out: all cancelled
        CountingFuture.comparisons = 0
        retried = loader.load_many(keys)
        release.set()
        return await asyncio.wait_for(retried, 10)

    loop = CountingLoop()
    try:
        assert loop.run_until_complete(scenario()) == list(range(count))
    finally:
        loop.close()
    # One lookup per key, not a scan of the batch per key (count**2 / 2 = 80,000).
    assert CountingFuture.comparisons <= 4 * count
    assert calls == [list(range(count)), list(range(count))]


async def test_a_retry_of_keys_cancelled_while_queued_sends_each_key_once() -> None:
    loader, calls = id_loader()
    first = [loader.load(key) for key in range(5)]
    for future in first:
        future.cancel()
    assert await asyncio.wait_for(loader.load_many(range(5)), 10) == list(range(5))
    assert calls == [[0, 1, 2, 3, 4]]


def steps_in_the_package(action: Callable[[], T]) -> tuple[T, int]:
    """``action()`` and how many times a frame of aiodataloader's own code was entered or
    resumed while it ran: a count of work that no clock or load of the machine disturbs."""
    package = os.path.dirname(aiodataloader.__file__) + os.sep
    steps = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal steps
        if event == "call" and frame.f_code.co_filename.startswith(package):
            steps += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = action()
    finally:
        sys.setprofile(previous)
    return result, steps


async def test_a_batch_function_loading_many_keys_in_flight_elsewhere_is_linear() -> None:
    """The check that a batch function does not wait on a key of its own batch looks each
    load up once, not by a scan of the batch (a tree loader: children load parents)."""
    count = 300
    parents_queried = asyncio.Event()
    steps: list[int] = []

    async def fetch(keys: list[int]) -> list[int]:
        if keys[0] < count:  # the parents: in flight until the children's batch loads them
            await parents_queried.wait()
            return keys
        parents, counted = steps_in_the_package(lambda: [loader.load(k - count) for k in keys])
        steps.append(counted)
        parents_queried.set()
        await asyncio.gather(*parents)
        return keys

    loader = DataLoader(fetch)
    parents = loader.load_many(range(count))
    await ticks(3)  # the parents' batch is in flight
    assert await asyncio.wait_for(loader.load_many(range(count, 2 * count)), 10) == list(
        range(count, 2 * count)
    )
    assert await parents == list(range(count))
    # A few steps per load; a scan of the batch per load takes count**2 = 90,000.
    [counted] = steps
    assert counted <= 20 * count


async def test_a_chunk_may_load_a_key_of_the_next_chunk_after_a_retry_while_queued() -> None:
    calls: list[list[int]] = []

    async def fetch(keys: list[int]) -> list[int]:
        calls.append(keys)
        if 0 in keys:
            assert await loader.load(3) == 3  # in flight in the next chunk: no deadlock
        return keys

    loader = DataLoader(fetch, max_batch_size=2)
    first = loader.load_many([0, 1, 2])
    loader.load(3).cancel()
    retried = loader.load(3)  # takes the cancelled load's place in the queued batch
    assert await asyncio.wait_for(first, 10) == [0, 1, 2]
    assert await retried == 3
    assert calls == [[0, 1], [2, 3]]
