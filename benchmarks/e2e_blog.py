"""End-to-end benchmark: the blog example on uvicorn under concurrent load.

Three versions of the same endpoints, measured in one run, interleaved round by round:

- ``naive``: one SQL query per related row (the N+1 anti-pattern, ``/naive/...``);
- ``loaders``: request-scoped DataLoaders with the default scheduler;
- ``loaders + window``: the same loaders with a ``batch_schedule_fn`` that waits a fixed
  time window before each batch (a second server started with ``--batch-window-ms``).

Each measurement runs ``--clients`` concurrent httpx clients for ``--duration`` seconds
against one uvicorn worker over SQLAlchemy (SQLite, or ``--database-url``) on 127.0.0.1, and
records requests/s, p50/p99 latency and SQL queries/request (the server's
``X-Query-Count``). Prints a table with ratios against naive, writes
``benchmarks/results/e2e_blog.json`` and, when matplotlib is installed, the chart
``benchmarks/results/e2e_blog.png``.

    python -m benchmarks.e2e_blog            # 1-3 minutes, from the repository root
    python -m benchmarks.e2e_blog --quick    # a smoke run, about 10 seconds
    python -m benchmarks.e2e_blog --database-url postgresql+asyncpg://postgres@127.0.0.1/blog

A measurement ends when its last in-flight request is answered (those count too), so under
50 clients the naive version's measurements run past ``--duration`` by one full latency.
With 50 clients in a closed loop, latency is mostly queueing: about clients / throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from demo.report import POSTS_QUERY, percentile
from demo.server import BlogServer
from examples.blog.app import QUERY_COUNT_HEADER

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Scenario:
    label: str
    naive_path: str
    loaders_path: str
    graphql: bool = False

    def request(self, variant: str) -> tuple[str, str, dict[str, Any]]:
        path = self.naive_path if variant == "naive" else self.loaders_path
        if self.graphql:
            body = {"query": POSTS_QUERY, "variables": {"limit": 20}}
            return "POST", path, {"json": body}
        return "GET", path, {"params": {"limit": 20}}


SCENARIOS = (
    Scenario("REST GET /posts?limit=20", "/naive/posts", "/posts"),
    Scenario("GraphQL posts(limit: 20) + nested", "/naive/graphql", "/graphql", graphql=True),
)
VARIANTS = ("naive", "loaders", "loaders + window")


@dataclass
class Measurement:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)

    def add(self, other: Measurement) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.seconds += other.seconds
        self.latencies_ms += other.latencies_ms
        self.queries += other.queries

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "requests_per_s": self.requests / self.seconds,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "queries_per_request": sum(self.queries) / len(self.queries),
        }


async def measure(
    client: httpx.AsyncClient,
    request: tuple[str, str, dict[str, Any]],
    clients: int,
    duration: float,
) -> Measurement:
    """``clients`` workers send ``request`` back to back until ``duration`` has passed."""
    method, url, kwargs = request
    result = Measurement()
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.request(method, url, **kwargs)
            await response.aread()
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                result.errors += 1
                continue
            result.requests += 1
            result.latencies_ms.append(elapsed_ms)
            result.queries.append(int(response.headers[QUERY_COUNT_HEADER]))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


async def run(
    urls: dict[str, str], clients: int, duration: float, rounds: int
) -> dict[tuple[str, str], Measurement]:
    results = {(s.label, v): Measurement() for s in SCENARIOS for v in VARIANTS}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        for scenario in SCENARIOS:  # warm up: imports, caches, connections
            for variant in VARIANTS:
                method, path, kwargs = scenario.request(variant)
                for _ in range(3):
                    (
                        await client.request(method, urls[variant] + path, **kwargs)
                    ).raise_for_status()
        for round_ in range(rounds):
            # Rotate the order every round, so no version always runs first or last.
            shift = round_ % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            for scenario in SCENARIOS:
                for variant in order:
                    method, path, kwargs = scenario.request(variant)
                    request = (method, urls[variant] + path, kwargs)
                    results[(scenario.label, variant)].add(
                        await measure(client, request, clients, duration)
                    )
    return results


def format_table(summaries: dict[tuple[str, str], dict[str, float]], header: str) -> str:
    lines = [
        header,
        "",
        f"{'scenario':34} {'version':18} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'queries/req':>11}   {'req/s':>7} {'p50':>7} {'p99':>7} {'queries':>8}",
        f"{'':34} {'':18} {'':>7} {'':>8} {'':>8} {'':>11}   {'(ratios against naive)':>32}",
    ]
    for scenario in SCENARIOS:
        naive = summaries[(scenario.label, "naive")]
        for variant in VARIANTS:
            s = summaries[(scenario.label, variant)]
            label = scenario.label if variant == VARIANTS[0] else ""
            lines.append(
                f"{label:34} {variant:18} {s['requests_per_s']:7.1f} {s['p50_ms']:8.1f} "
                f"{s['p99_ms']:8.1f} {s['queries_per_request']:11.1f}   "
                f"{s['requests_per_s'] / naive['requests_per_s']:6.2f}x "
                f"{s['p50_ms'] / naive['p50_ms']:6.2f}x {s['p99_ms'] / naive['p99_ms']:6.2f}x "
                f"{s['queries_per_request'] / naive['queries_per_request']:7.3f}x"
            )
    errors = sum(int(s["errors"]) for s in summaries.values())
    lines.append("")
    lines.append(f"errors: {errors}")
    return "\n".join(lines)


def write_chart(summaries: dict[tuple[str, str], dict[str, float]], title: str, path: Path) -> bool:
    """A bar chart per metric; returns False when matplotlib (benchmark-only) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    metrics = (
        ("requests_per_s", "requests / s (higher is better)", False),
        ("p50_ms", "latency p50 (bar) and p99 (tick), ms", False),
        ("queries_per_request", "SQL queries / request (log scale)", True),
    )
    colors = {"naive": "#c0504d", "loaders": "#4f81bd", "loaders + window": "#9bbb59"}
    width = 0.26
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.8))
    for ax, (key, label, log) in zip(axes, metrics, strict=True):
        for i, variant in enumerate(VARIANTS):
            xs = [n + (i - 1) * width for n in range(len(SCENARIOS))]
            values = [summaries[(s.label, variant)][key] for s in SCENARIOS]
            bars = ax.bar(xs, values, width, label=variant, color=colors[variant])
            ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
            if key == "p50_ms":
                p99 = [summaries[(s.label, variant)]["p99_ms"] for s in SCENARIOS]
                ax.scatter(xs, p99, marker="_", s=250, color="black", linewidths=1.5)
        ax.set_title(label, fontsize=10)
        ax.set_xticks(range(len(SCENARIOS)))
        ax.set_xticklabels(["REST /posts", "GraphQL posts"], fontsize=9)
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.15)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(VARIANTS), fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e_blog",
        description="The blog on uvicorn under load: naive vs loaders vs loaders + window.",
    )
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--window-ms", type=float, default=2.0, help="batch window, ms")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 clients, 0.3 s, 1 round")
    parser.add_argument("--chart", type=Path, default=RESULTS / "e2e_blog.png")
    parser.add_argument("--json", type=Path, default=RESULTS / "e2e_blog.json")
    parser.add_argument(
        "--database-url", default=None, help="a SQLAlchemy async URL (default: SQLite files)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.duration, args.rounds = 4, 0.3, 1

    with ExitStack() as stack:
        # Both start at once; the windowed one serves only the "loaders + window" version.
        plain = BlogServer.start(database_url=args.database_url)
        stack.callback(plain.stop)
        if args.database_url is not None:
            plain.wait_until_ready()  # it creates and seeds the shared database first
        windowed = BlogServer.start(batch_window_ms=args.window_ms, database_url=args.database_url)
        stack.callback(windowed.stop)
        plain.wait_until_ready()
        windowed.wait_until_ready()
        urls = {"naive": plain.url, "loaders": plain.url, "loaders + window": windowed.url}
        results = asyncio.run(run(urls, args.clients, args.duration, args.rounds))

    summaries = {key: m.summary() for key, m in results.items()}
    header = (
        f"e2e blog benchmark: {args.clients} concurrent clients (httpx), {args.rounds} "
        f"interleaved round(s) x {args.duration:g} s per version; one uvicorn worker, "
        f"{'SQLite' if args.database_url is None else args.database_url.split(':')[0]}, "
        f"127.0.0.1; window = batch_schedule_fn call_later({args.window_ms:g} ms); "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(format_table(summaries, header))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "settings": {
                    k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                },
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "results": [
                    {"scenario": scenario, "version": variant, **summaries[(scenario, variant)]}
                    for scenario, variant in summaries
                ],
                "raw": {f"{s} | {v}": asdict(m) for (s, v), m in results.items()}
                if not args.quick
                else {},
            },
            indent=2,
        )
    )
    title = (
        f"aiodataloader: blog example on uvicorn + SQLAlchemy, {args.clients} concurrent clients, "
        "20 posts with author, tags, comments and their authors per request"
    )
    if write_chart(summaries, title, args.chart):
        print(f"chart: {args.chart}")
    else:
        print("chart: skipped (pip install matplotlib to draw it)")
    print(f"results: {args.json}")
    return 1 if any(s["errors"] for s in summaries.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
