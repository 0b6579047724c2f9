"""One DataLoader per batched read, the registry that builds them for each request, and the
rule for reading your own writes.

Every loader of a request reads through the request's :class:`~examples.blog.db.SharedSession`:
the endpoint and its loaders see one transaction (so a loader sees what the endpoint wrote
and flushed), and a request holds one connection at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TypeVar

from starlette.requests import HTTPConnection

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

_SESSION_KEY = "examples.blog.session"


class SessionLoader(DataLoader[int, V]):
    """A loader of rows by integer id, reading through the request's shared session."""

    def __init__(
        self,
        session: SharedSession,
        *,
        batch_schedule_fn: ScheduleFn | None = None,
        value_cache: ValueCache[V] | None = None,
    ) -> None:
        super().__init__(batch_schedule_fn=batch_schedule_fn, value_cache=value_cache)
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


async def save(session: SharedSession, loaders: Loaders, *rows: Base) -> None:
    """Write ``rows`` in the request's transaction, so that every later load sees them.

    The rule for reading your own writes: write through the request's session (the INSERT is
    flushed at once, and the loaders read on the same session, so they see it before the
    commit), then forget what the request's loaders cached before the write, and prime them
    with what the write returned where a loader is keyed by the row's id.
    """
    for row in rows:
        await session.run(queries.add, row)
    loaders.clear_all()
    await forget_shared(loaders, *rows)
    for row in rows:
        if isinstance(row, Author):
            loaders.get(AuthorLoader).prime(row.id, row)


async def forget_shared(loaders: Loaders, *rows: Base) -> None:
    """Invalidate what ``rows`` change in the value caches shared by every worker (a no-op
    without them). ``save()`` calls it before the commit, so the request reads its own
    writes; call it again after the commit, so no worker keeps what it read meanwhile."""
    for row in rows:
        if isinstance(row, Author):
            await loaders.get(AuthorLoader).invalidate(row.id)
        elif isinstance(row, Post):
            await loaders.get(PostsOfAuthorLoader).invalidate(row.author_id)
        elif isinstance(row, Comment):
            await loaders.get(CommentsOfPostLoader).invalidate(row.post_id)


def batch_window(seconds: float) -> ScheduleFn:
    """A ``batch_schedule_fn`` that dispatches each batch ``seconds`` after its first load."""

    def schedule(dispatch: Callable[[], None]) -> object:
        return asyncio.get_running_loop().call_later(seconds, dispatch)

    return schedule


def request_session(conn: HTTPConnection) -> SharedSession:
    """The request's session, made on first use; ``close_request_session`` closes it."""
    session: SharedSession | None = conn.scope.get(_SESSION_KEY)
    if session is None:
        db: Database = conn.app.state.db
        session = conn.scope[_SESSION_KEY] = SharedSession(db.sessionmaker())
    return session


async def close_request_session(scope: MutableMapping[str, Any]) -> None:
    session: SharedSession | None = scope.pop(_SESSION_KEY, None)
    if session is not None:
        await session.session.close()


def build_registry(
    batch_window_seconds: float | None = None,
    value_caches: Mapping[type[DataLoader[Any, Any]], ValueCache[Any]] | None = None,
) -> LoaderRegistry:
    """Register every blog loader with a factory that hands it the request's session, and
    its shared value cache where ``value_caches`` has one (``shared_cache.py``).

    With ``batch_window_seconds``, each batch waits that long for more keys before it runs
    (the core's ``batch_schedule_fn``); by default a batch runs as soon as the event loop has
    no more loads to queue.
    """
    window = None if batch_window_seconds is None else batch_window(batch_window_seconds)
    registry = LoaderRegistry()

    def factory(cls: type[L]) -> Callable[[HTTPConnection], L]:
        value_cache = (value_caches or {}).get(cls)
        return lambda conn: cls(
            request_session(conn), batch_schedule_fn=window, value_cache=value_cache
        )

    for loader_cls in (AuthorLoader, PostsOfAuthorLoader, CommentsOfPostLoader, TagsOfPostLoader):
        registry.register(loader_cls, factory(loader_cls))
    return registry
