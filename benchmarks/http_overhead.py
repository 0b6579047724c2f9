"""Per-request cost of LoaderMiddleware against the same app without it.

First, the ASGI app called directly, with no HTTP client in the timing (a client's own cost
dilutes the ratio): a minimal Starlette JSON endpoint against the same endpoint behind
LoaderMiddleware, for a request that uses no loader; and a request that uses one resource
(a session from an async generator, cleaned up after the response) and three loaders built
from it, through the request scope, against the same objects built by hand in the endpoint.

Then, for scale, the same apps in-process over httpx's ASGITransport and over a real uvicorn
server on 127.0.0.1 (in a child process, so client and server do not share a GIL).

Each pair runs side by side in interleaved rounds; the result is the median of the per-round
ratios with/without.

    python benchmarks/http_overhead.py           # 1-3 minutes
    python benchmarks/http_overhead.py --quick   # smoke run, under 20 s
    python benchmarks/http_overhead.py --direct  # the ASGI app called directly only, under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiodataloader import DataLoader
from aiodataloader.asgi import (
    LoaderMiddleware,
    LoaderRegistry,
    Loaders,
    _send_outside,  # the pipelining guard, measured on its own
    loaders_from,
)


class Users(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"user{k}" for k in keys]


class Posts(Users):
    pass


class Tags(Users):
    pass


LOADERS = (Users, Posts, Tags)


async def no_loader(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def three_with_middleware(request: Request) -> Response:
    loaders = loaders_from(request)
    values = [await loaders.get(cls).load(1) for cls in LOADERS]
    return JSONResponse(values)


async def three_by_hand(request: Request) -> Response:
    values = [await cls().load(1) for cls in LOADERS]
    return JSONResponse(values)


class Session:
    """Stands for a database session: opened per request, closed after it."""

    def __init__(self) -> None:
        self.open = True


@asynccontextmanager
async def open_session() -> AsyncIterator[Session]:
    session = Session()
    try:
        yield session
    finally:
        session.open = False


class SessionUsers(DataLoader[int, str]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"user{k}" for k in keys]


class SessionPosts(SessionUsers):
    pass


class SessionTags(SessionUsers):
    pass


SESSION_LOADERS = (SessionUsers, SessionPosts, SessionTags)


def session_registry() -> LoaderRegistry:
    registry = LoaderRegistry()
    registry.register(Session, open_session)  # the very context manager the endpoint enters
    for cls in SESSION_LOADERS:

        async def factory(scope: Loaders, cls: type[SessionUsers] = cls) -> SessionUsers:
            return cls(await scope.aget(Session))

        registry.register(cls, factory)
    return registry


async def resource_with_scope(request: Request) -> Response:
    scope = loaders_from(request)
    values = [await (await scope.aget(cls)).load(1) for cls in SESSION_LOADERS]
    return JSONResponse(values)


async def resource_by_hand(request: Request) -> Response:
    async with open_session() as session:
        values = [await cls(session).load(1) for cls in SESSION_LOADERS]
    return JSONResponse(values)


def build_direct_apps() -> tuple[ASGIApp, ASGIApp]:
    """(with LoaderMiddleware, without): the apps the direct ASGI calls time."""
    with_mw = Starlette(
        routes=[Route("/none", no_loader), Route("/resource", resource_with_scope)],
        middleware=[Middleware(LoaderMiddleware, registry=session_registry())],
    )
    without = Starlette(routes=[Route("/none", no_loader), Route("/resource", resource_by_hand)])
    return with_mw, without


def build_apps() -> tuple[ASGIApp, ASGIApp]:
    """(with LoaderMiddleware, without)."""
    with_mw = Starlette(
        routes=[Route("/none", no_loader), Route("/three", three_with_middleware)],
        middleware=[Middleware(LoaderMiddleware)],
    )
    without = Starlette(routes=[Route("/none", no_loader), Route("/three", three_by_hand)])
    return with_mw, without


def both_apps() -> ASGIApp:
    """One server for both sides: the same dispatch cost in front of each."""
    with_mw, without = build_apps()
    return Starlette(routes=[Mount("/with", with_mw), Mount("/without", without)])


@dataclass
class Row:
    transport: str
    request: str
    without_us: float
    with_us: float
    ratio: float


def interleaved(
    rounds: int, time_with: Callable[[], float], time_without: Callable[[], float]
) -> tuple[float, float, float]:
    """(median s/request without, with, median of the paired ratios with/without)."""
    ratios, t_with, t_without = [], [], []
    for i in range(rounds):
        # Alternate which side goes first, so drift and warm-up hit both alike.
        if i % 2:
            a, b = time_with(), time_without()
        else:
            b, a = time_without(), time_with()
        t_with.append(a)
        t_without.append(b)
        ratios.append(a / b)
    return statistics.median(t_without), statistics.median(t_with), statistics.median(ratios)


def http_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Message) -> None:
    return None


def bench_direct(rounds: int, per_round: int) -> list[Row]:
    """The ASGI apps called directly: no client, no server, nothing else in the timing.

    Timed in CPU time of this process (``time.process_time``), which other processes on a
    shared machine disturb less than wall time; the app does no I/O, so the two agree on a
    quiet one.
    """
    with_mw, without = build_direct_apps()
    floor = Starlette(routes=[Route("/none", no_loader)], middleware=[Middleware(ContextFloor)])
    guarded = Starlette(
        routes=[Route("/none", no_loader)], middleware=[Middleware(GuardedContextFloor)]
    )
    pairs: list[tuple[str, str, ASGIApp, ASGIApp]] = [
        ("/none", "no loader: floor", floor, without),
        ("/none", "floor + pipelining", guarded, without),
        ("/none", "no loader", with_mw, without),
        ("/resource", "resource + 3 loaders", with_mw, without),
    ]
    loop = asyncio.new_event_loop()  # not asyncio.run: the timing loop stays synchronous
    rows = []
    try:
        for path, label, app_with, app_without in pairs:
            template = http_scope(path)

            async def requests(app: ASGIApp, template: dict[str, Any] = template) -> None:
                for _ in range(per_round):
                    # A fresh scope per request, as a server makes one (both sides alike).
                    await app(dict(template), receive, send)

            def timed(app: ASGIApp) -> float:
                start = time.process_time()
                loop.run_until_complete(requests(app))
                return (time.process_time() - start) / per_round

            timed(app_with)  # warm-up
            timed(app_without)
            t_without, t_with, ratio = interleaved(
                rounds, partial(timed, app_with), partial(timed, app_without)
            )
            rows.append(
                Row("ASGI app called directly", label, t_without * 1e6, t_with * 1e6, ratio)
            )
    finally:
        loop.close()
    return rows


_floor_var: ContextVar[object] = ContextVar("floor", default=None)


class ContextFloor:
    """The least a request-scope middleware does: a context variable and a scope key."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["floor"] = self
        token = _floor_var.set(self)
        try:
            await self.app(scope, receive, send)
        finally:
            _floor_var.reset(token)


class GuardedContextFloor(ContextFloor):
    """The floor, plus what keeps a pipelined next request from inheriting the context: the
    send() wrapper of LoaderMiddleware, whose final body message runs outside it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, _send_outside(send))


def bench_asgi(rounds: int, per_round: int) -> list[Row]:
    with_mw, without = build_apps()
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
        for app in (with_mw, without)
    ]
    loop = asyncio.new_event_loop()  # not asyncio.run: the timing loop stays synchronous
    rows = []
    try:
        for path, label in (("/none", "no loader"), ("/three", "three loaders")):

            async def requests(client: httpx.AsyncClient, path: str = path) -> None:
                for _ in range(per_round):
                    await client.get(path)

            def timed(client: httpx.AsyncClient) -> float:
                start = time.perf_counter()
                loop.run_until_complete(requests(client))
                return (time.perf_counter() - start) / per_round

            timed(clients[0])  # warm-up
            timed(clients[1])
            t_without, t_with, ratio = interleaved(
                rounds, lambda: timed(clients[0]), lambda: timed(clients[1])
            )
            rows.append(Row("in-process (httpx ASGI)", label, t_without * 1e6, t_with * 1e6, ratio))
        for client in clients:
            loop.run_until_complete(client.aclose())
    finally:
        loop.close()
    return rows


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(both_apps(), host="127.0.0.1", port=port, log_level="error", lifespan="off")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_uvicorn(rounds: int, per_round: int) -> list[Row]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)], stdout=subprocess.DEVNULL
    )
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        with httpx.Client(base_url=base) as client:
            while True:
                try:
                    client.get("/with/none")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            for path, label in (("/none", "no loader"), ("/three", "three loaders")):

                def timed(prefix: str, path: str = path) -> float:
                    start = time.perf_counter()
                    for _ in range(per_round):
                        client.get(prefix + path)
                    return (time.perf_counter() - start) / per_round

                timed("/with")  # warm-up
                timed("/without")
                t_without, t_with, ratio = interleaved(
                    rounds, lambda: timed("/with"), lambda: timed("/without")
                )
                rows.append(Row("uvicorn 127.0.0.1", label, t_without * 1e6, t_with * 1e6, ratio))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, under 20 s")
    parser.add_argument(
        "--direct", action="store_true", help="only the ASGI app called directly (no client)"
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rounds, direct_n, asgi_n, http_n = (30, 100, 50, 40) if args.quick else (150, 400, 100, 60)
    rows = bench_direct(rounds, direct_n)
    if not args.direct:
        rows += bench_asgi(rounds, asgi_n) + bench_uvicorn(rounds, http_n)
    print(
        f"{'transport':<24} {'request':<20} {'without µs':>11} {'with µs':>9} "
        f"{'overhead':>9}  (median of {rounds} paired ratios)"
    )
    for r in rows:
        print(
            f"{r.transport:<24} {r.request:<20} {r.without_us:>11.1f} {r.with_us:>9.1f} "
            f"{(r.ratio - 1) * 100:>+8.1f}%"
        )


if __name__ == "__main__":
    main()
