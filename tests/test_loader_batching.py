"""Batching, caching and the JS-parity features, through the public API."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import pytest

from aiodataloader import DataLoader

from .loader_helpers import Recorder, id_loader, ticks

pytestmark = pytest.mark.anyio


async def test_loads_in_one_tick_share_one_batch() -> None:
    loader, calls = id_loader()
    assert list(await asyncio.gather(loader.load(1), loader.load(2), loader.load(3))) == [1, 2, 3]
    assert calls == [[1, 2, 3]]


async def test_loads_from_nested_coroutine_chains_share_one_batch() -> None:
    loader, calls = id_loader()

    async def deep(key: str, depth: int) -> Any:
        if depth == 0:
            return await loader.load(key)
        return await deep(key, depth - 1)

    assert list(await asyncio.gather(deep("A", 0), deep("B", 3), deep("C", 6))) == ["A", "B", "C"]
    assert calls == [["A", "B", "C"]]


async def test_loads_after_awaiting_resolved_futures_share_the_batch() -> None:
    loader, calls = id_loader()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    done.set_result(0)

    async def after_resolved(key: str) -> Any:
        await done
        await done
        return await loader.load(key)

    assert list(await asyncio.gather(loader.load("A"), after_resolved("B"))) == ["A", "B"]
    assert calls == [["A", "B"]]


async def test_batch_window_matches_043_two_loop_iterations() -> None:
    # Task i loads after i bare loop iterations; 0.4.3 makes 5 batches of 2.
    loader, calls = id_loader()

    async def load_after(i: int) -> Any:
        await ticks(i)
        return await loader.load(i)

    assert await asyncio.gather(*(load_after(i) for i in range(10))) == list(range(10))
    assert calls == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


async def test_loads_separated_by_real_time_do_not_share_a_batch() -> None:
    loader, calls = id_loader()
    first = loader.load(1)
    await asyncio.sleep(0.01)
    second = loader.load(2)
    assert list(await asyncio.gather(first, second)) == [1, 2]
    assert calls == [[1], [2]]


async def test_cached_key_returns_the_same_future_object() -> None:
    loader, calls = id_loader()
    first, second = loader.load("k"), loader.load("k")
    assert first is second
    assert isinstance(first, asyncio.Future)
    assert await first == "k"
    assert loader.load("k") is first
    assert calls == [["k"]]


async def test_caller_may_settle_its_future_and_the_outcome_sticks() -> None:
    loader, calls = id_loader()
    overridden = loader.load(1)
    overridden.set_result(999)
    rejected = loader.load(2)
    rejected.set_exception(ValueError("mine"))
    normal = loader.load(3)
    assert await normal == 3
    assert await overridden == 999
    with pytest.raises(ValueError, match="mine"):
        await rejected
    assert calls == [[1, 2, 3]]


async def test_load_many_returns_values_in_key_order() -> None:
    loader, calls = id_loader()
    assert await loader.load_many([3, 1, 2]) == [3, 1, 2]
    assert await loader.load_many(iter([4, 1])) == [4, 1]
    assert await loader.load_many([]) == []
    assert calls == [[3, 1, 2], [4]]


async def test_load_many_raises_the_first_error_by_default() -> None:
    async def odd_fails(keys: list[int]) -> list[int | Exception]:
        return [ValueError(f"odd {k}") if k % 2 else k for k in keys]

    loader = DataLoader(odd_fails)
    with pytest.raises(ValueError, match="odd 1"):
        await loader.load_many([2, 1, 3])


async def test_load_many_return_exceptions_keeps_errors_in_place() -> None:
    async def odd_fails(keys: list[int]) -> list[int | Exception]:
        return [ValueError(f"odd {k}") if k % 2 else k for k in keys]

    loader = DataLoader(odd_fails)
    results = await loader.load_many([2, 1, 4], return_exceptions=True)
    assert results[0] == 2
    assert isinstance(results[1], ValueError)
    assert str(results[1]) == "odd 1"
    assert results[2] == 4


async def test_per_key_exception_rejects_only_that_key_and_is_cached() -> None:
    recorder = Recorder(lambda k: ValueError(f"bad {k}") if k == "bad" else k)
    loader = DataLoader(recorder)
    good, bad = loader.load("good"), loader.load("bad")
    assert await good == "good"
    with pytest.raises(ValueError, match="bad bad"):
        await bad
    with pytest.raises(ValueError, match="bad bad"):
        await loader.load("bad")
    assert recorder.calls == [["good", "bad"]]


async def test_base_exception_value_is_a_value_as_in_043() -> None:
    marker = KeyboardInterrupt()

    async def fn(keys: list[int]) -> list[object]:
        return [marker for _ in keys]

    assert await DataLoader(fn).load(1) is marker


async def test_prime_caches_without_a_batch_and_never_overwrites() -> None:
    loader, calls = id_loader()
    assert loader.prime("A", "primed") is loader
    loader.prime("A", "ignored")
    assert list(await asyncio.gather(loader.load("A"), loader.load("B"))) == ["primed", "B"]
    loader.prime("B", "ignored")
    assert await loader.load("B") == "B"
    assert calls == [["B"]]


async def test_prime_force_replaces_the_cached_value() -> None:
    loader, calls = id_loader()
    await loader.load("A")
    loader.prime("A", "forced", force=True)
    assert await loader.load("A") == "forced"
    assert calls == [["A"]]


async def test_prime_force_settles_a_load_still_queued() -> None:
    loader, calls = id_loader()
    pending = loader.load("A")
    loader.prime("A", "forced", force=True)
    assert await pending == "forced"
    # Every load of the batch was settled before dispatch, so nothing is sent.
    assert calls == []


async def test_prime_force_settles_a_load_whose_batch_is_in_flight() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(keys: list[str]) -> list[str]:
        started.set()
        await release.wait()
        return [f"fetched {key}" for key in keys]

    loader: DataLoader[str, str] = DataLoader(slow)
    pending = loader.load("A")
    await started.wait()  # the batch function is running with "A"
    loader.prime("A", "forced", force=True)
    assert await pending == "forced"
    release.set()
    await asyncio.sleep(0)
    assert await loader.load("A") == "forced"  # the late result does not replace it


async def test_prime_with_exception_primes_a_rejection() -> None:
    loader, calls = id_loader()
    loader.prime(1, ValueError("primed error"))
    with pytest.raises(ValueError, match="primed error"):
        await loader.load(1)
    assert calls == []


async def test_prime_many_accepts_a_mapping_or_pairs_and_honours_force() -> None:
    loader, calls = id_loader()
    assert loader.prime_many({1: "one", 2: "two"}) is loader
    loader.prime_many([(2, "ignored"), (3, "three")])
    loader.prime_many([(1, "uno")], force=True)
    assert await loader.load_many([1, 2, 3, 4]) == ["uno", "two", "three", 4]
    assert calls == [[4]]


async def test_clear_clear_many_and_clear_all_evict_and_chain() -> None:
    loader, calls = id_loader()
    await loader.load_many(["A", "B", "C"])
    assert loader.clear("A") is loader
    assert loader.clear("missing") is loader
    await loader.load_many(["A", "B"])
    assert loader.clear_many(["B", "C"]) is loader
    await loader.load_many(["A", "B", "C"])
    assert loader.clear_all() is loader
    await loader.load_many(["A"])
    assert calls == [["A", "B", "C"], ["A"], ["B", "C"], ["A"]]


async def test_batch_false_dispatches_each_key_alone() -> None:
    loader, calls = id_loader(batch=False)
    assert list(await asyncio.gather(loader.load(1), loader.load(2), loader.load(1))) == [1, 2, 1]
    assert calls == [[1], [2]]


@pytest.mark.parametrize(
    ("max_batch_size", "expected"),
    [
        (2, [[1, 2], [3, 4], [5]]),
        (3, [[1, 2, 3], [4, 5]]),
        (5, [[1, 2, 3, 4, 5]]),
        (0, [[1, 2, 3, 4, 5]]),
        (None, [[1, 2, 3, 4, 5]]),
    ],
)
async def test_max_batch_size_splits_distinct_keys_in_order(
    max_batch_size: int | None, expected: list[list[int]]
) -> None:
    loader, calls = id_loader(max_batch_size=max_batch_size)
    keys = [1, 2, 1, 3, 4, 2, 5]
    assert await loader.load_many(keys) == keys
    assert calls == expected


async def test_cache_false_sends_every_load_to_the_batch_function() -> None:
    loader, calls = id_loader(cache=False)
    values = await asyncio.gather(
        loader.load("A"), loader.load("C"), loader.load_many(["C", "D", "A"])
    )
    assert values[:2] == ["A", "C"]
    assert calls == [["A", "C", "C", "D", "A"]]
    assert loader.load("A") is not loader.load("A")


async def test_cache_false_never_touches_the_cache_or_the_key_function() -> None:
    key_calls: list[Any] = []
    cache_map: dict[Any, Any] = {"X": "untouched"}

    def key_fn(key: Any) -> Any:
        key_calls.append(key)
        return key

    recorder = Recorder()
    loader = DataLoader(recorder, cache=False, get_cache_key=key_fn, cache_map=cache_map)
    loader.prime("A", "A").prime_many({"B": "B"}).clear("X").clear_many(["X"]).clear_all()
    assert await loader.load("A") == "A"
    assert cache_map == {"X": "untouched"}
    assert key_calls == []


async def test_get_cache_key_maps_equal_keys_to_one_entry() -> None:
    recorder = Recorder()
    loader = DataLoader(recorder, get_cache_key=lambda key: tuple(sorted(key.items())))
    key_a, key_b = {"a": 1, "b": 2}, {"b": 2, "a": 1}
    first, second = loader.load(key_a), loader.load(key_b)
    assert first is second
    assert await first == key_a
    loader.clear(key_b)
    assert await loader.load(key_b) == key_b
    assert recorder.calls == [[key_a], [key_b]]


async def test_cache_key_fn_is_an_alias_of_get_cache_key() -> None:
    recorder = Recorder()
    loader = DataLoader(recorder, cache_key_fn=str.lower)
    assert loader.load("A") is loader.load("a")
    await loader.load("a")
    assert recorder.calls == [["A"]]


async def test_subclass_get_cache_key_method_is_used() -> None:
    class CaseInsensitive(DataLoader[str, str]):
        async def batch_load_fn(self, keys: list[str]) -> list[str]:
            return [key.upper() for key in keys]

        def get_cache_key(self, key: str) -> object:
            return key.lower()

    loader = CaseInsensitive()
    assert loader.load("x") is loader.load("X")
    assert await loader.load("x") == "X"


async def test_cache_map_is_used_in_place_keyed_by_cache_key() -> None:
    cache_map: OrderedDict[Any, asyncio.Future[Any]] = OrderedDict()
    recorder = Recorder()
    loader = DataLoader(recorder, cache_map=cache_map, get_cache_key=lambda k: f"key:{k}")
    await loader.load_many([1, 2])
    assert list(cache_map) == ["key:1", "key:2"]
    assert cache_map["key:1"].result() == 1
    loader.clear(1)
    assert list(cache_map) == ["key:2"]
    loader.clear_all()
    assert not cache_map


async def test_js_style_cache_map_with_get_set_delete_clear_is_accepted() -> None:
    class SimpleMap:
        def __init__(self) -> None:
            self.stash: dict[Any, Any] = {}

        def get(self, key: Any) -> Any:
            return self.stash.get(key)

        def set(self, key: Any, value: Any) -> None:
            self.stash[key] = value

        def delete(self, key: Any) -> None:
            del self.stash[key]

        def clear(self) -> None:
            self.stash.clear()

    cache_map = SimpleMap()
    loader, calls = id_loader(cache_map=cache_map)
    await loader.load_many(["a", "b"])
    await loader.load_many(["c", "b"])
    assert list(cache_map.stash) == ["a", "b", "c"]
    loader.clear("b")
    await loader.load("b")
    assert list(cache_map.stash) == ["a", "c", "b"]
    loader.clear_all()
    assert cache_map.stash == {}
    assert calls == [["a", "b"], ["c"], ["b"]]


async def test_mapping_result_resolves_missing_keys_to_none() -> None:
    async def fn(keys: list[int]) -> dict[int, object]:
        return {1: "one", 3: ValueError("three is bad")}

    loader = DataLoader(fn)
    one, two, three = await loader.load_many([1, 2, 3], return_exceptions=True)
    assert one == "one"
    assert two is None
    assert isinstance(three, ValueError)


async def test_tuple_and_generator_results_are_accepted() -> None:
    async def as_tuple(keys: list[int]) -> tuple[int, ...]:
        return tuple(k * 2 for k in keys)

    async def as_generator(keys: list[int]) -> Any:
        return (k * 3 for k in keys)

    assert await DataLoader(as_tuple).load_many([1, 2]) == [2, 4]
    assert await DataLoader(as_generator).load_many([1, 2]) == [3, 6]


async def test_name_defaults_to_none_and_is_settable() -> None:
    async def fn(keys: list[int]) -> list[int]:
        return keys

    class Named(DataLoader[int, int]):
        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            return keys

    assert DataLoader(fn).name is None
    assert Named().name is None
    assert DataLoader(fn, name="users").name == "users"
    assert Named(name="named").name == "named"


async def test_batch_schedule_fn_time_window_batches_across_real_time() -> None:
    loop = asyncio.get_running_loop()
    schedule_calls = 0

    def window(callback: Any) -> None:
        nonlocal schedule_calls
        schedule_calls += 1
        loop.call_later(0.02, callback)

    loader, calls = id_loader(batch_schedule_fn=window)
    first = loader.load(1)
    await asyncio.sleep(0.005)
    second = loader.load(2)
    assert list(await asyncio.gather(first, second)) == [1, 2]
    assert await loader.load(3) == 3
    assert calls == [[1, 2], [3]]
    assert schedule_calls == 2


async def test_batch_schedule_fn_supports_manual_dispatch() -> None:
    pending: list[Any] = []
    loader, calls = id_loader(batch_schedule_fn=pending.append)

    def dispatch() -> None:
        callbacks = pending[:]
        pending.clear()
        for callback in callbacks:
            callback()

    a, b = loader.load("A"), loader.load("B")
    dispatch()
    # Once the callback has run, later loads start a new batch.
    c = loader.load("C")
    await ticks(3)
    assert calls == [["A", "B"]]
    assert not c.done()
    dispatch()
    assert list(await asyncio.gather(a, b, c)) == ["A", "B", "C"]
    loader.load("D")  # never dispatched: cancel_pending settles it
    await loader.cancel_pending()
    assert calls == [["A", "B"], ["C"]]


async def test_calling_the_schedule_callback_twice_dispatches_once() -> None:
    callbacks: list[Any] = []
    loader, calls = id_loader(batch_schedule_fn=callbacks.append)
    future = loader.load(1)
    callbacks[0]()
    callbacks[0]()
    assert await future == 1
    assert calls == [[1]]


async def test_loader_can_load_from_inside_another_batch_function() -> None:
    deep, deep_calls = id_loader()

    async def via_deep(keys: list[str]) -> list[Any]:
        return await deep.load_many(keys)

    a_loader, b_loader = DataLoader(via_deep), DataLoader(via_deep)
    values = await asyncio.gather(
        a_loader.load("A1"), b_loader.load("B1"), a_loader.load("A2"), b_loader.load("B2")
    )
    assert list(values) == ["A1", "B1", "A2", "B2"]
    assert deep_calls == [["A1", "A2", "B1", "B2"]]


async def test_batch_function_as_async_callable_object_and_partial() -> None:
    from functools import partial

    async def scaled(factor: int, keys: list[int]) -> list[int]:
        return [k * factor for k in keys]

    assert await DataLoader(partial(scaled, 10)).load(2) == 20
    assert await DataLoader(Recorder(lambda k: -k)).load(2) == -2


async def test_repr_names_the_loader_and_its_state() -> None:
    loader, _ = id_loader(name="users")
    loader.load(1)
    assert repr(loader) == "<DataLoader name='users' cached=1 queued=1 batches_in_flight=0>"
    await loader.load(1)


async def test_scheduler_that_calls_back_at_once_dispatches_each_load_alone() -> None:
    loader, calls = id_loader(batch_schedule_fn=lambda dispatch: dispatch())
    assert list(await asyncio.gather(loader.load(1), loader.load(2))) == [1, 2]
    assert calls == [[1], [2]]


async def test_scheduler_that_raises_fails_the_load_and_leaves_no_open_batch() -> None:
    attempts = 0

    def flaky_scheduler(dispatch: Any) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("scheduler down")
        asyncio.get_running_loop().call_soon(dispatch)

    loader, calls = id_loader(batch_schedule_fn=flaky_scheduler)
    with pytest.raises(RuntimeError, match="scheduler down"):
        loader.load(1)
    assert await asyncio.wait_for(loader.load(1), 1) == 1
    assert calls == [[1]]


async def test_prime_many_and_clear_many_go_through_the_cache_key() -> None:
    recorder = Recorder()
    loader = DataLoader(recorder, get_cache_key=str.lower)
    loader.prime_many({"A": "primed a", "B": "primed b"})
    assert await loader.load_many(["a", "b"]) == ["primed a", "primed b"]
    loader.clear_many(["A"])
    assert await loader.load_many(["a", "B"]) == ["a", "primed b"]
    assert recorder.calls == [["a"]]
