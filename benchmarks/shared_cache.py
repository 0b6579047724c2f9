"""The blog on uvicorn with 4 worker processes, with and without the shared value cache.

Two servers run side by side on one database (PostgreSQL where it answers, else SQLite): one
whose loaders read through a Redis value cache (a redis-server of the benchmark's own, on a
free port), one without. Measurements alternate between them, round by round:

- warm: after every author's page and the latest posts were requested once, ``--clients``
  concurrent clients for ``--duration`` seconds, a mix of ``GET /posts?limit=20`` and
  ``GET /authors/{id}`` (ids Zipf-skewed over the seeded authors, as real traffic is);
- cold: the shared cache emptied (FLUSHDB), then one ``GET /posts?limit=20``; repeated.

Reports the shared cache's hit rate (from every worker's ``RedisCache.stats``), SQL queries
per request (``X-Query-Count``), requests/s, p50 and p99, and for cold requests the Redis
round trips per loader batch. Writes ``benchmarks/results/shared_cache.json`` and the chart
``benchmarks/results/shared_cache.png``.

    python benchmarks/shared_cache.py            # about 3 minutes
    python benchmarks/shared_cache.py --quick    # a smoke run

The servers run ``uvicorn benchmarks.shared_cache:app_factory --factory --workers 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from fastapi import FastAPI

from examples.blog.app import QUERY_COUNT_HEADER, create_app
from examples.blog.db import DEFAULT_SEED_SIZE, Database

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
VARIANTS = ("without", "with shared cache")
POSTGRES_SERVER = os.environ.get(
    "AIODATALOADER_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

# -- the app each worker serves --------------------------------------------------------


def app_factory() -> FastAPI:
    """The blog for one worker; ``BENCH_REDIS_URL`` empty means no shared cache. Adds
    ``GET /_shared_cache_stats`` (this worker's pid and counters)."""
    redis_url = os.environ.get("BENCH_REDIS_URL") or None
    shared = None
    if redis_url is not None:
        from aiodataloader.redis import RedisCache

        shared = RedisCache.from_url(
            redis_url, timeout=float(os.environ.get("BENCH_REDIS_TIMEOUT", "0.005"))
        )
    app = create_app(os.environ.get("BENCH_DATABASE_URL") or None, shared_cache=shared)

    @app.get("/_shared_cache_stats", include_in_schema=False)
    async def stats() -> dict[str, Any]:
        counters = {} if shared is None else dict(vars(shared.stats))
        return {"pid": os.getpid(), **counters}

    return app


# -- servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


def wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@contextmanager
def database() -> Iterator[tuple[str, str | None]]:
    """(label, URL): a new PostgreSQL database, seeded, dropped afterwards; else SQLite."""
    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def admin(statement: str) -> None:
        engine = create_async_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    name = f"aiodataloader_bench_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, Exception) as error:  # no PostgreSQL here
        print(f"PostgreSQL does not answer ({type(error).__name__}); each worker uses SQLite")
        yield "SQLite (a file per worker)", None
        return
    url = make_url(POSTGRES_SERVER).set(database=name).render_as_string(hide_password=False)

    async def seed() -> None:
        db = Database.open(url)
        try:
            await db.create_and_seed(DEFAULT_SEED_SIZE)
        finally:
            await db.close()

    try:
        asyncio.run(seed())  # once, before 8 workers would race to create the tables
        yield "PostgreSQL", url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def server(
    database_url: str | None, redis_url: str | None, workers: int, redis_timeout: float
) -> Iterator[str]:
    port = free_port()
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath,
        "BENCH_DATABASE_URL": database_url or "",
        "BENCH_REDIS_URL": redis_url or "",
        "BENCH_REDIS_TIMEOUT": str(redis_timeout),
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.shared_cache:app_factory",
            "--factory",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError("the server exited:\n" + log.read().decode(errors="replace"))
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        errors = [line for line in log.read().decode(errors="replace").splitlines() if line]
        if errors:
            print(f"server log ({len(errors)} lines), last: {errors[-1]}")
        log.close()


# -- measuring --------------------------------------------------------------------------


@dataclass
class Samples:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    queries: dict[str, list[int]] = field(default_factory=dict)
    errors: int = 0
    hits: int = 0
    misses: int = 0
    lookups: int = 0
    writes: int = 0
    redis_errors: int = 0
    busy_timeouts: int = 0
    short_circuited: int = 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
        return {
            "requests": len(lat),
            "errors": self.errors,
            "requests_per_s": len(lat) / self.seconds if self.seconds else 0.0,
            "p50_ms": statistics.median(lat),
            "p99_ms": q[98],
            "queries_per_request": {
                path: statistics.mean(values) for path, values in sorted(self.queries.items())
            },
            "hit_rate": self.hits / (self.hits + self.misses) if self.hits + self.misses else None,
            "redis_lookups": self.lookups,
            "redis_writes": self.writes,
            "redis_errors": self.redis_errors,
            "busy_timeouts": self.busy_timeouts,
            "short_circuited": self.short_circuited,
        }


def zipf_ids(count: int, rng: random.Random, s: float = 1.1) -> list[int]:
    weights = [1 / (rank**s) for rank in range(1, DEFAULT_SEED_SIZE.authors + 1)]
    ids = list(range(1, DEFAULT_SEED_SIZE.authors + 1))
    rng.shuffle(ids)  # the popular authors are not simply the first ids
    return rng.choices(ids, weights, k=count)


def worker_stats(url: str, workers: int) -> dict[int, dict[str, int]]:
    """Every worker's counters: a new connection per ask, until each pid has answered."""
    seen: dict[int, dict[str, int]] = {}
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, limits=limits, timeout=10) as client:
        for _ in range(400):
            answer = client.get("/_shared_cache_stats").json()
            seen[answer.pop("pid")] = answer
            if len(seen) == workers:
                break
    return seen


def stats_delta(
    before: dict[int, dict[str, int]], after: dict[int, dict[str, int]], name: str
) -> int:
    return sum(after[pid].get(name, 0) - before.get(pid, {}).get(name, 0) for pid in after)


async def warm(url: str, clients: int, duration: float, seed: int) -> Samples:
    samples = Samples()
    rng = random.Random(seed)
    authors = iter(zipf_ids(1_000_000, rng))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(path: str, params: dict[str, int] | None, record: bool) -> None:
            started = time.perf_counter()
            response = await client.get(path, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            if not record:
                return
            if response.status_code != 200:
                samples.errors += 1
                return
            samples.latencies_ms.append(elapsed)
            label = "/posts?limit=20" if path == "/posts" else "/authors/{id}"
            samples.queries.setdefault(label, []).append(int(response.headers[QUERY_COUNT_HEADER]))

        async def client_loop(deadline: float, record: bool) -> None:
            while time.perf_counter() < deadline:
                if rng.random() < 0.5:
                    await one("/posts", {"limit": 20}, record)
                else:
                    await one(f"/authors/{next(authors)}", None, record)

        warmup = time.perf_counter() + min(2.0, duration)
        await asyncio.gather(*(client_loop(warmup, False) for _ in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(started + duration, True) for _ in range(clients)))
        samples.seconds = time.perf_counter() - started
    return samples


async def warm_up(url: str, clients: int) -> None:
    """Every author's page and the latest posts once: what "warm" means below."""
    paths = [f"/authors/{i}" for i in range(1, DEFAULT_SEED_SIZE.authors + 1)] + ["/posts"] * 5
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        queue = iter(paths)

        async def client_loop() -> None:
            for path in queue:
                await client.get(path, params={"limit": 20} if path == "/posts" else None)

        await asyncio.gather(*(client_loop() for _ in range(clients)))


async def cold(url: str, redis_url: str | None, repeats: int) -> Samples:
    samples = Samples()
    flush = None
    if redis_url is not None:
        import redis.asyncio as redis_asyncio

        flush = redis_asyncio.Redis.from_url(redis_url)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for _ in range(repeats):
                if flush is not None:
                    await flush.flushdb()
                started = time.perf_counter()
                response = await client.get("/posts", params={"limit": 20})
                samples.latencies_ms.append((time.perf_counter() - started) * 1000)
                samples.queries.setdefault("/posts?limit=20", []).append(
                    int(response.headers[QUERY_COUNT_HEADER])
                )
                await asyncio.sleep(0.05)  # the write backs land before the next flush
    finally:
        if flush is not None:
            await flush.aclose()
    samples.seconds = 1.0
    return samples


def measure(
    kind: str, url: str, redis_url: str | None, args: argparse.Namespace, seed: int
) -> Samples:
    before = worker_stats(url, args.workers) if redis_url else {}
    if kind == "warm":
        samples = asyncio.run(warm(url, args.clients, args.duration, seed))
    else:
        samples = asyncio.run(cold(url, redis_url, args.cold_repeats))
    if redis_url:
        after = worker_stats(url, args.workers)
        samples.hits = stats_delta(before, after, "hits")
        samples.misses = stats_delta(before, after, "misses")
        samples.lookups = stats_delta(before, after, "lookup_round_trips")
        samples.writes = stats_delta(before, after, "write_round_trips")
        samples.redis_errors = stats_delta(before, after, "errors")
        samples.busy_timeouts = stats_delta(before, after, "timeouts_while_busy")
        samples.short_circuited = stats_delta(before, after, "short_circuited")
    return samples


def merge(into: Samples, other: Samples) -> None:
    into.seconds += other.seconds
    into.latencies_ms += other.latencies_ms
    for path, values in other.queries.items():
        into.queries.setdefault(path, []).extend(values)
    into.errors += other.errors
    into.hits += other.hits
    into.misses += other.misses
    into.lookups += other.lookups
    into.writes += other.writes
    into.redis_errors += other.redis_errors
    into.busy_timeouts += other.busy_timeouts
    into.short_circuited += other.short_circuited


# -- report -----------------------------------------------------------------------------


def print_table(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    for kind in ("warm", "cold"):
        print(f"\n{kind}")
        print(
            f"  {'variant':18} {'hit rate':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
            "SQL queries/request"
        )
        for variant in VARIANTS:
            row = results[kind][variant]
            hit = "-" if row["hit_rate"] is None else f"{row['hit_rate']:.1%}"
            queries = ", ".join(f"{p} {q:.2f}" for p, q in row["queries_per_request"].items())
            print(
                f"  {variant:18} {hit:>8} {row['requests_per_s']:7.1f} {row['p50_ms']:7.1f} "
                f"{row['p99_ms']:7.1f} {queries}"
            )
    for kind in ("warm", "cold"):
        row = results[kind]["with shared cache"]
        print(
            f"{kind}, with shared cache: {row['redis_lookups']} lookups, {row['redis_errors']} "
            f"failed or timed out ({row['busy_timeouts']} of them late: a busy event loop), "
            f"{row['short_circuited']} not asked (circuit open)"
        )
    cold_row = results["cold"]["with shared cache"]
    cold_queries = results["cold"]["without"]["queries_per_request"]["/posts?limit=20"]
    batches = (cold_queries - 1) * cold_row["requests"]  # every query but the posts' own
    if batches:
        print(
            f"\ncold, with shared cache: {cold_row['redis_lookups'] / batches:.2f} Redis lookup "
            f"round trips and {cold_row['redis_writes'] / batches:.2f} write backs per loader "
            "batch (the write back runs after the batch's loads are settled)"
        )


def write_chart(results: dict[str, dict[str, dict[str, Any]]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [
        ("warm", "requests_per_s", "warm: requests/s (higher is better)"),
        ("warm", "p50_ms", "warm: p50 ms"),
        ("warm", "p99_ms", "warm: p99 ms"),
        ("warm", "posts_queries", "warm: SQL queries per GET /posts?limit=20"),
        ("cold", "p50_ms", "cold GET /posts?limit=20: p50 ms"),
        ("cold", "posts_queries", "cold: SQL queries per GET /posts?limit=20"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    colors = ["#9aa5b1", "#2f7ed8"]
    for ax, (kind, metric, label) in zip(axes.flat, metrics, strict=True):
        values = []
        for variant in VARIANTS:
            row = results[kind][variant]
            if metric == "posts_queries":
                values.append(row["queries_per_request"]["/posts?limit=20"])
            else:
                values.append(row[metric])
        bars = ax.bar(VARIANTS, values, color=colors)
        ax.bar_label(bars, fmt="%.1f")
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    hit = results["warm"]["with shared cache"]["hit_rate"]
    fig.suptitle(f"{title}\nwarm hit rate {hit:.1%}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per warm turn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-repeats", type=int, default=20, help="per round")
    parser.add_argument(
        "--redis-timeout-ms",
        type=float,
        default=5.0,
        help="RedisCache timeout (its default, 5 ms, unless an overloaded host needs more)",
    )
    parser.add_argument("--output", default="shared_cache", help="results/<output>.json, .png")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.cold_repeats = 2.0, 1, 5

    results: dict[str, dict[str, Samples]] = {
        kind: {variant: Samples() for variant in VARIANTS} for kind in ("warm", "cold")
    }
    with ExitStack() as stack:
        label, database_url = stack.enter_context(database())
        redis_url = stack.enter_context(redis_server())
        urls = {
            variant: stack.enter_context(
                server(
                    database_url,
                    redis_url if variant != "without" else None,
                    args.workers,
                    args.redis_timeout_ms / 1000,
                )
            )
            for variant in VARIANTS
        }
        for url in urls.values():
            asyncio.run(warm_up(url, args.clients))
        # Warm rounds first (the cold ones empty the shared cache), variants alternating.
        for kind in ("warm", "cold"):
            for round_number in range(args.rounds):
                order = VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    redis = redis_url if variant != "without" else None
                    samples = measure(kind, urls[variant], redis, args, seed=round_number)
                    merge(results[kind][variant], samples)
                print(f"{kind} round {round_number + 1}/{args.rounds} done", flush=True)

    summary = {
        kind: {variant: samples.summary() for variant, samples in rows.items()}
        for kind, rows in results.items()
    }
    title = (
        f"blog on uvicorn, {args.workers} workers, {label}, {args.clients} clients; "
        f"with and without the Redis value cache (timeout {args.redis_timeout_ms:g} ms)"
    )
    print(title)
    print_table(summary)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps({"title": title, **summary}, indent=2))
    if not args.no_chart:
        write_chart(summary, title, RESULTS / f"{args.output}.png")
        print(f"chart: {RESULTS / f'{args.output}.png'}")


if __name__ == "__main__":
    main()
