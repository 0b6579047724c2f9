"""The scenarios of ``core_side_by_side.py``, and the worker process that runs them.

This module uses the standard library only, because each implementation's virtualenv runs
it as a worker::

    <venv>/bin/python benchmarks/_core_scenarios.py worker {upstream|project|strawberry}

The worker imports its DataLoader, prints one JSON line describing it, then answers one JSON
line per request read from stdin: ``{"scenario": ..., "size": ..., "warmup": ..., "reps":
...}`` gets ``{"values": {metric: [one number per timed rep]}, "problems": [...],
"batching": [...]}``. ``problems`` (wrong values, exceptions, hangs) and ``batching``
(batches that differ from aiodataloader 0.4.3's: count, sizes or key order) are checked on
every rep, warm-ups included.

A scenario gets a loader factory ``make(batch_fn, max_batch_size=None)``; a fresh loader is
made for every rep, outside the timed region.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.metadata
import json
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

REP_TIMEOUT_S = 60.0
TREE_FANOUT = 10  # children per node at each level of the tree scenario


class Loader(Protocol):
    def load(self, key: Any) -> Awaitable[Any]: ...

    def load_many(self, keys: Any) -> Awaitable[list[Any]]: ...


BatchFn = Callable[[list[int]], Coroutine[Any, Any, list[int]]]
LoaderFactory = Callable[..., Loader]


@dataclass
class Outcome:
    """One rep: its metrics (in the order and units of ``Scenario.metrics``) and what went
    wrong."""

    values: list[float]
    problems: list[str] = field(default_factory=list)
    batching: list[str] = field(default_factory=list)


ScenarioFn = Callable[[LoaderFactory, int], Coroutine[Any, Any, Outcome]]


@dataclass(frozen=True)
class Scenario:
    name: str
    run: ScenarioFn
    size: int
    metrics: tuple[tuple[str, str], ...]  # (metric, unit); lower is better
    quick_size: int | None = None  # a smaller size for --quick
    once: bool = False  # deterministic: one round only (first epoch)
    timed: bool = True  # a duration (ratios and the "Strawberry is slower" target apply)


def recording_double() -> tuple[BatchFn, list[list[int]]]:
    """The batch function of every scenario (it doubles each key) and its record of calls."""
    calls: list[list[int]] = []

    async def double(keys: list[int]) -> list[int]:
        calls.append(keys)
        return [key * 2 for key in keys]

    return double, calls


def check_values(what: str, got: object, expected: object) -> list[str]:
    return [] if got == expected else [f"{what}: wrong values"]


def check_batches(calls: Sequence[Sequence[int]], expected: Sequence[Sequence[int]]) -> list[str]:
    """An empty list when the batch calls are exactly ``expected`` (0.4.3's), otherwise what
    differs: the count, the sizes or the key order."""
    calls = [list(call) for call in calls]
    expected = [list(call) for call in expected]
    if calls == expected:
        return []
    got_sizes, want_sizes = [len(c) for c in calls], [len(c) for c in expected]
    if got_sizes != want_sizes:
        return [
            f"{len(calls)} batches of sizes {summarize(got_sizes)}, 0.4.3 makes "
            f"{len(expected)} of sizes {summarize(want_sizes)}"
        ]
    return [f"{len(calls)} batches of the right sizes, but the keys differ or are out of order"]


def unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def summarize(sizes: Sequence[int]) -> str:
    """Run-length form of a list of sizes: [100, 100, 7] -> '2x100, 7'."""
    parts: list[str] = []
    i = 0
    while i < len(sizes):
        j = i
        while j < len(sizes) and sizes[j] == sizes[i]:
            j += 1
        parts.append(f"{j - i}x{sizes[i]}" if j - i > 1 else str(sizes[i]))
        i = j
    return ", ".join(parts) if parts else "none"


# -- scenarios ---------------------------------------------------------------------------


def fanout_block(n: int) -> int:
    """Loaders per sample, so that one sample is about 1000 loads (not one loop trip)."""
    return max(1, 1000 // n)


async def fanout(make: LoaderFactory, n: int) -> Outcome:
    """``gather`` of n loads of distinct keys in one tick; ns per key."""
    keys = list(range(n))
    recorded = [recording_double() for _ in range(fanout_block(n))]
    made = [(make(fn), calls) for fn, calls in recorded]
    results: list[list[int]] = []
    start = time.perf_counter_ns()
    for loader, _ in made:
        results.append(await asyncio.gather(*[loader.load(key) for key in keys]))
    elapsed = time.perf_counter_ns() - start
    outcome = Outcome([elapsed / (n * len(made))])
    expected = [key * 2 for key in keys]
    for (_, calls), values in zip(made, results, strict=True):
        outcome.problems += check_values("gather", values, expected)
        outcome.batching += check_batches(calls, [keys])
    # One line per kind of problem, not one per loader of the block.
    outcome.problems, outcome.batching = unique(outcome.problems), unique(outcome.batching)
    return outcome


async def load_many(make: LoaderFactory, n: int) -> Outcome:
    """``await loader.load_many(keys)`` of n distinct keys; ns per key."""
    keys = list(range(n))
    fn, calls = recording_double()
    loader = make(fn)
    start = time.perf_counter_ns()
    values = await loader.load_many(keys)
    elapsed = time.perf_counter_ns() - start
    return Outcome(
        [elapsed / n],
        check_values("load_many", values, [key * 2 for key in keys]),
        check_batches(calls, [keys]),
    )


async def cache_hit_gather(make: LoaderFactory, n: int) -> Outcome:
    """n keys loaded once (untimed), then loaded again through ``gather``; ns per key."""
    keys = list(range(n))
    fn, calls = recording_double()
    loader = make(fn)
    first = await asyncio.gather(*[loader.load(key) for key in keys])
    start = time.perf_counter_ns()
    again = await asyncio.gather(*[loader.load(key) for key in keys])
    elapsed = time.perf_counter_ns() - start
    expected = [key * 2 for key in keys]
    return Outcome(
        [elapsed / n],
        check_values("first load", first, expected) + check_values("cache hit", again, expected),
        check_batches(calls, [keys]),
    )


async def cache_hit_load(make: LoaderFactory, n: int) -> Outcome:
    """As cache_hit_gather, but only the n ``load()`` calls are timed; ns per call."""
    keys = list(range(n))
    fn, calls = recording_double()
    loader = make(fn)
    first = await asyncio.gather(*[loader.load(key) for key in keys])
    load = loader.load
    start = time.perf_counter_ns()
    futures = [load(key) for key in keys]
    elapsed = time.perf_counter_ns() - start
    again = await asyncio.gather(*futures)
    expected = [key * 2 for key in keys]
    return Outcome(
        [elapsed / n],
        check_values("first load", first, expected) + check_values("cache hit", again, expected),
        check_batches(calls, [keys]),
    )


def tree_expected(roots: int) -> list[tuple[int, list[tuple[int, list[int]]]]]:
    f = TREE_FANOUT
    return [
        (
            u * 2,
            [(p * 2, [c * 2 for c in range(p * f, p * f + f)]) for p in range(u * f, u * f + f)],
        )
        for u in range(roots)
    ]


async def tree(make: LoaderFactory, roots: int) -> Outcome:
    """users -> posts -> comments through nested async resolvers, each level gathered:
    ``roots`` users, TREE_FANOUT posts per user and comments per post; ms per tree.
    0.4.3 makes exactly one batch per loader, keys in resolution order."""
    f = TREE_FANOUT
    (user_fn, user_calls), (post_fn, post_calls), (comment_fn, comment_calls) = (
        recording_double() for _ in range(3)
    )
    users, posts, comments = make(user_fn), make(post_fn), make(comment_fn)

    async def comment(c: int) -> int:
        value: int = await comments.load(c)
        return value

    async def post(p: int) -> tuple[int, list[int]]:
        value: int = await posts.load(p)
        return value, await asyncio.gather(*[comment(c) for c in range(p * f, p * f + f)])

    async def user(u: int) -> tuple[int, list[tuple[int, list[int]]]]:
        value: int = await users.load(u)
        return value, await asyncio.gather(*[post(p) for p in range(u * f, u * f + f)])

    start = time.perf_counter_ns()
    result = await asyncio.gather(*[user(u) for u in range(roots)])
    elapsed = time.perf_counter_ns() - start
    return Outcome(
        [elapsed / 1e6],
        check_values("tree", result, tree_expected(roots)),
        check_batches(user_calls, [list(range(roots))])
        + check_batches(post_calls, [list(range(roots * f))])
        + check_batches(comment_calls, [list(range(roots * f * f))]),
    )


async def serial_latency(make: LoaderFactory, n: int) -> Outcome:
    """n loads, each awaited before the next (one batch of one key each); us per load."""
    fn, calls = recording_double()
    loader = make(fn)
    values: list[int] = []
    start = time.perf_counter_ns()
    for key in range(n):
        values.append(await loader.load(key))
    elapsed = time.perf_counter_ns() - start
    return Outcome(
        [elapsed / n / 1000],
        check_values("serial loads", values, [key * 2 for key in range(n)]),
        check_batches(calls, [[key] for key in range(n)]),
    )


MAX_BATCH_SIZE = 100


async def max_batch(make: LoaderFactory, n: int) -> Outcome:
    """``gather`` of n loads with max_batch_size=100: 0.4.3 makes n/100 batches of 100 in
    key order; ns per key."""
    keys = list(range(n))
    fn, calls = recording_double()
    loader = make(fn, max_batch_size=MAX_BATCH_SIZE)
    start = time.perf_counter_ns()
    values = await asyncio.gather(*[loader.load(key) for key in keys])
    elapsed = time.perf_counter_ns() - start
    chunks = [keys[i : i + MAX_BATCH_SIZE] for i in range(0, n, MAX_BATCH_SIZE)]
    return Outcome(
        [elapsed / n],
        check_values("gather", values, [key * 2 for key in keys]),
        check_batches(calls, chunks),
    )


async def batch_window(make: LoaderFactory, n: int) -> Outcome:
    """n tasks; task i loads key i after i bare ``await asyncio.sleep(0)``. 0.4.3 keeps a
    batch open for two loop iterations, so it makes n/2 batches of 2. The metric is the
    number of batch calls (not a time)."""
    fn, calls = recording_double()
    loader = make(fn)

    async def task(i: int) -> int:
        for _ in range(i):
            await asyncio.sleep(0)
        value: int = await loader.load(i)
        return value

    values = await asyncio.gather(*[task(i) for i in range(n)])
    return Outcome(
        [float(len(calls))],
        check_values("gather", values, [i * 2 for i in range(n)]),
        check_batches(calls, [list(range(i, min(i + 2, n))) for i in range(0, n, 2)]),
    )


async def memory(make: LoaderFactory, n: int) -> Outcome:
    """tracemalloc over a loader that loads and caches n keys: the peak while loading, and
    what is still allocated once the results are dropped (the cache, cached values
    included, but not the batch record), in bytes per key, both counted from the freshly
    made loader (its own few hundred bytes are a constant, not a cost per key)."""
    keys = list(range(n))
    expected = [key * 2 for key in keys]
    fn, calls = recording_double()
    gc.collect()
    tracemalloc.start()
    try:
        loader = make(fn)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        values: list[int] | None = await asyncio.gather(*[loader.load(key) for key in keys])
        peak = tracemalloc.get_traced_memory()[1] - base
        outcome = Outcome(
            [peak / n],
            check_values("gather", values, expected),
            check_batches(calls, [keys]),
        )
        calls.clear()  # the record keeps the batch's key list alive: not the loader's memory
        values = None
        # Leave the loop callback that resumed us: it holds gather's result (the caller's
        # memory, not the loader's) until this step of the task ends.
        await asyncio.sleep(0)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - base
        outcome.values.append(retained / n)
        del loader
    finally:
        tracemalloc.stop()
    return outcome


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("fanout-1", fanout, 1, (("fanout-1", "ns/key"),)),
        Scenario("fanout-100", fanout, 100, (("fanout-100", "ns/key"),)),
        Scenario("fanout-10000", fanout, 10_000, (("fanout-10000", "ns/key"),)),
        Scenario("load_many-10000", load_many, 10_000, (("load_many-10000", "ns/key"),)),
        Scenario(
            "cache-hit-gather-10000",
            cache_hit_gather,
            10_000,
            (("cache-hit-gather-10000", "ns/key"),),
        ),
        Scenario(
            "cache-hit-load-10000", cache_hit_load, 10_000, (("cache-hit-load-10000", "ns/call"),)
        ),
        Scenario("tree", tree, 100, (("tree", "ms"),)),
        Scenario("serial-latency", serial_latency, 1000, (("serial-latency", "us/load"),)),
        Scenario("max-batch", max_batch, 10_000, (("max-batch", "ns/key"),)),
        Scenario(
            "batch-window",
            batch_window,
            10,
            (("batch-window", "batches"),),
            once=True,
            timed=False,
        ),
        Scenario(
            "memory",
            memory,
            100_000,
            (("memory-peak", "B/key"), ("memory-retained", "B/key")),
            quick_size=20_000,
            once=True,
            timed=False,
        ),
    ]
}


# -- the worker --------------------------------------------------------------------------

IMPORTS = {
    # implementation -> (module, distribution)
    "upstream": ("aiodataloader", "aiodataloader"),
    "project": ("aiodataloader", "aiodataloader"),
    "strawberry": ("strawberry.dataloader", "strawberry-graphql"),
}


def loader_factory(loader_class: Any) -> LoaderFactory:
    """``make(batch_fn, max_batch_size=None)`` for a DataLoader class: the three take the
    batch function first and accept ``max_batch_size=``."""

    def make(fn: BatchFn, max_batch_size: int | None = None) -> Loader:
        if max_batch_size is None:
            loader: Loader = loader_class(fn)
        else:
            loader = loader_class(fn, max_batch_size=max_batch_size)
        return loader

    return make


def import_implementation(impl: str) -> tuple[LoaderFactory, dict[str, str]]:
    module_name, distribution = IMPORTS[impl]
    module = importlib.import_module(module_name)
    loader_class = module.DataLoader
    defined_in = sys.modules[loader_class.__module__]
    info = {
        "impl": impl,
        "module": module_name,
        "version": importlib.metadata.version(distribution),
        "file": str(defined_in.__file__),
        "python": sys.version,
        "executable": sys.executable,
    }
    return loader_factory(loader_class), info


def run_rep(
    loop: asyncio.AbstractEventLoop, scenario: Scenario, make: LoaderFactory, size: int
) -> Outcome:
    gc.collect()
    try:
        return loop.run_until_complete(
            asyncio.wait_for(scenario.run(make, size), timeout=REP_TIMEOUT_S)
        )
    except asyncio.TimeoutError:
        return Outcome([], [f"no result after {REP_TIMEOUT_S:.0f} s (a hang?)"])
    except Exception as error:
        return Outcome([], [f"{type(error).__name__}: {error}"])


def run_request(
    loop: asyncio.AbstractEventLoop, make: LoaderFactory, request: dict[str, Any]
) -> dict[str, Any]:
    scenario = SCENARIOS[request["scenario"]]
    size = int(request.get("size", scenario.size))
    warmup, reps = int(request.get("warmup", 0)), int(request.get("reps", 1))
    values: dict[str, list[float]] = {metric: [] for metric, _ in scenario.metrics}
    problems: list[str] = []
    batching: list[str] = []
    for rep in range(warmup + reps):
        outcome = run_rep(loop, scenario, make, size)
        problems += [p for p in outcome.problems if p not in problems]
        batching += [b for b in outcome.batching if b not in batching]
        if rep >= warmup and not outcome.problems:
            for (metric, _), value in zip(scenario.metrics, outcome.values, strict=True):
                values[metric].append(value)
    return {"values": values, "problems": problems, "batching": batching}


def worker_main(impl: str) -> int:
    make, info = import_implementation(impl)
    # The imports (Strawberry's are large) must not make every later collection slower.
    gc.collect()
    gc.freeze()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_request(loop, make, json.loads(line))), flush=True)
    loop.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "worker" or sys.argv[2] not in IMPORTS:
        sys.exit(f"usage: {sys.argv[0]} worker {{{'|'.join(IMPORTS)}}}")
    sys.exit(worker_main(sys.argv[2]))
