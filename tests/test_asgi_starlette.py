"""LoaderMiddleware in a plain Starlette app over httpx: timing of teardown on every exit path,
isolation between concurrent requests, and nothing surviving a request."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.asgi import (
    LoaderMiddleware,
    LoaderRegistry,
    Loaders,
    current_loaders,
    loaders_from,
)

from .asgi_client import asgi_client

pytestmark = pytest.mark.anyio

Endpoint = Callable[[Request], Awaitable[Response]]


class Tracked(DataLoader[int, str]):
    """Records its batches and its teardown in a shared event log."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.label = type(self).__name__

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        self.events.append(f"batch {self.label} {keys}")
        return [f"{self.label}:{k}" for k in keys]

    async def aclose(self) -> None:
        # Awaits, so an unshielded teardown would be cancelled here.
        await anyio.sleep(0.001)
        self.events.append(f"aclose {self.label}")


def app_with(endpoint: Endpoint, events: list[str], *more: type[Tracked]) -> Starlette:
    def factory(cls: type[Tracked]) -> Callable[[HTTPConnection], Tracked]:
        return lambda conn: cls(events)

    registry = LoaderRegistry()
    classes: list[type[Tracked]] = [Tracked, *more]
    for cls in classes:
        registry.register(cls, factory(cls))
    return Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(LoaderMiddleware, registry=registry)],
    )


client_for = asgi_client


async def test_plain_starlette_gets_one_loader_per_request() -> None:
    events: list[str] = []

    async def endpoint(request: Request) -> Response:
        loader = loaders_from(request).get(Tracked)
        assert current_loaders().get(Tracked) is loader
        values = await loader.load_many([1, 2, 3])
        return JSONResponse(values)

    async with client_for(app_with(endpoint, events)) as client:
        assert (await client.get("/")).json() == ["Tracked:1", "Tracked:2", "Tracked:3"]
        assert (await client.get("/")).status_code == 200
        # The context variable was reset: ASGITransport runs the app in this very task.
        with pytest.raises(RuntimeError, match="LoaderMiddleware is not installed"):
            current_loaders()
    assert events == ["batch Tracked [1, 2, 3]", "aclose Tracked"] * 2


async def test_a_request_that_uses_no_loader_builds_none() -> None:
    events: list[str] = []

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(repr(loaders_from(request)))

    async with client_for(app_with(endpoint, events)) as client:
        assert (await client.get("/")).text == "<Loaders []>"
    assert events == []


async def test_teardown_waits_for_the_streaming_body_and_background_tasks() -> None:
    events: list[str] = []

    async def body() -> AsyncIterator[str]:
        for key in (1, 2):
            events.append(f"chunk {key}")
            yield await current_loaders().get(Tracked).load(key) + "\n"
            await anyio.sleep(0.001)

    async def background() -> None:
        events.append("background " + await current_loaders().get(Tracked).load(3))

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(body(), background=BackgroundTask(background))

    async with client_for(app_with(endpoint, events)) as client:
        assert (await client.get("/")).text == "Tracked:1\nTracked:2\n"
    assert events == [
        "chunk 1",
        "batch Tracked [1]",
        "chunk 2",
        "batch Tracked [2]",
        "batch Tracked [3]",
        "background Tracked:3",
        "aclose Tracked",
    ]


async def test_teardown_runs_when_the_endpoint_raises() -> None:
    events: list[str] = []

    async def endpoint(request: Request) -> Response:
        await loaders_from(request).get(Tracked).load(1)
        raise ValueError("endpoint broke")

    app = app_with(endpoint, events)
    async with client_for(app, raise_app_exceptions=False) as client:
        assert (await client.get("/")).status_code == 500
    async with client_for(app) as client:
        with pytest.raises(ValueError, match="endpoint broke"):
            await client.get("/")
    assert events == ["batch Tracked [1]", "aclose Tracked"] * 2


async def test_teardown_runs_after_http_exception() -> None:
    events: list[str] = []

    async def endpoint(request: Request) -> Response:
        await loaders_from(request).get(Tracked).load(7)
        raise HTTPException(404, "no such thing")

    async with client_for(app_with(endpoint, events)) as client:
        response = await client.get("/")
    assert (response.status_code, response.text) == (404, "no such thing")
    assert events == ["batch Tracked [7]", "aclose Tracked"]


async def test_teardown_error_is_logged_and_never_hides_the_original_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []

    class Broken(Tracked):
        async def aclose(self) -> None:
            raise OSError("aclose broke")

    async def endpoint(request: Request) -> Response:
        loaders_from(request).get(Tracked)
        loaders_from(request).get(Broken)
        if request.query_params.get("fail"):
            raise ValueError("endpoint broke")
        return PlainTextResponse("fine")

    app = app_with(endpoint, events, Broken)
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        async with client_for(app) as client:
            assert (await client.get("/", params={"fail": ""})).text == "fine"
            with pytest.raises(ValueError, match="endpoint broke"):
                await client.get("/", params={"fail": "1"})
    assert events == ["aclose Tracked"] * 2  # Broken failed, Tracked (older) still closed
    records = [r for r in caplog.records if r.name == "aiodataloader"]
    assert len(records) == 2
    for record in records:
        assert record.levelno >= logging.WARNING
        assert record.getMessage().startswith("aclose() of <")
        assert record.exc_info is not None
        assert str(record.exc_info[1]) == "aclose broke"


async def test_base_exception_in_teardown_never_replaces_the_endpoint_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []

    class CancelsItself(Tracked):
        async def aclose(self) -> None:
            raise asyncio.CancelledError

    async def endpoint(request: Request) -> Response:
        loaders_from(request).get(CancelsItself)
        raise ValueError("endpoint broke")

    app = app_with(endpoint, events, CancelsItself)
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        async with client_for(app) as client:
            with pytest.raises(ValueError, match="endpoint broke"):
                await client.get("/")
    assert [r.getMessage().split(" of ")[0] for r in caplog.records] == ["aclose()"]


async def test_nested_middleware_hands_the_outer_container_back() -> None:
    seen: list[object] = []

    async def inner_endpoint(request: Request) -> Response:
        seen.append(loaders_from(request))
        return PlainTextResponse("inner")

    inner = LoaderMiddleware(Starlette(routes=[Route("/", inner_endpoint)]))

    async def outer_endpoint(request: Request) -> Response:
        outer_loaders = loaders_from(request)
        await inner(request.scope, request.receive, _discard)
        seen.append(loaders_from(request))
        assert current_loaders() is outer_loaders
        return PlainTextResponse("outer")

    app = Starlette(routes=[Route("/", outer_endpoint)], middleware=[Middleware(LoaderMiddleware)])
    async with client_for(app) as client:
        assert (await client.get("/")).text == "outer"
    inner_loaders, outer_after = seen
    assert inner_loaders is not outer_after
    assert repr(outer_after) == "<Loaders [] closed>"  # torn down only after the response


async def _discard(message: Any) -> None:
    return None


async def test_cancelled_request_still_tears_down_shielded() -> None:
    events: list[str] = []
    started = anyio.Event()

    class Slow(Tracked):
        async def batch_load_fn(self, keys: list[int]) -> list[str]:
            started.set()
            await anyio.sleep_forever()
            raise AssertionError

    futures: list[Any] = []

    async def endpoint(request: Request) -> Response:
        loaders = loaders_from(request)
        loaders.get(Tracked)
        futures.append(loaders.get(Slow).load(1))
        return PlainTextResponse(await futures[0])

    app = app_with(endpoint, events, Slow)
    async with client_for(app) as client, anyio.create_task_group() as tg:
        tg.start_soon(client.get, "/")
        with anyio.fail_after(5):
            await started.wait()
        tg.cancel_scope.cancel()
    assert events == ["aclose Slow", "aclose Tracked"]
    assert futures[0].cancelled()


async def test_200_concurrent_requests_from_20_users_stay_isolated() -> None:
    batches: Counter[tuple[str, str]] = Counter()

    class Named(DataLoader[int, str]):
        def __init__(self, conn: HTTPConnection) -> None:
            super().__init__()
            self.user, self.request_id = conn.headers["x-user"], conn.headers["x-request"]

        async def batch_load_fn(self, keys: list[int]) -> list[str]:
            batches[(self.request_id, type(self).__name__)] += 1
            await anyio.sleep(0.001)  # let other requests interleave
            return [f"{self.user}/{type(self).__name__}/{k}" for k in keys]

    class Profiles(Named):
        pass

    class Posts(Named):
        pass

    registry = LoaderRegistry()
    registry.register(Profiles, Profiles)  # the class itself is a factory: it takes the conn
    registry.register(Posts, Posts)

    async def field(cls: type[Named], key: int) -> str:
        await anyio.lowlevel.checkpoint()
        return await current_loaders().get(cls).load(key)

    async def endpoint(request: Request) -> Response:
        results: dict[str, str] = {}

        async def resolve(cls: type[Named], key: int) -> None:
            results[f"{cls.__name__}{key}"] = await field(cls, key)

        async with anyio.create_task_group() as tg:
            for key in range(6):
                tg.start_soon(resolve, Profiles, key)
                tg.start_soon(resolve, Posts, key % 3)
        return JSONResponse(results)

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(LoaderMiddleware, registry=registry)],
    )
    responses: dict[int, httpx.Response] = {}
    async with client_for(app) as client:

        async def one(i: int) -> None:
            headers = {"x-user": f"user{i % 20}", "x-request": str(i)}
            responses[i] = await client.get("/", headers=headers)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
    assert len(responses) == 200
    for i, response in responses.items():
        values = response.json().values()
        assert len(values) == 9
        assert all(v.startswith(f"user{i % 20}/") for v in values), values
    assert batches == {(str(i), cls): 1 for i in range(200) for cls in ("Profiles", "Posts")}


@pytest.mark.slow
async def test_nothing_from_a_request_survives_it() -> None:
    refs: list[weakref.ref[Any]] = []

    class Value:
        pass

    class Values(DataLoader[int, Value]):
        async def batch_load_fn(self, keys: list[int]) -> list[Value]:
            values = [Value() for _ in keys]
            refs.extend(weakref.ref(v) for v in values)
            return values

    async def endpoint(request: Request) -> Response:
        loaders = loaders_from(request)
        refs.extend([weakref.ref(loaders), weakref.ref(loaders.get(Values))])
        await loaders.get(Values).load_many([1, 2])
        if request.query_params.get("fail"):
            raise HTTPException(400)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)], middleware=[Middleware(LoaderMiddleware)])
    async with client_for(app) as client:
        for i in range(2000):
            await client.get("/", params={"fail": "1" if i % 3 == 0 else ""})
    for _ in range(3):  # let the loop run the done-callbacks of the last request's futures
        await anyio.lowlevel.checkpoint()
    gc.collect()
    assert len(refs) == 8000
    assert [ref for ref in refs if ref() is not None] == []


async def test_a_task_that_outlives_its_request_cannot_build_a_container() -> None:
    done = anyio.Event()
    outcome: list[str] = []
    kept: list[Loaders] = []
    tasks: list[asyncio.Task[None]] = []

    async def later() -> None:
        await done.wait()
        for attempt in ("current", "kept"):
            try:
                if attempt == "current":
                    current_loaders().get(Tracked)
                else:
                    kept[0].get(Tracked)
            except RuntimeError as error:
                outcome.append(str(error).split(";")[0])

    async def endpoint(request: Request) -> Response:
        kept.append(loaders_from(request))
        tasks.append(asyncio.ensure_future(later()))  # outlives the request
        return PlainTextResponse("ok")

    async with client_for(app_with(endpoint, [])) as client:
        assert (await client.get("/")).text == "ok"
    done.set()
    await tasks[0]
    assert outcome == [
        "cannot build Tracked: the request of this Loaders has ended and it was torn down",
        "cannot build Tracked: the request of this Loaders has ended and it was torn down",
    ]


async def test_a_request_that_uses_nothing_builds_nothing() -> None:
    events: list[str] = []

    def alive() -> int:
        gc.collect()
        return sum(isinstance(o, (Loaders, DataLoader)) for o in gc.get_objects())

    async def endpoint(request: Request) -> Response:
        # No container, and no loader: the middleware builds them on first use only.
        during.append(alive())
        return PlainTextResponse("ok")

    during: list[int] = []
    before = alive()
    async with client_for(app_with(endpoint, events)) as client:
        assert (await client.get("/")).text == "ok"
    assert during == [before]
    assert events == []  # no factory ran, nothing was torn down


async def test_a_task_of_a_request_that_built_nothing_cannot_build_after_it() -> None:
    done = anyio.Event()
    outcome: list[str] = []

    async def later() -> None:
        await done.wait()
        try:
            current_loaders()
        except RuntimeError as error:
            outcome.append(str(error))

    async def endpoint(request: Request) -> Response:
        tasks.append(asyncio.ensure_future(later()))
        return PlainTextResponse("ok")

    tasks: list[asyncio.Task[None]] = []
    async with client_for(app_with(endpoint, [])) as client:
        assert (await client.get("/")).text == "ok"
    done.set()
    await tasks[0]
    assert outcome == [
        "the request of this context has ended and its Loaders was torn down; loaders and "
        "resources must not outlive the request that built them"
    ]


async def test_a_scope_of_ones_own_keeps_the_blocks_error_over_a_failing_cleanup(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Tracked):
        async def aclose(self) -> None:
            raise OSError("aclose broke")

    registry = LoaderRegistry()
    registry.register(Broken, lambda: Broken([]))

    async def message_scope() -> None:  # e.g. one per websocket message
        async with Loaders(registry=registry) as scope:
            scope.get(Broken)
            raise ValueError("message handler broke")

    with (
        caplog.at_level(logging.WARNING, logger="aiodataloader"),
        pytest.raises(ValueError, match="message handler broke"),
    ):
        await message_scope()
    [record] = [r for r in caplog.records if r.name == "aiodataloader"]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "aclose broke"
