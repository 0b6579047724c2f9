"""pytest plugin: N+1 budgets for tests. ``pip install aiodataloader`` registers it (the
``pytest11`` entry point); ``-p aiodataloader.pytest_plugin`` loads it by hand.

A whole test::

    @pytest.mark.loader_budget(max_batches=1, max_calls={"myapp.db.Database.execute": 5})
    async def test_posts_are_batched(client): ...

A block of a test, through the fixture (the same as ``aiodataloader.budget.loader_budget``)::

    async def test_posts(client, loader_budget):
        with loader_budget(max_batches=1):
            await client.get("/posts")
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import pytest

from .budget import CallTarget, LoaderBudget
from .budget import loader_budget as _loader_budget
from .loader import DataLoader

_MARKER = "loader_budget"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(max_batches=None, max_calls=None): fail the test if a DataLoader makes "
        "more than max_batches batches, or a function in max_calls is called more often "
        "(aiodataloader.budget.loader_budget)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    marker = item.get_closest_marker(_MARKER)
    if marker is None:
        return (yield)
    if marker.args:
        raise TypeError(
            f"{item.nodeid}: @pytest.mark.{_MARKER} takes keyword arguments only "
            f"(max_batches=..., max_calls=...); got positional {marker.args!r}"
        )
    budget = _loader_budget(**marker.kwargs)
    budget.start()
    try:
        result = yield
    finally:
        budget.stop()
    # Reached only when the test passed: its own failure is the better report.
    budget.check()
    return result


@pytest.fixture
def loader_budget() -> Iterator[Callable[..., LoaderBudget]]:
    """``aiodataloader.budget.loader_budget``: ``with loader_budget(max_batches=1): ...``.
    A budget the test started by hand and left running is stopped at teardown."""
    made: list[LoaderBudget] = []

    def make(
        *,
        max_batches: int | Mapping[type[DataLoader[Any, Any]] | str, int] | None = None,
        max_calls: Mapping[CallTarget, int] | None = None,
    ) -> LoaderBudget:
        budget = _loader_budget(max_batches=max_batches, max_calls=max_calls)
        made.append(budget)
        return budget

    yield make
    for budget in made:
        budget.stop()
