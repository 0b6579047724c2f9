"""One batch of keys on its way to the batch function, and the check of what it returned."""

from __future__ import annotations

import reprlib
from asyncio import AbstractEventLoop, Future, Task
from collections.abc import Iterable, Mapping, Set
from typing import Any

_short = reprlib.Repr()
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 10
_short.maxstring = _short.maxother = 80


class Batch:
    """Keys and their futures, in load order. ``task`` is set once dispatch starts;
    ``scheduled`` once a custom scheduler's callback has run."""

    __slots__ = ("futures", "keys", "loop", "scheduled", "task")

    def __init__(self, loop: AbstractEventLoop) -> None:
        self.loop = loop
        self.keys: list[Any] = []
        self.futures: list[Future[Any]] = []
        self.task: Task[None] | None = None
        self.scheduled = False


def values_for_keys(label: str, keys: list[Any], values: object) -> list[Any]:
    """The batch function's result as a list aligned with ``keys``, or a TypeError."""
    if isinstance(values, Mapping):
        return [values.get(key) for key in keys]
    if (
        values is None
        or isinstance(values, (str, bytes, bytearray, memoryview, Set))
        or not isinstance(values, Iterable)
    ):
        raise TypeError(
            f"{label}: the batch function must return a list (or tuple, or iterable) with one "
            f"value per key, in key order, or a mapping from key to value; it returned "
            f"{_short.repr(values)} (type {type(values).__name__}) for keys {_short.repr(keys)}"
        )
    if not isinstance(values, list):
        values = list(values)
    if len(values) != len(keys):
        raise TypeError(
            f"{label}: the batch function must return one value per key, in key order; it "
            f"returned {len(values)} values for {len(keys)} keys.\nKeys: {_short.repr(keys)}\n"
            f"Values: {_short.repr(values)}"
        )
    return values
