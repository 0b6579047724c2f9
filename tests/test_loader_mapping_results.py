"""A batch function may return a mapping from key to value; default_factory says what a key
missing from it resolves to (None, as in 0.4.3, without one)."""

from __future__ import annotations

import asyncio

import pytest

from aiodataloader import DataLoader

pytestmark = pytest.mark.anyio

BOOKS_BY_AUTHOR = {1: ["Dune", "Children of Dune"], 2: ["Solaris"]}


async def books_by_author(author_ids: list[int]) -> dict[int, list[str] | Exception]:
    found: dict[int, list[str] | Exception] = {
        key: list(BOOKS_BY_AUTHOR[key]) for key in author_ids if key in BOOKS_BY_AUTHOR
    }
    if 13 in author_ids:
        found[13] = ValueError("author 13 is withheld")
    return found


async def test_a_missing_key_resolves_to_none_by_default() -> None:
    loader = DataLoader(books_by_author)
    assert await loader.load_many([1, 3]) == [["Dune", "Children of Dune"], None]


async def test_a_missing_key_resolves_to_a_new_default_each() -> None:
    loader: DataLoader[int, list[str]] = DataLoader(books_by_author, default_factory=list)
    first, second, found = await loader.load_many([3, 4, 2])
    assert (first, second, found) == ([], [], ["Solaris"])
    first.append("mine")
    assert second == []  # one new default per key, never shared
    with pytest.raises(ValueError, match="withheld"):
        await loader.load(13)  # an exception in the mapping still rejects its key


async def test_default_factory_is_not_used_for_a_list_result() -> None:
    calls: list[int] = []

    def counted_default() -> int:
        calls.append(1)
        return -1

    async def doubles(keys: list[int]) -> list[int]:
        return [key * 2 for key in keys]

    loader = DataLoader(doubles, default_factory=counted_default)
    assert await loader.load_many([1, 2]) == [2, 4]
    assert calls == []


async def test_a_failing_default_factory_rejects_the_batch_and_is_not_cached() -> None:
    broken = True

    def default() -> list[str]:
        if broken:
            raise LookupError("no default today")
        return []

    loader: DataLoader[int, list[str]] = DataLoader(books_by_author, default_factory=default)
    results = await asyncio.gather(loader.load(1), loader.load(3), return_exceptions=True)
    assert all(isinstance(result, LookupError) for result in results)
    broken = False
    assert await loader.load_many([1, 3]) == [["Dune", "Children of Dune"], []]


async def test_a_subclass_passes_default_factory_to_the_constructor() -> None:
    class BooksByAuthor(DataLoader[int, list[str]]):
        def __init__(self) -> None:
            super().__init__(default_factory=list, name="books")

        async def batch_load_fn(self, keys: list[int]) -> dict[int, list[str]]:
            return {key: list(BOOKS_BY_AUTHOR[key]) for key in keys if key in BOOKS_BY_AUTHOR}

    assert await BooksByAuthor().load_many([2, 9]) == [["Solaris"], []]


def test_default_factory_must_be_callable() -> None:
    with pytest.raises(
        TypeError,
        match=r"^DataLoader\(name='books'\): default_factory must be a callable or None; "
        r"got \[\] \(type list\)$",
    ):
        DataLoader(books_by_author, default_factory=[], name="books")  # type: ignore[call-overload]
