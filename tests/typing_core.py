"""Checked by mypy --strict and pyright strict (not collected by pytest): the typed forms of
the README quickstart and of a subclass, and the types the public API gives back."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypedDict

from aiodataloader import DataLoader

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value: object, _type: object) -> object:
        return value


class User(TypedDict):
    id: int
    name: str


USERS: dict[int, User] = {1: {"id": 1, "name": "Alice"}, 2: {"id": 2, "name": "Bob"}}


async def fetch_users(user_ids: list[int]) -> list[User | None]:
    return [USERS.get(user_id) for user_id in user_ids]


class UserLoader(DataLoader[int, User | None]):
    max_batch_size = 100
    cache = True

    async def batch_load_fn(self, keys: list[int]) -> list[User | None]:
        return await fetch_users(keys)


async def by_function() -> None:
    loader = DataLoader(fetch_users, name="users")
    assert_type(loader, DataLoader[int, User | None])
    assert_type(loader.load(1), "asyncio.Future[User | None]")
    assert_type(await loader.load(1), User | None)
    assert_type(await loader.load_many([1, 2]), list[User | None])
    settled = await loader.load_many([1, 2], return_exceptions=True)
    assert_type(settled, list[User | BaseException | None])
    same: DataLoader[int, User | None] = loader.prime(3, None).clear(3).clear_all()
    assert same is loader


async def by_subclass() -> None:
    loader = UserLoader(name="users")
    assert_type(loader.prime_many({1: None}), UserLoader)
    assert_type(loader.clear_many([1]), UserLoader)
    user = await loader.load(1)
    if user is not None:
        assert_type(user["name"], str)
    await loader.cancel_pending()
    await loader.cancel_pending(timeout=0.5)
    loader.close("its request has ended")
    loader.close()


async def by_mapping() -> None:
    async def names(keys: list[int]) -> dict[int, str]:
        return {key: str(key) for key in keys}

    loader = DataLoader(names, max_batch_size=50, batch_schedule_fn=None)
    # A key missing from a mapping result resolves to None, and the type says so.
    assert_type(loader, DataLoader[int, str | None])
    assert_type(await loader.load(1), str | None)


class Book(TypedDict):
    id: int
    author_id: int


BOOKS: list[Book] = [{"id": 1, "author_id": 1}, {"id": 2, "author_id": 1}]


async def books_by_author(author_ids: list[int]) -> dict[int, list[Book]]:
    found: dict[int, list[Book]] = {}
    for book in BOOKS:
        if book["author_id"] in author_ids:
            found.setdefault(book["author_id"], []).append(book)
    return found


async def one_to_many() -> None:
    # Annotated: mypy infers ``object`` from a bare ``list`` without the context.
    books: DataLoader[int, list[Book]] = DataLoader(books_by_author, default_factory=list)
    assert_type(await books.load(2), list[Book])
    assert await books.load(2) == []
    assert_type(await books.load_many([1, 2]), list[list[Book]])

    # mypy refuses both of these. (pyright lets them through: it solves the constructor
    # from the annotation first.) Without default_factory the loader does not claim a
    # list for every key...
    lying: DataLoader[int, list[Book]] = DataLoader(books_by_author)  # type: ignore[assignment]
    # ...and a default of another type is refused.
    wrong: DataLoader[int, list[Book]] = DataLoader(books_by_author, default_factory=dict)  # type: ignore[arg-type]
    assert lying is not None
    assert wrong is not None


class BooksByAuthor(DataLoader[int, list[Book]]):
    def __init__(self) -> None:
        super().__init__(default_factory=list)

    async def batch_load_fn(self, keys: list[int]) -> dict[int, list[Book]]:
        return await books_by_author(keys)


async def one_to_many_subclass() -> None:
    assert_type(await BooksByAuthor().load(2), list[Book])


async def main() -> None:
    await by_function()
    await by_mapping()
    await one_to_many()
    await one_to_many_subclass()


if __name__ == "__main__":
    asyncio.run(main())
