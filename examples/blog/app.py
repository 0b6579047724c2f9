"""The blog app: ``create_app()`` wires the database, the loaders and the routes.

The lifespan opens the database (by default a new SQLite file in a temporary folder, removed
on shutdown), creates and seeds it, and disposes of the engine on shutdown. Every response
carries ``X-Query-Count``: the SQL statements it ran.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiodataloader.asgi import LoaderMiddleware
from examples.blog import naive, rest
from examples.blog.db import DEFAULT_SEED_SIZE, Database, SeedSize, count_queries
from examples.blog.graphql_api import graphql_router
from examples.blog.guards import MAX_BODY_BYTES, validation_error
from examples.blog.loaders import build_registry

if TYPE_CHECKING:
    from aiodataloader.redis import RedisCache

QUERY_COUNT_HEADER = "X-Query-Count"


class QueryCountMiddleware:
    """Counts the SQL statements of each HTTP request and reports them in ``X-Query-Count``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with count_queries() as counter:

            async def send_with_count(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # The body is rendered before the response starts, so the count is final.
                    MutableHeaders(scope=message)[QUERY_COUNT_HEADER] = str(counter.count)
                await send(message)

            await self.app(scope, receive, send_with_count)


def create_app(
    database_url: str | None = None,
    *,
    seed_size: SeedSize = DEFAULT_SEED_SIZE,
    batch_window_seconds: float | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    shared_cache: RedisCache | None = None,
    **engine_options: Any,
) -> FastAPI:
    """The blog app over ``database_url`` (default: a new SQLite file), seeded at startup
    when its tables are empty.

    ``engine_options`` go to ``create_async_engine`` (e.g. ``pool_size=2``).
    ``batch_window_seconds`` gives every loader a ``batch_schedule_fn`` that waits that long
    before dispatching a batch (for the benchmark); by default batches run at once.
    With ``shared_cache`` (``RedisCache.from_url(...)``), every loader also reads through a
    value cache that all the workers share (``shared_cache.py``); the lifespan starts and
    closes it.
    """
    caches = None
    if shared_cache is not None:
        # Imported here: the blog without a shared cache needs no redis-py.
        from examples.blog.shared_cache import value_caches

        caches = value_caches(shared_cache)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            url = database_url
            if url is None:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="blog-"))
                url = f"sqlite+aiosqlite:///{Path(folder) / 'blog.sqlite3'}"
            db = Database.open(url, **engine_options)
            stack.push_async_callback(db.close)
            await db.create_and_seed(seed_size)
            app.state.db = db
            if shared_cache is not None:
                await stack.enter_async_context(shared_cache)
            yield

    app = FastAPI(
        title="aiodataloader blog example",
        description=(
            "Posts, authors, comments and tags in SQLAlchemy. `/posts`, `/authors/{id}` and "
            "`/graphql` load through request-scoped DataLoaders; the `/naive/...` routes are "
            "the N+1 anti-pattern, kept for comparison. Every response has an "
            f"`{QUERY_COUNT_HEADER}` header."
        ),
        lifespan=lifespan,
        max_body_size=max_body_bytes,
    )
    app.add_exception_handler(RequestValidationError, validation_error)
    # On app.state, so a test can swap a loader or the session for every access path:
    # `with app.state.registry.override(AuthorLoader, fake): ...`
    app.state.registry = build_registry(batch_window_seconds, caches)
    # server_timing: each response says what its loaders did (the demo prints it).
    app.add_middleware(LoaderMiddleware, registry=app.state.registry, server_timing=True)
    # Added after LoaderMiddleware, so it wraps it and counts the loaders' queries too.
    app.add_middleware(QueryCountMiddleware)

    app.include_router(rest.router)
    app.include_router(naive.router)
    app.include_router(graphql_router(), prefix="/graphql", tags=["GraphQL"])
    app.include_router(graphql_router(naive=True), prefix="/naive/graphql", tags=["GraphQL"])

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
