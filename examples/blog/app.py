"""The blog app: ``create_app()`` wires the database, the loaders and the routes.

The lifespan creates the SQLite database in a temporary folder, opens its connections, seeds
it, and closes the connections (and removes the folder) on shutdown. Every response carries
``X-Query-Count``: the SQL queries it ran.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiodataloader.asgi import LoaderMiddleware
from examples.blog import naive, rest
from examples.blog.db import DEFAULT_SEED_SIZE, Database, SeedSize, count_queries
from examples.blog.graphql_api import graphql_router
from examples.blog.loaders import build_registry

QUERY_COUNT_HEADER = "X-Query-Count"


class QueryCountMiddleware:
    """Counts the SQL queries of each HTTP request and reports them in ``X-Query-Count``."""

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
    *, batch_window_seconds: float | None = None, seed_size: SeedSize = DEFAULT_SEED_SIZE
) -> FastAPI:
    """The blog app over a new SQLite database in a temporary folder, seeded at startup.

    ``batch_window_seconds`` gives every loader a ``batch_schedule_fn`` that waits that long
    before dispatching a batch (for the benchmark); by default batches run at once.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="aiodataloader-blog-") as folder:
            db = await Database.open(Path(folder) / "blog.sqlite3")
            try:
                await db.create_and_seed(seed_size)
                app.state.db = db
                yield
            finally:
                await db.close()

    app = FastAPI(
        title="aiodataloader blog example",
        description=(
            "Posts, authors, comments and tags in SQLite. `/posts`, `/authors/{id}` and "
            "`/graphql` load through request-scoped DataLoaders; the `/naive/...` routes are "
            "the N+1 anti-pattern, kept for comparison. Every response has an "
            f"`{QUERY_COUNT_HEADER}` header."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(LoaderMiddleware, registry=build_registry(batch_window_seconds))
    # Added last, so it wraps LoaderMiddleware and counts the loaders' queries too.
    app.add_middleware(QueryCountMiddleware)

    app.include_router(rest.router)
    app.include_router(naive.router)
    app.include_router(graphql_router(), prefix="/graphql", tags=["GraphQL"])
    app.include_router(graphql_router(naive=True), prefix="/naive/graphql", tags=["GraphQL"])

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
