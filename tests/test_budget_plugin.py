"""The pytest plugin: a marker for a whole test and a fixture for a block, run in inner pytest
sessions (pytester). The plugin is loaded by hand there, the way a checkout that is not
installed loads it; an installed package registers it through its pytest11 entry point."""

from __future__ import annotations

import os
from importlib import metadata

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import asyncio

import pytest

from aiodataloader import DataLoader

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def rows(keys):
    return [f"row {key}" for key in keys]


async def two_levels():
    users = DataLoader(rows, name="UserLoader")
    await asyncio.gather(*(users.load(i) for i in range(20)))
    await users.load_many(range(20, 58))


@pytest.mark.loader_budget(max_batches=2)
async def test_marker_within_budget():
    await two_levels()


@pytest.mark.loader_budget(max_batches=1)
async def test_marker_over_budget():
    await two_levels()


@pytest.mark.loader_budget(max_calls={"test_inner.rows": 1})
async def test_marker_counts_calls():
    await two_levels()


@pytest.mark.loader_budget(max_batches=0)
async def test_own_failure_comes_first():
    await two_levels()
    assert False, "the test's own failure"


async def test_fixture_for_a_block(loader_budget):
    await two_levels()  # outside the block: not counted
    with loader_budget(max_batches=1):
        await two_levels()


async def test_fixture_stops_a_budget_left_running(loader_budget):
    loader_budget(max_batches=0).start()
    await two_levels()


async def test_after_the_one_left_running_nothing_is_counted(loader_budget):
    with loader_budget(max_batches=2) as budget:
        pass
    await two_levels()
    assert budget.batches() == {}


@pytest.mark.loader_budget(1)
def test_positional_arguments_are_refused():
    pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # The same plugins whether or not this package is installed: only those named by -p.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_inner=TESTS)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "anyio", "-p", "aiodataloader.pytest_plugin", "--strict-markers", *args
    )


def test_the_marker_and_the_fixture(inner: pytest.Pytester) -> None:
    result = run(inner, "-rA")
    result.assert_outcomes(passed=3, failed=5)
    outcomes = {
        line.split(" ")[1].split("::")[-1]: line.split(" ")[0]
        for line in result.outlines
        if line.startswith(("PASSED", "FAILED"))
    }
    assert outcomes == {
        "test_marker_within_budget": "PASSED",
        "test_marker_over_budget": "FAILED",
        "test_marker_counts_calls": "FAILED",
        "test_own_failure_comes_first": "FAILED",
        "test_fixture_for_a_block": "FAILED",
        "test_fixture_stops_a_budget_left_running": "PASSED",
        "test_after_the_one_left_running_nothing_is_counted": "PASSED",
        "test_positional_arguments_are_refused": "FAILED",
    }
    result.stdout.fnmatch_lines(
        [
            "*LoaderBudgetExceeded: loader budget exceeded:",
            "*  UserLoader: 2 batches (sizes 20, 38); at most 1 allowed",
            "*batches seen:",
            "*  UserLoader: sizes 20, 38",
        ]
    )
    result.stdout.fnmatch_lines(["*test_inner.rows: 2 calls; at most 1 allowed"])
    result.stdout.fnmatch_lines(["*AssertionError: the test's own failure"])
    result.stdout.fnmatch_lines(
        [
            "*TypeError: *test_positional_arguments_are_refused: @pytest.mark.loader_budget takes "
            "keyword arguments only (max_batches=..., max_calls=...); got positional (1,)"
        ]
    )


def test_the_marker_is_registered(inner: pytest.Pytester) -> None:
    result = run(inner, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.loader_budget(max_batches=None, max_calls=None):*"])


def test_an_installed_package_registers_the_plugin() -> None:
    try:
        distribution = metadata.distribution("aiodataloader")
    except metadata.PackageNotFoundError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("aiodataloader is not installed (run from a checkout)")
    plugins = [ep for ep in distribution.entry_points if ep.group == "pytest11"]
    assert [(ep.name, ep.value) for ep in plugins] == [
        ("aiodataloader", "aiodataloader.pytest_plugin")
    ]
