"""Every bad input raises a TypeError or ValueError that names the loader, what was expected
and what was received."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from aiodataloader import DataLoader

from .loader_helpers import Recorder


async def good(keys: list[int]) -> list[int]:
    return keys


def sync_fn(keys: list[int]) -> list[int]:
    return keys


class SyncCallable:
    def __call__(self, keys: list[int]) -> list[int]:
        return keys


@pytest.mark.parametrize(
    ("fn", "received"),
    [
        (sync_fn, "sync_fn"),
        (lambda keys: good(keys), "lambda"),
        (partial(sync_fn), "functools.partial"),
        (SyncCallable(), "SyncCallable"),
    ],
)
def test_sync_batch_functions_are_rejected(fn: Any, received: str) -> None:
    with pytest.raises(TypeError) as info:
        DataLoader(fn, name="users")
    message = str(info.value)
    # 0.4.3's sentence first, then the loader's name and the advice.
    assert message.startswith(f"batch_load_fn must be coroutine. Received: {fn}. ")
    assert "DataLoader(name='users'): batch_load_fn must be an async function" in message
    assert received in message
    assert "regular (sync) callable" in message


@pytest.mark.parametrize("fn", [42, "fetch", [good]])
def test_non_callable_batch_function_is_rejected(fn: object) -> None:
    with pytest.raises(TypeError, match=r"DataLoader\(name=None\): .* which is not callable"):
        DataLoader(fn)  # type: ignore[call-overload]


def test_missing_batch_function_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"DataLoader\(name=None\): no batch function"):
        DataLoader()

    class NoMethod(DataLoader[int, int]):
        pass

    with pytest.raises(TypeError, match=r"NoMethod\(name=None\): no batch function"):
        NoMethod()


def test_accepted_async_callables() -> None:
    class Service:
        async def fetch(self, keys: list[int]) -> list[int]:
            return keys

    for fn in (good, partial(good), partial(partial(good)), Service().fetch, Recorder()):
        assert DataLoader(fn).batch_load_fn is fn


@pytest.mark.parametrize(
    ("option", "value", "error", "expected"),
    [
        ("batch", "yes", TypeError, r"batch must be True or False; got 'yes' \(type str\)"),
        ("cache", 1, TypeError, r"cache must be True or False; got 1 \(type int\)"),
        ("max_batch_size", 2.5, TypeError, r"max_batch_size must be a positive int.*2\.5"),
        ("max_batch_size", True, TypeError, r"max_batch_size must be a positive int.*True"),
        ("max_batch_size", -1, ValueError, r"max_batch_size must be a positive int.*got -1"),
        ("get_cache_key", "id", TypeError, r"get_cache_key must be a callable or None"),
        ("cache_key_fn", 3, TypeError, r"cache_key_fn must be a callable or None"),
        ("batch_schedule_fn", 1, TypeError, r"batch_schedule_fn must be a callable or None"),
        ("loop", "loop", TypeError, r"loop must be an asyncio event loop or None"),
        ("cache_map", [], TypeError, r"cache_map must be a MutableMapping.*missing get"),
        ("name", 7, TypeError, r"name must be a str or None; got 7"),
    ],
)
@pytest.mark.parametrize("kind", ["function", "subclass"])
def test_bad_options_are_rejected(
    kind: str, option: str, value: object, error: type[Exception], expected: str
) -> None:
    options: dict[str, Any] = {option: value}
    build = partial(DataLoader, good) if kind == "function" else AsyncLoader
    with pytest.raises(error, match=expected) as info:
        build(**options)
    # The message names the loader's class: DataLoader, or the subclass.
    assert str(info.value).startswith("DataLoader" if kind == "function" else "AsyncLoader")


def test_bad_class_level_defaults_are_rejected_when_the_class_is_defined() -> None:
    with pytest.raises(ValueError, match=r"Bad: max_batch_size must be a positive int"):

        class Bad(DataLoader[int, int]):
            max_batch_size = -5

    with pytest.raises(TypeError, match=r"AlsoBad: cache must be True or False"):

        class AlsoBad(DataLoader[int, int]):
            cache = "no"  # type: ignore[assignment]


@pytest.mark.anyio
async def test_options_set_after_construction_are_validated_and_applied() -> None:
    loader = DataLoader(good, name="users")
    with pytest.raises(TypeError, match=r"DataLoader\(name='users'\): batch must be True"):
        loader.batch = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"max_batch_size must be a positive int"):
        loader.max_batch_size = -1
    loader.cache = False
    assert loader.load(1) is not loader.load(1)


def test_get_cache_key_and_its_alias_together_are_rejected() -> None:
    with pytest.raises(TypeError, match="not both"):
        DataLoader(good, get_cache_key=str, cache_key_fn=str)


def test_positional_arguments_follow_the_043_order() -> None:
    cache_map: dict[Any, Any] = {}
    loop = asyncio.new_event_loop()
    try:
        loader = DataLoader(good, False, 10, True, str, cache_map, loop)
        assert (loader.batch, loader.max_batch_size, loader.cache) == (False, 10, True)
        assert loader.loop is loop
        assert loader.get_cache_key(5) == "5"
    finally:
        loop.close()


@pytest.mark.anyio
async def test_load_requires_a_key() -> None:
    loader = DataLoader(good, name="users")
    with pytest.raises(TypeError, match=r"DataLoader\(name='users'\): load\(\) must be called"):
        loader.load(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        loader.load()  # type: ignore[call-arg]
    assert await loader.load(0) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("keys", ["abc", b"abc", 5, None])
async def test_load_many_requires_an_iterable_of_keys(keys: object) -> None:
    loader = DataLoader(good, name="users")
    with pytest.raises(TypeError, match=r"load_many\(\) must be called with an iterable of keys"):
        loader.load_many(keys)  # type: ignore[call-overload]


@pytest.mark.anyio
async def test_load_many_with_a_none_key_raises() -> None:
    with pytest.raises(TypeError, match="not None"):
        DataLoader(good).load_many([1, None])  # type: ignore[list-item]


@pytest.mark.anyio
@pytest.mark.parametrize("values", [5, "ab", [(1, 2, 3)], [1]])
async def test_prime_many_requires_pairs(values: object) -> None:
    with pytest.raises(TypeError, match=r"prime_many\(\)"):
        DataLoader(good).prime_many(values)  # type: ignore[arg-type]


def test_clear_many_requires_an_iterable_of_keys() -> None:
    with pytest.raises(TypeError, match=r"clear_many\(\) must be called with an iterable"):
        DataLoader(good).clear_many("ab")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_none_is_never_a_key() -> None:
    loader = DataLoader(good, name="users")
    with pytest.raises(TypeError, match=r"DataLoader\(name='users'\): prime\(\) must be called"):
        loader.prime(None, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"prime_many\(\) expects \(key, value\) pairs"):
        loader.prime_many({1: 1, None: 5})  # type: ignore[arg-type]
    # prime_many checks every pair before it primes any.
    assert await loader.load(1) == 1
    loaded_from_map = DataLoader(good, cache_map={None: asyncio.Future()})
    with pytest.raises(TypeError, match=r"load\(\) must be called with a key that is not None"):
        loaded_from_map.load(None)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_unhashable_key_error_names_the_loader_and_the_remedy() -> None:
    loader = DataLoader(good, name="users")
    with pytest.raises(TypeError, match=r"DataLoader\(name='users'\): the cache key must be"):
        loader.load({"id": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Pass get_cache_key= \(or override get_cache_key\)"):
        loader.load({"id": 1})  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("cache_map", [None, {}])
async def test_unhashable_cache_key_from_the_key_function_names_it_and_the_fix(
    cache_map: dict[Any, Any] | None,
) -> None:
    keyed = DataLoader(good, name="keyed", get_cache_key=lambda key: [key], cache_map=cache_map)
    with pytest.raises(TypeError) as info:
        keyed.load(1)
    assert str(info.value) == (
        "DataLoader(name='keyed'): the cache key must be hashable; the cache key function "
        "returned [1] (type list) for the key 1 (type int). Make the cache key function "
        "return a hashable value (a str, int or tuple)"
    )


def test_subclass_get_cache_key_may_call_super() -> None:
    class Lowered(DataLoader[str, str]):
        async def batch_load_fn(self, keys: list[str]) -> list[str]:
            return keys

        def get_cache_key(self, key: str) -> object:
            return str(super().get_cache_key(key)).lower()

    assert Lowered().get_cache_key("A") == "a"
    assert DataLoader(good, get_cache_key=str).get_cache_key(5) == "5"


def test_function_with_asyncio_coroutine_marker_is_accepted_as_in_043() -> None:
    import asyncio.coroutines

    def compiled_async(keys: list[int]) -> Any:  # as Cython marks its async def functions
        return good(keys)

    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    if marker is None:
        pytest.skip("this Python has no asyncio coroutine marker")
    compiled_async._is_coroutine = marker  # type: ignore[attr-defined]
    assert DataLoader(compiled_async).batch_load_fn is compiled_async


def test_subclass_may_define_name_as_a_property() -> None:
    class Named(DataLoader[int, int]):
        @property
        def name(self) -> str:  # type: ignore[override]
            return "computed"

        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return keys

    assert Named().name == "computed"


class SyncMethodLoader(DataLoader[int, int]):
    def batch_load_fn(self, keys: list[int]) -> list[int]:  # type: ignore[override]
        return keys


class AsyncLoader(DataLoader[int, int]):
    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        return keys


def test_subclass_with_a_sync_batch_method_names_the_class() -> None:
    with pytest.raises(TypeError) as info:
        SyncMethodLoader(name="users")
    message = str(info.value)
    assert "SyncMethodLoader(name='users'): batch_load_fn must be an async function" in message
    # The bound method's repr shows the loader while it is still being built.
    assert "<SyncMethodLoader name='users' cached=0 queued=0 batches_in_flight=0>" in message
    assert "regular (sync) callable" in message


def test_subclass_with_a_non_callable_batch_attribute_names_the_class() -> None:
    class NotCallable(DataLoader[int, int]):
        batch_load_fn = 42  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"NotCallable\(name=None\): .* which is not callable"):
        NotCallable()


def test_repr_of_a_loader_that_is_not_built_yet() -> None:
    loader = AsyncLoader.__new__(AsyncLoader)
    assert repr(loader) == "<AsyncLoader name=None cached=0 queued=0 batches_in_flight=0>"


def test_bad_class_level_batch_and_name_are_rejected_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"^BadBatch: batch must be True or False; got 'yes'"):

        class BadBatch(AsyncLoader):
            batch = "yes"  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"^BadName: name must be a str or None; got 7"):

        class BadName(AsyncLoader):
            name = 7  # type: ignore[assignment]


def test_subclass_passing_both_cache_key_functions_names_the_class() -> None:
    with pytest.raises(TypeError, match=r"^AsyncLoader\(name=None\): pass get_cache_key or"):
        AsyncLoader(get_cache_key=str, cache_key_fn=str)
