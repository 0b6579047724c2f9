"""Stampede: many requests on several worker processes miss the same key at once.

Each of ``--processes`` processes runs ``--requests`` concurrent "requests" (one new loader
each, as the request scope builds them) that load the same cold key at the same moment, for
``--keys`` keys in turn. The batch function stands for a database query of ``--db-ms``
milliseconds. Measured for both stampede modes of ``RedisCache`` (interleaved, key by key):

- ``fetch``: a caller that finds another caller's lease fetches too (duplicates, no wait);
- ``wait``: it polls Redis for that caller's value (up to ``stampede_wait``) first.

Prints the database queries per key (the stampede), and the load latency p50/p99.

    python benchmarks/shared_cache_stampede.py [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiodataloader import DataLoader
from aiodataloader.redis import RedisCache

MODES = ("fetch", "wait")


async def one_process(
    redis_url: str, prefix: str, mode: str, keys: list[int], start_at: list[float], args: Any
) -> dict[str, Any]:
    queries: dict[int, int] = {}
    latencies_ms: list[float] = []

    async def fetch(batch: list[int]) -> list[str]:
        for key in batch:
            queries[key] = queries.get(key, 0) + 1
        await asyncio.sleep(args.db_ms / 1000)
        return [f"value {key}" for key in batch]

    shared = RedisCache.from_url(
        redis_url,
        timeout=0.05,
        stampede="wait" if mode == "wait" else "fetch",
        stampede_wait=0.2,
        key_prefix=prefix,
        channel=prefix + "invalidate",
    )
    async with shared:
        value_cache = shared.for_loader("hot", ttl=60)

        async def request(key: int) -> None:
            started = time.perf_counter()
            assert await DataLoader(fetch, value_cache=value_cache).load(key) == f"value {key}"
            latencies_ms.append((time.perf_counter() - started) * 1000)

        for key, at in zip(keys, start_at, strict=True):
            await asyncio.sleep(max(0.0, at - time.time()))  # every process at the same time
            await asyncio.gather(*(request(key) for _ in range(args.requests)))
    # The first key warms the connection pools up (a server's are warm): not counted.
    return {
        "queries": {k: v for k, v in queries.items() if k != keys[0]},
        "latencies_ms": latencies_ms[args.requests :],
    }


def process_main(payload: str) -> str:
    redis_url, prefix, mode, keys, start_at, options = json.loads(payload)
    result = asyncio.run(
        one_process(redis_url, prefix, mode, keys, start_at, argparse.Namespace(**options))
    )
    return json.dumps(result)


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    prefix = f"aiodataloader_stampede_{uuid.uuid4().hex[:8]}:"
    totals: dict[str, dict[str, list[float]]] = {m: {"queries": [], "lat": []} for m in MODES}
    options = {"requests": args.requests, "db_ms": args.db_ms}
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        for block in range(args.blocks):
            order = MODES if block % 2 == 0 else MODES[::-1]
            for mode in order:
                # Key -1 warms up; then each key of the block, 0.3 s apart, in every process.
                keys = [-1 - block, *range(block * args.keys, (block + 1) * args.keys)]
                start = time.time() + 1.0
                start_at = [start + 0.3 * i for i in range(len(keys))]
                payload = json.dumps(
                    [args.redis_url, f"{prefix}{mode}:", mode, keys, start_at, options]
                )
                results = [
                    json.loads(r) for r in pool.map(process_main, [payload] * args.processes)
                ]
                for key in keys[1:]:
                    totals[mode]["queries"].append(
                        sum(r["queries"].get(str(key), 0) for r in results)
                    )
                totals[mode]["lat"] += [x for r in results for x in r["latencies_ms"]]
    summary = {}
    for mode in MODES:
        latencies = sorted(totals[mode]["lat"])
        quantiles = statistics.quantiles(latencies, n=100)
        summary[mode] = {
            "queries_per_key_median": statistics.median(totals[mode]["queries"]),
            "queries_per_key_mean": statistics.mean(totals[mode]["queries"]),
            "queries_per_key_max": max(totals[mode]["queries"]),
            "p50_ms": statistics.median(latencies),
            "p99_ms": quantiles[98],
        }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--requests", type=int, default=25, help="per process and key")
    parser.add_argument("--keys", type=int, default=5, help="per block")
    parser.add_argument("--blocks", type=int, default=4, help="interleaved, per mode")
    parser.add_argument("--db-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    summary = run(args)
    callers = args.processes * args.requests
    print(
        f"{callers} concurrent cold loads of one key ({args.processes} processes x "
        f"{args.requests}), {args.keys * args.blocks} keys, database query {args.db_ms:g} ms"
    )
    print(
        f"{'mode':8} {'queries/key median':>19} {'mean':>6} {'max':>5} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for mode, row in summary.items():
        print(
            f"{mode:8} {row['queries_per_key_median']:19.1f} {row['queries_per_key_mean']:6.1f} "
            f"{row['queries_per_key_max']:5.0f} "
            f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f}"
        )


if __name__ == "__main__":
    main()
