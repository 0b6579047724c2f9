"""The DataLoader: collects the keys loaded in one tick, calls the batch function once for
them, and caches one future per key. This module holds a key's whole trip, in the order it
takes it: ``load()`` (cache, then the open batch), dispatch, the batch function's call,
resolve (or reject and evict), and the loop the futures live on.

Compatibility contract: aiodataloader 0.4.3 (its constructor, subclass style, methods and
returned ``asyncio.Future`` objects). Everything added here is opt-in, and the hot paths
(``load`` on a hit and on a miss, the resolve loop) are measured in ``benchmarks/``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import warnings
from asyncio import AbstractEventLoop, Future
from asyncio.events import _get_running_loop
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from functools import partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from . import _checks as checks
from .value_cache import ValueCache, ValueCacheFlow

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
LoaderT = TypeVar("LoaderT", bound="DataLoader[Any, Any]")

BatchLoadFn = Callable[
    [list[K]], Awaitable[Sequence[V | BaseException] | Mapping[K, V | BaseException]]
]
BatchScheduleFn = Callable[[Callable[[], None]], object]

logger = logging.getLogger("aiodataloader")


class _Option(Generic[T]):
    """A loader option that 0.4.3 exposed as a plain attribute (``batch``, ``cache``,
    ``max_batch_size``; and ``name``): its class-level value is the default for instances,
    an instance's value is validated, and setting one recomputes the loader's fast paths."""

    def __init__(self, default: T, check: Callable[[str, object], T]) -> None:
        self.default = default
        self.check = check
        self.attribute = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = "_option_" + name

    def with_default(self, owner: type, default: object) -> _Option[T]:
        option = _Option(self.check(owner.__name__, default), self.check)
        option.attribute = self.attribute
        return option

    def __get__(self, instance: object, owner: type) -> T:
        if instance is None:
            return self.default
        # getattr/setattr, not __dict__: touching __dict__ materializes the instance's
        # inline attribute values on CPython 3.11+, which slows every later attribute read.
        value: T = getattr(instance, self.attribute, self.default)
        return value

    def __set__(self, instance: DataLoader[Any, Any], value: object) -> None:
        setattr(instance, self.attribute, self.check(instance._label(), value))
        instance._options_changed()


_OPTIONS: dict[str, _Option[Any]] = {
    "batch": _Option(True, checks.check_batch),
    "max_batch_size": _Option(None, checks.check_max_batch_size),
    "cache": _Option(True, checks.check_cache),
    "name": _Option(None, checks.check_name),
}


class DataLoader(Generic[K, V]):
    """Batches and caches loads of ``V`` values by ``K`` keys.

    Pass an async ``batch_load_fn(keys)`` or subclass and define it as a method. It
    returns one value per key, in key order (or a mapping from key to value); an
    ``Exception`` instance in place of a value rejects that key only.
    """

    # Class-level defaults that subclasses override (0.4.3 style: ``cache = False``).
    # At run time they are validated descriptors; type checkers see plain attributes.
    if TYPE_CHECKING:
        batch: bool = True
        max_batch_size: int | None = None
        cache: bool = True
        name: str | None = None
    else:
        batch = _OPTIONS["batch"]
        max_batch_size = _OPTIONS["max_batch_size"]
        cache = _OPTIONS["cache"]
        name = _OPTIONS["name"]

    batch_load_fn: BatchLoadFn[K, V]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass's plain ``cache = False`` style attributes become validated defaults.
        for name, option in _OPTIONS.items():
            value = cls.__dict__.get(name, option)
            # A method or property of the subclass's own (0.4.3 had no ``name``) stays.
            if not isinstance(value, _Option) and not hasattr(value, "__get__"):
                setattr(cls, name, option.with_default(cls, value))

    def __init__(
        self,
        batch_load_fn: BatchLoadFn[K, V] | None = None,
        batch: bool | None = None,
        max_batch_size: int | None = None,
        cache: bool | None = None,
        get_cache_key: Callable[[K], object] | None = None,
        cache_map: MutableMapping[Any, Future[V]] | None = None,
        loop: AbstractEventLoop | None = None,
        *,
        name: str | None = None,
        batch_schedule_fn: BatchScheduleFn | None = None,
        cache_key_fn: Callable[[K], object] | None = None,
        value_cache: ValueCache[V] | None = None,
    ) -> None:
        self._key_fn: Callable[[K], object] | None = None
        self._closed: _Closed | None = None
        self._cache: MutableMapping[Any, Future[V]] = {}
        self._user_cache_map = cache_map is not None
        if name is not None:
            self.name = name
        label = self._label()

        if batch_load_fn is not None:
            self.batch_load_fn = batch_load_fn
        checks.check_batch_load_fn(label, getattr(self, "batch_load_fn", None))
        if batch is not None:
            self.batch = batch
        if max_batch_size is not None:
            self.max_batch_size = max_batch_size
        if cache is not None:
            self.cache = cache

        if cache_key_fn is not None:
            if get_cache_key is not None:
                raise TypeError(f"{label}: pass get_cache_key or its alias cache_key_fn, not both")
            get_cache_key = cache_key_fn
        checks.check_optional_callable(
            label, "cache_key_fn" if cache_key_fn is not None else "get_cache_key", get_cache_key
        )
        if get_cache_key is not None:
            self._key_fn = get_cache_key
            # 0.4.3 stored it as an instance attribute: loader.get_cache_key(key) uses it.
            setattr(self, "get_cache_key", get_cache_key)  # noqa: B010 - mypy forbids assigning a method
        elif type(self).get_cache_key is not DataLoader.get_cache_key:
            self._key_fn = self.get_cache_key
        if cache_map is not None:
            js_style = checks.check_cache_map(label, cache_map)
            self._cache = _JSStyleCacheMap(cache_map) if js_style else cache_map

        checks.check_optional_callable(label, "batch_schedule_fn", batch_schedule_fn)
        self._schedule = batch_schedule_fn
        checks.check_loop(label, loop)
        self._loop = loop
        self._batch: _Batch | None = None
        # Every batch task is referenced here until done (asyncio keeps only weak ones).
        self._running: dict[asyncio.Task[None], _Batch] = {}
        # A value cache shared beyond this loader: consulted once per batch, in dispatch.
        self._shared: ValueCacheFlow[K, V] | None = None
        if value_cache is not None:
            self._shared = ValueCacheFlow(label, value_cache, self._cache, self._key_fn)
        self._options_changed()

    def _options_changed(self) -> None:
        """Recompute the plain attributes that the hot paths read instead of the options."""
        self._batching: bool = self.batch
        self._max_size: int | None = self.max_batch_size
        self._caching: bool = self.cache
        # load()'s first step. When keys are their own cache keys in the loader's own dict
        # (where None is never a key, so load() can skip that check), it is the dict's get:
        # a hit then costs one call. None sends every load through the checked path. A
        # closed loader's raises, so that the hot paths need no check of their own.
        own_dict = not self._user_cache_map
        self._fast_lookup: Callable[[Any], Future[V] | None] | None
        if self._closed is not None:
            self._fast_lookup = self._closed
        elif self._caching and self._key_fn is None and own_dict:
            self._fast_lookup = self._cache.get
        else:
            self._fast_lookup = None

    # -- public API ------------------------------------------------------------------

    def get_cache_key(self, key: K) -> object:
        """The cache key of ``key`` (the key itself); override it (or pass
        ``get_cache_key=``) for keys that are unhashable or equal under another identity.
        Read once, at construction."""
        return key

    @property
    def loop(self) -> AbstractEventLoop:
        """The event loop this loader serves, bound at first use."""
        return self._loop if self._loop is not None else self._bind_loop()

    @loop.setter
    def loop(self, loop: AbstractEventLoop) -> None:
        checks.check_loop(self._label(), loop)
        self._loop = loop

    def load(self, key: K) -> Future[V]:
        """A future of the value for ``key``. Loads in the same tick share one batch; a
        cached key returns the very same future."""
        get = self._fast_lookup
        if get is None:
            return self._load_with_cache_key(key)
        try:
            future = get(key)
        except TypeError as error:
            raise self._unhashable_key_error(key) from error
        if future is not None:
            # (None is never cached in the loader's own dict, so a hit is never for None.)
            if not future.cancelled():
                return future
            # A cancelled future is a miss: one caller's cancellation must not poison the key.
            return self._reload_cancelled(key, key, future)
        if key is None:
            raise self._none_key_error()
        batch = self._batch
        # A batch left open by a loop that has stopped must not take the key. is_running()
        # tells, and unlike get_running_loop() it is a plain attribute read.
        if batch is None or not batch.loop.is_running():
            batch = self._current_batch()
        future = batch.loop.create_future()
        self._cache[key] = future
        batch.keys.append(key)
        batch.futures.append(future)
        return future

    @overload
    def load_many(
        self, keys: Iterable[K], return_exceptions: Literal[False] = ...
    ) -> Future[list[V]]: ...
    @overload
    def load_many(
        self, keys: Iterable[K], return_exceptions: Literal[True]
    ) -> Future[list[V | BaseException]]: ...
    @overload
    def load_many(
        self, keys: Iterable[K], return_exceptions: bool
    ) -> Future[list[V]] | Future[list[V | BaseException]]: ...

    def load_many(
        self, keys: Iterable[K], return_exceptions: bool = False
    ) -> Future[list[V]] | Future[list[V | BaseException]]:
        """A future of the values for ``keys``, in order. It raises the first error, or,
        with ``return_exceptions=True``, holds each failed key's exception in its place."""
        checks.check_iterable(self._label, "load_many", "an iterable of keys", keys)
        if self._closed is not None:
            raise self._closed.error("load_many")
        running = _get_running_loop()
        if running is not None and running is not self._loop:
            # gather() calls back through each future's loop: move cached ones over first.
            self._bind_loop()
        load = self.load
        return asyncio.gather(*[load(key) for key in keys], return_exceptions=return_exceptions)

    def prime(self: LoaderT, key: K, value: V | BaseException, force: bool = False) -> LoaderT:
        """Cache ``value`` (an ``Exception`` caches a rejection) unless ``key`` is cached
        already; ``force=True`` replaces it, and settles a load still in flight."""
        if self._closed is not None:
            raise self._closed.error("prime")
        if key is None:
            raise self._none_key_error("prime")
        if self._caching:
            self._prime(key, value, force)
        return self

    def prime_many(
        self: LoaderT,
        values: Mapping[K, V | BaseException] | Iterable[tuple[K, V | BaseException]],
        force: bool = False,
    ) -> LoaderT:
        """``prime`` for each (key, value) of a mapping or of an iterable of pairs."""
        if self._closed is not None:
            raise self._closed.error("prime_many")
        pairs = values.items() if isinstance(values, Mapping) else values
        checks.check_iterable(
            self._label, "prime_many", "a mapping or an iterable of (key, value) pairs", pairs
        )
        pairs = list(pairs)  # all checked before any is primed
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2 or pair[0] is None:
                raise TypeError(
                    f"{self._label()}: prime_many() expects (key, value) pairs with keys that "
                    f"are not None; got {checks.describe(pair)}"
                )
        if self._caching:
            for key, value in pairs:
                self._prime(key, value, force)
        return self

    def clear(self: LoaderT, key: K) -> LoaderT:
        """Drop ``key`` from the cache (a missing key is fine)."""
        if self._caching:
            self._cache.pop(self._cache_key(key), None)
        return self

    def clear_many(self: LoaderT, keys: Iterable[K]) -> LoaderT:
        """Drop each of ``keys`` from the cache."""
        checks.check_iterable(self._label, "clear_many", "an iterable of keys", keys)
        if self._caching:
            for key in keys:
                self._cache.pop(self._cache_key(key), None)
        return self

    def clear_all(self: LoaderT) -> LoaderT:
        """Empty the cache."""
        if self._caching:
            self._cache.clear()
        return self

    async def invalidate(self, key: K) -> None:
        """``clear(key)``, and with a ``value_cache``, delete it there too: every process
        sharing that cache drops it (from its live loaders as well), and this loader reads
        the key from its batch function from now on, never from or into the value cache
        (it sees its own request's writes). Call it after the write that changed the value
        has committed (and, to read the change back before the commit, also before)."""
        await self.invalidate_many((key,))

    async def invalidate_many(self, keys: Iterable[K]) -> None:
        """``invalidate`` for each of ``keys``, with one round trip to the value cache."""
        checks.check_iterable(self._label, "invalidate_many", "an iterable of keys", keys)
        if self._shared is None:
            self.clear_many(keys)
        else:
            await self._shared.invalidate(keys)

    def close(self, reason: str | None = None) -> None:
        """Refuse every later ``load``, ``load_many``, ``prime`` and ``prime_many`` with a
        ``RuntimeError`` that names this loader and ``reason`` (for instance "its request
        has ended"). Loads made before keep their batch: ``cancel_pending()`` cancels them.
        The hot paths stay free of any check: load() meets the refusal in its first step."""
        self._closed = _Closed(self._label(), reason)
        self._options_changed()

    async def cancel_pending(self, timeout: float | None = None) -> None:
        """Cancel every load that has not completed (queued or in flight) and wait for the
        batch tasks to finish. Afterwards no future of this loader is pending.

        With a ``timeout`` (seconds), a batch task still running after it (a batch
        function that swallows ``CancelledError``, say) is abandoned: the loader keeps no
        reference to it, and a warning on the ``aiodataloader`` logger names the loader."""
        checks.check_timeout(self._label, "cancel_pending", timeout)
        if self._batch is None and not self._running:
            return  # idle: the common case at the end of a request
        batches = list(self._running.values())
        if self._batch is not None:
            batches.append(self._batch)
            self._batch = None
        for batch in batches:
            self._settle_failed(batch.keys, batch.futures, None)
        current = asyncio.current_task()
        tasks = [task for task in self._running if task is not current and not task.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, stuck = await asyncio.wait(tasks, timeout=timeout)
        for task in stuck:
            self._running.pop(task, None)
            task.remove_done_callback(self._batch_task_done)
        if stuck:
            logger.warning(
                "%s: %d batch task(s) still running %ss after being cancelled (does the batch "
                "function swallow CancelledError?); abandoned",
                self._label(),
                len(stuck),
                timeout,
            )

    def __repr__(self) -> str:
        cached = len(self._cache) if self._caching else 0
        queued = len(self._batch.keys) if self._batch is not None else 0
        return (
            f"<{type(self).__name__} name={self.name!r} cached={cached} queued={queued} "
            f"batches_in_flight={len(self._running)}>"
        )

    # -- loading ---------------------------------------------------------------------

    def _load_with_cache_key(self, key: K) -> Future[V]:
        """load() when keys go through a cache key function, the cache map is the user's,
        or the cache is off."""
        if key is None:
            raise self._none_key_error()
        if self._caching:
            cache_key = self._cache_key(key)
            try:
                future = self._cache.get(cache_key)
            except TypeError as error:
                raise self._unhashable_key_error(key) from error
            if future is not None:
                if not future.cancelled():
                    return future
                return self._reload_cancelled(key, cache_key, future)
            batch = self._current_batch()
            future = batch.loop.create_future()
            self._cache[cache_key] = future
        else:
            batch = self._current_batch()
            future = batch.loop.create_future()
        batch.keys.append(key)
        batch.futures.append(future)
        return future

    def _reload_cancelled(self, key: K, cache_key: object, cancelled: Future[V]) -> Future[V]:
        """A new load of a key whose cached future was cancelled. If that cancelled load is
        still queued, the new one takes its place, so the key is sent once."""
        batch = self._current_batch()
        future: Future[V] = batch.loop.create_future()
        self._cache[cache_key] = future
        try:
            batch.futures[batch.futures.index(cancelled)] = future
        except ValueError:
            batch.keys.append(key)
            batch.futures.append(future)
        return future

    def _current_batch(self) -> _Batch:
        """The open batch of the loop that load() runs on, opened if there is none."""
        batch = self._batch
        if batch is not None and batch.loop.is_running():
            return batch
        loop = self._bind_loop()
        batch = self._batch  # binding to another loop drops the old loop's open batch
        if batch is not None and batch.loop is loop:
            return batch
        return self._open_batch(loop)

    def _open_batch(self, loop: AbstractEventLoop) -> _Batch:
        batch = _Batch(loop)
        if not self._batching:
            # Each key alone: this batch is never offered to another load.
            loop.call_soon(self._dispatch, batch)
        elif self._schedule is None:
            self._batch = batch
            # The task takes the batch on its first step, two loop iterations from now:
            # the same window as 0.4.3 (loads from chained coroutines still join it).
            loop.call_soon(self._dispatch, batch)
        else:
            # If the scheduler raises, load() raises and no batch is left open.
            self._schedule(partial(self._dispatch_scheduled, batch))
            if not batch.scheduled:
                self._batch = batch
        return batch

    def _dispatch_scheduled(self, batch: _Batch) -> None:
        # A custom scheduler's callback closes the batch at once: later loads start anew.
        if batch.scheduled:
            return
        batch.scheduled = True
        if self._batch is batch:
            self._batch = None
        if batch.keys:
            self._dispatch(batch)
        else:
            # Called back from inside the scheduler, before load() added its key.
            batch.loop.call_soon(self._dispatch, batch)

    def _dispatch(self, batch: _Batch) -> None:
        if batch.task is None:
            task = batch.loop.create_task(self._run_batch(batch))
            batch.task = task
            self._running[task] = batch
            task.add_done_callback(self._batch_task_done)

    def _batch_task_done(self, task: asyncio.Task[None]) -> None:
        batch = self._running.pop(task, None)
        if batch is not None and task.cancelled():
            # Cancelled before its first step, so _run_batch never ran: no future of it
            # may stay pending, and it must not stay open for later loads.
            if self._batch is batch:
                self._batch = None
            self._settle_failed(batch.keys, batch.futures, None)

    async def _run_batch(self, batch: _Batch) -> None:
        try:
            if self._batch is batch:
                self._batch = None
            keys, futures = batch.keys, batch.futures
            size = self._max_size
            if size and len(keys) > size:
                # Chunks run concurrently, in key order, as 0.4.3 dispatches them.
                for start in range(size, len(keys), size):
                    chunk = _Batch(batch.loop)
                    chunk.keys = keys[start : start + size]
                    chunk.futures = futures[start : start + size]
                    self._dispatch(chunk)
                keys, futures = batch.keys, batch.futures = keys[:size], futures[:size]
            await self._call_batch_load_fn(keys, futures)
        except BaseException as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            self._settle_failed(batch.keys, batch.futures, None if cancelled else error)
            raise
        finally:
            # Done here, not by the done callback, so nothing keeps the loader alive after
            # the batch (the callback only covers a task cancelled before it ran).
            task = batch.task
            if task is not None:
                self._running.pop(task, None)
                task.remove_done_callback(self._batch_task_done)

    async def _call_batch_load_fn(self, keys: list[K], futures: list[Future[V]]) -> None:
        if not futures or (futures[0].done() and all(future.done() for future in futures)):
            return  # every load was settled or cancelled before dispatch: nothing to fetch
        shared = self._shared
        if shared is not None:
            # One lookup for the whole batch; only what it misses goes to the batch function.
            keys, futures, cache_keys = await shared.lookup(keys, futures)
            if not keys:
                return
        try:
            result = self.batch_load_fn(keys)
            if type(result) is not CoroutineType and not inspect.isawaitable(result):
                raise TypeError(
                    f"{self._label()}: the batch function must return an awaitable; it "
                    f"returned {checks.describe(result)}"
                )
            values = await result
            if type(values) is not list or len(values) != len(keys):
                values = checks.values_for_keys(self._label(), keys, values)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit):
            self._settle_failed(keys, futures, None)
            raise
        except BaseException as error:
            self._settle_failed(keys, futures, error)
            return
        for future, value in zip(futures, values, strict=True):
            if not future.done():
                if isinstance(value, Exception):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        if shared is not None:
            await shared.store(cache_keys, values)  # after settling: callers need not wait

    def _settle_failed(
        self, keys: list[K], futures: list[Future[V]], error: BaseException | None
    ) -> None:
        """Reject (or, with no error, cancel) every pending future of a failed batch and
        evict them, so that the failure is not cached."""
        if self._caching:
            cache = self._cache
            for key, future in zip(keys, futures, strict=True):
                try:
                    cache_key = self._cache_key(key)
                    # Evict only our own entry: the key may have been cleared and loaded anew.
                    if cache.get(cache_key) is future:
                        del cache[cache_key]
                except Exception:  # a failing key function must not leave futures pending
                    continue
        for future in futures:
            if not future.done():
                if error is None:
                    future.cancel()
                else:
                    future.set_exception(error)

    def _prime(self, key: K, value: V | BaseException, force: bool) -> None:
        cache_key = self._cache_key(key)
        cached = self._cache.get(cache_key)
        if cached is not None and not cached.cancelled():
            if not force:
                return
            if not cached.done():
                _settle(cached, value)
                return
        future: Future[V] = self.loop.create_future()
        _settle(future, value)
        self._cache[cache_key] = future

    # -- event loop ------------------------------------------------------------------

    def _bind_loop(self) -> AbstractEventLoop:
        running = _get_running_loop()
        loop = self._loop
        if running is loop and loop is not None:
            return loop
        if running is None:
            if loop is not None:
                if loop.is_running():
                    raise RuntimeError(
                        f"{self._label()}: load() was called from a thread other than the one "
                        "running its event loop; loaders are not thread-safe: load from a "
                        "coroutine on that loop (e.g. asyncio.run_coroutine_threadsafe)"
                    )
                return loop
            running = _implicit_loop(self._label())
        elif loop is not None:
            in_flight = any(not task.done() for task in self._running)
            if in_flight and loop.is_running():
                raise RuntimeError(
                    f"{self._label()} is serving another running event loop and has batches "
                    "in flight there; a loader serves one event loop at a time: create one "
                    "loader per loop (for instance one per request)"
                )
            self._move_to_loop(loop, running)
        self._loop = running
        return running

    def _move_to_loop(self, old: AbstractEventLoop, new: AbstractEventLoop) -> None:
        """Leave a loop that is no longer ours: drop its open batch and tasks and the
        futures that will never complete there, and carry settled values over to
        futures of the new loop (a done future of a closed loop breaks ``gather``)."""
        self._batch = None
        self._running.clear()
        if not self._caching:
            return
        cache = self._cache
        for cache_key, future in list(cache.items()):
            if future.get_loop() is not old:
                continue
            if future.done() and not future.cancelled():
                moved: Future[V] = new.create_future()
                error = future.exception()
                _settle(moved, future.result() if error is None else error)
                cache[cache_key] = moved
            else:
                del cache[cache_key]

    def _cache_key(self, key: K) -> object:
        return key if self._key_fn is None else self._key_fn(key)

    def _label(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def _none_key_error(self, method: str = "load") -> TypeError:
        return TypeError(
            f"{self._label()}: {method}() must be called with a key that is not None; got None"
        )

    def _unhashable_key_error(self, key: object) -> TypeError:
        return TypeError(
            f"{self._label()}: the cache key must be hashable; got {checks.describe(key)}. "
            "Pass get_cache_key= (or override get_cache_key) to map such keys to hashable ones"
        )


class _Batch:
    """Keys and their futures, in load order. ``task`` is set once dispatch starts;
    ``scheduled`` once a custom scheduler's callback has run."""

    __slots__ = ("futures", "keys", "loop", "scheduled", "task")

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self.keys: list[Any] = []
        self.futures: list[Future[Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.scheduled = False


class _Closed:
    """A closed loader's first step of load(): it raises. It holds the message only, not
    the loader, so a closed loader is freed as soon as it is dropped."""

    __slots__ = ("message",)

    def __init__(self, label: str, reason: str | None) -> None:
        self.message = f"{label} is closed" + (f": {reason}" if reason else "")

    def error(self, method: str) -> RuntimeError:
        return RuntimeError(f"{self.message}; {method}() can no longer be called on it")

    def __call__(self, key: object) -> None:
        raise self.error("load")


class _JSStyleCacheMap(MutableMapping[Any, Any]):
    """Presents a ``get/set/delete/clear`` cache object (0.4.3's documented protocol) as a
    MutableMapping."""

    _missing = object()

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getitem__(self, key: Any) -> Any:
        value = self.target.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.target.set(key, value)

    def __delitem__(self, key: Any) -> None:
        self.target.delete(key)

    def pop(self, key: Any, default: Any = _missing) -> Any:
        value = self.target.get(key)
        if value is None:
            if default is self._missing:
                raise KeyError(key)
            return default
        self.target.delete(key)
        return value

    def clear(self) -> None:
        self.target.clear()

    def __iter__(self) -> Iterator[Any]:
        return iter(getattr(self.target, "keys", tuple)())

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _implicit_loop(label: str) -> AbstractEventLoop:
    """0.4.3 took ``get_event_loop()`` at construction; outside a running loop we still do,
    at first use, for programs that call ``loop.run_until_complete(loader.load(...))``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return asyncio.get_event_loop()
        except RuntimeError as error:
            raise RuntimeError(
                f"{label}: there is no event loop: call load() from a coroutine (inside "
                "asyncio.run(...)) or pass loop= to the constructor"
            ) from error


def _settle(future: Future[Any], value: object) -> None:
    if isinstance(value, Exception):
        future.set_exception(value)
        # A primed error that nobody loads is not an unhandled error.
        future.exception()
    else:
        future.set_result(value)
