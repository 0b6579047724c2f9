"""Faults, on a redis-server of the test's own that it stops, hangs and restarts: loads always
succeed through the batch function, within the timeout; one log line when the circuit opens,
one when Redis is back; no 500. Also counts the round trips per batch on that server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.redis import RedisCache

from .asgi_client import asgi_client
from .loader_helpers import Recorder
from .redis_server import OwnRedisServer, own_redis_server

pytestmark = pytest.mark.anyio

#: Short enough to run the test quickly, long enough for a loaded CI machine.
RESET = 0.3


@pytest.fixture
def server() -> Iterator[OwnRedisServer]:
    with own_redis_server() as running:
        yield running


@pytest.fixture
async def shared(server: OwnRedisServer) -> AsyncIterator[RedisCache]:
    cache = RedisCache.from_url(server.url, timeout=0.05, failure_threshold=3, reset_timeout=RESET)
    await cache.start()
    yield cache
    await cache.aclose()


def breaker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "in a row" in r.getMessage() or "answers again" in r.getMessage()
    ]


async def load_fresh(shared: RedisCache, key: int) -> tuple[Any, Recorder]:
    """A load as a new request makes it: a new loader, the shared value cache."""
    recorder = Recorder(lambda k: f"value {k}")
    loader = DataLoader(recorder, value_cache=shared.for_loader("users", ttl=60))
    # Never hangs: wait_for turns a hang into a failure here, with generous slack.
    value = await asyncio.wait_for(loader.load(key), 10)
    return value, recorder


async def wait_until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_stopped_redis_loads_succeed_the_circuit_opens_once_and_closes_again(
    server: OwnRedisServer, shared: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiodataloader")
    assert (await load_fresh(shared, 1))[0] == "value 1"
    await asyncio.sleep(0.05)
    value, recorder = await load_fresh(shared, 1)
    assert (value, recorder.calls) == ("value 1", [])  # from Redis

    server.stop()
    for key in range(20):
        value, recorder = await load_fresh(shared, key)
        assert (value, recorder.calls) == (f"value {key}", [[key]])
    assert not shared.available
    assert shared.stats.short_circuited > 0  # it stopped asking
    [opened] = breaker_lines(caplog)
    assert opened.startswith(f"Redis at 127.0.0.1:{server.port} failed 3 times in a row (last: ")
    assert opened.endswith(
        "loads go to their batch functions, Redis is asked again in 0.3 s (logged once until "
        "it answers)"
    )

    server.start()  # same port, empty
    await asyncio.sleep(RESET)

    async def loads_until_available() -> None:
        while not shared.available:
            await load_fresh(shared, 100)
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loads_until_available(), 10)
    assert breaker_lines(caplog)[1:] == [
        f"Redis at 127.0.0.1:{server.port} answers again: shared cache back in use"
    ]
    await load_fresh(shared, 7)
    await asyncio.sleep(0.05)
    value, recorder = await load_fresh(shared, 7)
    assert (value, recorder.calls) == ("value 7", [])  # Redis serves again


async def test_a_hung_redis_costs_each_batch_at_most_the_timeout(
    server: OwnRedisServer, shared: RedisCache
) -> None:
    server.pause()  # the port accepts, nothing answers
    try:
        started = time.perf_counter()
        for key in range(5):
            value, recorder = await load_fresh(shared, key)
            assert (value, recorder.calls) == (f"value {key}", [[key]])
        elapsed = time.perf_counter() - started
    finally:
        server.resume()
    # 3 timeouts of 50 ms open the circuit; the other loads do not ask. Generous bound:
    # far below what one redis-py default (5 s socket timeout, retries) would take.
    assert elapsed < 3.0
    if shared.stats.timeouts_while_busy == 0:  # (a loaded machine may make them late)
        assert shared.stats.errors == 3
        assert not shared.available


async def test_the_subscription_comes_back_after_a_restart(
    server: OwnRedisServer, shared: RedisCache
) -> None:
    await wait_until(lambda: shared.subscribed)
    server.stop()
    await wait_until(lambda: not shared.subscribed)
    server.start()
    await wait_until(lambda: shared.subscribed)
    other = RedisCache.from_url(server.url, timeout=0.5)
    try:
        recorder = Recorder()
        loader = DataLoader(recorder, value_cache=shared.for_loader("users", ttl=60))
        await loader.load(1)
        await DataLoader(Recorder(), value_cache=other.for_loader("users", ttl=60)).invalidate(1)
        await wait_until(lambda: shared.stats.invalidations_received == 1)
        await loader.load(1)
        assert recorder.calls == [[1], [1]]
    finally:
        await other.aclose()


async def test_one_lookup_round_trip_per_batch_and_one_write_when_cold(
    server: OwnRedisServer, shared: RedisCache
) -> None:
    async def script_calls() -> int:
        stats = await shared.client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    before = await script_calls()
    recorder = Recorder()
    cold = DataLoader(recorder, value_cache=shared.for_loader("users", ttl=60))
    await cold.load_many(range(50))
    await asyncio.sleep(0.05)
    assert await script_calls() - before == 2  # one lookup, one write back, for 50 keys
    warm = DataLoader(Recorder(), value_cache=shared.for_loader("users", ttl=60))
    await warm.load_many(range(50))
    assert await script_calls() - before == 3  # one lookup, nothing to write
    assert recorder.calls == [list(range(50))]


async def test_no_500_while_redis_is_down(
    server: OwnRedisServer, shared: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    database = {key: f"name {key}" for key in range(10)}
    users = shared.for_loader("users", ttl=60)

    async def fetch(keys: list[int]) -> list[str]:
        return [database[key] for key in keys]

    async def read(request: Request) -> JSONResponse:
        loader = DataLoader(fetch, value_cache=users)
        return JSONResponse(await loader.load_many(range(10)))

    async def write(request: Request) -> JSONResponse:
        database[3] = "renamed"
        await DataLoader(fetch, value_cache=users, name="users").invalidate(3)
        return JSONResponse("ok")

    app = Starlette(routes=[Route("/", read), Route("/write", write, methods=["POST"])])
    async with asgi_client(app) as client:
        assert (await client.get("/")).status_code == 200
        server.stop()
        responses = [await client.get("/") for _ in range(10)]
        responses.append(await client.post("/write"))
        responses += [await client.get("/") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 16
    assert responses[-1].json()[3] == "renamed"
    assert any("could not invalidate 1 key(s)" in r.getMessage() for r in caplog.records)


async def test_a_timeout_that_fires_late_because_the_loop_was_busy_keeps_the_circuit_closed(
    shared: RedisCache,
) -> None:
    async def ping_from_a_busy_loop() -> object:
        time.sleep(0.2)  # noqa: ASYNC251 - the point: a loop blocked well past the timeout
        await asyncio.sleep(0.01)  # due after the timeout, which now runs (late) first
        return await shared.client.ping()

    for _ in range(5):
        with pytest.raises(Exception, match="TimeoutError"):
            await shared.call(ping_from_a_busy_loop)
    assert shared.available  # five timeouts, none of them Redis's fault
    assert shared.stats.timeouts_while_busy == shared.stats.errors == 5
    value, recorder = await load_fresh(shared, 1)
    assert (value, recorder.calls) == ("value 1", [[1]])
