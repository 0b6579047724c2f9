"""The N+1 problem, gone: the blog on a real uvicorn server, naive against DataLoaders.

Starts ``examples.blog`` on 127.0.0.1 (a free port), sends a scripted set of REST and GraphQL
requests to the naive and the loader version of each endpoint (interleaved, one at a time),
checks that both versions return the same data and that bad input is refused, stops the
server and prints, per endpoint, the SQL queries per request (the server's
``X-Query-Count`` header) and the latency p50/p95 measured by the client.

    python -m demo            # the report
    python -m demo --quick    # a few requests per endpoint (CI)
    python -m demo --serve    # the report, then keep serving (API docs URL)
    python -m demo --database-url postgresql+asyncpg://postgres@127.0.0.1/blog
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import make_url

from demo.server import blog_server
from examples.blog.app import QUERY_COUNT_HEADER
from examples.blog.db import DEFAULT_SEED_SIZE

POSTS_QUERY = """
query LatestPosts($limit: Int!) {
  posts(limit: $limit) { id title author { name } tags comments { body author { name } } }
}
"""
AUTHOR_QUERY = """
query AuthorWithPosts($id: Int!) {
  author(id: $id) { name email posts { title tags } }
}
"""


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of the script, with its naive (N+1) and its loader version."""

    label: str
    naive_path: str
    loaders_path: str
    graphql: str | None = None  # a GraphQL document, POSTed with variables
    by_author: bool = False  # request a different author each time, like real traffic

    def request(self, variant: str, i: int) -> tuple[str, str, dict[str, Any]]:
        """(method, path, httpx keyword arguments) of the ``i``-th request."""
        author_id = 1 + i * 7 % DEFAULT_SEED_SIZE.authors
        path = (self.naive_path if variant == "naive" else self.loaders_path).format(id=author_id)
        if self.graphql is None:
            return "GET", path, {} if self.by_author else {"params": {"limit": 20}}
        variables = {"id": author_id} if self.by_author else {"limit": 20}
        return "POST", path, {"json": {"query": self.graphql, "variables": variables}}


ENDPOINTS = (
    Endpoint("REST GET /posts?limit=20", "/naive/posts", "/posts"),
    Endpoint("REST GET /authors/{id}", "/naive/authors/{id}", "/authors/{id}", by_author=True),
    Endpoint(
        "GraphQL posts(limit: 20) {author tags comments {author}}",
        "/naive/graphql",
        "/graphql",
        graphql=POSTS_QUERY,
    ),
    Endpoint(
        "GraphQL author(id) {posts {tags}}",
        "/naive/graphql",
        "/graphql",
        graphql=AUTHOR_QUERY,
        by_author=True,
    ),
)
VARIANTS = ("naive", "loaders")


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    server_timing: str = ""  # the loaders' report of the last response (Server-Timing)


@dataclass
class Report:
    url: str
    requests: int
    samples: dict[tuple[str, str], Samples]
    mismatches: list[str]
    checks: list[tuple[str, bool]]


async def _send(
    client: httpx.AsyncClient, endpoint: Endpoint, variant: str, i: int
) -> tuple[httpx.Response, float]:
    method, path, kwargs = endpoint.request(variant, i)
    started = time.perf_counter()
    response = await client.request(method, path, **kwargs)
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return response, elapsed_ms


async def run_script(url: str, requests: int, warmup: int = 2) -> Report:
    samples = {(e.label, v): Samples() for e in ENDPOINTS for v in VARIANTS}
    mismatches = []
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        for endpoint in ENDPOINTS:
            for i in range(-warmup, requests):
                # Alternate which variant goes first, so neither always gets a warm cache.
                order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
                bodies = {}
                for variant in order:
                    response, elapsed_ms = await _send(client, endpoint, variant, max(i, 0))
                    bodies[variant] = response.json()
                    if i >= 0:
                        sample = samples[(endpoint.label, variant)]
                        sample.latencies_ms.append(elapsed_ms)
                        sample.queries.append(int(response.headers[QUERY_COUNT_HEADER]))
                        sample.server_timing = response.headers.get("Server-Timing", "")
                if bodies["naive"] != bodies["loaders"] and endpoint.label not in mismatches:
                    mismatches.append(endpoint.label)
        checks = await _check_bad_input(client)
    return Report(url, requests, samples, mismatches, checks)


# One loader of a Server-Timing header: name;dur=ms;desc="..."
_TIMING = re.compile(r'([^\s,;]+);dur=([\d.]+);desc="([^"]*)"')

HOSTILE_QUERY = "{ posts(limit: 100) { " + "author { posts { " * 6 + "id" + " } }" * 6 + " } }"


async def _check_bad_input(client: httpx.AsyncClient) -> list[tuple[str, bool]]:
    unknown = await client.get("/authors/999999")
    too_small = await client.get("/posts", params={"limit": 0})
    too_large = await client.get("/posts", params={"limit": 1000})
    huge_id = await client.get(f"/authors/{2**63}")
    malformed = await client.post("/graphql", json={"query": "{ posts(limit: "})
    out_of_range = await client.post("/graphql", json={"query": "{ posts(limit: 0) { id } }"})
    hostile = await client.post("/graphql", json={"query": HOSTILE_QUERY})
    huge_body = await client.post("/graphql", content=b" " * 1_000_000)
    alive = await client.get("/posts", params={"limit": 1})
    return [
        ("unknown id 404", unknown.status_code == 404),
        ("limit=0 422", too_small.status_code == 422),
        ("limit=1000 422", too_large.status_code == 422),
        ("id=2**63 422", huge_id.status_code == 422),
        ("malformed GraphQL error", bool(malformed.json().get("errors"))),
        ("GraphQL limit=0 error", bool(out_of_range.json().get("errors"))),
        ("GraphQL 7 levels deep refused", _refused(hostile, "exceeds maximum operation depth")),
        ("1 MB body 413", huge_body.status_code == 413),
        ("server still answers", alive.status_code == 200),
    ]


def _refused(response: httpx.Response, message: str) -> bool:
    errors = response.json().get("errors") or []
    return any(message in error.get("message", "") for error in errors)


def percentile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (1-99) of ``values``, interpolated between the two nearest."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _queries(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _latency(values: Sequence[float]) -> str:
    return f"{percentile(values, 50):6.1f} / {percentile(values, 95):6.1f}"


def format_report(report: Report, database: str = "SQLite") -> str:
    size = DEFAULT_SEED_SIZE
    lines = [
        f"aiodataloader demo: blog example on {database} ({size.authors:,} authors, "
        f"{size.posts:,} posts, {size.comments:,} comments), uvicorn at {report.url}",
        f"{report.requests} requests per endpoint and version, interleaved, one at a time; "
        "queries from the server's X-Query-Count header",
        "",
        f"{'':56} {'SQL queries/request':>21}   {'latency p50 / p95 (ms)':>33}",
        f"{'endpoint':56} {'naive':>10} {'loaders':>10}   {'naive':>16} {'loaders':>16}",
    ]
    for endpoint in ENDPOINTS:
        naive = report.samples[(endpoint.label, "naive")]
        loaders = report.samples[(endpoint.label, "loaders")]
        lines.append(
            f"{endpoint.label:56} {_queries(naive.queries):>10} {_queries(loaders.queries):>10}"
            f"   {_latency(naive.latencies_ms):>16} {_latency(loaders.latencies_ms):>16}"
        )
    lines.append("")
    lines.append("what the loaders did, per request (the server's Server-Timing header):")
    for endpoint in ENDPOINTS:
        timing = report.samples[(endpoint.label, "loaders")].server_timing
        done = [f"{name} {desc}, {float(ms):.1f} ms" for name, ms, desc in _TIMING.findall(timing)]
        lines.append(f"  {endpoint.label}: {'; '.join(done) or '-'}")
    lines.append("")
    same = "identical" if not report.mismatches else "DIFFERENT for " + ", ".join(report.mismatches)
    lines.append(f"naive and loader responses: {same}")
    failed = [name for name, ok in report.checks if not ok]
    lines.append(
        f"bad input: FAILED {'; '.join(failed)}"
        if failed
        else f"bad input: all {len(report.checks)} checks passed ("
        + ", ".join(name for name, _ in report.checks)
        + ")"
    )
    lines.append(conclusion(report))
    return "\n".join(lines)


def conclusion(report: Report) -> str:
    label = ENDPOINTS[0].label
    naive, loaders = report.samples[(label, "naive")], report.samples[(label, "loaders")]
    naive_q, loaders_q = max(naive.queries), max(loaders.queries)
    all_loaders = [q for e in ENDPOINTS for q in report.samples[(e.label, "loaders")].queries]
    speedup = percentile(naive.latencies_ms, 50) / percentile(loaders.latencies_ms, 50)
    return (
        f"Conclusion: with request-scoped DataLoaders every endpoint made at most "
        f"{max(all_loaders)} SQL queries (one per loader per level) where the naive code made "
        f"one per row; for 20 posts {loaders_q} instead of {naive_q} "
        f"({naive_q / loaders_q:.0f}x fewer) and {speedup:.1f}x faster at p50."
    )


def passed(report: Report) -> bool:
    return not report.mismatches and all(ok for _, ok in report.checks)


def shared_cache_url(redis_url: str | None) -> str | None:
    """``redis_url`` if a Redis answers there (its ``blog:*`` keys emptied, so this run reads
    none of another's), else None; prints what the demo does about the shared cache."""
    if redis_url is None:
        print(
            "shared cache: skipped (no --redis-url; with one, the loaders also share a value "
            "cache in Redis between requests and workers)",
            flush=True,
        )
        return None
    try:
        import redis
    except ImportError:
        print("shared cache: skipped (redis-py is not installed: pip install redis)", flush=True)
        return None
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        stale = list(client.scan_iter("blog:*"))
        if stale:
            client.delete(*stale)
    except redis.RedisError as error:
        print(f"shared cache: skipped (no Redis answers at {redis_url}: {error})", flush=True)
        return None
    finally:
        client.close()
    print(f"shared cache: on, in Redis at {redis_url}", flush=True)
    return redis_url


def make_url_safe(url: str) -> str:
    """The URL to print: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="The blog example on uvicorn: SQL queries and latency, naive vs loaders.",
    )
    parser.add_argument("--requests", type=int, default=30, help="per endpoint and version")
    parser.add_argument("--quick", action="store_true", help="3 requests each (for CI)")
    parser.add_argument("--serve", action="store_true", help="keep serving after the report")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a SQLAlchemy async URL, e.g. postgresql+asyncpg://user@127.0.0.1/blog "
        "(default: a new SQLite file); created and seeded when empty",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="run the blog's loaders with a value cache shared in this Redis "
        "(e.g. redis://127.0.0.1:6379/0); its blog:* keys are emptied first",
    )
    args = parser.parse_args(argv)
    requests = 3 if args.quick else args.requests
    if requests < 1:
        parser.error("--requests must be at least 1")

    database = "SQLite" if args.database_url is None else make_url_safe(args.database_url)
    print(f"starting the blog example on uvicorn (creating and seeding {database})...", flush=True)
    redis_url = shared_cache_url(args.redis_url)
    with blog_server(port=args.port, database_url=args.database_url, redis_url=redis_url) as server:
        report = asyncio.run(run_script(server.url, requests))
        print(format_report(report, database), flush=True)
        if args.serve:
            print(
                f"\nserving at {server.url}: API docs {server.url}/docs, "
                f"GraphiQL {server.url}/graphql; press Ctrl-C to stop",
                flush=True,
            )
            try:
                server.process.wait()
            except KeyboardInterrupt:
                print("stopping", flush=True)
    return 0 if passed(report) else 1
