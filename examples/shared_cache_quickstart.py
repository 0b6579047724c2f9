"""A loader whose values outlive the request: shared by every worker through Redis.

python examples/shared_cache_quickstart.py [redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from aiodataloader import DataLoader
from aiodataloader.redis import RedisCache
from aiodataloader.serialization import MsgspecSerializer


@dataclass(frozen=True)
class User:
    id: int
    name: str


DATABASE = {1: User(1, "Ada"), 2: User(2, "Grace")}
QUERIES: list[list[int]] = []


class UserLoader(DataLoader[int, User | None]):
    async def batch_load_fn(self, keys: list[int]) -> list[User | None]:
        QUERIES.append(keys)
        return [DATABASE.get(key) for key in keys]


async def main(redis_url: str, key_prefix: str = "quickstart:") -> None:
    # One RedisCache per process (open it in the app's lifespan); one value cache per loader.
    async with RedisCache.from_url(redis_url, key_prefix=key_prefix) as shared:
        users = shared.for_loader(
            "users", version=1, ttl=300, serializer=MsgspecSerializer[User | None](User | None)
        )

        first_request = UserLoader(value_cache=users)
        print(await first_request.load_many([1, 2]))  # the database, then Redis
        await asyncio.sleep(0.05)  # the write back runs right after the loads are settled

        second_request = UserLoader(value_cache=users)  # any worker, any host
        print(await second_request.load(1))  # Redis: no query
        print(f"queries: {QUERIES}")

        DATABASE[1] = User(1, "Ada Lovelace")  # a write, committed...
        await second_request.invalidate(1)  # ...then every worker forgets the old value
        print(await UserLoader(value_cache=users).load(1))
        print(f"queries: {QUERIES}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
