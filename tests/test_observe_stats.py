"""Loader statistics: counted per batch by every loader, hits counted while observed."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import tracemalloc

import pytest

from aiodataloader import DataLoader
from aiodataloader.observe import LoaderObserver, LoaderStats, RequestStats, observe

pytestmark = pytest.mark.anyio


async def double(keys: list[int]) -> list[int]:
    return [key * 2 for key in keys]


async def test_a_fresh_loader_has_done_nothing() -> None:
    loader = DataLoader(double)
    assert loader.stats == LoaderStats()
    assert loader.stats.loads is None
    assert loader.stats.mean_batch_size == 0.0


async def test_batches_keys_and_the_largest_batch_are_counted_without_any_observer() -> None:
    loader = DataLoader(double, max_batch_size=3)
    assert await loader.load_many([1, 2, 3, 4]) == [2, 4, 6, 8]  # chunks of 3 and 1
    assert await loader.load(5) == 10
    assert await loader.load(1) == 2  # a hit: not counted, nobody observes

    stats = loader.stats
    assert (stats.batches, stats.keys_dispatched, stats.largest_batch) == (3, 5, 3)
    assert stats.mean_batch_size == pytest.approx(5 / 3)
    assert (stats.failed_batches, stats.failed_loads, stats.cancelled_loads) == (0, 0, 0)
    assert stats.batch_seconds > 0
    assert stats.cache_hits is None
    assert stats.loads is None


class Quiet(LoaderObserver):
    """Overrides nothing: each hook does nothing."""


async def test_an_observed_loader_counts_its_cache_hits_and_loads() -> None:
    loader = observe(DataLoader(double), Quiet())
    first = loader.load(1)
    same_tick = loader.load(1)  # joins the pending load: a hit
    assert same_tick is first
    assert list(await asyncio.gather(first, loader.load(2))) == [2, 4]
    assert await loader.load(2) == 4

    stats = loader.stats
    assert (stats.cache_hits, stats.keys_dispatched, stats.loads) == (2, 2, 4)


async def test_failed_batches_and_rejected_keys_are_counted() -> None:
    async def flaky(keys: list[int]) -> list[int | Exception]:
        if 0 in keys:
            raise ConnectionError("database went away")
        return [ValueError(f"no row {key}") if key % 2 else key for key in keys]

    loader: DataLoader[int, int] = DataLoader(flaky)
    results = await loader.load_many([0, 1, 2], return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    results = await loader.load_many([3, 4, 5], return_exceptions=True)
    assert [type(result) for result in results] == [ValueError, int, ValueError]

    stats = loader.stats
    assert (stats.batches, stats.failed_batches, stats.failed_loads) == (2, 1, 5)


async def test_loads_cancelled_by_cancel_pending_are_counted() -> None:
    started = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("never reached")

    loader: DataLoader[int, int] = DataLoader(slow)
    futures = [loader.load(key) for key in range(4)]
    await started.wait()
    await loader.cancel_pending()

    assert all(future.cancelled() for future in futures)
    stats = loader.stats
    assert (stats.batches, stats.cancelled_loads, stats.failed_loads) == (1, 4, 0)


async def test_stats_are_a_snapshot_that_stays_readable() -> None:
    loader = DataLoader(double)
    await loader.load(1)
    before = loader.stats
    await loader.load(2)
    assert (before.batches, loader.stats.batches) == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.batches = 5  # type: ignore[misc]


def test_stats_add_up_and_describe_themselves() -> None:
    a = LoaderStats(batches=2, keys_dispatched=58, largest_batch=38, batch_seconds=0.0018)
    b = LoaderStats(batches=1, keys_dispatched=20, largest_batch=20, cache_hits=5)
    total = a + b
    assert total == LoaderStats(
        batches=3, keys_dispatched=78, largest_batch=38, batch_seconds=0.0018, cache_hits=5
    )
    assert total.loads == 83
    assert (a + a).cache_hits is None  # never counted on either side
    assert a.describe() == "2 batches, 58 keys (largest 38), 1.8 ms"
    assert LoaderStats(batches=1, keys_dispatched=1, failed_loads=1, cache_hits=1).describe() == (
        "1 batch, 1 key, 1 cache hit, 1 failed, 0.0 ms"
    )
    with pytest.raises(TypeError):
        a + 1  # type: ignore[operator]


async def test_cache_hits_allocate_nothing_when_nobody_observes() -> None:
    loader = DataLoader(double)
    keys = list(range(10_000))
    await loader.load_many(keys)
    load = loader.load
    hits: list[object] = [None] * len(keys)  # holds the results; allocated up front
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for index, key in enumerate(keys):
            hits[index] = load(key)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # 10,000 hits; a single allocated object per hit would be at least 160 KB.
    assert grown < 16_000, grown
    assert loader.stats.batches == 1


async def test_request_stats_sum_per_loader_name_in_build_order() -> None:
    authors = DataLoader(double, name="AuthorLoader")
    tags = DataLoader(double, name="TagLoader")
    unused = DataLoader(double, name="Unused")
    more_authors = DataLoader(double, name="AuthorLoader")  # e.g. a nested scope's
    await authors.load_many(range(20))
    await authors.load_many(range(20, 53))
    await tags.load(1)
    await more_authors.load(1)

    report = RequestStats.of([authors, tags, unused, more_authors])
    assert list(report.by_loader) == ["AuthorLoader", "TagLoader", "Unused"]
    assert (report.by_loader["AuthorLoader"].batches, report.total.batches) == (3, 4)
    assert report.by_loader["AuthorLoader"].keys_dispatched == 54

    timing = report.server_timing()
    assert re.fullmatch(
        r'AuthorLoader;dur=\d+\.\d\d;desc="3 batches, 54 keys \(largest 33\)", '
        r'TagLoader;dur=\d+\.\d\d;desc="1 batch, 1 key"',
        timing,
    ), timing
    assert re.fullmatch(
        r"AuthorLoader 3 batches, 54 keys \(largest 33\), \d+\.\d ms; "
        r"TagLoader 1 batch, 1 key, \d+\.\d ms; Unused 0 batches, 0 keys, 0\.0 ms",
        report.describe(),
    ), report.describe()


def test_a_server_timing_name_is_an_http_token() -> None:
    report = RequestStats({'Posts by "tag"': LoaderStats(batches=1, keys_dispatched=2)})
    assert report.server_timing() == 'Posts_by__tag_;dur=0.00;desc="1 batch, 2 keys"'
    assert RequestStats({}).server_timing() == ""
    assert RequestStats({}).describe() == "no loader"


async def test_request_stats_do_not_depend_on_the_name_stats() -> None:
    class Reporting(DataLoader[int, int]):
        stats = "the application's own attribute"  # type: ignore[assignment]

        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return keys

    loader = Reporting()
    await loader.load(1)
    assert RequestStats.of([loader]).by_loader["Reporting"].batches == 1
