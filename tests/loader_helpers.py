"""Recording batch functions shared by the core's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiodataloader import DataLoader


class Recorder:
    """An identity batch function that records every call's keys."""

    def __init__(self, transform: Callable[[Any], Any] = lambda key: key) -> None:
        self.calls: list[list[Any]] = []
        self.transform = transform

    async def __call__(self, keys: list[Any]) -> list[Any]:
        self.calls.append(list(keys))
        return [self.transform(key) for key in keys]


def id_loader(**options: Any) -> tuple[DataLoader[Any, Any], list[list[Any]]]:
    recorder = Recorder()
    return DataLoader(recorder, **options), recorder.calls


async def ticks(count: int) -> None:
    """Let the event loop run ``count`` iterations."""
    for _ in range(count):
        await asyncio.sleep(0)
