"""The blog's database: the engine, the request's shared session, the seed, and a counter of
SQL statements.

SQLite through aiosqlite is the default (a file in a temporary folder, nothing to install);
any SQLAlchemy async URL works, e.g. ``postgresql+asyncpg://user@host/db``.

Every statement goes through SQLAlchemy's ``before_cursor_execute`` event, which adds one to
the :class:`QueryCounter` of the current request (a context variable set by
``QueryCountMiddleware`` in ``app.py``). That number is the ``X-Query-Count`` header, so the
N+1 problem is visible in every response.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from examples.blog.models import Author, Base, Comment, Post, Tag, post_tags

P = ParamSpec("P")
T = TypeVar("T")

#: The largest id the blog's INTEGER columns hold on every database (32 bits on PostgreSQL,
#: 64 on SQLite); GraphQL's Int has the same bound.
MAX_ID = 2**31 - 1

TAG_NAMES = [
    "python",
    "asyncio",
    "sqlite",
    "graphql",
    "rest",
    "fastapi",
    "starlette",
    "testing",
    "performance",
    "databases",
    "caching",
    "batching",
    "design",
    "security",
    "deployment",
    "tooling",
    "typing",
    "packaging",
    "web",
    "tutorial",
]
_FIRST = "Ada Alan Barbara Dennis Edsger Frances Grace Guido Jean John Ken Linus Margaret Radia"
_LAST = "Allen Backus Hopper Kay Knuth Lamport Liskov Perlman Ritchie Rossum Sammet Thompson"
_WORDS = [
    "async",
    "batch",
    "cache",
    "query",
    "loader",
    "request",
    "response",
    "event",
    "loop",
    "future",
    "task",
    "schema",
    "index",
    "table",
    "join",
    "latency",
    "throughput",
    "server",
    "client",
    "model",
    "field",
    "resolver",
]


@dataclass(frozen=True)
class SeedSize:
    authors: int = 200
    posts: int = 2_000
    comments: int = 20_000


DEFAULT_SEED_SIZE = SeedSize()


@dataclass
class QueryCounter:
    """SQL statements run on behalf of one request."""

    count: int = 0


_current_counter: ContextVar[QueryCounter | None] = ContextVar("blog_query_counter", default=None)


@contextmanager
def count_queries() -> Iterator[QueryCounter]:
    """Count the statements run in this context (and in tasks it starts) until the block exits.

    The counter is a mutable object, so a DataLoader's batch task, which runs in a copy of the
    request's context, adds to the same counter.
    """
    counter = QueryCounter()
    token = _current_counter.set(counter)
    try:
        yield counter
    finally:
        _current_counter.reset(token)


def _count_statement(*_: object) -> None:
    counter = _current_counter.get()
    if counter is not None:
        counter.count += 1


class SharedSession:
    """The request's one ``AsyncSession``, shared by the endpoint and every loader, used by
    one task at a time.

    Two loaders' batches run as concurrent tasks, and an ``AsyncSession`` must never be used
    by two tasks at once. :meth:`run` holds a per-request lock for the whole of one unit of
    work, so batches take turns on the request's single connection. A request therefore never
    holds more than one connection, and no number of concurrent requests can exhaust the pool
    (they queue for it instead), whatever their loaders do. One session also means one
    transaction and one identity map: a loader sees what the endpoint flushed, and an object a
    loader returned can be changed and committed by the endpoint.

    Don't await a loader inside ``work``: its batch would wait for the lock that ``work``
    holds.

    Chosen by measurement (``python -m benchmarks.session_patterns``; one run per database on
    a loaded 2-core machine). 50 concurrent requests on ``pool_size=2, max_overflow=0``, each
    using three loaders; requests/s and p99 for ``/posts`` and ``/authors/{id}``:

    - request session + lock (this): SQLite 10.3/s 6.2 s, 38.5/s 1.9 s; PostgreSQL 9.3/s
      8.2 s, 29.4/s 1.7 s; no failure.
    - a short session per batch: SQLite 9.5/s 8.7 s, 35.4/s 3.3 s; PostgreSQL 9.4/s 7.8 s,
      32.0/s 2.4 s; no failure.
    - request session, no lock: ``/authors`` fails 196 (SQLite) and 192 (PostgreSQL) times
      out of 200: two batches that start together both open the session's connection
      ("concurrent operations are not permitted"). ``/posts``, whose endpoint opens it first,
      passes only because SQLAlchemy's drivers serialize statements on a connection;
      nothing guards the session's own state (identity map, autoflush).
    - endpoint session + a session per batch: ``/posts`` fails 200 times out of 200 on both:
      two requests hold the two connections while their loaders wait for a third, until the
      pool times out.

    Throughput ties (the CPU is the limit), but one request at a time (pool of 10) the lock
    is the fastest: p50 of ``/posts`` 23.7 against 34.7 ms (SQLite) and 60.5 against 80.5 ms
    (PostgreSQL), of ``/authors`` 11.0 against 29.5 and 18.9 against 30.2 ms: one connection
    checked out per request, not one per batch. And a session per batch can never read the
    endpoint's uncommitted writes, and its objects are detached from the endpoint's session.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._lock = asyncio.Lock()

    async def run(
        self,
        work: Callable[Concatenate[AsyncSession, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``await work(session, *args, **kwargs)``, alone on the session."""
        async with self._lock:
            return await work(self.session, *args, **kwargs)


class Database:
    """The engine and session factory, made in the app's lifespan and disposed on shutdown."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # expire_on_commit=False: after a commit, rows already read stay readable without
        # another (implicit, and in async impossible) query.
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

    @classmethod
    def open(cls, url: str, **engine_options: Any) -> Database:
        """A database at ``url`` (``sqlite+aiosqlite:///...``, ``postgresql+asyncpg://...``);
        ``engine_options`` go to ``create_async_engine`` (e.g. ``pool_size``)."""
        return cls(create_async_engine(url, **engine_options))

    async def close(self) -> None:
        await self.engine.dispose()

    async def create_and_seed(self, size: SeedSize = DEFAULT_SEED_SIZE, seed: int = 2024) -> None:
        """Create the tables if needed and, if they are empty, fill them with the same data on
        every run, in one transaction."""
        async with self.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        async with self.sessionmaker.begin() as session:
            if await session.scalar(select(func.count()).select_from(Author)):
                return
            rows = _seed_rows(size, seed)
            await session.execute(insert(Author), rows.authors)
            await session.execute(insert(Tag), rows.tags)
            await session.execute(insert(Post), rows.posts)
            await session.execute(insert(post_tags), rows.post_tags)
            await session.execute(insert(Comment), rows.comments)
            if self.engine.dialect.name == "postgresql":
                # The seed sets ids explicitly, which does not advance the id sequences.
                for table in ("authors", "tags", "posts", "comments"):
                    await session.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))"
                        )
                    )

    async def table_counts(self) -> dict[str, int]:
        counts = {}
        async with self.sessionmaker() as session:
            for model in (Author, Post, Comment, Tag):
                counts[model.__tablename__] = await session.scalar(
                    select(func.count()).select_from(model)
                )
            counts["post_tags"] = await session.scalar(select(func.count()).select_from(post_tags))
        return {name: int(count or 0) for name, count in counts.items()}


def _sqlite_pragmas(dbapi_connection: Any, _: object) -> None:
    # WAL: readers go on while a write transaction is open. Foreign keys: off by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


@dataclass(frozen=True)
class _SeedRows:
    authors: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    posts: list[dict[str, Any]]
    post_tags: list[dict[str, Any]]
    comments: list[dict[str, Any]]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize()


def _seed_rows(size: SeedSize, seed: int) -> _SeedRows:
    rng = random.Random(seed)
    first, last = _FIRST.split(), _LAST.split()
    authors = [
        {
            "id": i,
            "name": f"{rng.choice(first)} {rng.choice(last)}",
            "email": f"author{i}@example.com",
        }
        for i in range(1, size.authors + 1)
    ]
    tags = [{"id": i, "name": name} for i, name in enumerate(TAG_NAMES, start=1)]
    posts = [
        {
            "id": i,
            "author_id": rng.randint(1, size.authors),
            "title": _sentence(rng, 5),
            "body": _sentence(rng, 30),
        }
        for i in range(1, size.posts + 1)
    ]
    links = [
        {"post_id": post_id, "tag_id": tag_id}
        for post_id in range(1, size.posts + 1)
        for tag_id in sorted(rng.sample(range(1, len(tags) + 1), rng.randint(1, 4)))
    ]
    comments = [
        {
            "id": i,
            "post_id": rng.randint(1, size.posts),
            "author_id": rng.randint(1, size.authors),
            "body": _sentence(rng, 12),
        }
        for i in range(1, size.comments + 1)
    ]
    return _SeedRows(authors, tags, posts, links, comments)
