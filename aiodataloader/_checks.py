"""The checks at the DataLoader's boundary: its constructor's arguments (done once, so that
load() stays lean), the arguments of its methods, and what the batch function returns."""

from __future__ import annotations

import asyncio.coroutines
import functools
import inspect
import itertools
import reprlib
from asyncio import AbstractEventLoop
from collections.abc import Callable, Iterable, Mapping, Set, Sized
from typing import Any

# Where aiodataloader 0.4.3 raised the same error, a message starts with its sentence (callers
# match on it), and goes on with the loader's name, what was expected and what came.
_BATCH_FN_CONTRACT_043 = (
    "DataLoader must be constructed with a function which accepts Iterable<key> and returns "
    "Future<Iterable<value>>, but the function did not return "
)


class NotAsyncBatchLoadFnError(TypeError, AssertionError):
    """A batch function that is not async. aiodataloader 0.4.3 asserted this, so it is also
    an ``AssertionError``: code written for 0.4.3 that catches that keeps working."""


def describe(value: object) -> str:
    """A short description of a received value for error messages."""
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{text} (type {type(value).__name__})"


def is_async_callable(fn: object) -> bool:
    """True for an ``async def`` function or method, a partial of one, or an object
    whose ``__call__`` is ``async def``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn) or _has_asyncio_coroutine_marker(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn):
        return False
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we need the method itself
    return call is not None and inspect.iscoroutinefunction(call)


def _has_asyncio_coroutine_marker(fn: object) -> bool:
    """The marker that asyncio.iscoroutinefunction (what 0.4.3 used) also accepts, carried
    e.g. by Cython-compiled ``async def`` functions."""
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    return marker is not None and getattr(fn, "_is_coroutine", None) is marker


def check_batch_load_fn(label: str, fn: object) -> None:
    expected = (
        "batch_load_fn must be an async function (async def), a functools.partial of one, "
        "a bound async method, or an object whose __call__ is async def"
    )
    if fn is None:
        raise TypeError(
            f"{label}: no batch function: pass batch_load_fn=<async function> or define "
            "'async def batch_load_fn(self, keys)' in a subclass"
        )
    if not callable(fn):
        raise NotAsyncBatchLoadFnError(
            f"{_compat(fn)}{label}: {expected}; got {describe(fn)}, which is not callable"
        )
    if not is_async_callable(fn):
        raise NotAsyncBatchLoadFnError(
            f"{_compat(fn)}{label}: {expected}; got {describe(fn)}, which is a regular (sync) "
            "callable. Define it with 'async def' so it returns an awaitable of the values"
        )


def _compat(fn: object) -> str:
    """0.4.3's sentence, which its users' code may match. Made on error only: formatting a
    bound method formats its loader, at every construction otherwise."""
    return f"batch_load_fn must be coroutine. Received: {fn}. "


def check_iterable(label: Callable[[], str], method: str, expected: str, value: object) -> None:
    """A str or bytes is refused: it is iterable, but never meant as a collection of keys.
    ``label`` is only called on error: these checks sit on load_many's path."""
    if type(value) is list or type(value) is tuple:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        compat = ""
        if method == "load_many" and not isinstance(value, Iterable):
            compat = (
                "The loader.load_many() function must be called with Iterable<key> but got: "
                f"{value}. "
            )
        raise TypeError(
            f"{compat}{label()}: {method}() must be called with {expected} (a list, tuple, "
            f"...); got {describe(value)}"
        )


def check_timeout(label: Callable[[], str], method: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{label()}: {method}() timeout must be a number of seconds or None; "
            f"got {describe(value)}"
        )
    if not value >= 0:  # also refuses NaN
        raise ValueError(
            f"{label()}: {method}() timeout must be 0 or more seconds, or None; got {value!r}"
        )
    try:
        float(value)  # what asyncio turns it into, after the loads are cancelled
    except OverflowError:
        raise ValueError(
            f"{label()}: {method}() timeout must be a number of seconds that a float holds, "
            f"or None; got {describe(value)}"
        ) from None


def check_bool(label: str, option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{label}: {option} must be True or False; got {describe(value)}")
    return value


def check_max_batch_size(label: str, value: object) -> int | None:
    """None and 0 mean unlimited, as in aiodataloader 0.4.3."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{label}: max_batch_size must be a positive int, or None/0 for no limit; "
            f"got {describe(value)}"
        )
    if value < 0:
        raise ValueError(
            f"{label}: max_batch_size must be a positive int, or None/0 for no limit; got {value}"
        )
    return value


def check_optional_callable(label: str, option: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{label}: {option} must be a callable or None; got {describe(value)}")


def check_name(label: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{label}: name must be a str or None; got {describe(value)}")
    return value


def check_batch(label: str, value: object) -> bool:
    return check_bool(label, "batch", value)


def check_cache(label: str, value: object) -> bool:
    return check_bool(label, "cache", value)


def check_loop(label: str, value: object) -> None:
    if value is not None and not isinstance(value, AbstractEventLoop):
        raise TypeError(
            f"{label}: loop must be an asyncio event loop or None; got {describe(value)}"
        )


_MAPPING_METHODS = ("get", "__setitem__", "__delitem__", "pop", "clear")
_JS_MAP_METHODS = ("get", "set", "delete", "clear")


def check_cache_map(label: str, value: object) -> bool:
    """A MutableMapping passes (False); so does a JS-style map with get/set/delete/clear,
    the protocol aiodataloader 0.4.3's README documents (True: the loader adapts it)."""
    if all(hasattr(value, name) for name in _MAPPING_METHODS):
        return False
    if all(hasattr(value, name) for name in _JS_MAP_METHODS):
        return True
    missing = [name for name in _MAPPING_METHODS if not hasattr(value, name)]
    raise TypeError(
        f"{label}: cache_map must be a MutableMapping (get, __setitem__, __delitem__, pop, "
        f"clear) or an object with get/set/delete/clear; got {describe(value)}, "
        f"missing {', '.join(missing)}"
    )


_short = reprlib.Repr()
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 10
_short.maxstring = _short.maxother = 80


def check_awaitable_result(label: str, result: object) -> None:
    if not inspect.isawaitable(result):
        raise TypeError(
            f"{_BATCH_FN_CONTRACT_043}a Coroutine: {result}. {label}: the batch function must "
            f"return an awaitable; it returned {describe(result)}"
        )


def values_for_keys(
    label: str, keys: list[Any], values: object, default_factory: Callable[[], Any] | None
) -> list[Any]:
    """The batch function's result as a list aligned with ``keys``, or a TypeError. A key
    missing from a mapping gets ``default_factory()`` (a new one per key), or None."""
    if isinstance(values, Mapping):
        if default_factory is None:
            return [values.get(key) for key in keys]
        return [values[key] if key in values else default_factory() for key in keys]
    if (
        values is None
        or isinstance(values, (str, bytes, bytearray, memoryview, Set))
        or not isinstance(values, Iterable)
    ):
        compat = ""
        if not isinstance(values, Iterable):
            compat = f"{_BATCH_FN_CONTRACT_043}a Future of a Iterable: {values}. "
        raise TypeError(
            f"{compat}{label}: the batch function must return a list (or tuple, or iterable) "
            f"with one value per key, in key order, or a mapping from key to value; it returned "
            f"{_short.repr(values)} (type {type(values).__name__}) for keys {_short.repr(keys)}"
        )
    if not isinstance(values, list):
        # One item past the keys is enough to tell a wrong length; an endless iterator is
        # never read to the end.
        sized = isinstance(values, Sized)
        values = list(values if sized else itertools.islice(values, len(keys) + 1))
        if not sized and len(values) > len(keys):
            raise TypeError(
                f"{_BATCH_FN_CONTRACT_043}a Future of a Iterable with the same length as the "
                f"Iterable of keys. {label}: the batch function must return one value per key, "
                f"in key order; its iterable went on past {len(keys)} values for {len(keys)} "
                f"keys.\nKeys: {_short.repr(keys)}"
            )
    if len(values) != len(keys):
        raise TypeError(
            f"{_BATCH_FN_CONTRACT_043}a Future of a Iterable with the same length as the "
            f"Iterable of keys. {label}: the batch function must return one value per key, in "
            f"key order; it returned {len(values)} values for {len(keys)} keys.\n"
            f"Keys: {_short.repr(keys)}\nValues: {_short.repr(values)}"
        )
    return values
