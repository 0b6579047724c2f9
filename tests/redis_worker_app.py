"""A small app for the multi-process tests: items in a SQLite file that every worker shares,
read through a loader with a Redis value cache, written and invalidated by PUT.

Configured by environment variables (set by the test that starts it under uvicorn):
``ITEMS_DB`` (the SQLite file), ``ITEMS_REDIS_URL``, ``ITEMS_KEY_PREFIX``, ``ITEMS_CHANNEL``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.redis import RedisCache, RedisValueCache

shared = RedisCache.from_url(
    os.environ["ITEMS_REDIS_URL"],
    timeout=0.5,  # generous: these tests are about coherence, not speed
    key_prefix=os.environ["ITEMS_KEY_PREFIX"],
    channel=os.environ["ITEMS_CHANNEL"],
)
items_cache: RedisValueCache[str] = shared.for_loader("items", ttl=300)


@contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    """A connection, committed if the block succeeds, and closed (``with`` alone does not)."""
    with closing(sqlite3.connect(os.environ["ITEMS_DB"], timeout=10)) as db, db:
        yield db


class ItemLoader(DataLoader[int, str]):
    def __init__(self) -> None:
        super().__init__(value_cache=items_cache)
        self.reads = 0

    async def batch_load_fn(self, keys: list[int]) -> dict[int, str]:
        self.reads += 1
        with connect() as db:
            marks = ",".join("?" * len(keys))
            rows = db.execute(f"SELECT id, value FROM items WHERE id IN ({marks})", keys)
            return dict(rows.fetchall())


async def read(request: Request) -> JSONResponse:
    loader = ItemLoader()
    value = await loader.load(int(request.path_params["id"]))
    return JSONResponse({"value": value, "pid": os.getpid(), "reads": loader.reads})


async def write(request: Request) -> JSONResponse:
    item_id = int(request.path_params["id"])
    with connect() as db:  # committed when the block ends
        db.execute(
            "UPDATE items SET value = ? WHERE id = ?", (request.query_params["value"], item_id)
        )
    await ItemLoader().invalidate(item_id)
    return JSONResponse({"pid": os.getpid()})


async def watch(request: Request) -> JSONResponse:
    """Load an item, then load it again from the same (live) loader every millisecond until
    its value changes: an invalidation from another process must drop it from this loader."""
    loader = ItemLoader()
    item_id = int(request.path_params["id"])
    first = await loader.load(item_id)
    watching.setdefault(request.query_params["tag"], asyncio.Event()).set()
    deadline = time.monotonic() + float(request.query_params.get("seconds", "10"))
    while time.monotonic() < deadline:
        value = await loader.load(item_id)
        if value != first:
            return JSONResponse({"first": first, "value": value, "changed_at": time.time()})
        await asyncio.sleep(0.001)
    return JSONResponse({"first": first, "value": None, "changed_at": None})


async def watching_ready(request: Request) -> JSONResponse:
    event = watching.setdefault(request.query_params["tag"], asyncio.Event())
    await asyncio.wait_for(event.wait(), 10)
    return JSONResponse({"pid": os.getpid()})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"subscribed": shared.subscribed, "pid": os.getpid()})


#: One event per watch request (by its tag): set once it holds the first value.
watching: dict[str, asyncio.Event] = {}


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with shared:
        yield


app = Starlette(
    routes=[
        Route("/items/{id:int}", read),
        Route("/items/{id:int}", write, methods=["PUT"]),
        Route("/watch/{id:int}", watch),
        Route("/watching", watching_ready),
        Route("/health", health),
    ],
    lifespan=lifespan,
)
