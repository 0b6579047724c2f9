"""The per-request report: ``Loaders.stats()`` (readable after teardown), the opt-in
``Server-Timing`` header and debug log line of ``LoaderMiddleware``, and observers attached
through the registry. Starlette over httpx, in-process."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, Loaders, loaders_from
from aiodataloader.observe import BatchInfo, LoaderObserver

pytestmark = pytest.mark.anyio


class UserLoader(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"user {key}" for key in keys]


class TagLoader(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"tag {key}" for key in keys]


class Slow(DataLoader[int, str]):
    started: asyncio.Event

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        Slow.started.set()
        await asyncio.sleep(3600)
        raise AssertionError("never reached")


seen: list[Loaders] = []
left: list[asyncio.Future[str]] = []


async def posts(request: Request) -> Response:
    scope = loaders_from(request)
    seen.append(scope)
    users, tags = scope.get(UserLoader), scope.get(TagLoader)
    first = await asyncio.gather(*(users.load(i) for i in range(20)))
    second = await users.load_many(range(20, 53))  # a second level: a second batch
    labels = await tags.load_many([1, 2])
    await users.load(1)  # a cache hit
    during = scope.stats().by_loader["UserLoader"].batches
    headers = {"Server-Timing": 'app;dur=1.5;desc="the app\'s own"'}
    return JSONResponse({"n": len(first + second + labels), "during": during}, headers=headers)


async def abandoned(request: Request) -> Response:
    # Leaves a batch in flight: the teardown cancels it.
    scope = loaders_from(request)
    seen.append(scope)
    Slow.started = asyncio.Event()
    left.append(scope.get(Slow).load(1))
    await Slow.started.wait()
    return Response("left a batch running")


async def nothing(request: Request) -> Response:
    seen.append(loaders_from(request))
    return Response("no loader")


def make_app(registry: LoaderRegistry | None = None, **options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/posts", posts), Route("/abandoned", abandoned), Route("/", nothing)],
        middleware=[Middleware(LoaderMiddleware, registry=registry, **options)],
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def client_of(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_the_stats_of_a_request_stay_readable_after_its_teardown() -> None:
    seen.clear()
    async with client_of(make_app()) as client:
        response = await client.get("/posts")
        assert response.json() == {"n": 55, "during": 2}
        assert (await client.get("/abandoned")).status_code == 200

    posts_scope, abandoned_scope = seen
    assert repr(posts_scope).endswith("closed>")
    report = posts_scope.stats()
    assert list(report.by_loader) == ["UserLoader", "TagLoader"]
    users = report.by_loader["UserLoader"]
    assert (users.batches, users.keys_dispatched, users.largest_batch) == (2, 53, 33)
    assert report.total.batches == 3
    # The teardown cancelled the batch left in flight, and that is counted.
    assert left.pop().cancelled()
    slow = abandoned_scope.stats().by_loader["Slow"]
    assert (slow.batches, slow.cancelled_loads) == (1, 1)


async def test_no_server_timing_header_unless_asked_for() -> None:
    async with client_of(make_app()) as client:
        response = await client.get("/posts")
    assert response.headers.get_list("Server-Timing") == ['app;dur=1.5;desc="the app\'s own"']


async def test_the_server_timing_header_lists_each_loader() -> None:
    async with client_of(make_app(server_timing=True)) as client:
        response = await client.get("/posts")
        quiet = await client.get("/")
    own, ours = response.headers.get_list("Server-Timing")
    assert own == 'app;dur=1.5;desc="the app\'s own"'
    assert re.fullmatch(
        r'UserLoader;dur=\d+\.\d\d;desc="2 batches, 53 keys \(largest 33\)", '
        r'TagLoader;dur=\d+\.\d\d;desc="1 batch, 2 keys"',
        ours,
    ), ours
    assert "Server-Timing" not in quiet.headers  # no loader made a batch


def test_server_timing_must_be_a_bool() -> None:
    with pytest.raises(
        TypeError, match=r"^LoaderMiddleware: server_timing must be True or False, got 'yes'$"
    ):
        LoaderMiddleware(make_app(), server_timing="yes")  # type: ignore[arg-type]


async def test_a_debug_line_per_request_when_its_logger_is_enabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with client_of(make_app()) as client:
        await client.get("/posts")  # DEBUG is off: no line
        with caplog.at_level(logging.DEBUG, logger="aiodataloader.requests"):
            await client.get("/posts")
            await client.get("/")  # builds no loader: nothing to tear down, nothing logged
    lines = [r.getMessage() for r in caplog.records if r.name == "aiodataloader.requests"]
    assert len(lines) == 1
    assert re.fullmatch(
        r"GET /posts: UserLoader 2 batches, 53 keys \(largest 33\), \d+\.\d ms; "
        r"TagLoader 1 batch, 2 keys, \d+\.\d ms",
        lines[0],
    ), lines[0]


async def test_a_scope_of_your_own_logs_its_line_too(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiodataloader.requests"):
        async with Loaders() as scope:
            await scope.get(TagLoader).load(1)
    (line,) = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"Loaders: TagLoader 1 batch, 1 key, \d+\.\d ms", line), line
    assert scope.stats().by_loader["TagLoader"].batches == 1


async def test_observers_attached_to_the_registry_see_its_loaders() -> None:
    class Recording(LoaderObserver):
        def __init__(self) -> None:
            self.events: list[tuple[str, Any]] = []

        def on_batch_start(self, batch: BatchInfo) -> None:
            self.events.append((batch.name, batch.size))

        def on_cache_hit(self, loader: DataLoader[Any, Any], key: Any) -> None:
            self.events.append((f"hit {type(loader).__name__}", key))

    observer = Recording()
    registry = LoaderRegistry()
    registry.add_observer(observer)
    seen.clear()
    async with client_of(make_app(registry)) as client:
        await client.get("/posts")
    assert observer.events == [
        ("UserLoader", 20),
        ("UserLoader", 33),
        ("TagLoader", 2),
        ("hit UserLoader", 1),
    ]
    assert seen[0].stats().by_loader["UserLoader"].cache_hits == 1


def test_the_registry_refuses_what_is_not_an_observer() -> None:
    with pytest.raises(
        TypeError,
        match=r"^LoaderRegistry\.add_observer\(\): expected a LoaderObserver .* got str without",
    ):
        LoaderRegistry().add_observer("tracer")  # type: ignore[arg-type]


async def test_a_torn_down_scope_keeps_its_statistics_not_its_loaders() -> None:
    async with Loaders() as scope:
        tags = scope.get(TagLoader)
        await tags.load_many([1, 2])
    gone = weakref.ref(tags)
    del tags
    gc.collect()
    assert gone() is None
    assert scope.stats().by_loader["TagLoader"].keys_dispatched == 2
