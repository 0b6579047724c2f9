"""An N+1 budget for tests: at most N batches per loader, at most M calls of a function.

::

    with loader_budget(max_batches=1, max_calls={"examples.blog.db.Database.fetch_all": 5}):
        response = await client.get("/posts", params={"limit": 20})

On leaving the block, a budget that was exceeded raises ``LoaderBudgetExceeded`` (an
``AssertionError``) that lists each offending loader with the sizes of its batches, and each
counted function with its calls. The pytest plugin (``aiodataloader.pytest_plugin``,
registered through the ``pytest11`` entry point) offers the same for a whole test:
``@pytest.mark.loader_budget(max_batches=1)``.

Batches are counted for every loader, whenever it was built; a function is counted by
wrapping it in its module or class for the duration of the block. The budget is process-wide:
it sees the loaders of a server running in this process too, not of another process.
"""

from __future__ import annotations

import functools
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias, Union

from .loader import DataLoader
from .observe import BatchInfo, LoaderObserver, add_global_observer, remove_global_observer

__all__ = ["LoaderBudget", "LoaderBudgetExceeded", "loader_budget"]

#: What to count: ``"package.module.function"``, ``"package.module.Class.method"``, or an
#: ``(owner, "attribute")`` pair (a module or a class, and the function's name in it).
CallTarget: TypeAlias = Union[str, tuple[object, str]]  # noqa: UP007 - an alias, evaluated on 3.10


class LoaderBudgetExceeded(AssertionError):
    """The loaders made more batches, or the counted functions were called more often, than
    the budget allows."""


@dataclass
class _LoaderRecord:
    label: str
    sizes: list[int] = field(default_factory=list)


@dataclass
class _CallCounter:
    label: str
    limit: int
    owner: object
    attribute: str
    original: object
    calls: int = 0
    # Whether the owner defines it itself (rather than inherit it): restored as it was.
    own: bool = True


class LoaderBudget(LoaderObserver):
    """Counts the batches of every loader and the calls of the given functions while
    active; ``check()`` (called on leaving the ``with`` block) raises if over budget.

    ``max_batches`` is the most batches any one loader may make, or a mapping from a loader
    class (or a loader's name) to its own limit; loaders it does not name are then not
    limited. ``max_calls`` maps each counted function to the most calls it may get.
    """

    def __init__(
        self,
        *,
        max_batches: int | Mapping[type[DataLoader[Any, Any]] | str, int] | None = None,
        max_calls: Mapping[CallTarget, int] | None = None,
    ) -> None:
        self._limits = _check_batch_limits(max_batches)
        self._default_limit = max_batches if isinstance(max_batches, int) else None
        self._calls: list[_CallCounter] = []
        for target, limit in (max_calls or {}).items():
            _check_limit(f"max_calls[{target!r}]", limit)
            owner, attribute = _resolve(target)
            self._calls.append(
                _CallCounter(_target_label(owner, attribute), limit, owner, attribute, None)
            )
        # Per loader instance (a loader class may have one instance per request).
        self._loaders: dict[int, tuple[DataLoader[Any, Any], _LoaderRecord]] = {}
        self._active = False
        self._used = False

    # -- what it saw ---------------------------------------------------------------------

    def batches(self) -> dict[str, list[list[int]]]:
        """For each loader label, the batch sizes of each of its instances."""
        seen: dict[str, list[list[int]]] = {}
        for _, record in self._loaders.values():
            seen.setdefault(record.label, []).append(list(record.sizes))
        return seen

    def calls(self) -> dict[str, int]:
        """For each counted function, its calls so far."""
        return {counter.label: counter.calls for counter in self._calls}

    # -- the observer ----------------------------------------------------------------------

    def on_batch_start(self, batch: BatchInfo) -> None:
        if not self._active:
            return
        entry = self._loaders.get(id(batch.loader))
        if entry is None or entry[0] is not batch.loader:
            entry = self._loaders[id(batch.loader)] = (batch.loader, _LoaderRecord(batch.name))
        entry[1].sizes.append(batch.size)

    def on_batch_end(self, batch: BatchInfo) -> None:
        pass

    def on_cache_hit(self, loader: DataLoader[Any, Any], key: Any) -> None:
        pass

    # -- activation ----------------------------------------------------------------------

    def start(self) -> None:
        """Start counting: attach the observer and wrap the counted functions."""
        if self._used:
            raise RuntimeError("a LoaderBudget counts once: make a new one for each block")
        self._used = True
        self._active = True
        add_global_observer(self)
        for counter in self._calls:
            counter.original = inspect.getattr_static(counter.owner, counter.attribute)
            counter.own = counter.attribute in vars(counter.owner)
            setattr(counter.owner, counter.attribute, _counting(counter))

    def stop(self) -> None:
        """Stop counting, and restore the counted functions."""
        if not self._active:
            return
        self._active = False
        remove_global_observer(self)
        for counter in reversed(self._calls):
            if counter.own:
                setattr(counter.owner, counter.attribute, counter.original)
            else:
                delattr(counter.owner, counter.attribute)

    def check(self) -> None:
        """Raise ``LoaderBudgetExceeded`` listing what went over budget."""
        problems: list[str] = []
        for loader, record in self._loaders.values():
            limit = self._limit_for(loader, record.label)
            if limit is not None and len(record.sizes) > limit:
                sizes = ", ".join(str(size) for size in record.sizes)
                problems.append(
                    f"{record.label}: {len(record.sizes)} batches (sizes {sizes}); at most "
                    f"{limit} allowed"
                )
        for counter in self._calls:
            if counter.calls > counter.limit:
                problems.append(
                    f"{counter.label}: {counter.calls} calls; at most {counter.limit} allowed"
                )
        if problems:
            raise LoaderBudgetExceeded(
                "loader budget exceeded:\n  " + "\n  ".join(problems) + "\n" + self._summary()
            )

    def _summary(self) -> str:
        lines = ["batches seen:"]
        for label, instances in sorted(self.batches().items()):
            for sizes in instances:
                lines.append(f"  {label}: sizes {', '.join(map(str, sizes)) or '-'}")
        if len(lines) == 1:
            lines.append("  (none)")
        return "\n".join(lines)

    def _limit_for(self, loader: DataLoader[Any, Any], label: str) -> int | None:
        for cls in type(loader).__mro__:
            if cls in self._limits:
                return self._limits[cls]
        if label in self._limits:
            return self._limits[label]
        return self._default_limit

    def __enter__(self) -> LoaderBudget:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None:
            self.check()

    async def __aenter__(self) -> LoaderBudget:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def loader_budget(
    *,
    max_batches: int | Mapping[type[DataLoader[Any, Any]] | str, int] | None = None,
    max_calls: Mapping[CallTarget, int] | None = None,
) -> LoaderBudget:
    """A budget for a block: ``with loader_budget(max_batches=1): ...`` (or ``async with``)."""
    return LoaderBudget(max_batches=max_batches, max_calls=max_calls)


def _check_limit(what: str, limit: object) -> int:
    if type(limit) is not int or limit < 0:
        raise ValueError(f"loader_budget(): {what} must be an int >= 0; got {limit!r}")
    return limit


def _check_batch_limits(
    max_batches: object,
) -> dict[type[DataLoader[Any, Any]] | str, int]:
    if max_batches is None:
        return {}
    if isinstance(max_batches, Mapping):
        limits: dict[type[DataLoader[Any, Any]] | str, int] = {}
        for key, limit in max_batches.items():
            if not (
                isinstance(key, str) or (isinstance(key, type) and issubclass(key, DataLoader))
            ):
                raise TypeError(
                    "loader_budget(): max_batches keys must be DataLoader subclasses or loader "
                    f"names; got {key!r}"
                )
            limits[key] = _check_limit(f"max_batches[{key!r}]", limit)
        return limits
    _check_limit("max_batches", max_batches)
    return {}


def _resolve(target: object) -> tuple[object, str]:
    if isinstance(target, str):
        owner_path, _, attribute = target.rpartition(".")
        if not owner_path:
            raise ValueError(
                "loader_budget(): a counted function is named 'package.module.function' or "
                f"'package.module.Class.method'; got {target!r}"
            )
        try:
            owner = pkgutil.resolve_name(owner_path)
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(f"loader_budget(): cannot import {owner_path!r}: {error}") from None
    elif isinstance(target, tuple) and len(target) == 2 and isinstance(target[1], str):
        owner, attribute = target
    else:
        raise TypeError(
            "loader_budget(): max_calls keys must be 'package.module.function' strings or "
            f"(owner, 'attribute') pairs; got {target!r}"
        )
    function = inspect.getattr_static(owner, attribute, None)
    if not inspect.isfunction(function):
        raise TypeError(
            f"loader_budget(): {_target_label(owner, attribute)} must be a plain function "
            f"(or a method defined with def); got {type(function).__name__}"
        )
    return owner, attribute


def _target_label(owner: object, attribute: str) -> str:
    module = getattr(owner, "__module__", None)
    name = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", repr(owner))
    return f"{module}.{name}.{attribute}" if module and module != name else f"{name}.{attribute}"


def _counting(counter: _CallCounter) -> Callable[..., Any]:
    original: Callable[..., Any] = counter.original  # type: ignore[assignment]

    if inspect.iscoroutinefunction(original):
        # Stays a coroutine function for whoever inspects it (FastAPI, Starlette).
        @functools.wraps(original)
        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            counter.calls += 1
            return await original(*args, **kwargs)

        return counted_async

    @functools.wraps(original)
    def counted(*args: Any, **kwargs: Any) -> Any:
        counter.calls += 1
        return original(*args, **kwargs)

    return counted
