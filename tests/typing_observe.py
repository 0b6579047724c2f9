"""Type-checked by mypy --strict and pyright strict (never run): user code that observes
loaders type-checks, and wrong code does not (each ignore below must be needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiodataloader import DataLoader
from aiodataloader.budget import LoaderBudget, loader_budget
from aiodataloader.observe import (
    BatchInfo,
    LoaderObserver,
    LoaderStats,
    add_global_observer,
    observe,
    remove_global_observer,
)
from aiodataloader.otel import OpenTelemetryObserver

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value: object, _type: object) -> object:
        return value


class User:
    pass


class UserLoader(DataLoader[int, User | None]):
    async def batch_load_fn(self, keys: list[int]) -> list[User | None]:
        return [User() for _ in keys]


class SlowBatches(LoaderObserver):
    def __init__(self) -> None:
        self.slow: list[tuple[str, int, float]] = []

    def on_batch_end(self, batch: BatchInfo) -> None:
        if batch.error is None and batch.duration > 0.1:
            self.slow.append((batch.name, batch.size, batch.duration))


class Structural:
    """Not a subclass: any class with the three hooks is an observer."""

    def on_batch_start(self, batch: BatchInfo) -> None: ...
    def on_batch_end(self, batch: BatchInfo) -> None: ...
    def on_cache_hit(self, loader: DataLoader[Any, Any], key: Any) -> None: ...


class MissingHooks:
    def on_batch_start(self, batch: BatchInfo) -> None: ...


def observing() -> None:
    loader = observe(UserLoader(), SlowBatches())
    assert_type(loader, UserLoader)
    observe(loader, Structural())
    add_global_observer(OpenTelemetryObserver(max_links=8))
    remove_global_observer(Structural())
    observe(loader, MissingHooks())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def statistics(loader: UserLoader) -> None:
    stats = loader.stats
    assert_type(stats, LoaderStats)
    assert_type(stats.batches, int)
    assert_type(stats.batch_seconds, float)
    assert_type(stats.cache_hits, int | None)
    assert_type(stats.loads, int | None)
    total = stats + stats
    assert_type(total, LoaderStats)
    stats.batches = 1  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]


async def budgets(loader: UserLoader) -> None:
    with loader_budget(max_batches={UserLoader: 2, "TagLoader": 1}) as budget:
        await loader.load(1)
    assert_type(budget, LoaderBudget)
    assert_type(budget.batches(), dict[str, list[list[int]]])
    async with loader_budget(max_calls={"myapp.db.execute": 5, (UserLoader, "batch_load_fn"): 1}):
        await loader.load(2)
    loader_budget(max_batches="1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    loader_budget(1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
