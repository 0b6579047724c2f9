"""Checks of the DataLoader constructor's arguments, done once so that load() stays lean."""

from __future__ import annotations

import asyncio.coroutines
import functools
import inspect
from asyncio import AbstractEventLoop
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any


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
        raise TypeError(f"{label}: {expected}; got {describe(fn)}, which is not callable")
    if not is_async_callable(fn):
        raise TypeError(
            f"{label}: {expected}; got {describe(fn)}, which is a regular (sync) callable. "
            "Define it with 'async def' so it returns an awaitable of the values"
        )


def check_iterable(label: Callable[[], str], method: str, expected: str, value: object) -> None:
    """A str or bytes is refused: it is iterable, but never meant as a collection of keys.
    ``label`` is only called on error: these checks sit on load_many's path."""
    if type(value) is list or type(value) is tuple:
        return
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"{label()}: {method}() must be called with {expected} (a list, tuple, ...); "
            f"got {describe(value)}"
        )


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


def check_cache_map(label: str, value: object) -> MutableMapping[Any, Any]:
    """Accepts a MutableMapping, or a JS-style map with get/set/delete/clear (the protocol
    aiodataloader 0.4.3's README documents), which is adapted."""
    if all(hasattr(value, name) for name in _MAPPING_METHODS):
        return value  # type: ignore[return-value]
    if all(hasattr(value, name) for name in _JS_MAP_METHODS):
        return JSStyleCacheMap(value)
    missing = [name for name in _MAPPING_METHODS if not hasattr(value, name)]
    raise TypeError(
        f"{label}: cache_map must be a MutableMapping (get, __setitem__, __delitem__, pop, "
        f"clear) or an object with get/set/delete/clear; got {describe(value)}, "
        f"missing {', '.join(missing)}"
    )


class JSStyleCacheMap(MutableMapping[Any, Any]):
    """Presents a ``get/set/delete/clear`` cache object as a MutableMapping."""

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
