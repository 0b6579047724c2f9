"""The pure parts of benchmarks/core_side_by_side.py: its scenarios, run in-process against
our own package at small sizes, see 0.4.3's batching and correct values, and its checks catch
a loader that batches differently. No timing is asserted (and no virtualenv is created)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from aiodataloader import DataLoader

from .benchmark_modules import BENCHMARKS, load_benchmark_module

# Small sizes: the batching shapes are the same as at full size.
SMALL = {
    "fanout-1": 1,
    "fanout-100": 100,
    "fanout-10000": 300,
    "load_many-10000": 300,
    "cache-hit-gather-10000": 300,
    "cache-hit-load-10000": 300,
    "tree": 5,
    "serial-latency": 20,
    "max-batch": 250,
    "batch-window": 10,
    "memory": 500,
}


def load_scenarios() -> ModuleType:
    return load_benchmark_module("_core_scenarios")


scenarios = load_scenarios()


def run(scenario: str, make: Any, size: int) -> Any:
    return asyncio.run(scenarios.SCENARIOS[scenario].run(make, size))


def test_every_scenario_has_a_small_size() -> None:
    assert set(SMALL) == set(scenarios.SCENARIOS)


@pytest.mark.parametrize("scenario", list(SMALL))
def test_our_loader_batches_as_043_with_correct_values(scenario: str) -> None:
    outcome = run(scenario, scenarios.loader_factory(DataLoader), SMALL[scenario])

    assert outcome.problems == []
    assert outcome.batching == []
    assert len(outcome.values) == len(scenarios.SCENARIOS[scenario].metrics)


def test_batch_window_counts_five_batches_of_two() -> None:
    outcome = run("batch-window", scenarios.loader_factory(DataLoader), 10)

    assert outcome.values == [5]


@pytest.mark.parametrize("scenario", ["fanout-100", "tree", "max-batch", "batch-window"])
def test_strawberry_batches_as_043_too(scenario: str) -> None:
    strawberry = pytest.importorskip("strawberry.dataloader")
    outcome = run(scenario, scenarios.loader_factory(strawberry.DataLoader), SMALL[scenario])

    assert outcome.problems == []
    assert outcome.batching == []


def test_a_loader_that_does_not_batch_is_flagged() -> None:
    def unbatched(fn: Any, max_batch_size: int | None = None) -> Any:
        return DataLoader(fn, batch=False)

    outcome = run("fanout-100", unbatched, 100)

    assert outcome.problems == []  # the values are right ...
    assert outcome.batching == ["100 batches of sizes 100x1, 0.4.3 makes 1 of sizes 100"]


def test_a_loader_that_ignores_max_batch_size_is_flagged() -> None:
    def unlimited(fn: Any, max_batch_size: int | None = None) -> Any:
        return DataLoader(fn)

    outcome = run("max-batch", unlimited, 250)

    assert outcome.batching == ["1 batches of sizes 250, 0.4.3 makes 3 of sizes 2x100, 50"]


def test_reordered_keys_and_wrong_values_are_flagged() -> None:
    assert scenarios.check_batches([[2, 1]], [[1, 2]]) == [
        "1 batches of the right sizes, but the keys differ or are out of order"
    ]

    async def wrong(keys: list[int]) -> list[int]:
        return [0 for _ in keys]

    outcome = run("load_many-10000", lambda fn, max_batch_size=None: DataLoader(wrong), 10)
    assert outcome.problems == ["load_many: wrong values"]


def test_worker_answers_a_request_over_json_lines() -> None:
    worker = subprocess.run(
        [sys.executable, "-I", str(BENCHMARKS / "_core_scenarios.py"), "worker", "project"],
        input=json.dumps({"scenario": "fanout-100", "size": 100, "warmup": 1, "reps": 2}) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    info, reply = (json.loads(line) for line in worker.stdout.splitlines())
    assert info["impl"] == "project"
    assert reply["problems"] == []
    assert reply["batching"] == []
    assert len(reply["values"]["fanout-100"]) == 2


def test_http_overhead_benchmark_runs_both_apps_in_process() -> None:
    http_overhead = load_benchmark_module("http_overhead")
    rows = http_overhead.bench_asgi(rounds=2, per_round=3)
    assert [(row.transport, row.request) for row in rows] == [
        ("in-process (httpx ASGI)", "no loader"),
        ("in-process (httpx ASGI)", "three loaders"),
    ]
    assert all(row.with_us > 0 and row.without_us > 0 and row.ratio > 0 for row in rows)
