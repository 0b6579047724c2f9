"""A value cache shared beyond one request: the protocol a loader talks to, and the flow
that puts it between the loader's per-request cache and its batch function.

With ``DataLoader(..., value_cache=...)`` a dispatched batch goes::

    keys that missed the per-request cache
      -> ONE value_cache.get_many(cache keys)       hits settle their loads
      -> batch_load_fn(the remaining misses only)
      -> ONE value_cache.set_many(values)           errors are never written
    loader.invalidate(key) -> value_cache.delete_many([cache key])
                              (and, where the cache broadcasts, every live loader drops it)

The shared tier is an optimisation, never a dependency: whatever it raises, the loads go to
the batch function, and the failure is logged once (and its recovery once), not per batch.

Standard library only; ``aiodataloader.redis`` implements the protocol on Redis.
"""

from __future__ import annotations

import logging
import weakref
from asyncio import Future
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

K = TypeVar("K")
V = TypeVar("V")

logger = logging.getLogger("aiodataloader")


class ValueCache(Protocol[V]):
    """A batch-shaped async store of values by cache key, shared by loaders (and processes).

    Keys are the loader's cache keys (the result of its cache key function). Each method is
    called once per batch with every key of that batch. An implementation that cannot answer
    may raise: the loader then treats every key as a miss (and ignores a failed write).
    """

    async def get_many(self, keys: Sequence[Hashable]) -> Mapping[Hashable, V]:
        """The values found, by key; a key that is absent from the result is a miss."""
        ...

    async def set_many(self, values: Mapping[Hashable, V]) -> None:
        """Store the values the batch function returned (never errors)."""
        ...

    async def delete_many(self, keys: Sequence[Hashable]) -> None:
        """Forget the keys everywhere (called by ``loader.invalidate``)."""
        ...


class InvalidationListener(Protocol):
    """What a broadcasting value cache calls when keys were invalidated anywhere."""

    def drop_cached(self, keys: Collection[Hashable]) -> None: ...


@runtime_checkable
class BroadcastsInvalidations(Protocol):
    """A value cache that tells every live loader (in every process) to drop invalidated
    keys from its per-request cache. It must hold its listeners weakly."""

    def add_listener(self, listener: InvalidationListener) -> None: ...


class FailureLog:
    """Logs the first failure of a series and the recovery that ends it: one line each,
    however many batches fail in between."""

    __slots__ = ("failing", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, operation: str, error: BaseException) -> None:
        if not self.failing:
            self.failing = True
            logger.warning(
                "%s: %s failed (%s: %s); loads go to the batch function until it answers "
                "again (logged once)",
                self.what,
                operation,
                type(error).__name__,
                error,
            )

    def succeeded(self) -> None:
        if self.failing:
            self.failing = False
            logger.warning("%s answers again", self.what)


class ValueCacheFlow(Generic[K, V]):
    """One loader's link to its value cache (built by the loader; not public API).

    It holds the loader's per-request cache dict, not the loader, so a broadcasting value
    cache can reach it weakly and the loader can still be collected."""

    __slots__ = (
        "__weakref__",
        "cache",
        "failures",
        "invalidated",
        "key_fn",
        "label",
        "value_cache",
    )

    def __init__(
        self,
        label: str,
        value_cache: ValueCache[V],
        cache: MutableMapping[Any, Future[V]],
        key_fn: Callable[[K], object] | None,
    ) -> None:
        for method in ("get_many", "set_many", "delete_many"):
            if not callable(getattr(value_cache, method, None)):
                raise TypeError(
                    f"{label}: value_cache must implement the ValueCache protocol (async "
                    f"get_many, set_many and delete_many); got {value_cache!r} "
                    f"(type {type(value_cache).__name__}), which has no {method}()"
                )
        self.label = label
        self.value_cache = value_cache
        self.cache = cache
        self.key_fn = key_fn
        self.failures = FailureLog(f"{label}: the value cache {type(value_cache).__name__}")
        # Keys this loader invalidated: its request wrote them, so it reads them from the
        # batch function from now on (its own writes, perhaps not committed yet), and never
        # writes them back (another request must not see what this one has not committed).
        self.invalidated: set[Hashable] = set()
        if isinstance(value_cache, BroadcastsInvalidations):
            value_cache.add_listener(self)

    async def lookup(
        self, keys: list[K], futures: list[Future[V]]
    ) -> tuple[list[K], list[Future[V]], list[Hashable | None]]:
        """Settle the loads the value cache answers; return the others (keys, futures and
        their cache keys, None where a key has none the value cache can use)."""
        cache_keys: list[Hashable | None] = []
        key_fn = self.key_fn
        for key in keys:
            try:
                cache_key = key if key_fn is None else key_fn(key)
                shareable = isinstance(cache_key, Hashable) and cache_key not in self.invalidated
                cache_keys.append(cache_key if shareable else None)
            except Exception:  # the load itself reports it (or fails in the batch function)
                cache_keys.append(None)
        wanted = list(dict.fromkeys(key for key in cache_keys if key is not None))
        if not wanted:
            return keys, futures, cache_keys
        try:
            found = await self.value_cache.get_many(wanted)
        except Exception as error:
            self.failures.failed("get_many", error)
            return keys, futures, cache_keys
        self.failures.succeeded()
        if not found:
            return keys, futures, cache_keys
        miss_keys: list[K] = []
        miss_futures: list[Future[V]] = []
        miss_cache_keys: list[Hashable | None] = []
        for key, future, cache_key in zip(keys, futures, cache_keys, strict=True):
            if cache_key is not None and cache_key in found:
                if not future.done():
                    future.set_result(found[cache_key])
            else:
                miss_keys.append(key)
                miss_futures.append(future)
                miss_cache_keys.append(cache_key)
        return miss_keys, miss_futures, miss_cache_keys

    async def store(self, cache_keys: list[Hashable | None], values: Iterable[object]) -> None:
        """Write back what the batch function returned, errors excepted, in one call."""
        fresh: dict[Hashable, Any] = {}
        for cache_key, value in zip(cache_keys, values, strict=True):
            if cache_key is not None and not isinstance(value, BaseException):
                fresh[cache_key] = value
        if not fresh:
            return
        try:
            await self.value_cache.set_many(fresh)
        except Exception as error:
            self.failures.failed("set_many", error)
        else:
            self.failures.succeeded()

    async def invalidate(self, keys: Iterable[K]) -> None:
        key_fn = self.key_fn
        cache_keys = list(dict.fromkeys(key if key_fn is None else key_fn(key) for key in keys))
        for cache_key in cache_keys:
            self.cache.pop(cache_key, None)
        hashable = [key for key in cache_keys if isinstance(key, Hashable)]
        self.invalidated.update(hashable)
        if hashable:
            # A failure here is not raised: the write that made these keys stale has
            # happened, and the entries still expire with their TTL. It is logged.
            try:
                await self.value_cache.delete_many(hashable)
            except Exception as error:
                logger.error(
                    "%s: could not invalidate %d key(s) in the value cache %s (%s: %s); "
                    "other processes may serve the old values until they expire",
                    self.label,
                    len(hashable),
                    type(self.value_cache).__name__,
                    type(error).__name__,
                    error,
                )

    def drop_cached(self, keys: Collection[Hashable]) -> None:
        cache = self.cache
        for key in keys:
            cache.pop(key, None)


class Listeners:
    """The live loaders of a broadcasting value cache, held weakly (a loader lives for one
    request; nothing here may keep it alive)."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: weakref.WeakSet[InvalidationListener] = weakref.WeakSet()

    def add(self, listener: InvalidationListener) -> None:
        self._listeners.add(listener)

    def drop(self, keys: Collection[Hashable]) -> None:
        for listener in list(self._listeners):
            listener.drop_cached(keys)

    def __len__(self) -> int:
        return len(self._listeners)


def give_value_cache(loader: Any, value_cache: ValueCache[Any]) -> bool:
    """Give a loader that has none a value cache (what ``LoaderRegistry(value_caches=...)``
    does for every loader it builds); False, and nothing changed, if it has one already.
    Done before the loader's first load (a batch dispatched before it went without)."""
    if loader._shared is not None:
        return False
    loader._shared = ValueCacheFlow(loader._label(), value_cache, loader._cache, loader._key_fn)
    return True
