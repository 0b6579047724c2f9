"""The scenarios of ``core_side_by_side.py``, run under pyperf in an implementation's virtualenv:

    <venv>/bin/python benchmarks/_core_scenarios.py --impl project --scenario tree -o tree.json

pyperf starts fresh worker processes, calibrates the loops, warms up and keeps the values.
Every rep makes fresh loaders outside the timed region, then checks the loaded values and that
the batch calls are exactly aiodataloader 0.4.3's (count, sizes and key order); otherwise it
raises ``CheckFailed``, which ends the run: a wrong or differently batching implementation
gets no number. Needs the standard library and pyperf only.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

REP_TIMEOUT_S = 60.0
TREE_FANOUT = 10  # posts per user and comments per post in the tree scenario
MAX_BATCH_SIZE = 100
HIT_PASSES = 20  # cache-hit-load: passes of load() calls over the cached keys per rep


class Loader(Protocol):
    def load(self, key: Any) -> Awaitable[Any]: ...

    def load_many(self, keys: Any) -> Awaitable[list[Any]]: ...


BatchFn = Callable[[list[int]], Coroutine[Any, Any, list[int]]]
LoaderFactory = Callable[..., Loader]  # make(batch_fn, max_batch_size=None)


class CheckFailed(Exception):
    """Wrong values, or batches other than 0.4.3's."""


class FloorLoader:
    """The least work with 0.4.3's semantics, to show what is left to gain: a dict of futures,
    one queue, a batch taken one loop iteration after its first load is scheduled (so loads of
    two consecutive iterations share it, as in 0.4.3), cut into ``max_batch_size`` chunks."""

    def __init__(self, batch_load_fn: BatchFn, max_batch_size: int | None = None) -> None:
        self.batch_load_fn = batch_load_fn
        self.max_batch_size = max_batch_size
        self.loop = asyncio.get_running_loop()
        self.cache: dict[int, asyncio.Future[int]] = {}
        self.queue: list[tuple[int, asyncio.Future[int]]] = []

    def load(self, key: int) -> asyncio.Future[int]:
        future = self.cache.get(key)
        if future is None:
            future = self.cache[key] = self.loop.create_future()
            self.queue.append((key, future))
            if len(self.queue) == 1:
                self.loop.call_soon(self.loop.create_task, self.dispatch())
        return future

    def load_many(self, keys: Sequence[int]) -> Awaitable[list[int]]:
        return asyncio.gather(*map(self.load, keys))

    async def dispatch(self) -> None:
        queue, self.queue = self.queue, []
        size = self.max_batch_size or len(queue)
        chunks = [queue[i : i + size] for i in range(0, len(queue), size)]
        for chunk in chunks[1:]:
            self.loop.create_task(self.batch(chunk))
        await self.batch(chunks[0])

    async def batch(self, chunk: list[tuple[int, asyncio.Future[int]]]) -> None:
        values = await self.batch_load_fn([key for key, _ in chunk])
        for (_, future), value in zip(chunk, values, strict=True):
            future.set_result(value)


def recording_double() -> tuple[BatchFn, list[list[int]]]:
    """The batch function of every scenario (it doubles each key) and its record of calls."""
    calls: list[list[int]] = []

    async def double(keys: list[int]) -> list[int]:
        calls.append(list(keys))
        return [key * 2 for key in keys]

    return double, calls


def sizes_text(sizes: Sequence[int]) -> str:
    """Run-length form of a list of sizes: [100, 100, 7] -> '2x100, 7'."""
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][1] == size:
            runs[-1][0] += 1
        else:
            runs.append([1, size])
    return ", ".join(f"{n}x{size}" if n > 1 else str(size) for n, size in runs) or "none"


def batching_difference(calls: list[list[int]], expected: list[list[int]]) -> str | None:
    """None when the batch calls are exactly ``expected`` (0.4.3's), else what differs."""
    if calls == expected:
        return None
    got, want = [len(c) for c in calls], [len(c) for c in expected]
    if got != want:
        return (
            f"{len(calls)} batches of sizes {sizes_text(got)}, "
            f"0.4.3 makes {len(expected)} of sizes {sizes_text(want)}"
        )
    return f"{len(calls)} batches of the right sizes, but the keys differ or are out of order"


def check(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise CheckFailed(f"{what}: wrong values")


def check_batches(what: str, calls: list[list[int]], expected: list[list[int]]) -> None:
    difference = batching_difference(calls, expected)
    if difference:
        raise CheckFailed(f"{what}: {difference}")


# -- scenarios: each returns the seconds of its timed region, or its metric (bytes, a count) --


def fanout_keys(n: int) -> int:
    return n * max(1, 1000 // n)


async def fanout(make: LoaderFactory, n: int) -> float:
    """``gather`` of n loads of distinct keys in one tick, on 1000 // n loaders or one (so that a
    sample is about 1000 loads, not a single trip around the loop); per key."""
    keys = list(range(n))
    made = [
        (make(fn), calls) for fn, calls in (recording_double() for _ in range(max(1, 1000 // n)))
    ]
    start = perf_counter()
    results = [await asyncio.gather(*[loader.load(key) for key in keys]) for loader, _ in made]
    elapsed = perf_counter() - start
    for (_, calls), values in zip(made, results, strict=True):
        check("gather", values, [key * 2 for key in keys])
        check_batches("gather", calls, [keys])
    return elapsed


async def load_many(make: LoaderFactory, n: int) -> float:
    """``await loader.load_many(keys)`` of n distinct keys; per key."""
    keys = list(range(n))
    fn, calls = recording_double()
    loader = make(fn)
    start = perf_counter()
    values = await loader.load_many(keys)
    elapsed = perf_counter() - start
    check("load_many", values, [key * 2 for key in keys])
    check_batches("load_many", calls, [keys])
    return elapsed


async def cache_hits(make: LoaderFactory, n: int, passes: int) -> float:
    """n keys loaded (untimed), then loaded again: with ``passes=0`` through one ``gather``;
    otherwise only the ``load()`` calls, ``passes`` times over (so that the timed region is
    not dwarfed by the untimed first load); per key and pass."""
    keys = list(range(n))
    fn, calls = recording_double()
    loader = make(fn)
    first = await asyncio.gather(*[loader.load(key) for key in keys])
    load = loader.load
    start = perf_counter()
    if passes:
        for _ in range(passes):
            futures = [load(key) for key in keys]
        elapsed = perf_counter() - start
        again = await asyncio.gather(*futures)
    else:
        again = await asyncio.gather(*[load(key) for key in keys])
        elapsed = perf_counter() - start
    expected = [key * 2 for key in keys]
    check("cache hits", [first, again], [expected, expected])
    check_batches("cache hits", calls, [keys])
    return elapsed


async def tree(make: LoaderFactory, roots: int) -> float:
    """users -> posts -> comments through nested async resolvers gathered at each level:
    ``roots`` users, TREE_FANOUT posts per user and comments per post; per tree.
    0.4.3 makes one batch per loader, keys in resolution order."""
    f = TREE_FANOUT
    (user_fn, user_calls), (post_fn, post_calls), (comment_fn, comment_calls) = (
        recording_double() for _ in range(3)
    )
    users, posts, comments = make(user_fn), make(post_fn), make(comment_fn)

    async def comment(c: int) -> int:
        value: int = await comments.load(c)
        return value

    async def post(p: int) -> tuple[int, list[int]]:
        return await posts.load(p), await asyncio.gather(*map(comment, range(p * f, p * f + f)))

    async def user(u: int) -> tuple[int, list[tuple[int, list[int]]]]:
        return await users.load(u), await asyncio.gather(*map(post, range(u * f, u * f + f)))

    start = perf_counter()
    result = await asyncio.gather(*map(user, range(roots)))
    elapsed = perf_counter() - start
    expected = [
        (
            u * 2,
            [(p * 2, [c * 2 for c in range(p * f, p * f + f)]) for p in range(u * f, u * f + f)],
        )
        for u in range(roots)
    ]
    check("tree", result, expected)
    for level, calls in enumerate([user_calls, post_calls, comment_calls]):
        check_batches(f"tree level {level}", calls, [list(range(roots * f**level))])
    return elapsed


async def serial_latency(make: LoaderFactory, n: int) -> float:
    """n loads, each awaited before the next (a batch of one key each); per load."""
    fn, calls = recording_double()
    loader = make(fn)
    start = perf_counter()
    values = [await loader.load(key) for key in range(n)]
    elapsed = perf_counter() - start
    check("serial loads", values, [key * 2 for key in range(n)])
    check_batches("serial loads", calls, [[key] for key in range(n)])
    return elapsed


async def max_batch(make: LoaderFactory, n: int) -> float:
    """``gather`` of n loads with max_batch_size=100: 0.4.3 makes n/100 batches of 100 in key
    order; per key."""
    keys = list(range(n))
    fn, calls = recording_double()
    loader = make(fn, max_batch_size=MAX_BATCH_SIZE)
    start = perf_counter()
    values = await asyncio.gather(*[loader.load(key) for key in keys])
    elapsed = perf_counter() - start
    chunks = [keys[i : i + MAX_BATCH_SIZE] for i in range(0, n, MAX_BATCH_SIZE)]
    check("gather", values, [key * 2 for key in keys])
    check_batches("gather", calls, chunks)
    return elapsed


async def batch_window(make: LoaderFactory, n: int) -> float:
    """n tasks; task i loads key i after i bare ``await asyncio.sleep(0)``. 0.4.3 keeps a batch
    open for two loop iterations: n/2 batches of 2. The metric is the number of batches."""
    fn, calls = recording_double()
    loader = make(fn)

    async def task(i: int) -> int:
        for _ in range(i):
            await asyncio.sleep(0)
        value: int = await loader.load(i)
        return value

    values = await asyncio.gather(*map(task, range(n)))
    pairs = [list(range(i, min(i + 2, n))) for i in range(0, n, 2)]
    check("gather", values, [i * 2 for i in range(n)])
    check_batches("gather", calls, pairs)
    return float(len(calls))


async def memory(make: LoaderFactory, n: int, retained: bool) -> float:
    """tracemalloc over a fresh loader that loads and caches n keys, in bytes per key, counted
    from the made loader: the peak while loading, or what stays allocated once the results are
    dropped (the cache and the cached values)."""
    keys = list(range(n))
    fn, calls = recording_double()
    gc.collect()
    tracemalloc.start()
    try:
        loader = make(fn)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        values: list[int] | None = await asyncio.gather(*map(loader.load, keys))
        peak = tracemalloc.get_traced_memory()[1] - base
        check("gather", values, [key * 2 for key in keys])
        check_batches("gather", calls, [keys])
        calls.clear()  # the record keeps the batch's key list alive: not the loader's memory
        values = None
        # Leave the loop callback that resumed this task: it holds gather's result (the
        # caller's memory, not the loader's) until this step ends.
        await asyncio.sleep(0)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
        del loader
    finally:
        tracemalloc.stop()
    return (kept if retained else peak) / n


@dataclass(frozen=True)
class Scenario:
    run: Callable[[LoaderFactory, int], Coroutine[Any, Any, float]]
    size: int
    unit: str  # what the table prints, lower is better
    quick_size: int | None = None  # a smaller size for --quick
    once: bool = False  # not a time, and deterministic: one rep is the answer
    per: Callable[[int], int] = lambda size: size  # units of work (keys, loads) in a timed rep

    @property
    def scale(self) -> float:
        """From the returned metric to ``unit``."""
        return {"ns": 1e9, "us": 1e6, "ms": 1e3}.get(self.unit.split("/")[0], 1.0)


def _with(fn: Callable[..., Coroutine[Any, Any, float]], **kwargs: Any) -> Any:
    async def run(make: LoaderFactory, n: int) -> float:
        return await fn(make, n, **kwargs)

    return run


SCENARIOS: dict[str, Scenario] = {
    "fanout-1": Scenario(fanout, 1, "ns/key", per=fanout_keys),
    "fanout-100": Scenario(fanout, 100, "ns/key", per=fanout_keys),
    "fanout-10000": Scenario(fanout, 10_000, "ns/key", per=fanout_keys),
    "load_many-10000": Scenario(load_many, 10_000, "ns/key"),
    "cache-hit-gather-10000": Scenario(_with(cache_hits, passes=0), 10_000, "ns/key"),
    "cache-hit-load-10000": Scenario(
        _with(cache_hits, passes=HIT_PASSES), 10_000, "ns/call", per=lambda n: n * HIT_PASSES
    ),
    "tree": Scenario(tree, 100, "ms", per=lambda roots: 1),
    "serial-latency": Scenario(serial_latency, 1000, "us/load"),
    "max-batch": Scenario(max_batch, 10_000, "ns/key"),
    "batch-window": Scenario(batch_window, 10, "batches", once=True),
    "memory-peak": Scenario(_with(memory, retained=False), 100_000, "B/key", 20_000, True),
    "memory-retained": Scenario(_with(memory, retained=True), 100_000, "B/key", 20_000, True),
}

# Where each implementation's DataLoader class lives: (module, attribute).
IMPLEMENTATIONS = {
    "upstream": ("aiodataloader", "DataLoader"),
    "project": ("aiodataloader", "DataLoader"),
    "strawberry": ("strawberry.dataloader", "DataLoader"),
    "floor": (__name__, "FloorLoader"),
}


def loader_factory(loader_class: Any) -> LoaderFactory:
    """``make(batch_fn, max_batch_size=None)``: every class takes the batch function first and
    accepts ``max_batch_size=``."""

    def make(fn: BatchFn, max_batch_size: int | None = None) -> Loader:
        loader: Loader = (
            loader_class(fn)
            if max_batch_size is None
            else loader_class(fn, max_batch_size=max_batch_size)
        )
        return loader

    return make


def run_reps(loops: int, scenario: Scenario, impl: str, size: int) -> float:
    """pyperf's time function: ``loops`` reps, each on a fresh loader and checked."""
    module, attribute = IMPLEMENTATIONS[impl]
    make = loader_factory(getattr(importlib.import_module(module), attribute))
    # Large imports (Strawberry's) must not make every later collection slower.
    gc.collect()
    gc.freeze()
    loop = asyncio.new_event_loop()
    try:
        total = 0.0
        for _ in range(loops):
            gc.collect()
            total += loop.run_until_complete(
                asyncio.wait_for(scenario.run(make, size), REP_TIMEOUT_S)
            )
        return total
    finally:
        loop.close()


def main() -> None:
    import pyperf  # only where the scenarios run as a script: the tests import this module

    def forward(command: list[str], args: Any) -> None:
        command += ["--impl", args.impl, "--scenario", args.scenario, "--size", str(args.size)]

    runner = pyperf.Runner(add_cmdline_args=forward)
    runner.argparser.add_argument("--impl", choices=IMPLEMENTATIONS, required=True)
    runner.argparser.add_argument("--scenario", choices=SCENARIOS, required=True)
    runner.argparser.add_argument("--size", type=int, help="default: the scenario's")
    args = runner.parse_args()
    scenario = SCENARIOS[args.scenario]
    args.size = args.size or scenario.size
    unit = "byte" if scenario.unit == "B/key" else "integer" if scenario.once else "second"
    runner.bench_time_func(
        args.scenario,
        run_reps,
        scenario,
        args.impl,
        args.size,
        inner_loops=1 if scenario.once else scenario.per(args.size),
        metadata={"unit": unit},
    )


if __name__ == "__main__":
    main()
