"""LoaderMiddleware behind a real uvicorn server on 127.0.0.1: clients that disconnect
mid-stream, endpoints that raise, slow batches cancelled by a disconnect. Afterwards every
teardown has run, no load or batch task is pending, and the server still answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, current_loaders, loaders_from

pytestmark = pytest.mark.anyio


class Book:
    built: list[Tracked] = []  # every loader built, to check its teardown
    loads: list[asyncio.Future[str]] = []  # every load issued


class Tracked(DataLoader[int, str]):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        Book.built.append(self)

    def load(self, key: int) -> asyncio.Future[str]:
        future = super().load(key)
        Book.loads.append(future)
        return future

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"row{k}" for k in keys]

    async def aclose(self) -> None:
        await asyncio.sleep(0.001)  # an await, so only a shielded teardown gets past it
        self.closed = True


class Slow(Tracked):
    batch_started = anyio.Event()

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        Slow.batch_started.set()
        await asyncio.sleep(3600)
        raise AssertionError("never reached")


async def stream(request: Request) -> Response:
    async def rows() -> AsyncIterator[str]:
        key = 0
        while True:  # until the client goes away
            key += 1
            yield await current_loaders().get(Tracked).load(key) + "\n"
            await asyncio.sleep(0.005)

    return StreamingResponse(rows())


async def slow(request: Request) -> Response:
    # Work for a client that may leave: stop as soon as it disconnects.
    async with anyio.create_task_group() as tg:

        async def watch_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(watch_disconnect)
        await loaders_from(request).get(Tracked).load(1)
        await loaders_from(request).get(Slow).load(1)
    return PlainTextResponse("unreachable")


async def boom(request: Request) -> Response:
    await loaders_from(request).get(Tracked).load(1)
    if request.query_params.get("http"):
        raise HTTPException(409, "conflict")
    raise RuntimeError("endpoint broke")


async def ok(request: Request) -> Response:
    return PlainTextResponse(await loaders_from(request).get(Tracked).load(0))


app = Starlette(
    routes=[Route("/stream", stream), Route("/slow", slow), Route("/boom", boom), Route("/", ok)],
    middleware=[Middleware(LoaderMiddleware)],
)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    Book.built, Book.loads = [], []
    Slow.batch_started = anyio.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        http="h11",
        ws="none",
        log_config=None,
        log_level="critical",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    with anyio.fail_after(10):
        while not server.started:  # noqa: ASYNC110  # uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
    host, port = sock.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with anyio.fail_after(10):
            await task
        sock.close()


async def wait_for_teardown(expected_loaders: int) -> None:
    # Polled: uvicorn tears a request down in its own task, after the client has gone.
    with anyio.fail_after(10):
        while len(Book.built) < expected_loaders or not all(b.closed for b in Book.built):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def batch_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "_run_batch" in repr(t.get_coro())]


async def test_disconnects_errors_and_slow_batches_against_real_uvicorn(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        # Streaming: three clients read a few rows each, then hang up mid-stream.
        for _ in range(3):
            async with client.stream("GET", "/stream") as response:
                lines = response.aiter_lines()
                assert [await anext(lines) for _ in range(3)] == ["row1", "row2", "row3"]
        # Endpoints that raise: a 500 and an HTTPException.
        assert (await client.get("/boom")).status_code == 500
        response = await client.get("/boom", params={"http": "1"})
        assert (response.status_code, response.text) == (409, "conflict")

    # A slow batch, in flight when its client disconnects.
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(client.get, "/slow")
        with anyio.fail_after(10):
            await Slow.batch_started.wait()
        tg.cancel_scope.cancel()  # closes the connection

    # 3 streams + 2 raising + Tracked and Slow of /slow.
    await wait_for_teardown(7)
    assert len(Book.built) == 7
    assert [type(b).__name__ for b in Book.built].count("Slow") == 1
    assert all(future.done() for future in Book.loads)
    assert any(future.cancelled() for future in Book.loads)  # the slow load
    assert batch_tasks() == []

    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        assert (await client.get("/")).text == "row0"
    await wait_for_teardown(8)


# --- HTTP pipelining: the next request's task is created inside this request's send() -------

pipelined_seen: list[str] = []


async def scoped(request: Request) -> Response:
    loaders = loaders_from(request)
    loaders.get(Tracked)

    async def still_running() -> None:
        # The container is still open while this runs, after the body went out.
        await asyncio.sleep(0.2)

    return PlainTextResponse(f"scoped {id(loaders)}", background=BackgroundTask(still_running))


async def outside(request: Request) -> Response:
    try:
        found = current_loaders()
    except RuntimeError:
        return PlainTextResponse("no container")
    return PlainTextResponse(f"leaked {id(found)}")


pipelined_app = Starlette(
    routes=[
        Mount("/scoped", LoaderMiddleware(Starlette(routes=[Route("/", scoped)]))),
        Route("/outside", outside),
    ]
)


async def serve(app: Any) -> AsyncIterator[tuple[str, int]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="off", http="h11", ws="none", log_config=None, log_level="critical"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    with anyio.fail_after(10):
        while not server.started:  # noqa: ASYNC110  # uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        with anyio.fail_after(10):
            await task
        sock.close()


async def test_a_pipelined_request_never_sees_the_previous_requests_container() -> None:
    Book.built = []
    async for host, port in serve(pipelined_app):
        request = "GET {} HTTP/1.1\r\nHost: test\r\n\r\n"
        reader, writer = await asyncio.open_connection(host, port)
        # Both requests in one write: uvicorn starts the second one's task from inside the
        # first one's final send(), while the first one's background task still runs.
        writer.write((request.format("/scoped/") + request.format("/outside")).encode())
        await writer.drain()
        with anyio.fail_after(10):
            data = b""
            while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"no container"):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
        writer.close()
        await writer.wait_closed()
        bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in data.split(b"HTTP/1.1 ")[1:]]
        assert bodies[0].startswith(b"scoped ")
        assert bodies[1] == b"no container"
