"""One DataLoader per batched read, the registry that builds them for each request, and the
rule for reading your own writes.

Every loader of a request reads through the request's :class:`~examples.blog.db.SharedSession`:
the endpoint and its loaders see one transaction (so a loader sees what the endpoint wrote
and flushed), and a request holds one connection at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderRegistry, Loaders
from aiodataloader.value_cache import ValueCache
from examples.blog import queries
from examples.blog.db import Database, SharedSession
from examples.blog.models import Author, Base, Comment, Post

V = TypeVar("V")
L = TypeVar("L", bound="SessionLoader[Any]")

#: The core's ``batch_schedule_fn``: gets a zero-argument callback that dispatches the batch.
ScheduleFn = Callable[[Callable[[], None]], object]


class SessionLoader(DataLoader[int, V]):
    """A loader of rows by integer id, reading through the request's shared session."""

    def __init__(
        self, session: SharedSession, *, batch_schedule_fn: ScheduleFn | None = None
    ) -> None:
        super().__init__(batch_schedule_fn=batch_schedule_fn)
        self.session = session


class AuthorLoader(SessionLoader[Author | None]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, Author]:
        # A mapping, not a list: ids with no row resolve to None.
        return await self.session.run(queries.authors_by_id, keys)


class PostsOfAuthorLoader(SessionLoader[list[Post]]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[Post]]:
        return await self.session.run(queries.posts_by_author_id, keys)


class CommentsOfPostLoader(SessionLoader[list[Comment]]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[Comment]]:
        return await self.session.run(queries.comments_by_post_id, keys)


class TagsOfPostLoader(SessionLoader[list[str]]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[str]]:
        return await self.session.run(queries.tags_by_post_id, keys)


async def save(scope: Loaders, *rows: Base) -> None:
    """Write ``rows`` in the request's transaction, so that every later load sees them.

    The rule for reading your own writes: write through the request's session (the INSERT is
    flushed at once, and the loaders read on the same session, so they see it before the
    commit); then forget everything the request's loaders cached before the write (it may be
    stale, and a write rarely knows every key it changed), and prime them with the written rows
    where a loader is keyed by the row's id. Pass all the rows of one write in one call: each
    call forgets what the one before it primed.
    """
    session = await scope.aget(SharedSession)
    for row in rows:
        await session.run(queries.add, row)
    scope.clear_all()
    await forget_shared(scope, *rows)
    for row in rows:
        if isinstance(row, Author):
            (await scope.aget(AuthorLoader)).prime(row.id, row)


async def forget_shared(scope: Loaders, *rows: Base) -> None:
    """Invalidate what ``rows`` change in the value caches shared by every worker (a no-op
    without them). ``save()`` calls it before the commit, so the request reads its own
    writes; call it again after the commit, so no worker keeps what it read meanwhile."""
    for row in rows:
        if isinstance(row, Author):
            await (await scope.aget(AuthorLoader)).invalidate(row.id)
        elif isinstance(row, Post):
            await (await scope.aget(PostsOfAuthorLoader)).invalidate(row.author_id)
        elif isinstance(row, Comment):
            await (await scope.aget(CommentsOfPostLoader)).invalidate(row.post_id)


def batch_window(seconds: float) -> ScheduleFn:
    """A ``batch_schedule_fn`` that dispatches each batch ``seconds`` after its first load."""

    def schedule(dispatch: Callable[[], None]) -> object:
        return asyncio.get_running_loop().call_later(seconds, dispatch)

    return schedule


async def shared_session(scope: Loaders) -> AsyncIterator[SharedSession]:
    """The request's session: opened on first use, closed at the request's teardown, after
    every loader that uses it (uncommitted work is rolled back then)."""
    db: Database = scope.connection.app.state.db
    async with db.sessionmaker() as session:
        yield SharedSession(session)


def build_registry(
    batch_window_seconds: float | None = None,
    value_caches: Mapping[type[DataLoader[Any, Any]], ValueCache[Any]] | None = None,
) -> LoaderRegistry:
    """Register the request's session, and every blog loader with a factory that hands it
    that session; the registry gives each loader its shared value cache where
    ``value_caches`` has one (``shared_cache.py``).

    With ``batch_window_seconds``, each batch waits that long for more keys before it runs
    (the core's ``batch_schedule_fn``); by default a batch runs as soon as the event loop has
    no more loads to queue.
    """
    window = None if batch_window_seconds is None else batch_window(batch_window_seconds)
    caches = value_caches or {}
    registry = LoaderRegistry(value_caches=lambda cls, scope: caches.get(cls))
    registry.register(SharedSession, shared_session)

    def factory(cls: type[L]) -> Callable[[Loaders], Awaitable[L]]:
        async def build(scope: Loaders) -> L:
            return cls(await scope.aget(SharedSession), batch_schedule_fn=window)

        return build

    for loader_cls in (AuthorLoader, PostsOfAuthorLoader, CommentsOfPostLoader, TagsOfPostLoader):
        registry.register(loader_cls, factory(loader_cls))
    return registry
