"""What code written for aiodataloader 0.4.3 can observe beyond its own test suite: the
class's run-time annotations, the sentences its errors start with, and the exception types."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, get_type_hints

import pytest

from aiodataloader import DataLoader

from .loader_helpers import Recorder

pytestmark = pytest.mark.anyio

CONTRACT_043 = (
    "DataLoader must be constructed with a function which accepts Iterable<key> and returns "
    "Future<Iterable<value>>, but the function did not return "
)


async def identity(keys: list[int]) -> list[int]:
    return keys


def test_runtime_annotations_are_exactly_043s() -> None:
    assert list(DataLoader.__annotations__) == ["batch", "max_batch_size", "cache"]
    assert get_type_hints(DataLoader) == {
        "batch": bool,
        "max_batch_size": int | None,
        "cache": bool,
    }
    # The class-level defaults read as 0.4.3's plain values.
    assert (DataLoader.batch, DataLoader.max_batch_size, DataLoader.cache) == (True, None, True)


class RecordingLoader(DataLoader[int, int]):
    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        super().__init__()

    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        self.calls.append(list(keys))
        return keys


class UserLoader(RecordingLoader):
    """A user's loader whose own annotation is inherited like 0.4.3's."""

    tenant: str = "none"


def build_with_params(cls: type[DataLoader[Any, Any]], params: dict[str, Any]) -> Any:
    """The injection pattern of pydantic-resolve's Resolver(loader_params=...), reproduced:
    build the loader, then set every annotated attribute of its class and of its base
    classes for which a parameter is given."""
    loader = cls()
    for klass in cls.__mro__:
        for field in inspect.get_annotations(klass):
            if field in params:
                setattr(loader, field, params[field])
    return loader


async def test_options_injected_through_the_annotations_take_effect() -> None:
    params = {"max_batch_size": 2, "tenant": "acme", "name": "injected"}
    loader = build_with_params(UserLoader, params)
    assert await loader.load_many([0, 1, 2, 3]) == [0, 1, 2, 3]
    assert loader.calls == [[0, 1], [2, 3]]
    assert loader.tenant == "acme"
    # ``name`` is not annotated at run time, so a parameter of that name is not injected.
    assert loader.name is None

    uncached = build_with_params(UserLoader, {"cache": False, "batch": False})
    assert list(await asyncio.gather(uncached.load(1), uncached.load(1))) == [1, 1]
    assert uncached.calls == [[1], [1]]


async def test_load_none_starts_with_043s_sentence() -> None:
    loader = DataLoader(identity, name="users")
    with pytest.raises(
        TypeError,
        match=r"^The loader\.load\(\) function must be called with a value, but got: None\. "
        r"DataLoader\(name='users'\): load\(\) must be called with a key that is not None",
    ):
        loader.load(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("keys", [None, 5])
async def test_load_many_of_a_non_iterable_starts_with_043s_sentence(keys: object) -> None:
    loader = DataLoader(identity, name="users")
    with pytest.raises(
        TypeError,
        match=rf"^The loader\.load_many\(\) function must be called with Iterable<key> but "
        rf"got: {keys}\. DataLoader\(name='users'\): load_many\(\) must be called with an "
        r"iterable of keys",
    ):
        loader.load_many(keys)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("returned", "sentence"),
    [
        (None, "a Future of a Iterable: None. "),
        (5, "a Future of a Iterable: 5. "),
        ([1], "a Future of a Iterable with the same length as the Iterable of keys. "),
        ((1, 2, 3), "a Future of a Iterable with the same length as the Iterable of keys. "),
    ],
)
async def test_bad_results_start_with_043s_sentence(returned: object, sentence: str) -> None:
    async def bad(keys: list[int]) -> Any:
        return returned

    loader: DataLoader[int, Any] = DataLoader(bad, name="users")
    with pytest.raises(TypeError) as info:
        await loader.load_many([1, 2])
    assert str(info.value).startswith(CONTRACT_043 + sentence + "DataLoader(name='users'): ")


async def test_non_awaitable_result_starts_with_043s_sentence() -> None:
    loader = DataLoader(Recorder(), name="users")
    loader.batch_load_fn = lambda keys: keys  # type: ignore[assignment,return-value]
    with pytest.raises(TypeError) as info:
        await asyncio.wait_for(loader.load(1), 10)
    assert str(info.value).startswith(CONTRACT_043 + "a Coroutine: [1]. DataLoader(name='users'): ")


def sync_fn(keys: list[int]) -> list[int]:
    return keys


@pytest.mark.parametrize("fn", [sync_fn, 42])
def test_a_batch_function_that_is_not_async_is_also_an_assertion_error(fn: object) -> None:
    """0.4.3 asserted this: ``except AssertionError`` keeps working, and so does
    ``except TypeError``, the type every other bad argument raises."""
    with pytest.raises(AssertionError, match=r"^batch_load_fn must be coroutine\. Received: "):
        DataLoader(fn)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"\. DataLoader\(name=None\): batch_load_fn must be"):
        DataLoader(fn)  # type: ignore[call-overload]


def test_a_sync_batch_method_of_a_subclass_is_also_an_assertion_error() -> None:
    class SyncLoader(DataLoader[int, int]):
        def batch_load_fn(self, keys: list[int]) -> list[int]:  # type: ignore[override]
            return keys

    with pytest.raises(AssertionError) as info:
        SyncLoader(name="sync")
    assert isinstance(info.value, TypeError)
    assert "SyncLoader(name='sync'): batch_load_fn must be an async function" in str(info.value)
