"""The event loop is bound lazily: loaders built outside a loop work inside one."""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import warnings
import weakref
from collections.abc import Callable
from contextvars import Context, ContextVar
from typing import Any

import pytest

from aiodataloader import DataLoader

from .loader_helpers import Recorder, ticks

MODULE_LEVEL_LOADER: DataLoader[int, int] = DataLoader(Recorder())


def test_loader_built_at_import_time_works_in_asyncio_run() -> None:
    async def main() -> list[int]:
        return await MODULE_LEVEL_LOADER.load_many([1, 2])

    assert asyncio.run(main()) == [1, 2]


def test_construction_outside_a_loop_emits_no_deprecation_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader: DataLoader[int, int] = DataLoader(Recorder())

        async def main() -> int:
            return await loader.load(3)

        assert asyncio.run(main()) == 3


def test_loader_built_in_a_thread_without_a_loop_works_there_later() -> None:
    results: list[Any] = []

    def worker() -> None:
        loader: DataLoader[int, int] = DataLoader(Recorder())

        async def main() -> int:
            return await loader.load(5)

        results.append(asyncio.run(main()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert results == [5]


def test_one_loader_reused_across_two_asyncio_run_calls() -> None:
    recorder = Recorder()
    loader: DataLoader[int, int] = DataLoader(recorder)

    async def main(keys: list[int]) -> list[int]:
        return await loader.load_many(keys)

    assert asyncio.run(main([1, 2])) == [1, 2]
    # Cached values move to the new loop when it first misses the cache.
    assert asyncio.run(main([3, 2, 1])) == [3, 2, 1]
    assert asyncio.run(main([4, 1])) == [4, 1]
    assert recorder.calls == [[1, 2], [3], [4]]


def test_loop_argument_and_attribute_keep_working() -> None:
    loop = asyncio.new_event_loop()
    try:
        loader: DataLoader[int, int] = DataLoader(Recorder(), loop=loop)
        assert loader.loop is loop
        # The 0.4.3 pattern: load outside the loop, then run the loop until it completes.
        assert loop.run_until_complete(loader.load(4)) == 4
        other = asyncio.new_event_loop()
        loader.loop = other
        assert loader.loop is other
        other.close()
    finally:
        loop.close()


def test_loop_attribute_binds_the_running_loop_lazily() -> None:
    loader: DataLoader[int, int] = DataLoader(Recorder())

    async def main() -> bool:
        return loader.loop is asyncio.get_running_loop()

    assert asyncio.run(main())


def test_loader_with_batches_in_flight_on_another_loop_raises_clearly() -> None:
    started = threading.Event()
    release = threading.Event()

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        while not release.is_set():  # noqa: ASYNC110 - set from another thread
            await asyncio.sleep(0.005)
        return keys

    loader = DataLoader(slow, name="shared")
    results: list[int] = []

    def first_loop() -> None:
        async def main() -> None:
            results.append(await loader.load(1))

        asyncio.run(main())

    thread = threading.Thread(target=first_loop)
    thread.start()
    try:
        assert started.wait(5)

        async def second() -> None:
            loader.load(2)

        with pytest.raises(RuntimeError, match=r"DataLoader\(name='shared'\) is serving another"):
            asyncio.run(second())
    finally:
        release.set()
        thread.join(5)
    assert results == [1]


def test_setting_a_non_loop_is_rejected() -> None:
    loader: DataLoader[int, int] = DataLoader(Recorder(), name="x")
    with pytest.raises(TypeError, match=r"DataLoader\(name='x'\): loop must be an asyncio"):
        loader.loop = "not a loop"  # type: ignore[assignment]


def test_load_from_another_thread_while_the_loop_runs_raises_clearly() -> None:
    loader: DataLoader[int, int] = DataLoader(Recorder(), name="users")

    async def main() -> None:
        assert await loader.load(1) == 1
        with pytest.raises(RuntimeError, match=r"DataLoader\(name='users'\): load\(\) was called"):
            await asyncio.to_thread(loader.load, 2)
        assert await loader.load(2) == 2

    asyncio.run(main())


@pytest.mark.parametrize("bound", [True, False])
def test_load_from_a_worker_thread_says_to_use_async_def(bound: bool) -> None:
    """A sync ``def`` endpoint of FastAPI or Starlette runs in a worker thread, as
    asyncio.to_thread does, whether or not the loader has loaded on the loop yet."""
    loader: DataLoader[int, int] = DataLoader(Recorder(), name="users")

    async def main() -> str:
        if bound:
            await loader.load(1)
        with pytest.raises(RuntimeError) as info:
            await asyncio.to_thread(loader.load, 2)
        return str(info.value)

    message = asyncio.run(main())
    assert message.startswith("DataLoader(name='users'): ")
    assert "a sync 'def' endpoint or dependency runs in a worker thread: declare it " in message
    assert "'async def'" in message


def test_loop_that_ended_with_a_batch_open_leaves_no_broken_loader() -> None:
    recorder = Recorder()
    loader: DataLoader[int, int] = DataLoader(recorder)

    async def leave_a_load_behind() -> None:
        loader.load(1)  # never awaited: the loop ends with this batch open

    async def main() -> list[int]:
        return await asyncio.wait_for(loader.load_many([2, 1]), 1)

    asyncio.run(leave_a_load_behind())
    assert asyncio.run(main()) == [2, 1]
    assert asyncio.run(main()) == [2, 1]
    assert recorder.calls[-1] == [2, 1]


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_the_batch_function_propagates_and_settles_the_batch(
    error: type[BaseException],
) -> None:
    async def interrupted(keys: list[int]) -> list[int]:
        raise error

    loop = asyncio.new_event_loop()
    try:
        loader = DataLoader(interrupted, loop=loop)
        first, second = loader.load(1), loader.load(2)
        with pytest.raises(error):
            loop.run_until_complete(asyncio.gather(first, second))
        # The interrupt reaches the loop's caller; no load is left pending.
        assert first.cancelled()
        assert second.cancelled()
    finally:
        loop.close()


REUSE_SHAPES: dict[str, dict[str, Any]] = {
    "own dict": {},
    "cache key function": {"get_cache_key": lambda key: ("k", key)},
    "user's mapping": {"cache_map": {}},
}


@pytest.mark.parametrize("shape", REUSE_SHAPES)
def test_cache_hits_in_a_second_asyncio_run_are_futures_of_the_new_loop(shape: str) -> None:
    recorder = Recorder()
    loader: DataLoader[int, int] = DataLoader(recorder, **REUSE_SHAPES[shape])

    async def first() -> list[int]:
        loader.prime(9, 9)
        return await loader.load_many([1, 2])

    async def second() -> tuple[list[int], list[int], int, int]:
        hit_and_miss = await asyncio.gather(loader.load(1), loader.load(3))
        hit_only = await asyncio.gather(loader.load(2))
        waited = await asyncio.wait_for(loader.load(1), 10)
        primed = await asyncio.wait_for(loader.load(9), 10)
        return list(hit_and_miss), list(hit_only), waited, primed

    async def third() -> list[int]:
        loader.prime(10, 10)  # prime first: the primed future is of this loop too
        return list(await asyncio.gather(loader.load(10), loader.load(2)))

    assert asyncio.run(first()) == [1, 2]
    assert asyncio.run(second()) == ([1, 3], [2], 1, 9)
    assert asyncio.run(third()) == [10, 2]
    assert recorder.calls == [[1, 2], [3]]


def test_a_loader_bound_with_loop_argument_follows_asyncio_run_after_its_loop() -> None:
    recorder = Recorder()
    loop = asyncio.new_event_loop()
    try:
        loader: DataLoader[int, int] = DataLoader(recorder, loop=loop)
        assert loop.run_until_complete(loader.load(1)) == 1
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()

    async def main() -> list[int]:
        return list(await asyncio.gather(loader.load(1), loader.load(2)))

    assert asyncio.run(main()) == [1, 2]
    assert recorder.calls == [[1], [2]]


def test_cache_hits_after_a_loop_closed_without_shutdown_asyncgens() -> None:
    """The pattern of code older than asyncio.run: run_until_complete, then close(), with
    no shutdown_asyncgens(). Hits in the next loops are futures of the running loop."""
    recorder = Recorder()
    loader: DataLoader[int, int] = DataLoader(recorder)

    async def load(*keys: int) -> list[int]:
        return list(await asyncio.gather(*(loader.load(key) for key in keys)))

    for keys in [(1, 2), (1,), (2, 3)]:
        loop = asyncio.new_event_loop()
        try:
            assert loop.run_until_complete(load(*keys)) == list(keys)
        finally:
            loop.close()
    assert asyncio.run(load(3, 1, 4)) == [3, 1, 4]
    assert recorder.calls == [[1, 2], [3], [4]]


class MillisecondTimerLoop(asyncio.SelectorEventLoop):
    """A loop whose timers count milliseconds in 32 bits (as Qt's do), and whose clock can
    be moved forward."""

    offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: object,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        if (when - self.time()) * 1000 > 2**31 - 1:
            raise OverflowError("timer delay does not fit 32 bits of milliseconds")
        return super().call_at(when, callback, *args, context=context)


def test_a_long_running_loop_with_32_bit_timers_still_gives_the_closing_signal() -> None:
    recorder = Recorder()
    loader: DataLoader[int, int] = DataLoader(recorder)

    async def first() -> list[int]:
        values = await loader.load_many([1, 2])
        loop.offset += 30 * 86400  # a month later: every timer set so far has come due
        await ticks(3)
        assert await loader.load(2) == 2  # still in use on this loop
        return values

    loop = MillisecondTimerLoop()
    try:
        assert loop.run_until_complete(first()) == [1, 2]
    finally:
        loop.close()  # without shutdown_asyncgens()

    async def second() -> list[int]:
        return list(await asyncio.gather(loader.load(1), loader.load(3)))

    assert asyncio.run(second()) == [1, 3]
    assert recorder.calls == [[1, 2], [3]]


def test_watching_a_loop_keeps_nothing_of_the_first_loads_context() -> None:
    request_var: ContextVar[object] = ContextVar("request")

    class Request:
        pass

    async def handle() -> weakref.ref[Request]:
        request = Request()
        request_var.set(request)  # as a request scope does
        await DataLoader(Recorder()).load(1)  # the loader's first load watches the loop
        return weakref.ref(request)

    async def main() -> bool:
        request = await asyncio.create_task(handle())
        await ticks(3)  # the loop lets go of the finished task's callbacks
        gc.collect()
        return request() is None  # while the loop still runs

    assert asyncio.run(main())


@pytest.mark.anyio
async def test_a_batch_function_that_loads_its_own_key_is_refused() -> None:
    class SelfLoading(DataLoader[int, int]):
        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return [key if key != 2 else await self.load(2) for key in keys]

    loader = SelfLoading(name="self")
    with pytest.raises(RuntimeError) as info:
        await asyncio.wait_for(loader.load_many([1, 2]), 10)
    assert str(info.value) == (
        "SelfLoading(name='self'): the batch function loaded 2 (type int), a key of the very "
        "batch it is computing; awaiting it would wait forever. Compute that value within "
        "the batch function, or load it through a loader whose batch function does not load "
        "from this one"
    )
    # The failed batch was evicted; the loader stays usable.
    assert "cached=0" in repr(loader)


SELF_WAIT = re.escape(
    "the batch function loaded 2 (type int), a key of the very batch it is computing; "
    "awaiting it would wait forever"
)


@pytest.mark.anyio
async def test_a_batch_function_loading_its_own_key_after_it_suspended_is_refused() -> None:
    async def fetch(keys: list[int]) -> list[int]:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return [await nested(key) for key in keys]

    async def nested(key: int) -> int:  # code the batch function awaits is its code too
        await asyncio.sleep(0)
        return key if key != 2 else await loader.load(2)

    loader = DataLoader(fetch)
    with pytest.raises(RuntimeError, match=SELF_WAIT):
        await asyncio.wait_for(loader.load_many([1, 2]), 10)
    assert await asyncio.wait_for(loader.load(1), 10) == 1  # the fast path is back


class SelfLoadingAwaitable:
    """Not a coroutine: an object whose ``__await__`` is a generator."""

    def __init__(self, loader: DataLoader[int, int], keys: list[int]) -> None:
        self.loader, self.keys = loader, keys

    def __await__(self) -> Any:
        yield None  # one suspension first
        values = []
        for key in self.keys:
            values.append(key if key != 2 else (yield from self.loader.load(2).__await__()))
        return values


@pytest.mark.anyio
async def test_an_awaitable_that_is_not_a_coroutine_loading_its_own_key_is_refused() -> None:
    import asyncio.coroutines

    def compiled_async(keys: list[int]) -> Any:  # as Cython marks its async def functions
        return SelfLoadingAwaitable(loader, keys)

    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    if marker is None:
        pytest.skip("this Python has no asyncio coroutine marker")
    compiled_async._is_coroutine = marker  # type: ignore[attr-defined]
    loader: DataLoader[int, int] = DataLoader(compiled_async)
    with pytest.raises(RuntimeError, match=SELF_WAIT):
        await asyncio.wait_for(loader.load_many([1, 2]), 10)


@pytest.mark.anyio
async def test_only_the_batch_whose_code_runs_is_refused_its_keys() -> None:
    """Two batches of one loader in progress: the second may wait for a key of the first,
    which is suspended, and is refused a key of its own; other tasks are refused nothing."""
    release = asyncio.Event()

    async def fetch(keys: list[int]) -> list[int]:
        if keys == [1]:
            await release.wait()
            return keys
        # A key of the first batch, suspended meanwhile: waiting for it is fine.
        waiting = loader.load(1)
        other.append(asyncio.ensure_future(other_task()))
        await asyncio.sleep(0)
        release.set()
        assert await waiting == 1
        loader.load(3)  # its own key, after a suspension: refused
        raise AssertionError("not refused")

    async def other_task() -> list[object]:
        # Another task hits the keys of both batches in progress: each load just waits.
        hits = [loader.load(1), loader.load(3)]
        return await asyncio.gather(*hits, return_exceptions=True)

    other: list[asyncio.Future[list[object]]] = []
    loader = DataLoader(fetch)
    first = loader.load(1)
    await ticks(3)  # the first batch is in flight
    second = loader.load_many([2, 3])
    with pytest.raises(RuntimeError, match="a key of the very batch it is computing"):
        await asyncio.wait_for(second, 10)
    assert await asyncio.wait_for(first, 10) == 1
    one, three = await asyncio.wait_for(other[0], 10)
    assert one == 1
    assert isinstance(three, RuntimeError)  # the second batch's failure, not a refusal


@pytest.mark.anyio
async def test_the_self_wait_guard_works_under_an_eager_task_factory() -> None:
    """An eager task runs the batch function's first step inside create_task()."""
    factory = getattr(asyncio, "eager_task_factory", None)
    if factory is None:
        pytest.skip("asyncio.eager_task_factory is new in Python 3.12")

    class SelfLoading(DataLoader[int, int]):
        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return [key if key != 2 else await self.load(2) for key in keys]

    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    loop.set_task_factory(factory)
    try:
        loader = SelfLoading()
        with pytest.raises(RuntimeError, match=SELF_WAIT):
            await asyncio.wait_for(loader.load_many([1, 2]), 10)
        assert await asyncio.wait_for(loader.load_many([1, 3]), 10) == [1, 3]
    finally:
        loop.set_task_factory(previous)


@pytest.mark.anyio
async def test_loads_of_other_keys_from_a_batch_function_still_work() -> None:
    calls: list[list[int]] = []

    async def parents(keys: list[int]) -> list[int]:
        calls.append(keys)
        # Keys outside the running batch: one more batch, no deadlock.
        return [key if key < 10 else await loader.load(key - 10) for key in keys]

    loader = DataLoader(parents)
    assert await asyncio.wait_for(loader.load_many([11, 12]), 10) == [1, 2]
    # While a batch runs, a hit on its pending key from another task just waits for it.
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        await release.wait()
        return keys

    other = DataLoader(slow)
    first = other.load(5)
    await started.wait()
    again = other.load(5)
    assert again is first
    release.set()
    assert await asyncio.wait_for(again, 10) == 5
    assert calls == [[11, 12], [1], [2]]
