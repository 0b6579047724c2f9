"""How a request's loaders should use the database: four session patterns, side by side.

The blog app (``examples/blog``), in-process, on an engine of ``pool_size=2, max_overflow=0``
(``--pool-size``); ``--clients`` concurrent requests at a time, each using three loaders
whose batches run concurrently. Every pattern is swapped in with ``registry.override``:

- ``request session + lock`` (the example's choice): one ``AsyncSession`` per request, shared
  by the endpoint and its loaders; a per-request lock lets one task at a time use it.
- ``session per batch``: every read (a batch, or the endpoint's own query) opens a short
  session of its own from the ``async_sessionmaker`` and closes it.
- ``request session, no lock``: one session per request, used by concurrent batches.
- ``endpoint session + batch sessions``: the endpoint keeps the request's session (and its
  connection) while its loaders open a session per batch.

Prints requests/s, p50/p99 latency and failures per pattern, interleaved over ``--rounds``.

    python -m benchmarks.session_patterns
    python -m benchmarks.session_patterns --database-url postgresql+asyncpg://postgres@127.0.0.1/blog
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aiodataloader.asgi import LoaderRegistry, Loaders
from demo.report import percentile
from examples.blog.app import create_app
from examples.blog.db import Database, SeedSize, SharedSession
from examples.blog.loaders import (
    AuthorLoader,
    CommentsOfPostLoader,
    PostsOfAuthorLoader,
    SessionLoader,
    TagsOfPostLoader,
)

P = ParamSpec("P")
T = TypeVar("T")
LOADERS = (AuthorLoader, PostsOfAuthorLoader, CommentsOfPostLoader, TagsOfPostLoader)


class SessionPerCall(SharedSession):
    """Every ``run`` on a short session of its own."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def run(
        self,
        work: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        async with self.sessionmaker() as session:
            return await work(session, *args, **kwargs)


class UnlockedSession(SharedSession):
    """The request's session, with no lock: concurrent batches use it at once."""

    async def run(
        self,
        work: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        return await work(self.session, *args, **kwargs)


def _sessionmaker(scope: Loaders) -> async_sessionmaker[AsyncSession]:
    db: Database = scope.connection.app.state.db
    return db.sessionmaker


async def _per_call(scope: Loaders) -> SharedSession:
    return SessionPerCall(_sessionmaker(scope))


async def _unlocked(scope: Loaders) -> Any:
    async with _sessionmaker(scope)() as session:
        yield UnlockedSession(session)


def _loader_on_batch_sessions(cls: type[SessionLoader[Any]]) -> Callable[[Loaders], Any]:
    async def build(scope: Loaders) -> SessionLoader[Any]:
        return cls(SessionPerCall(_sessionmaker(scope)))

    return build


def use_pattern(stack: ExitStack, registry: LoaderRegistry, pattern: str) -> None:
    if pattern == "session per batch":
        stack.enter_context(registry.override(SharedSession, _per_call))
    elif pattern == "request session, no lock":
        stack.enter_context(registry.override(SharedSession, _unlocked))
    elif pattern == "endpoint session + batch sessions":
        for cls in LOADERS:
            stack.enter_context(registry.override(cls, _loader_on_batch_sessions(cls)))


PATTERNS = (
    "request session + lock",
    "session per batch",
    "request session, no lock",
    "endpoint session + batch sessions",
)
PATHS = ("/posts?limit=20", "/authors/{id}")


@dataclass
class Result:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


async def measure(app: FastAPI, path: str, clients: int, requests: int, result: Result) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    queue = iter(range(requests))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in queue:
            started = time.perf_counter()
            try:
                response = await client.get(path.format(id=1 + i % 40))
                ok = response.status_code == 200
                failure = f"HTTP {response.status_code}"
            except Exception as error:  # a failure of the pattern is the measurement
                ok, failure = False, type(error).__name__
            if ok:
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                result.failures[failure] += 1

    async with httpx.AsyncClient(transport=transport, base_url="http://blog", timeout=60) as c:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for _ in range(clients)))
        result.seconds += time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[tuple[str, str], Result]:
    app = create_app(
        args.database_url,
        seed_size=SeedSize(authors=40, posts=300, comments=3_000),
        pool_size=args.pool_size,
        max_overflow=0,
        pool_timeout=args.pool_timeout,
    )
    results = {(p, path): Result() for p in PATTERNS for path in PATHS}
    async with app.router.lifespan_context(app):
        for round_ in range(args.rounds):
            shift = round_ % len(PATTERNS)
            for pattern in PATTERNS[shift:] + PATTERNS[:shift]:
                for path in PATHS:
                    with ExitStack() as stack:
                        use_pattern(stack, app.state.registry, pattern)
                        await measure(
                            app, path, args.clients, args.requests, results[(pattern, path)]
                        )
    return results


def format_table(results: dict[tuple[str, str], Result], header: str) -> str:
    lines = [
        header,
        "",
        f"{'pattern':35} {'endpoint':16} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}  failures",
    ]
    for (pattern, path), r in results.items():
        ok = len(r.latencies_ms)
        rate = f"{ok / r.seconds:7.1f}" if ok else f"{'-':>7}"
        p50 = f"{percentile(r.latencies_ms, 50):8.1f}" if ok else f"{'-':>8}"
        p99 = f"{percentile(r.latencies_ms, 99):8.1f}" if ok else f"{'-':>8}"
        failed = ", ".join(f"{n} {kind}" for kind, n in r.failures.most_common()) or "0"
        lines.append(f"{pattern:35} {path:16} {rate} {p50} {p99}  {failed}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.session_patterns", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=300, help="per pattern, endpoint, round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--pool-timeout", type=float, default=30.0, help="SQLAlchemy's default")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 clients, 24 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.requests, args.rounds, args.pool_timeout = 8, 24, 1, 2.0
    results = asyncio.run(run(args))
    database = "SQLite" if args.database_url is None else args.database_url.split(":")[0]
    print(
        format_table(
            results,
            f"session patterns: {database}, pool_size={args.pool_size}, max_overflow=0, "
            f"pool_timeout={args.pool_timeout:g} s; {args.clients} concurrent requests, "
            f"{args.requests} per pattern and endpoint, {args.rounds} interleaved round(s)",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
