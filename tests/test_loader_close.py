"""End of life: close() refuses later loads, cancel_pending(timeout=) is bounded."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from aiodataloader import DataLoader

from .loader_helpers import Recorder, id_loader, ticks

pytestmark = pytest.mark.anyio

CLOSED = (
    r"^DataLoader\(name='users'\) is closed: its request has ended; "
    r"{method}\(\) can no longer be called on it$"
)


class JSStyleMap:
    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def get(self, key: Any) -> Any:
        return self.data.get(key)

    def set(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: Any) -> None:
        del self.data[key]

    def clear(self) -> None:
        self.data.clear()


# Every way a loader finds its cached futures: the fast path and each checked path.
LOADER_SHAPES: dict[str, Callable[[], dict[str, Any]]] = {
    "own dict": dict,
    "cache key function": lambda: {"get_cache_key": lambda key: ("k", key)},
    "user's mapping": lambda: {"cache_map": {}},
    "JS-style map": lambda: {"cache_map": JSStyleMap()},
    "no cache": lambda: {"cache": False},
    "no batching": lambda: {"batch": False},
}


@pytest.mark.parametrize("shape", LOADER_SHAPES)
async def test_after_close_every_load_and_prime_raises_naming_loader_and_reason(
    shape: str,
) -> None:
    loader, calls = id_loader(name="users", **LOADER_SHAPES[shape]())
    assert await loader.load(1) == 1  # cached (where the cache is on)
    loader.close("its request has ended")
    refused: list[tuple[Callable[[], object], str]] = [
        (lambda: loader.load(1), "load"),  # a hit
        (lambda: loader.load(2), "load"),  # a miss
        (lambda: loader.load(None), "load"),
        (lambda: loader.load_many([1, 2]), "load_many"),
        (lambda: loader.load_many([]), "load_many"),
        (lambda: loader.prime(3, 3), "prime"),
        (lambda: loader.prime_many({3: 3}), "prime_many"),
    ]
    for call, method in refused:
        with pytest.raises(RuntimeError, match=CLOSED.format(method=method)):
            call()
    assert calls == [[1]]
    # Clearing and cancelling stay possible: teardown does both after close().
    loader.clear(1).clear_many([1]).clear_all()
    await loader.cancel_pending()


async def test_close_without_reason() -> None:
    loader = DataLoader(Recorder())
    loader.close()
    with pytest.raises(
        RuntimeError,
        match=r"^DataLoader\(name=None\) is closed; load\(\) can no longer be called on it$",
    ):
        loader.load(1)


async def test_loads_made_before_close_still_resolve() -> None:
    loader, calls = id_loader()
    future = loader.load(1)
    loader.close("done")
    assert await future == 1
    assert calls == [[1]]


async def test_changing_an_option_after_close_keeps_the_loader_closed() -> None:
    loader, _ = id_loader(cache=False)
    loader.close("done")
    loader.cache = True
    loader.batch = True
    with pytest.raises(RuntimeError, match="is closed: done"):
        loader.load(1)


async def test_close_of_a_subclass_names_the_subclass() -> None:
    class UserLoader(DataLoader[int, int]):
        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return keys

    loader = UserLoader(name="users")
    loader.close("its request has ended")
    with pytest.raises(RuntimeError, match=r"^UserLoader\(name='users'\) is closed: its request"):
        loader.load(1)


async def test_a_closed_loader_is_freed_without_the_cycle_collector() -> None:
    loader, _ = id_loader()
    await loader.load(1)
    loader.close("done")
    ref = weakref.ref(loader)
    gc.disable()
    try:
        del loader
        assert ref() is None
    finally:
        gc.enable()


def stubborn_loader(release: asyncio.Event) -> tuple[DataLoader[int, int], asyncio.Event]:
    """A batch function that swallows cancellation until ``release`` is set."""
    started = asyncio.Event()

    async def retry_forever(keys: list[int]) -> list[int]:
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue
        return keys

    return DataLoader(retry_forever, name="stubborn"), started


def batch_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and "_run_batch" in repr(task.get_coro())
    ]


async def test_cancel_pending_abandons_a_batch_that_swallows_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    loader, started = stubborn_loader(release)
    future = loader.load(1)
    await started.wait()
    [task] = batch_tasks()
    try:
        with caplog.at_level(logging.WARNING, logger="aiodataloader"):
            await asyncio.wait_for(loader.cancel_pending(timeout=0.05), 10)
        assert future.cancelled()
        [record] = [r for r in caplog.records if r.name == "aiodataloader"]
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert message.startswith("DataLoader(name='stubborn'): 1 batch task(s) still running")
        assert message.endswith("abandoned")
        # The loader no longer counts the abandoned task, which runs on.
        assert "batches_in_flight=0" in repr(loader)
        assert not task.done()
    finally:
        release.set()
        await asyncio.wait_for(task, 10)


async def test_cancel_pending_keeps_no_reference_to_an_abandoned_task() -> None:
    release = asyncio.Event()
    loader, started = stubborn_loader(release)
    loader.load(1)
    await started.wait()
    [task] = batch_tasks()
    try:
        await loader.cancel_pending(timeout=0)
        held = [vars(loader), *vars(loader).values()]  # the loader and what it holds directly
        assert not any(referrer is own for referrer in gc.get_referrers(task) for own in held)
    finally:
        release.set()
        await asyncio.wait_for(task, 10)


async def test_cancel_pending_with_a_timeout_waits_for_a_well_behaved_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    cleaned_up: list[bool] = []

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await ticks(2)  # cleanup that takes a few loop iterations
            cleaned_up.append(True)
        return keys

    loader = DataLoader(slow)
    future = loader.load(1)
    await started.wait()
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        await asyncio.wait_for(loader.cancel_pending(timeout=30), 10)
    assert future.cancelled()
    assert cleaned_up == [True]
    assert not batch_tasks()
    assert not [r for r in caplog.records if r.name == "aiodataloader"]


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        (-1, ValueError, r"timeout must be 0 or more seconds, or None; got -1$"),
        (float("nan"), ValueError, r"timeout must be 0 or more seconds, or None; got nan$"),
        ("5", TypeError, r"timeout must be a number of seconds or None; got '5' \(type str\)$"),
        (True, TypeError, r"timeout must be a number of seconds or None; got True \(type bool\)"),
        (
            10**400,
            ValueError,
            r"timeout must be a number of seconds that a float holds, or None; got 1000+\.\.\. "
            r"\(type int\)$",
        ),
    ],
)
async def test_cancel_pending_rejects_a_bad_timeout(
    timeout: Any, error: type[Exception], message: str
) -> None:
    loader, _ = id_loader(name="users")
    with pytest.raises(error, match=r"^DataLoader\(name='users'\): cancel_pending\(\) " + message):
        await loader.cancel_pending(timeout=timeout)


async def test_a_bad_timeout_is_refused_before_anything_is_cancelled() -> None:
    started = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        await ticks(2)
        return keys

    loader = DataLoader(slow)
    future = loader.load(1)
    await started.wait()
    with pytest.raises(ValueError, match="that a float holds"):
        await loader.cancel_pending(timeout=10**400)
    assert await asyncio.wait_for(future, 10) == 1
