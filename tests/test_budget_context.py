"""The N+1 budget as a context manager: batches per loader and calls of a function."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable
from typing import Any

import pytest

from aiodataloader import DataLoader
from aiodataloader.budget import LoaderBudget, LoaderBudgetExceeded, loader_budget

pytestmark = pytest.mark.anyio


class Table:
    """Stands in for a database: every read is a counted call."""

    statements = 0

    async def select(self, ids: list[int]) -> list[str]:
        return [f"row {i}" for i in ids]

    def select_one(self, row_id: int) -> str:
        return f"row {row_id}"


async def fetch_all(ids: list[int]) -> list[str]:
    return [f"row {i}" for i in ids]


class UserLoader(DataLoader[int, str]):
    def __init__(self, table: Table) -> None:
        super().__init__()
        self.table = table

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return await self.table.select(keys)


class PostLoader(UserLoader):
    pass


async def one_batch_per_level(table: Table) -> None:
    users = UserLoader(table)
    await asyncio.gather(*(users.load(i) for i in range(20)))  # one batch
    await users.load_many(range(20, 58))  # a second level: another batch


async def one_batch_per_key(table: Table) -> None:
    users = UserLoader(table)
    for i in range(3):
        await users.load(i)


async def within(budget: LoaderBudget, work: Awaitable[object]) -> None:
    """Runs ``work`` inside the budget's block."""
    async with budget:
        await work


async def test_within_budget_passes_and_reports_what_it_saw() -> None:
    table = Table()
    with loader_budget(max_batches=2, max_calls={(Table, "select"): 2}) as budget:
        await one_batch_per_level(table)
    assert budget.batches() == {"UserLoader": [[20, 38]]}
    assert budget.calls() == {f"{__name__}.Table.select": 2}


async def test_too_many_batches_fail_with_the_loader_and_its_batch_sizes() -> None:
    table = Table()

    async def work() -> None:
        await one_batch_per_level(table)
        await PostLoader(table).load(1)

    with pytest.raises(LoaderBudgetExceeded) as raised:
        await within(loader_budget(max_batches=1), work())
    assert str(raised.value) == (
        "loader budget exceeded:\n"
        "  UserLoader: 2 batches (sizes 20, 38); at most 1 allowed\n"
        "batches seen:\n"
        "  PostLoader: sizes 1\n"
        "  UserLoader: sizes 20, 38"
    )
    assert isinstance(raised.value, AssertionError)


async def test_too_many_calls_fail_with_the_function_and_its_calls() -> None:
    table = Table()
    budget = loader_budget(max_calls={f"{__name__}.Table.select": 1})
    with pytest.raises(LoaderBudgetExceeded) as raised:
        await within(budget, one_batch_per_key(table))
    assert str(raised.value).startswith(
        f"loader budget exceeded:\n  {__name__}.Table.select: 3 calls; at most 1 allowed\n"
        "batches seen:\n  UserLoader: sizes 1, 1, 1"
    )


async def test_limits_per_loader_class_or_name() -> None:
    table = Table()
    limits: dict[type[DataLoader[Any, Any]] | str, int] = {UserLoader: 2, "Tags": 0}
    with loader_budget(max_batches=limits) as budget:
        await one_batch_per_level(table)
        await DataLoader(fetch_all, name="Comments").load(1)  # not named: not limited
    assert budget.batches()["Comments"] == [[1]]

    tags = DataLoader(fetch_all, name="Tags")
    with pytest.raises(LoaderBudgetExceeded, match=r"\n  Tags: 1 batches \(sizes 1\); at most 0"):
        await within(loader_budget(max_batches=limits), tags.load(1))

    async def two_post_batches() -> None:
        posts = PostLoader(table)
        await posts.load(1)
        await posts.load(2)

    # A subclass has the limit of its base class.
    with pytest.raises(LoaderBudgetExceeded, match=r"\n  PostLoader: 2 batches"):
        await within(loader_budget(max_batches={UserLoader: 1}), two_post_batches())


async def test_each_loader_instance_has_its_own_count() -> None:
    table = Table()
    with loader_budget(max_batches=2) as budget:
        for _ in range(3):  # e.g. three requests, a loader each
            await one_batch_per_level(table)
    assert budget.batches() == {"UserLoader": [[20, 38]] * 3}


async def test_sync_and_async_functions_and_module_functions_are_counted() -> None:
    table = Table()
    module = sys.modules[__name__]
    with loader_budget(
        max_calls={(Table, "select_one"): 5, (module, "fetch_all"): 5, (Table, "select"): 5}
    ) as budget:
        assert table.select_one(1) == "row 1"
        assert await fetch_all([1]) == ["row 1"]
        assert await table.select([2]) == ["row 2"]
        assert asyncio.iscoroutinefunction(Table.select)
    assert budget.calls() == {
        f"{__name__}.Table.select_one": 1,
        f"{__name__}.fetch_all": 1,
        f"{__name__}.Table.select": 1,
    }
    # Restored on leaving the block.
    assert Table.select.__qualname__ == "Table.select"
    assert "counted" not in repr(Table.__dict__["select"])


async def test_an_inherited_method_is_counted_on_the_subclass_only() -> None:
    class Replica(Table):
        pass

    with loader_budget(max_calls={(Replica, "select"): 1}) as budget:
        await Replica().select([1])
        await Table().select([1])  # the base class is not counted
    assert budget.calls() == {f"{__name__}.{Replica.__qualname__}.select": 1}
    assert "select" not in vars(Replica)  # inherited again, as before


async def test_an_error_in_the_block_is_not_hidden_by_the_budget() -> None:
    async def fails() -> None:
        await DataLoader(fetch_all).load(1)
        raise KeyError("the test's own failure")

    with pytest.raises(KeyError):
        await within(loader_budget(max_batches=0), fails())


async def test_a_budget_counts_once() -> None:
    budget = loader_budget(max_batches=1)
    with budget:
        pass
    with pytest.raises(RuntimeError, match=r"^a LoaderBudget counts once: make a new one"):
        budget.start()


async def test_outside_the_block_nothing_is_counted() -> None:
    budget = LoaderBudget(max_batches=0, max_calls={(Table, "select"): 0})
    await one_batch_per_level(Table())
    budget.check()
    with budget:
        pass
    await one_batch_per_level(Table())
    budget.check()
    assert budget.batches() == {}


def test_bad_limits_are_refused_with_a_clear_message() -> None:
    with pytest.raises(
        ValueError, match=r"^loader_budget\(\): max_batches must be an int >= 0; got -1$"
    ):
        loader_budget(max_batches=-1)
    with pytest.raises(
        ValueError, match=r"^loader_budget\(\): max_batches\[.*UserLoader'>\] must be an int"
    ):
        loader_budget(max_batches={UserLoader: 1.5})  # type: ignore[dict-item]
    with pytest.raises(
        TypeError,
        match=r"^loader_budget\(\): max_batches keys must be DataLoader subclasses or loader "
        r"names; got <class 'int'>$",
    ):
        loader_budget(max_batches={int: 1})  # type: ignore[dict-item]
    with pytest.raises(
        ValueError,
        match=re.escape("loader_budget(): max_calls[(<class"),
    ):
        loader_budget(max_calls={(Table, "select"): "5"})  # type: ignore[dict-item]


def test_bad_call_targets_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"^loader_budget\(\): a counted function is named"):
        loader_budget(max_calls={"fetch_all": 1})
    with pytest.raises(ValueError, match=r"^loader_budget\(\): cannot import 'no_such_module'"):
        loader_budget(max_calls={"no_such_module.fetch": 1})
    with pytest.raises(
        TypeError,
        match=(
            rf"^loader_budget\(\): {__name__}\.Table\.statements must be a plain function "
            r"\(or a method defined with def\); got int$"
        ),
    ):
        loader_budget(max_calls={(Table, "statements"): 1})
    with pytest.raises(TypeError, match=r"got NoneType$"):
        loader_budget(max_calls={(Table, "missing"): 1})
    with pytest.raises(TypeError, match=r"^loader_budget\(\): max_calls keys must be"):
        loader_budget(max_calls={42: 1})  # type: ignore[dict-item]
