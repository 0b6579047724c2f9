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
    assert_type(await loader.load(1), str)


if __name__ == "__main__":
    asyncio.run(by_function())
