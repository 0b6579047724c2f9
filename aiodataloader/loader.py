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
import contextlib
import contextvars
import logging
import sys
import types
import warnings
import weakref
from asyncio import AbstractEventLoop, Future
from asyncio.events import _get_running_loop
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextvars import Context, copy_context
from functools import partial
from time import perf_counter
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast, overload

from . import _checks as checks
from . import observe
from .observe import GLOBAL_HIT_OBSERVERS, GLOBAL_OBSERVERS
from .value_cache import ValueCache, ValueCacheFlow

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
LoaderT = TypeVar("LoaderT", bound="DataLoader[Any, Any]")
# The constructor's own type variables: they make the constructed loader's type.
_K = TypeVar("_K")
_V = TypeVar("_V")

BatchLoadFn = Callable[
    [list[K]], Awaitable[Sequence[V | BaseException] | Mapping[K, V | BaseException]]
]
BatchScheduleFn = Callable[[Callable[[], None]], object]

logger = logging.getLogger("aiodataloader")


class _Option(Generic[T]):
    """A loader option that 0.4.3 exposed as a plain attribute (``batch``, ``cache``,
    ``max_batch_size``; and ``name``): its class-level value is the default for instances,
    an instance's value is validated, and setting one recomputes the loader's fast paths."""

    def __init__(self, name: str, default: T, check: Callable[[str, object], T]) -> None:
        self.name = name
        self.default = default
        self.check = check
        self.attribute = "_option_" + name

    def with_default(self, owner: type, default: object) -> _Option[T]:
        return _Option(self.name, self.check(owner.__name__, default), self.check)

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
    "batch": _Option("batch", True, checks.check_batch),
    "max_batch_size": _Option("max_batch_size", None, checks.check_max_batch_size),
    "cache": _Option("cache", True, checks.check_cache),
    "name": _Option("name", None, checks.check_name),
}


class DataLoader(Generic[K, V]):
    """Batches and caches loads of ``V`` values by ``K`` keys.

    Pass an async ``batch_load_fn(keys)`` or subclass and define it as a method. It
    returns one value per key, in key order, or a mapping from key to value, where a
    missing key resolves to ``default_factory()`` (None without one); an ``Exception``
    instance in place of a value rejects that key only. ``close()`` ends the loader's use.
    """

    # Class-level defaults that subclasses override (0.4.3 style: ``cache = False``). Right
    # after the class is built they become validated descriptors (see _OPTIONS); type
    # checkers see plain attributes. The run-time annotations are exactly 0.4.3's, and
    # nothing else is annotated at run time: code reads them (pydantic-resolve sets every
    # annotated attribute of a loader class from its loader_params).
    batch: bool = True
    max_batch_size: int | None = None
    cache: bool = True
    if TYPE_CHECKING:
        name: str | None = None
        batch_load_fn: BatchLoadFn[K, V]
        _observers: tuple[observe.LoaderObserver, ...]
        _hit_observers: tuple[observe.LoaderObserver, ...]
        _scope_owner: Any
    # Observers attached by observe() (aiodataloader.observe), and those of them with an
    # on_cache_hit of their own; none by default. Not annotated at run time (see above).
    _observers = ()
    _hit_observers = ()
    # The request scope (aiodataloader.asgi.Loaders) that built this loader, if one did: a
    # factory that hands one loader to two live requests is refused. Set by that scope only.
    _scope_owner = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass's plain ``cache = False`` style attributes become validated defaults.
        for name, option in _OPTIONS.items():
            value = cls.__dict__.get(name, option)
            # A method or property of the subclass's own (0.4.3 had no ``name``) stays.
            if not isinstance(value, _Option) and not hasattr(value, "__get__"):
                setattr(cls, name, option.with_default(cls, value))

    # The loader's value type says what a load resolves to: with a mapping result and
    # no default_factory, a key missing from it resolves to None, so V includes None.
    # (Overloads must each repeat the whole parameter list; only their types differ.)
    @overload
    def __init__(
        self: DataLoader[_K, _V],
        batch_load_fn: Callable[[list[_K]], Awaitable[Sequence[_V | BaseException]]],
        batch: bool | None = None,
        max_batch_size: int | None = None,
        cache: bool | None = None,
        get_cache_key: Callable[[_K], object] | None = None,
        cache_map: MutableMapping[Any, Future[_V]] | None = None,
        loop: AbstractEventLoop | None = None,
        *,
        name: str | None = None,
        batch_schedule_fn: BatchScheduleFn | None = None,
        cache_key_fn: Callable[[_K], object] | None = None,
        default_factory: Callable[[], _V] | None = None,
        value_cache: ValueCache[_V] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: DataLoader[_K, _V],
        batch_load_fn: BatchLoadFn[_K, _V],
        batch: bool | None = None,
        max_batch_size: int | None = None,
        cache: bool | None = None,
        get_cache_key: Callable[[_K], object] | None = None,
        cache_map: MutableMapping[Any, Future[_V]] | None = None,
        loop: AbstractEventLoop | None = None,
        *,
        name: str | None = None,
        batch_schedule_fn: BatchScheduleFn | None = None,
        cache_key_fn: Callable[[_K], object] | None = None,
        default_factory: Callable[[], _V],
        value_cache: ValueCache[_V] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: DataLoader[_K, _V | None],
        batch_load_fn: BatchLoadFn[_K, _V],
        batch: bool | None = None,
        max_batch_size: int | None = None,
        cache: bool | None = None,
        get_cache_key: Callable[[_K], object] | None = None,
        cache_map: MutableMapping[Any, Future[_V | None]] | None = None,
        loop: AbstractEventLoop | None = None,
        *,
        name: str | None = None,
        batch_schedule_fn: BatchScheduleFn | None = None,
        cache_key_fn: Callable[[_K], object] | None = None,
        default_factory: None = None,
        value_cache: ValueCache[_V | None] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        batch_load_fn: None = None,
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
        default_factory: Callable[[], V] | None = None,
        value_cache: ValueCache[V] | None = None,
    ) -> None: ...
    def __init__(
        self,
        batch_load_fn: BatchLoadFn[Any, Any] | None = None,
        batch: bool | None = None,
        max_batch_size: int | None = None,
        cache: bool | None = None,
        get_cache_key: Callable[[Any], object] | None = None,
        cache_map: MutableMapping[Any, Future[Any]] | None = None,
        loop: AbstractEventLoop | None = None,
        *,
        name: str | None = None,
        batch_schedule_fn: BatchScheduleFn | None = None,
        cache_key_fn: Callable[[Any], object] | None = None,
        default_factory: Callable[[], Any] | None = None,
        value_cache: ValueCache[Any] | None = None,
    ) -> None:
        self._key_fn: Callable[[K], object] | None = None
        self._closed: _Closed | None = None
        self._loop_ended = False  # the loop we are bound to has shut down
        # The batches whose batch function has started and not yet returned.
        self._computing: list[_Batch] = []
        self._watched_loop: AbstractEventLoop | None = None
        # Every batch task is referenced here until done (asyncio keeps only weak ones).
        self._running: dict[asyncio.Task[None], _Batch] = {}
        self._cache: MutableMapping[Any, Future[V]] = {}
        self._user_cache_map = cache_map is not None
        self._counters = observe.LoaderCounters()
        if GLOBAL_OBSERVERS:  # built while a global observer is attached: observed from now
            self._counters.hits_counted = True
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
        checks.check_optional_callable(label, "default_factory", default_factory)
        self._default_factory = default_factory
        self._schedule = batch_schedule_fn
        checks.check_loop(label, loop)
        self._loop = loop
        self._batch: _Batch | None = None
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
        # When keys are their own cache keys in the loader's own dict (where None is never
        # a key, so load() can skip that check), a hit costs one call of the dict's get.
        own_dict = not self._user_cache_map
        fast = self._caching and self._key_fn is None and own_dict
        self._cache_get: Callable[[Any], Future[V] | None] | None = (
            self._cache.get if fast else None
        )
        if self._counters.hits_counted:
            # An observed loader counts hits and keeps its callers' contexts: on its own
            # fast path (_observed_lookup), which a loader that nobody observes never takes,
            # and on its own checked path.
            if getattr(self, "_callers", None) is None:  # kept when an option changes
                self._callers: dict[Future[V], Context] = {}
                self._caller_batch: _Batch | None = None
                self._caller_task: object = None
            if fast:
                self._cache_get = _observed_lookup(self)
            self._load_with_cache_key = _ObservedLoad(self)  # type: ignore[method-assign]
        self._set_first_step()

    def _set_first_step(self) -> None:
        """load()'s first step: the cache's get on the fast path; None for the checked path.

        Every state that needs a check on each load swaps this step instead of adding a
        check to the hot paths: a closed loader's step raises; after the loop shut down,
        the step moves the loader to the running loop first; and while a batch function is
        in progress, loads take the checked path, which catches a load of a key of that very
        batch from its own code (awaiting it would wait forever)."""
        self._fast_lookup: Callable[[Any], Future[V] | None] | None
        if self._closed is not None:
            self._fast_lookup = self._closed
        elif self._loop_ended:
            self._fast_lookup = _MoveToRunningLoop(self)
        elif self._computing:
            self._fast_lookup = None
        else:
            self._fast_lookup = self._cache_get

    # -- public API ------------------------------------------------------------------

    def get_cache_key(self, key: K) -> object:
        """The cache key of ``key`` (the key itself); override it (or pass
        ``get_cache_key=``) for keys that are unhashable or equal under another identity.
        Read once, at construction."""
        return key

    @property
    def stats(self) -> observe.LoaderStats:
        """What this loader has done so far: batches, keys, failures, time (a snapshot)."""
        return self._counters.snapshot()

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
            raise self._unhashable_key_error(key, key) from error
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
        closed = self._closed = _Closed(type(self), self.name, reason)
        # load()'s first step, as _set_first_step() would set it: a closed loader's wins.
        self._fast_lookup = closed

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
            self._settle_failed(batch, None)
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
        # Also called while __init__ is still checking its arguments (a bound method's repr
        # shows its loader), so every attribute may be missing.
        cache = getattr(self, "_cache", None)
        cached = len(cache) if cache is not None and getattr(self, "_caching", False) else 0
        batch = getattr(self, "_batch", None)
        queued = len(batch.keys) if batch is not None else 0
        return (
            f"<{type(self).__name__} name={self.name!r} cached={cached} queued={queued} "
            f"batches_in_flight={len(getattr(self, '_running', ()))}>"
        )

    # -- loading ---------------------------------------------------------------------

    def _load_with_cache_key(self, key: K) -> Future[V]:
        """load() when keys go through a cache key function, the cache map is the user's,
        or the cache is off."""
        if key is None:
            raise self._none_key_error()
        if self._caching:
            key_fn = self._key_fn  # inline: this path serves every load while a batch runs
            cache_key = key if key_fn is None else key_fn(key)
            try:
                future = self._cache.get(cache_key)
            except TypeError as error:
                raise self._unhashable_key_error(key, cache_key) from error
            if future is not None:
                if not future.cancelled():
                    if self._computing and not future.done():
                        self._refuse_waiting_on_own_batch(key, future)
                    return future
                return self._reload_cancelled(key, cache_key, future)
            batch = self._current_batch()
            future = batch.loop.create_future()
            self._cache[cache_key] = future
            if cache_key is not key:
                batch.remember_cache_key(future, cache_key)
        else:
            batch = self._current_batch()
            future = batch.loop.create_future()
        batch.keys.append(key)
        batch.futures.append(future)
        return future

    def _load_observed(self, key: K) -> Future[V]:
        """load() of an observed loader on the checked path (a key function, the user's
        cache map, the cache off, a batch function's own loads, a cancelled future): a look
        at the cache tells a hit (counted and told to the observers) from a miss (whose
        caller's context is kept for the batch's observers). A key function runs twice."""
        hit = False
        if self._caching and key is not None:
            try:
                cached = self._cache.get(self._cache_key(key))
            except Exception:  # the checked path raises it, with its message
                cached = None
            hit = cached is not None and not cached.cancelled()
        future = DataLoader._load_with_cache_key(self, key)
        if hit:
            self._counters.cache_hits += 1
            _tell_cache_hit(self, key)
            return future
        batch = self._batch
        if batch is None:  # a batch of its own (batch=False, or a scheduler's)
            self._callers[future] = copy_context()
        else:
            self._note_caller(batch, future)
        return future

    def _note_caller(self, batch: _Batch, future: Future[V]) -> None:
        """Keep the context of the caller of a miss for its batch's observers: one context
        per task and batch (the loads a task makes in one tick share their caller, its
        current span say), by the task, which costs no Python call to find."""
        task = _task_on(batch.loop)
        if batch is not self._caller_batch or task is not self._caller_task:
            self._caller_batch, self._caller_task = batch, task
            self._callers[future] = copy_context()

    def _refuse_waiting_on_own_batch(self, key: K, future: Future[V]) -> None:
        """Raise if ``future`` is of a batch whose function's code is running: this load
        comes from that code (or what it calls or awaits), not from another task, which may
        wait for the key while the batch function is suspended."""
        for batch in self._computing:
            steps = batch.steps
            running = getattr(steps, "cr_running", None)
            if running is None:
                running = getattr(steps, "gi_running", False)
            # By the batch's index of its futures: a scan per load is quadratic when the
            # batch function loads many keys that are in flight in another batch.
            if running and batch.position(future) is not None:
                break
        else:
            return
        raise RuntimeError(
            f"{self._label()}: the batch function loaded {checks.describe(key)}, a key "
            "of the very batch it is computing; awaiting it would wait forever. Compute "
            "that value within the batch function, or load it through a loader whose batch "
            "function does not load from this one"
        )

    def _reload_cancelled(self, key: K, cache_key: object, cancelled: Future[V]) -> Future[V]:
        """A new load of a key whose cached future was cancelled. If that cancelled load is
        still queued, the new one takes its place, so the key is sent once."""
        batch = self._current_batch()
        future: Future[V] = batch.loop.create_future()
        self._cache[cache_key] = future
        if cache_key is not key:
            batch.remember_cache_key(future, cache_key)
        position = batch.position(cancelled)
        if position is None:
            batch.keys.append(key)
            batch.futures.append(future)
        else:
            batch.replace(position, future)
            callers = getattr(self, "_callers", None)  # set once observed
            if callers and cancelled in callers:
                # The caller's context was kept on the load it gave up: its other loads in
                # this batch (and this one, if it is the same caller) still need it.
                callers[future] = callers.pop(cancelled)
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
        if self._watched_loop is not batch.loop and _get_running_loop() is batch.loop:
            # The first batch on a loop bound outside it (loop=, or a load before
            # run_until_complete): from now on, be told when it shuts down.
            self._watch(batch.loop)
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
            self._settle_failed(batch, None)

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
                    chunk.cache_keys = batch.cache_keys
                    self._dispatch(chunk)
                batch.keys, batch.futures = keys[:size], futures[:size]
                batch.positions, batch.indexed = None, 0  # it indexed the whole list
            await self._call_batch_load_fn(batch)
        except BaseException as error:
            cancelled = isinstance(error, asyncio.CancelledError)
            self._settle_failed(batch, None if cancelled else error)
            raise
        finally:
            # Done here, not by the done callback, so nothing keeps the loader alive after
            # the batch (the callback only covers a task cancelled before it ran).
            task = batch.task
            if task is not None:
                self._running.pop(task, None)
                task.remove_done_callback(self._batch_task_done)

    async def _call_batch_load_fn(self, batch: _Batch) -> None:
        keys: list[K] = batch.keys
        futures: list[Future[V]] = batch.futures
        if not futures or (futures[0].done() and all(future.done() for future in futures)):
            return  # every load was settled or cancelled before dispatch: nothing to fetch
        shared = self._shared
        if shared is not None:
            # One lookup for the whole batch; only what it misses goes to the batch function.
            keys, futures, cache_keys = await shared.lookup(keys, futures)
            if not keys:
                return
        # Statistics are counted here, once per batch, never per load.
        counters = self._counters
        size = len(keys)
        counters.batches += 1
        counters.keys_dispatched += size
        if size > counters.largest_batch:
            counters.largest_batch = size
        info = None
        if self._observers or GLOBAL_OBSERVERS:
            callers = getattr(self, "_callers", None)  # set once observed
            info = observe.batch_started(observe.observers_of(self), self, keys, futures, callers)
        started = perf_counter()
        try:
            result = self.batch_load_fn(keys)
            if type(result) is CoroutineType:
                steps: Any = result
            else:
                checks.check_awaitable_result(self._label(), result)
                steps = _awaiting(result.__await__())
            # While the batch function is in progress, loads of this loader take the
            # checked path (see _set_first_step and _refuse_waiting_on_own_batch): a plain
            # await, so the batch costs two list operations and two attribute writes here,
            # and nothing per step of the batch function.
            batch.steps = steps
            computing = self._computing
            computing.append(batch)
            if self._fast_lookup is self._cache_get:
                self._fast_lookup = None
            try:
                values = await steps
            finally:
                computing.remove(batch)
                batch.steps = None
                if not computing and self._fast_lookup is None:
                    self._fast_lookup = self._cache_get
            if type(values) is not list or len(values) != len(keys):
                values = checks.values_for_keys(self._label(), keys, values, self._default_factory)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit) as error:
            elapsed = perf_counter() - started
            counters.batch_seconds += elapsed
            self._settle_failed(batch, None)
            if info is not None:
                observe.batch_ended(info, elapsed, 0, error)
            raise
        except BaseException as error:
            elapsed = perf_counter() - started
            counters.batch_seconds += elapsed
            counters.failed_batches += 1
            failed = counters.failed_loads
            self._settle_failed(batch, error)
            if info is not None:
                observe.batch_ended(info, elapsed, counters.failed_loads - failed, error)
            return
        elapsed = perf_counter() - started
        counters.batch_seconds += elapsed
        failed = 0
        for future, value in zip(futures, values, strict=True):
            if not future.done():
                if isinstance(value, Exception):
                    future.set_exception(value)
                    failed += 1
                else:
                    future.set_result(value)
        if failed:
            counters.failed_loads += failed
        if info is not None:
            observe.batch_ended(info, elapsed, failed, None)
        if shared is not None:
            await shared.store(cache_keys, values)  # after settling: callers need not wait

    def _settle_failed(self, batch: _Batch, error: BaseException | None) -> None:
        """Reject (or, with no error, cancel) every pending future of a failed batch and
        evict them, so that the failure is not cached."""
        if self._caching:
            cache = self._cache
            # The cache keys that load() computed: the key function is not called again
            # (it may fail, or answer differently now).
            cache_keys = batch.cache_keys or {}
            for key, future in zip(batch.keys, batch.futures, strict=True):
                cache_key = cache_keys.get(future, key)
                try:
                    # Evict only our own entry: the key may have been cleared and loaded anew.
                    if cache.get(cache_key) is future:
                        del cache[cache_key]
                except Exception:  # a failing cache map must not leave futures pending
                    continue
        settled = 0
        for future in batch.futures:
            if not future.done():
                settled += 1
                if error is None:
                    future.cancel()
                else:
                    future.set_exception(error)
        if error is None:
            self._counters.cancelled_loads += settled
        else:
            self._counters.failed_loads += settled

    def _prime(self, key: K, value: V | BaseException, force: bool) -> None:
        cache_key = self._cache_key(key)
        cached = self._cache.get(cache_key)
        if cached is not None and not cached.cancelled():
            if not force:
                return
            if not cached.done():
                _settle(cached, value)
                return
        future: Future[V] = self._bind_loop().create_future()
        _settle(future, value)
        self._cache[cache_key] = future

    # -- event loop ------------------------------------------------------------------

    def _bind_loop(self) -> AbstractEventLoop:
        running = _get_running_loop()
        loop = self._loop
        if running is loop and loop is not None:
            return loop
        if running is None:
            if loop is not None and not self._loop_ended and not loop.is_closed():
                if loop.is_running():
                    raise RuntimeError(
                        f"{self._label()}: load() was called from a thread other than the one "
                        "running its event loop; loaders are not thread-safe: load from a "
                        "coroutine on that loop (e.g. asyncio.run_coroutine_threadsafe). In a "
                        "web app, a sync 'def' endpoint or dependency runs in a worker thread: "
                        "declare it 'async def'"
                    )
                return loop
            bound = _implicit_loop(self._label())
        else:
            bound = running
            if loop is not None:
                in_flight = any(not task.done() for task in self._running)
                if in_flight and loop.is_running():
                    raise RuntimeError(
                        f"{self._label()} is serving another running event loop and has "
                        "batches in flight there; a loader serves one event loop at a time: "
                        "create one loader per loop (for instance one per request)"
                    )
        if loop is not None and loop is not bound:
            self._move_to_loop(loop, bound)
        self._loop = bound
        self._loop_ended = False
        if bound is running:
            self._watch(bound)
        self._set_first_step()
        return bound

    def _watch(self, loop: AbstractEventLoop) -> None:
        """Be told when ``loop`` shuts down (see _LoopWatch). ``loop`` is running here."""
        self._watched_loop = loop
        _LoopWatch.of(loop).loaders.add(self)

    def _loop_shut_down(self, loop: AbstractEventLoop) -> None:
        if self._loop is loop:
            self._loop_ended = True
            self._batch = None
            self._set_first_step()

    def _move_to_loop(self, old: AbstractEventLoop, new: AbstractEventLoop) -> None:
        """Leave a loop that is no longer ours: drop its open batch and tasks and the
        futures that will never complete there, and carry settled values over to
        futures of the new loop (a done future of a closed loop breaks ``gather``)."""
        self._batch = None
        self._running.clear()
        self._watched_loop = None
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
        return _label_of(type(self), self.name)

    def _none_key_error(self, method: str = "load") -> TypeError:
        # 0.4.3 refused None in load() only, with the sentence that starts this message.
        compat = (
            "The loader.load() function must be called with a value, but got: None. "
            if method == "load"
            else ""
        )
        return TypeError(
            f"{compat}{self._label()}: {method}() must be called with a key that is not None; "
            "got None"
        )

    def _unhashable_key_error(self, key: object, cache_key: object) -> TypeError:
        if self._key_fn is None:
            return TypeError(
                f"{self._label()}: the cache key must be hashable; got {checks.describe(key)}. "
                "Pass get_cache_key= (or override get_cache_key) to map such keys to hashable "
                "ones"
            )
        return TypeError(
            f"{self._label()}: the cache key must be hashable; the cache key function "
            f"returned {checks.describe(cache_key)} for the key {checks.describe(key)}. Make "
            "the cache key function return a hashable value (a str, int or tuple)"
        )


for _option in _OPTIONS.values():
    setattr(DataLoader, _option.name, _option)
del _option


class _Batch:
    """Keys and their futures, in load order. ``task`` is set once dispatch starts;
    ``scheduled`` once a custom scheduler's callback has run."""

    __slots__ = (
        "cache_keys",
        "futures",
        "indexed",
        "keys",
        "loop",
        "positions",
        "scheduled",
        "steps",
        "task",
    )

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self.keys: list[Any] = []
        self.futures: list[Future[Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.scheduled = False
        # What runs the batch function's code (its coroutine), while it is in progress.
        self.steps: Any = None
        # A future's cache key where it is not its key (a key function gave it).
        self.cache_keys: dict[Future[Any], object] | None = None
        # Each future's index in ``futures``, built as needed, for the first ``indexed``.
        self.positions: dict[Future[Any], int] | None = None
        self.indexed = 0

    def remember_cache_key(self, future: Future[Any], cache_key: object) -> None:
        if self.cache_keys is None:
            self.cache_keys = {}
        self.cache_keys[future] = cache_key

    def position(self, future: Future[Any]) -> int | None:
        """The index of ``future`` in this batch, or None. Linear over all calls: a retry
        of many cancelled keys looks each one up."""
        futures, positions = self.futures, self.positions
        if positions is None:
            positions = self.positions = {}
        for index in range(self.indexed, len(futures)):
            positions[futures[index]] = index
        self.indexed = len(futures)
        return positions.get(future)

    def replace(self, index: int, future: Future[Any]) -> None:
        self.futures[index] = future
        if self.positions is not None:
            self.positions[future] = index


@types.coroutine
def _awaiting(steps: Generator[Any, Any, T]) -> Generator[Any, Any, T]:
    """Awaits the iterator of an awaitable that is not a coroutine: a generator whose
    ``gi_running`` tells when its code runs, as a coroutine's ``cr_running`` does."""
    return (yield from steps)


class _MoveToRunningLoop:
    """The first step of load() after the loader's loop shut down: move the cache to the
    running loop (settled values carry over), then load as usual. It refers to the loader
    weakly, so that it keeps no loader alive."""

    __slots__ = ("loader",)

    def __init__(self, loader: DataLoader[Any, Any]) -> None:
        self.loader = weakref.ref(loader)

    def __call__(self, key: Any) -> Future[Any]:
        loader = cast("DataLoader[Any, Any]", self.loader())  # alive: load() holds it
        loader._bind_loop()
        if loader._loop_ended:  # still the loop that shuts down: keep serving it
            loader._loop_ended = False
            loader._set_first_step()
        return loader.load(key)


class _LoopWatch:
    """Tells the loaders bound to a loop when it shuts down, so that a cache hit in the
    next loop never returns a future of the old one, with no check on the hit path.

    Its signal is an async generator, suspended for the loop's lifetime:
    ``loop.shutdown_asyncgens()`` closes it, and ``asyncio.run`` and ``asyncio.Runner``
    call that just before closing the loop. A loop closed without it (``run_until_complete``
    then ``close()``, code older than ``asyncio.run``) drops its timers instead: a timer
    that never comes due gives the same signal when it is dropped."""

    _by_loop: ClassVar[dict[AbstractEventLoop, _LoopWatch]] = {}

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self.loaders: weakref.WeakSet[DataLoader[Any, Any]] = weakref.WeakSet()
        self.signal = self._until_shutdown()
        # The first step registers it with the running loop; then it suspends.
        with contextlib.suppress(StopIteration):
            self.signal.asend(None).send(None)
        _OnDrop(loop, self._shut_down).arm()

    @classmethod
    def of(cls, loop: AbstractEventLoop) -> _LoopWatch:
        watch = cls._by_loop.get(loop)
        if watch is None:
            for old in list(cls._by_loop):
                if old.is_closed():
                    cls._by_loop.pop(old, None)
            watch = cls._by_loop[loop] = cls(loop)
        return watch

    async def _until_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        if self._by_loop.get(self.loop) is self:
            del self._by_loop[self.loop]
        for loader in list(self.loaders):
            loader._loop_shut_down(self.loop)


# Seconds: well within every loop's timer range (some, Qt's for one, count milliseconds
# in 32 bits, about 24 days).
_REARM_AFTER = 86400.0


class _OnDrop:
    """Calls ``action`` when it is dropped: a closing loop drops the handles of the timers
    it has not run, and with them this one. When its timer comes due, it arms the next, so
    that one of its timers is pending for as long as the loop lives."""

    __slots__ = ("action", "loop")

    def __init__(self, loop: AbstractEventLoop, action: Callable[[], None]) -> None:
        self.loop = loop
        self.action = action

    def arm(self) -> None:
        # In an empty context: the current one may hold a request's objects.
        self.loop.call_later(_REARM_AFTER, self.arm, context=contextvars.Context())

    def __del__(self) -> None:
        self.action()


class _ObservedLoad:
    """Takes the place of ``_load_with_cache_key`` on an observed loader. It holds the loader
    weakly, so that an observed loader is still freed as soon as it is dropped."""

    __slots__ = ("loader",)

    def __init__(self, loader: DataLoader[Any, Any]) -> None:
        self.loader = weakref.ref(loader)

    def __call__(self, key: Any) -> Future[Any]:
        loader = self.loader()
        if loader is None:  # cannot happen: the caller of load() holds it
            raise RuntimeError("the loader was freed while loading")
        return loader._load_observed(key)


def _observed_lookup(loader: DataLoader[Any, Any]) -> Callable[[Any], Future[Any] | None]:
    """load()'s first step on an observed loader whose keys are their own cache keys in
    its own dict, in place of the dict's get: a hit is counted and told to the observers
    that want hits; a miss joins the open batch here, with its caller's context kept for
    the batch's observers, and its future goes back to load() as if it were a hit. What
    the fast path leaves to the checked one, this does too: a None key (load() raises for
    it), a cancelled future (reloaded by _load_observed).

    A closure, not an object with ``__call__``: calling it costs less. It holds the loader
    weakly, so that an observed loader is still freed as soon as it is dropped; it is made
    anew whenever the loader's options or observers change (_options_changed)."""
    get = loader._cache.get
    cache = cast("dict[Any, Future[Any]]", loader._cache)  # its own dict
    counters = loader._counters
    callers = loader._callers
    own_hit_observers = loader._hit_observers
    loader_ref = weakref.ref(loader)

    def lookup(key: Any) -> Future[Any] | None:
        future = get(key)  # an unhashable key raises: load() reports it
        if future is not None:
            if future.cancelled():
                return cast("DataLoader[Any, Any]", loader_ref())._load_observed(key)
            counters.cache_hits += 1
            if own_hit_observers or GLOBAL_HIT_OBSERVERS:
                # _tell_cache_hit, inlined: this runs once per hit.
                loader = cast("DataLoader[Any, Any]", loader_ref())  # alive: load() holds it
                for observer in (*own_hit_observers, *GLOBAL_HIT_OBSERVERS):
                    try:
                        observer.on_cache_hit(loader, key)
                    except Exception:
                        observe.hook_failed(observer, "on_cache_hit")
            return future
        if key is None:
            return None  # never cached in its own dict: load() raises its error
        loader = cast("DataLoader[Any, Any]", loader_ref())
        # load()'s miss, inlined.
        batch = loader._batch
        if batch is None or not batch.loop.is_running():
            batch = loader._current_batch()
        loop = batch.loop
        future = loop.create_future()
        cache[key] = future
        batch.keys.append(key)
        batch.futures.append(future)
        # _note_caller, inlined.
        task = _task_on(loop)
        if batch is not loader._caller_batch or task is not loader._caller_task:
            loader._caller_batch, loader._caller_task = batch, task
            callers[future] = copy_context()
        return future

    return lookup


def _tell_cache_hit(loader: DataLoader[Any, Any], key: Any) -> None:
    """Each observer's ``on_cache_hit``: the loader's own observers, then the global ones
    (those that do not override it, whose hook does nothing, are not called)."""
    for observer in (*loader._hit_observers, *GLOBAL_HIT_OBSERVERS):
        try:
            observer.on_cache_hit(loader, key)
        except Exception:
            observe.hook_failed(observer, "on_cache_hit")


if sys.version_info >= (3, 12):
    # In C from 3.12 on.
    _task_on: Callable[[AbstractEventLoop], object] = asyncio.current_task
else:  # pragma: no cover - older Pythons
    # asyncio.current_task(loop) is a Python function that reads this dict: read it directly
    # (the versions before 3.12 are released, and this never changes in them).
    _task_on = asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]


def _label_of(cls: type[Any], name: str | None) -> str:
    """How errors name a loader: its class and its ``name`` option."""
    return f"{cls.__name__}(name={name!r})"


class _Closed:
    """A closed loader's first step of load(): it raises. It holds what its message needs,
    not the loader, so a closed loader is freed as soon as it is dropped; the message is
    made when it is raised (every request's teardown closes loaders, few are used after)."""

    __slots__ = ("cls", "name", "reason")

    def __init__(self, cls: type[Any], name: str | None, reason: str | None) -> None:
        self.cls = cls
        self.name = name
        self.reason = reason

    def error(self, method: str) -> RuntimeError:
        because = f": {self.reason}" if self.reason else ""
        return RuntimeError(
            f"{_label_of(self.cls, self.name)} is closed{because}; {method}() can no longer "
            "be called on it"
        )

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
                f"{label}: there is no event loop in this thread: call load() from a "
                "coroutine (inside asyncio.run(...)). In a web app, a sync 'def' endpoint or "
                "dependency runs in a worker thread: declare it 'async def'. (A program "
                "that runs its own loop outside asyncio.run can pass loop= instead)"
            ) from error


def _settle(future: Future[Any], value: object) -> None:
    if isinstance(value, Exception):
        future.set_exception(value)
        # A primed error that nobody loads is not an unhandled error.
        future.exception()
    else:
        future.set_result(value)
