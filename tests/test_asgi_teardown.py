"""The container's teardown under faults: steps that never end, cancellation from every side,
errors in cleanups, and a client that leaves while a factory awaits."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, Loaders, loaders_from

from .asgi_client import asgi_client

pytestmark = pytest.mark.anyio

# Short, so the tests stay quick; the bounds asserted below leave seconds of slack.
TIMEOUT = 0.2


class Session:
    def __init__(self, log: list[str], name: str = "session") -> None:
        self.log = log
        self.name = name

    def __repr__(self) -> str:
        return f"<Session {self.name}>"


def slow_session(log: list[str], seconds: float) -> Any:
    async def factory() -> AsyncIterator[Session]:
        try:
            yield Session(log)
        finally:  # the request's error is thrown in at the yield, as in FastAPI
            log.append("cleanup started")
            await asyncio.sleep(seconds)  # e.g. the network round trip of a rollback
            log.append("cleanup done")

    return factory


holding = True  # the stubborn code below ignores cancellation while this is set


@pytest.fixture(autouse=True)
async def release_what_holds() -> AsyncIterator[None]:
    global holding
    holding = True
    yield
    # Let abandoned steps end, or the event loop could not shut down after the test.
    holding = False
    await asyncio.sleep(0.05)


async def ignore_cancellation() -> None:
    while holding:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            continue


class Stubborn(DataLoader[int, int]):
    """Its aclose() does not return, and swallows every cancellation."""

    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        return keys

    async def aclose(self) -> None:
        await ignore_cancellation()


class Retrying(DataLoader[int, int]):
    """A batch function that swallows CancelledError, as a naive retry loop does."""

    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        await ignore_cancellation()
        return keys


async def test_a_step_that_never_ends_is_abandoned_and_the_steps_after_it_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    registry = LoaderRegistry()
    registry.register(Session, slow_session(log, 0))
    scope = Loaders(registry=registry, teardown_timeout=TIMEOUT)
    await scope.aget(Session)  # older: torn down after the stuck loader
    stubborn = scope.get(Stubborn)
    container = weakref.ref(scope)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        await scope.aclose()
    assert loop.time() - started < TIMEOUT + 5  # bounded: about TIMEOUT + a tenth of it
    assert log == ["cleanup started", "cleanup done"]
    [record] = [r for r in caplog.records if r.name == "aiodataloader"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"aclose() of {stubborn!r} did not finish within the teardown timeout and ignored "
        "cancellation; abandoned"
    )
    # Nothing of the request is kept by the abandoned step.
    del scope
    gc.collect()
    assert container() is None


async def test_a_batch_that_swallows_cancellation_is_abandoned_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = Loaders(teardown_timeout=TIMEOUT)
    loader = scope.get(Retrying)
    future = loader.load(1)
    await asyncio.sleep(0)  # the batch starts
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="aiodataloader"), anyio.fail_after(10):
        await scope.aclose()
    assert future.cancelled()
    messages = [r.getMessage() for r in caplog.records if r.name == "aiodataloader"]
    assert len(messages) == 1
    assert "Retrying" in messages[0]


async def test_in_process_a_stuck_teardown_never_hangs_the_request() -> None:
    async def endpoint(request: Request) -> Response:
        loaders_from(request).get(Stubborn)
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(LoaderMiddleware, teardown_timeout=TIMEOUT)],
    )
    async with asgi_client(app) as client:
        with anyio.fail_after(10):
            assert (await client.get("/")).text == "ok"


async def test_native_task_cancel_waits_for_the_teardown_then_goes_on() -> None:
    log: list[str] = []
    registry = LoaderRegistry()
    registry.register(Session, slow_session(log, 0.05))

    async def request() -> None:
        async with Loaders(registry=registry) as scope:
            await scope.aget(Session)
        log.append("after the scope")  # never: the cancellation goes on

    task = asyncio.ensure_future(request())
    while "cleanup started" not in log:  # noqa: ASYNC110  # the log is the signal
        await asyncio.sleep(0)
    task.cancel()  # native: an anyio shield does not stop this
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["cleanup started", "cleanup done"]


async def test_asyncio_timeout_around_a_request_still_times_out_after_the_teardown() -> None:
    log: list[str] = []
    registry = LoaderRegistry()
    registry.register(Session, slow_session(log, 0.05))

    async def endpoint(request: Request) -> Response:
        await loaders_from(request).aget(Session)
        return PlainTextResponse("ok")

    app = LoaderMiddleware(Starlette(routes=[Route("/", endpoint)]), registry)
    calls = 0

    async def send(message: Any) -> None:
        nonlocal calls
        calls += 1
        if message["type"] == "http.response.body":
            await asyncio.sleep(3600)  # a client that stopped reading

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    with pytest.raises(TimeoutError):
        async with asyncio_timeout(0.05):
            await app(scope, receive, send)
    assert log == ["cleanup started", "cleanup done"]


def asyncio_timeout(seconds: float) -> Any:
    if hasattr(asyncio, "timeout"):
        return asyncio.timeout(seconds)
    return _wait_for_timeout(seconds)  # pragma: no cover - Python 3.10


class _wait_for_timeout:
    """``asyncio.timeout`` for Python 3.10: cancels the task, then raises TimeoutError."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handle = asyncio.get_running_loop().call_later(self.seconds, task.cancel)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.handle.cancel()
        if exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


async def test_anyio_cancellation_of_a_request_waits_for_the_teardown() -> None:
    log: list[str] = []
    registry = LoaderRegistry()
    registry.register(Session, slow_session(log, 0.05))
    built = anyio.Event()

    async def request() -> None:
        async with Loaders(registry=registry) as scope:
            await scope.aget(Session)
            built.set()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await built.wait()
        tg.cancel_scope.cancel()
    assert log == ["cleanup started", "cleanup done"]


async def test_a_client_leaving_while_a_factory_awaits_cleans_up_what_was_built() -> None:
    log: list[str] = []
    factory_waiting = anyio.Event()
    tasks_before = asyncio.all_tasks()

    async def user(scope: Loaders) -> AsyncIterator[str]:
        await scope.aget(Session)  # built first: cleaned up at teardown
        factory_waiting.set()
        try:
            await anyio.sleep_forever()  # e.g. an auth service that is slow to answer
            yield "never"
        finally:
            log.append("user factory cancelled")

    registry = LoaderRegistry()
    registry.register(Session, slow_session(log, 0))
    registry.register(str, user)

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(await loaders_from(request).aget(str))

    app = Starlette(
        routes=[Route("/", endpoint)], middleware=[Middleware(LoaderMiddleware, registry=registry)]
    )
    async with asgi_client(app) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.get, "/")
        with anyio.fail_after(10):
            await factory_waiting.wait()
        tg.cancel_scope.cancel()
    assert log == ["user factory cancelled", "cleanup started", "cleanup done"]
    assert asyncio.all_tasks() == tasks_before  # nothing left pending


async def test_errors_in_cleanups_are_logged_once_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    class Broken:
        pass

    async def broken() -> AsyncIterator[Broken]:
        yield Broken()
        raise OSError("rollback failed")

    class Cancelling:
        pass

    async def cancelled_cleanup() -> AsyncIterator[Cancelling]:
        yield Cancelling()
        raise asyncio.CancelledError

    registry = LoaderRegistry()
    registry.register(Session, slow_session(log, 0))
    registry.register(Broken, broken)
    registry.register(Cancelling, cancelled_cleanup)
    scope = Loaders(registry=registry)
    await scope.aget(Session)
    await scope.aget(Broken)
    await scope.aget(Cancelling)
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        await scope.aclose()
    assert log == ["cleanup started", "cleanup done"]
    records = [r for r in caplog.records if r.name == "aiodataloader"]
    assert [r.getMessage().split(" <")[0] for r in records] == [
        "cleanup of Cancelling",
        "cleanup of Broken",
    ]
    assert [type(r.exc_info[1]) for r in records if r.exc_info] == [
        asyncio.CancelledError,
        OSError,
    ]


async def test_a_factory_error_answers_500_and_cleans_up_what_was_built(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []

    async def broken_user(scope: Loaders) -> str:
        await scope.aget(Session)
        raise PermissionError("token expired")

    registry = LoaderRegistry()
    registry.register(Session, slow_session(log, 0))
    registry.register(str, broken_user)

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(await loaders_from(request).aget(str))

    app = Starlette(
        routes=[Route("/", endpoint)], middleware=[Middleware(LoaderMiddleware, registry=registry)]
    )
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        async with asgi_client(app, raise_app_exceptions=False) as client:
            assert (await client.get("/")).status_code == 500
    assert log == ["cleanup started", "cleanup done"]
    assert [r.getMessage() for r in caplog.records if r.name == "aiodataloader"] == [
        "the factory for str raised PermissionError('token expired')"
    ]


class CountsCancels(DataLoader[int, int]):
    """A loader whose own cancel_pending() does more than the core's: teardown calls it even
    when nothing is pending."""

    cancels: list[float | None] = []

    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        return keys

    async def cancel_pending(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        CountsCancels.cancels.append(timeout)
        await super().cancel_pending(timeout)


class Plain(DataLoader[int, int]):
    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        return keys


async def test_idle_loaders_are_closed_and_cleared_and_an_own_cancel_pending_still_runs() -> None:
    CountsCancels.cancels = []
    cache: dict[Any, Any] = {}
    registry = LoaderRegistry()
    registry.register(Plain, lambda: Plain(cache_map=cache))
    scope = Loaders(registry=registry, teardown_timeout=TIMEOUT)
    counting = scope.get(CountsCancels)
    plain = scope.get(Plain)
    assert await counting.load(1) == 1
    assert await plain.load(2) == 2  # both idle now: their batches are done
    assert list(cache) == [2]
    await scope.aclose()
    [timeout] = CountsCancels.cancels
    assert timeout is not None
    assert 0 < timeout <= TIMEOUT
    assert cache == {}
    for loader in (counting, plain):
        with pytest.raises(RuntimeError, match="is closed: its request has ended"):
            loader.load(3)
