"""One DataLoader per batched read, and the registry that builds them for each request.

Each loader gets the database from its factory (``conn.app.state.db``, opened in the
lifespan). ``LoaderMiddleware`` builds a loader the first time a request asks for it and tears
it down when the response has been sent, so its cache never outlives the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderRegistry
from examples.blog import queries
from examples.blog.db import Database

V = TypeVar("V")

#: The core's ``batch_schedule_fn``: gets a zero-argument callback that dispatches the batch.
ScheduleFn = Callable[[Callable[[], None]], object]


class DatabaseLoader(DataLoader[int, V]):
    """A loader of rows by integer id, reading from the blog's database."""

    def __init__(self, db: Database, *, batch_schedule_fn: ScheduleFn | None = None) -> None:
        super().__init__(batch_schedule_fn=batch_schedule_fn)
        self.db = db


class AuthorLoader(DatabaseLoader[queries.Author | None]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, queries.Author]:
        # A mapping, not a list: ids with no row resolve to None.
        return await queries.authors_by_id(self.db, keys)


class PostsOfAuthorLoader(DatabaseLoader[list[queries.Post]]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[queries.Post]]:
        return await queries.posts_by_author_id(self.db, keys)


class CommentsOfPostLoader(DatabaseLoader[list[queries.Comment]]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[queries.Comment]]:
        return await queries.comments_by_post_id(self.db, keys)


class TagsOfPostLoader(DatabaseLoader[list[str]]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[str]]:
        return await queries.tags_by_post_id(self.db, keys)


def batch_window(seconds: float) -> ScheduleFn:
    """A ``batch_schedule_fn`` that dispatches each batch ``seconds`` after its first load."""

    def schedule(dispatch: Callable[[], None]) -> object:
        return asyncio.get_running_loop().call_later(seconds, dispatch)

    return schedule


def build_registry(batch_window_seconds: float | None = None) -> LoaderRegistry:
    """Register every blog loader with a factory that takes the database from the app.

    With ``batch_window_seconds``, each batch waits that long for more keys before it runs
    (the core's ``batch_schedule_fn``); by default a batch runs as soon as the event loop has
    no more loads to queue.
    """
    window = None if batch_window_seconds is None else batch_window(batch_window_seconds)
    registry = LoaderRegistry()
    # A factory gets the request's HTTPConnection; conn.app.state.db is set by the lifespan.
    registry.register(
        AuthorLoader, lambda conn: AuthorLoader(conn.app.state.db, batch_schedule_fn=window)
    )
    registry.register(
        PostsOfAuthorLoader,
        lambda conn: PostsOfAuthorLoader(conn.app.state.db, batch_schedule_fn=window),
    )
    registry.register(
        CommentsOfPostLoader,
        lambda conn: CommentsOfPostLoader(conn.app.state.db, batch_schedule_fn=window),
    )
    registry.register(
        TagsOfPostLoader,
        lambda conn: TagsOfPostLoader(conn.app.state.db, batch_schedule_fn=window),
    )
    return registry
