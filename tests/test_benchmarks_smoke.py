"""benchmarks/core_side_by_side.py: its scenarios, run in-process at small sizes, see 0.4.3's
batching and correct values with every implementation at hand; its checks catch a loader that
batches differently; one real pyperf run of the scenario script. No timing is asserted."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from aiodataloader import DataLoader

from .benchmark_modules import load_benchmark_module

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
    "memory-peak": 500,
    "memory-retained": 500,
}

scenarios = load_benchmark_module("_core_scenarios")
side_by_side = load_benchmark_module("core_side_by_side")  # imports the scenarios by name


def run(scenario: str, make: Any, size: int) -> float:
    result: float = asyncio.run(scenarios.SCENARIOS[scenario].run(make, size))
    return result


def only(loader_class: Any) -> Any:
    """A loader factory that ignores ``max_batch_size``."""
    return lambda fn, max_batch_size=None: loader_class(fn)


def test_every_scenario_has_a_small_size() -> None:
    assert set(SMALL) == set(scenarios.SCENARIOS)


def loader_classes() -> list[Any]:
    strawberry = pytest.importorskip("strawberry.dataloader")
    return [DataLoader, strawberry.DataLoader, scenarios.FloorLoader]


@pytest.mark.parametrize("scenario", list(SMALL))
def test_every_implementation_batches_as_043_with_correct_values(scenario: str) -> None:
    for loader_class in loader_classes():
        metric = run(scenario, scenarios.loader_factory(loader_class), SMALL[scenario])
        assert metric > 0, loader_class


def test_batch_window_counts_five_batches_of_two() -> None:
    assert run("batch-window", scenarios.loader_factory(DataLoader), 10) == 5


def test_a_loader_that_does_not_batch_is_flagged() -> None:
    def unbatched(fn: Any, max_batch_size: int | None = None) -> Any:
        return DataLoader(fn, batch=False)

    with pytest.raises(scenarios.CheckFailed) as failed:
        run("fanout-100", unbatched, 100)
    assert str(failed.value) == "gather: 100 batches of sizes 100x1, 0.4.3 makes 1 of sizes 100"


def test_a_loader_that_ignores_max_batch_size_is_flagged() -> None:
    with pytest.raises(scenarios.CheckFailed) as failed:
        run("max-batch", only(DataLoader), 250)
    assert str(failed.value) == "gather: 1 batches of sizes 250, 0.4.3 makes 3 of sizes 2x100, 50"


def test_reordered_keys_and_wrong_values_are_flagged() -> None:
    assert scenarios.batching_difference([[2, 1]], [[1, 2]]) == (
        "1 batches of the right sizes, but the keys differ or are out of order"
    )

    async def wrong(keys: list[int]) -> list[int]:
        return [0 for _ in keys]

    with pytest.raises(scenarios.CheckFailed, match=r"^load_many: wrong values$"):
        run("load_many-10000", lambda fn, max_batch_size=None: DataLoader(wrong), 10)


@pytest.mark.parametrize(("scenario", "size"), [("fanout-100", 100), ("memory-retained", 500)])
def test_one_pyperf_run_of_the_scenario_script(tmp_path: Path, scenario: str, size: int) -> None:
    """What the side-by-side driver runs per cell, with this interpreter and project."""
    inherit = ["--inherit-environ=PYTHONPATH"] if os.environ.get("PYTHONPATH") else []
    options = ["--debug-single-value", *inherit]
    benchmark = side_by_side.measure(
        Path(sys.executable), "project", scenario, size, options, tmp_path / "out.json"
    )

    assert not isinstance(benchmark, str), benchmark
    assert benchmark.get_name() == scenario
    assert benchmark.get_nvalue() == 1
    assert benchmark.median() > 0


def test_http_overhead_benchmark_runs_both_apps_in_process() -> None:
    http_overhead = load_benchmark_module("http_overhead")
    rows = http_overhead.bench_asgi(rounds=2, per_round=3)
    assert [(row.transport, row.request) for row in rows] == [
        ("in-process (httpx ASGI)", "no loader"),
        ("in-process (httpx ASGI)", "three loaders"),
    ]
    assert all(row.with_us > 0 and row.without_us > 0 and row.ratio > 0 for row in rows)


REPOSITORY = Path(__file__).resolve().parents[1]


def test_core_refs_runs_a_git_ref_beside_the_working_tree(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """benchmarks/core_refs.py: HEAD exported and imported by its own worker, its A/A control
    and the working tree, interleaved; a table with one ratio column per source."""
    if not (REPOSITORY / ".git").exists():
        pytest.skip("not a git checkout")
    core_refs = load_benchmark_module("core_refs")
    options = ["--refs", "head=HEAD", "--scenarios", "fanout-100,serial-latency", "--aa"]
    core_refs.main([*options, "--rounds", "2", "--epochs", "1", "--reps", "1", "--clock", "cpu"])

    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("CPU time")
    assert table[1].split() == [
        "scenario",
        "head",
        "head(A/A)",
        "tree",
        "head(A/A)/head",
        "tree/head",
    ]
    assert [line.split()[0] for line in table[2:]] == ["fanout-100", "serial-latency"]


def test_core_refs_counts_the_instructions_of_the_timed_region() -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    core_refs = load_benchmark_module("core_refs")
    counts = core_refs.instructions(REPOSITORY, "fanout-100", 2)
    assert len(counts) == 2
    # The same work twice: the counts of the two timed regions agree closely.
    assert abs(counts[0] - counts[1]) < 0.05 * counts[0]


def test_guard_tradeoff_counts_hits_while_a_batch_function_is_suspended() -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    load_benchmark_module("core_refs")  # guard_tradeoff imports it by name
    guard_tradeoff = load_benchmark_module("guard_tradeoff")
    counts = guard_tradeoff.counts(REPOSITORY, "hits-while-suspended")
    assert len(counts) == 3
    assert max(counts) - min(counts) < 0.05 * min(counts)


def test_value_cache_off_runs_the_baseline_beside_the_working_tree(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not (REPOSITORY / ".git").exists():
        pytest.skip("not a git checkout")
    load_benchmark_module("core_refs")  # value_cache_off imports it by name
    value_cache_off = load_benchmark_module("value_cache_off")
    value_cache_off.main(["--baseline", "HEAD", "--rounds", "1", "--epochs", "1", "--reps", "1"])

    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[1:] == ["HEAD", "tree", "tree/HEAD"]
    assert len(table) == 2 + len(load_benchmark_module("core_refs").TIMED)
