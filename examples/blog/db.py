"""The blog's SQLite database: schema, deterministic seed, and a wrapper that counts queries.

Every SQL statement a request runs goes through :meth:`Database.fetch_all`, which adds one
to the :class:`QueryCounter` of the current request (a context variable set by
``QueryCountMiddleware`` in ``app.py``). That number is what the ``X-Query-Count`` header
reports, so the N+1 problem is visible in every response.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

SCHEMA = """
CREATE TABLE authors (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE
);
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    author_id INTEGER NOT NULL REFERENCES authors (id),
    title TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX posts_author_id ON posts (author_id);
CREATE TABLE comments (
    id INTEGER PRIMARY KEY,
    post_id INTEGER NOT NULL REFERENCES posts (id),
    author_id INTEGER NOT NULL REFERENCES authors (id),
    body TEXT NOT NULL
);
CREATE INDEX comments_post_id ON comments (post_id);
CREATE TABLE tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE post_tags (
    post_id INTEGER NOT NULL REFERENCES posts (id),
    tag_id INTEGER NOT NULL REFERENCES tags (id),
    PRIMARY KEY (post_id, tag_id)
) WITHOUT ROWID;
"""

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
    """Count the queries run in this context (and in tasks it starts) until the block exits.

    The counter is a mutable object, so a DataLoader's dispatch task, which runs in a copy of
    the request's context, adds to the same counter.
    """
    counter = QueryCounter()
    token = _current_counter.set(counter)
    try:
        yield counter
    finally:
        _current_counter.reset(token)


class Database:
    """The blog's SQLite file through two aiosqlite connections, opened in the app's lifespan
    and closed on shutdown: one for reads, one for writes.

    WAL mode lets reads go on while a write transaction is open, and a reader never sees
    rows that a transaction has not committed yet (or will roll back).
    """

    def __init__(self, reader: aiosqlite.Connection, writer: aiosqlite.Connection) -> None:
        self._reader = reader
        self._writer = writer
        # One write transaction at a time: they share the writer connection.
        self._write_lock = asyncio.Lock()
        self.closed = False

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        writer = await aiosqlite.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT
        try:
            await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute("PRAGMA foreign_keys = ON")
            reader = await aiosqlite.connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(reader, writer)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                await self._reader.close()
            finally:
                await self._writer.close()

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        _count_query()
        async with self._reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the block raises anything
        (an error, a cancelled request): a request that fails mid-way changes nothing."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._writer)
            except BaseException:
                # Shielded: a cancelled request still rolls back before the lock is released.
                await asyncio.shield(self._writer.rollback())
                raise
            await self._writer.commit()

    async def create_and_seed(self, size: SeedSize = DEFAULT_SEED_SIZE, seed: int = 2024) -> None:
        """Create the tables and fill them with the same data on every run, in one
        transaction: a failure leaves an empty, consistent database."""
        rows = _seed_rows(size, seed)
        await self._writer.executescript(SCHEMA)
        async with self.transaction() as tx:
            await tx.executemany("INSERT INTO authors VALUES (?, ?, ?)", rows.authors)
            await tx.executemany("INSERT INTO tags VALUES (?, ?)", rows.tags)
            await tx.executemany("INSERT INTO posts VALUES (?, ?, ?, ?)", rows.posts)
            await tx.executemany("INSERT INTO post_tags VALUES (?, ?)", rows.post_tags)
            await tx.executemany("INSERT INTO comments VALUES (?, ?, ?, ?)", rows.comments)

    async def table_counts(self) -> dict[str, int]:
        counts = {}
        for table in ("authors", "posts", "comments", "tags", "post_tags"):
            [[count]] = await self.fetch_all(f"SELECT count(*) FROM {table}")
            counts[table] = int(count)
        return counts


class Transaction:
    """Statements inside :meth:`Database.transaction`, counted like reads."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        _count_query()
        async with self._connection.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int | None:
        """Runs ``sql``; returns the id of the row it inserted, if any."""
        _count_query()
        async with self._connection.execute(sql, params) as cursor:
            return cursor.lastrowid

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        _count_query()
        await self._connection.executemany(sql, rows)


def _count_query() -> None:
    counter = _current_counter.get()
    if counter is not None:
        counter.count += 1


@dataclass(frozen=True)
class _SeedRows:
    authors: list[tuple[int, str, str]]
    tags: list[tuple[int, str]]
    posts: list[tuple[int, int, str, str]]
    post_tags: list[tuple[int, int]]
    comments: list[tuple[int, int, int, str]]


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize()


def _seed_rows(size: SeedSize, seed: int) -> _SeedRows:
    rng = random.Random(seed)
    first, last = _FIRST.split(), _LAST.split()
    authors = [
        (i, f"{rng.choice(first)} {rng.choice(last)}", f"author{i}@example.com")
        for i in range(1, size.authors + 1)
    ]
    tags = list(enumerate(TAG_NAMES, start=1))
    posts = [
        (i, rng.randint(1, size.authors), _sentence(rng, 5), _sentence(rng, 30))
        for i in range(1, size.posts + 1)
    ]
    post_tags = sorted(
        (post_id, tag_id)
        for post_id in range(1, size.posts + 1)
        for tag_id in rng.sample(range(1, len(tags) + 1), rng.randint(1, 4))
    )
    comments = [
        (i, rng.randint(1, size.posts), rng.randint(1, size.authors), _sentence(rng, 12))
        for i in range(1, size.comments + 1)
    ]
    return _SeedRows(authors, tags, posts, post_tags, comments)


def placeholders(values: Iterable[object]) -> str:
    """``?, ?, ?`` for an ``IN (...)`` clause with one parameter per value."""
    return ", ".join("?" for _ in values)
