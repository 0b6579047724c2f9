"""The event loop is bound lazily: loaders built outside a loop work inside one."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import pytest

from aiodataloader import DataLoader

from .loader_helpers import Recorder

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
