"""What the loaders do: statistics, and observers of batches and cache hits.

Every loader counts its batches, the keys they carried, failed and cancelled loads and the
time spent in the batch function, at a cost paid once per batch (``loader.stats``).
Observers see each batch start and end and, when attached, each cache hit::

    class SlowBatchLog(LoaderObserver):
        def on_batch_end(self, batch: BatchInfo) -> None:
            if batch.duration > 0.1:
                logger.warning("%s: %d keys took %.2f s", batch.name, batch.size, batch.duration)

    observe(loader, SlowBatchLog())          # one loader
    add_global_observer(SlowBatchLog())      # every loader

An observer that raises is logged once per hook on the ``aiodataloader`` logger and never fails
a load. The core imports no tracing library: ``aiodataloader.otel`` is one observer.
"""

from __future__ import annotations

import logging
import re
from asyncio import Future
from collections.abc import Iterable, Mapping, Sequence
from contextvars import Context
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from .loader import DataLoader

__all__ = [
    "BatchInfo",
    "LoaderObserver",
    "LoaderStats",
    "RequestStats",
    "add_global_observer",
    "loader_name",
    "observe",
    "remove_global_observer",
]

logger = logging.getLogger("aiodataloader")

LoaderT = TypeVar("LoaderT", bound="DataLoader[Any, Any]")


@dataclass(frozen=True)
class LoaderStats:
    """What a loader (or a sum of loaders) has done: a snapshot, safe to keep.

    ``cache_hits`` (and so ``loads``) is ``None`` where hits were not counted: a hit is
    counted only while an observer is attached, because counting costs on the hit path.
    """

    batches: int = 0
    #: Keys sent to the batch function: the cache misses (every load when the cache is off).
    keys_dispatched: int = 0
    largest_batch: int = 0
    #: Batches whose batch function raised (or returned something unusable).
    failed_batches: int = 0
    #: Loads rejected with an error: by a failed batch, or by an exception in its place.
    failed_loads: int = 0
    #: Loads cancelled before they got a value (teardown, a cancelled batch task).
    cancelled_loads: int = 0
    #: Time spent in the batch function, in seconds, summed over batches.
    batch_seconds: float = 0.0
    cache_hits: int | None = None

    @property
    def loads(self) -> int | None:
        """Every load: hits and misses; ``None`` where hits were not counted."""
        return None if self.cache_hits is None else self.cache_hits + self.keys_dispatched

    @property
    def mean_batch_size(self) -> float:
        return self.keys_dispatched / self.batches if self.batches else 0.0

    def __add__(self, other: LoaderStats) -> LoaderStats:
        if not isinstance(other, LoaderStats):
            return NotImplemented
        hits = (
            None
            if self.cache_hits is None and other.cache_hits is None
            else (self.cache_hits or 0) + (other.cache_hits or 0)
        )
        return LoaderStats(
            batches=self.batches + other.batches,
            keys_dispatched=self.keys_dispatched + other.keys_dispatched,
            largest_batch=max(self.largest_batch, other.largest_batch),
            failed_batches=self.failed_batches + other.failed_batches,
            failed_loads=self.failed_loads + other.failed_loads,
            cancelled_loads=self.cancelled_loads + other.cancelled_loads,
            batch_seconds=self.batch_seconds + other.batch_seconds,
            cache_hits=hits,
        )

    def describe(self) -> str:
        """One line for a log: ``2 batches, 58 keys (largest 38), 1.8 ms``."""
        text = _batches_and_keys(self)
        if self.cache_hits is not None:
            text += f", {self.cache_hits} cache hit{'s' if self.cache_hits != 1 else ''}"
        if self.failed_loads:
            text += f", {self.failed_loads} failed"
        if self.cancelled_loads:
            text += f", {self.cancelled_loads} cancelled"
        return text + f", {self.batch_seconds * 1000:.1f} ms"


@dataclass(frozen=True)
class RequestStats:
    """The statistics of a group of loaders, e.g. the loaders of one request
    (``Loaders.stats()``), summed per loader name (its ``name``, or its class name), in the
    order the loaders were built."""

    by_loader: Mapping[str, LoaderStats]

    @classmethod
    def of(cls, loaders: Iterable[DataLoader[Any, Any]]) -> RequestStats:
        # The counters, not loader.stats: a subclass may use that name for its own.
        return cls.of_counters((loader_name(loader), loader._counters) for loader in loaders)

    @classmethod
    def of_counters(cls, counters: Iterable[tuple[str, LoaderCounters]]) -> RequestStats:
        """From (loader name, its live counters) pairs: what a torn-down scope keeps, so
        that its statistics stay readable without keeping its loaders alive."""
        by_loader: dict[str, LoaderStats] = {}
        for name, live in counters:
            stats = live.snapshot()
            by_loader[name] = by_loader[name] + stats if name in by_loader else stats
        return cls(by_loader)

    @property
    def total(self) -> LoaderStats:
        return sum(self.by_loader.values(), LoaderStats())

    def server_timing(self) -> str:
        """A ``Server-Timing`` header value: per loader that made a batch, its time in the
        batch function and its batches, e.g.
        ``AuthorLoader;dur=1.84;desc="2 batches, 33 keys (largest 20)"``."""
        return ", ".join(
            f'{_token(name)};dur={stats.batch_seconds * 1000:.2f};desc="{_batches_and_keys(stats)}"'
            for name, stats in self.by_loader.items()
            if stats.batches
        )

    def describe(self) -> str:
        """One line: ``AuthorLoader 2 batches, 33 keys (largest 20), 1.8 ms; ...``."""
        lines = [f"{name} {stats.describe()}" for name, stats in self.by_loader.items()]
        return "; ".join(lines) if lines else "no loader"


def _batches_and_keys(stats: LoaderStats) -> str:
    text = (
        f"{stats.batches} batch{'es' if stats.batches != 1 else ''}, "
        f"{stats.keys_dispatched} key{'s' if stats.keys_dispatched != 1 else ''}"
    )
    return text + (f" (largest {stats.largest_batch})" if stats.batches > 1 else "")


# A Server-Timing metric name is an HTTP token.
_NOT_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")


def _token(name: str) -> str:
    return _NOT_TOKEN.sub("_", name) or "_"


class LoaderCounters:
    """The live counters of one loader, updated by the core once per batch (and per hit,
    only while observed). Plain integers: reading them is ``LoaderStats``."""

    # Slots, set at construction (outside the timed paths): a batch then updates them in
    # place, where class-level defaults would make a loader's first batch build its dict.
    __slots__ = (
        "batch_seconds",
        "batches",
        "cache_hits",
        "cancelled_loads",
        "failed_batches",
        "failed_loads",
        "hits_counted",
        "keys_dispatched",
        "largest_batch",
    )

    def __init__(self) -> None:
        self.batches = 0
        self.keys_dispatched = 0
        self.largest_batch = 0
        self.failed_batches = 0
        self.failed_loads = 0
        self.cancelled_loads = 0
        self.batch_seconds = 0.0
        self.cache_hits = 0
        self.hits_counted = False

    def snapshot(self) -> LoaderStats:
        return LoaderStats(
            batches=self.batches,
            keys_dispatched=self.keys_dispatched,
            largest_batch=self.largest_batch,
            failed_batches=self.failed_batches,
            failed_loads=self.failed_loads,
            cancelled_loads=self.cancelled_loads,
            batch_seconds=self.batch_seconds,
            cache_hits=self.cache_hits if self.hits_counted else None,
        )


@dataclass(eq=False)
class BatchInfo:
    """One batch, as observers see it: the same object at its start and at its end.

    Compared and hashed by identity, so an observer can key its own state on it (a span).
    Observers must not change it, nor the ``keys`` list, which the batch function receives.
    """

    loader: DataLoader[Any, Any]
    #: The loader's ``name``, or its class name.
    name: str
    keys: Sequence[Any]
    #: The ``contextvars`` context of the callers whose loads sent the keys: one per task
    #: (the loads a task makes in one tick share it), where the loader is observed from its
    #: construction on (``observe()`` or a global observer).
    callers: Sequence[Context]
    #: ``time.perf_counter()`` when the batch function was called.
    started: float
    #: Seconds in the batch function; set at the end.
    duration: float = 0.0
    #: Keys of this batch rejected with an error (not cancelled ones); set at the end.
    failed_keys: int = 0
    #: Why the batch failed: what the batch function raised, or ``asyncio.CancelledError``
    #: when it was cancelled; set at the end.
    error: BaseException | None = None
    # The observers that saw its start, which alone see its end.
    _observers: Sequence[LoaderObserver] = field(default=(), repr=False)

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def cancelled(self) -> bool:
        # Checked by name so that this module needs no asyncio import.
        return type(self.error).__name__ == "CancelledError"


class LoaderObserver(Protocol):
    """Hooks called by loaders. Subclass it and override what you need (each hook does
    nothing by default), or write any class with these three methods.

    Hooks run synchronously in the event loop: keep them short, and hand slow work (an
    exporter) to a background thread or a batching processor. An observer whose class
    does not override ``on_cache_hit`` costs nothing per hit: the loaders skip it.
    """

    def on_batch_start(self, batch: BatchInfo) -> None:
        """Called in the batch's task just before the batch function, in its context."""
        return  # does nothing unless overridden

    def on_batch_end(self, batch: BatchInfo) -> None:
        """Called in the batch's task once every load of the batch is settled (or the batch
        failed, or was cancelled: see ``batch.error``)."""
        return  # does nothing unless overridden

    def on_cache_hit(self, loader: DataLoader[Any, Any], key: Any) -> None:
        """Called when ``load(key)`` is served from the cache, where the loader is observed
        from its construction on (``observe()`` or a global observer)."""
        return  # does nothing unless overridden


_HOOKS = ("on_batch_start", "on_batch_end", "on_cache_hit")


#: Process-wide observers, changed in place by add/remove_global_observer (the core holds
#: this very list). Loaders built while one is attached count cache hits and record their
#: callers; every loader calls them at each batch.
GLOBAL_OBSERVERS: list[LoaderObserver] = []
#: Those of them whose ``on_cache_hit`` is their own: the default does nothing, and the core
#: calls only these on a hit (which is far more frequent than a batch).
GLOBAL_HIT_OBSERVERS: list[LoaderObserver] = []


def wants_hits(observer: LoaderObserver) -> bool:
    """Whether ``observer`` has an ``on_cache_hit`` of its own (checked when attached)."""
    hook = getattr(observer, "on_cache_hit", None)
    return getattr(hook, "__func__", hook) is not LoaderObserver.on_cache_hit


def loader_name(loader: DataLoader[Any, Any]) -> str:
    """The name observers report: the loader's ``name``, or its class name."""
    name = loader.name
    return name if name is not None else type(loader).__name__


def checked_observer(observer: object, where: str) -> LoaderObserver:
    missing = [hook for hook in _HOOKS if not callable(getattr(observer, hook, None))]
    if missing:
        raise TypeError(
            f"{where}: expected a LoaderObserver (methods {', '.join(_HOOKS)}); got "
            f"{type(observer).__name__} without {', '.join(missing)}"
        )
    return observer  # type: ignore[return-value]  # checked structurally just above


def observe(loader: LoaderT, observer: LoaderObserver) -> LoaderT:
    """Attach ``observer`` to ``loader`` (on top of the global ones) and return the loader.

    From now on the loader counts cache hits, calls ``on_cache_hit`` and records the
    context of each caller for ``BatchInfo.callers``.
    """
    from .loader import DataLoader

    if not isinstance(loader, DataLoader):
        raise TypeError(f"observe() expects a DataLoader; got {type(loader).__name__}")
    observer = checked_observer(observer, f"observe({loader._label()})")
    loader._observers = (*loader._observers, observer)
    if wants_hits(observer):
        loader._hit_observers = (*loader._hit_observers, observer)
    loader._counters.hits_counted = True
    loader._options_changed()
    return loader


def add_global_observer(observer: LoaderObserver) -> None:
    """Attach ``observer`` to every loader: its batch hooks run for every batch from now
    on; hits and callers are recorded by the loaders built from now on."""
    observer = checked_observer(observer, "add_global_observer()")
    GLOBAL_OBSERVERS.append(observer)
    if wants_hits(observer):
        GLOBAL_HIT_OBSERVERS.append(observer)


def remove_global_observer(observer: LoaderObserver) -> None:
    """Detach an observer added by ``add_global_observer`` (a ValueError if it is not)."""
    try:
        GLOBAL_OBSERVERS.remove(observer)
    except ValueError:
        raise ValueError(
            f"remove_global_observer(): {observer!r} is not a global observer"
        ) from None
    if observer in GLOBAL_HIT_OBSERVERS:
        GLOBAL_HIT_OBSERVERS.remove(observer)


# -- called by the core ------------------------------------------------------------------

# (id(observer), hook) of each hook that has raised, with the observer kept alive so that
# its id is not reused: each is logged once, not once per batch.
_reported: dict[tuple[int, str], object] = {}


def hook_failed(observer: object, hook: str) -> None:
    key = (id(observer), hook)
    if key in _reported:
        return
    _reported[key] = observer
    logger.exception(
        "%s.%s raised; the load goes on. Logged once for this observer and hook.",
        type(observer).__name__,
        hook,
    )


def observers_of(loader: DataLoader[Any, Any]) -> tuple[LoaderObserver, ...]:
    """The observers of this batch: the loader's own, then the global ones."""
    return (*loader._observers, *GLOBAL_OBSERVERS)


def batch_started(
    observers: Sequence[LoaderObserver],
    loader: DataLoader[Any, Any],
    keys: list[Any],
    futures: list[Future[Any]],
    callers: dict[Future[Any], Context] | None,
) -> BatchInfo:
    """The batch's ``BatchInfo``, after each observer's ``on_batch_start``. ``callers`` maps
    the future of each observed miss to its caller's context (one per task and batch, so
    far fewer than the futures): those of this batch are taken out, in load order, and so
    are those of loads settled without a batch (by a shared value cache, or cancelled
    before dispatch), which no batch will take."""
    contexts: list[Context] = []
    if callers:
        members = set(futures)
        for future in [f for f in callers if f in members or f.done()]:
            context = callers.pop(future)
            if future in members:
                contexts.append(context)
    batch = BatchInfo(loader, loader_name(loader), keys, contexts, perf_counter())
    batch._observers = observers
    for observer in observers:
        try:
            observer.on_batch_start(batch)
        except Exception:
            hook_failed(observer, "on_batch_start")
    return batch


def batch_ended(
    batch: BatchInfo, duration: float, failed_keys: int, error: BaseException | None
) -> None:
    """Each observer's ``on_batch_end``: the same observers as at the batch's start."""
    batch.duration = duration
    batch.failed_keys = failed_keys
    batch.error = error
    for observer in batch._observers:
        try:
            observer.on_batch_end(batch)
        except Exception:
            hook_failed(observer, "on_batch_end")
