import asyncio

from aiodataloader import DataLoader


async def fetch_users_from_db(user_ids: list[int]) -> list[dict | None]:
    print(f"Fetching users with IDs: {user_ids}")
    await asyncio.sleep(0.01)
    users_data = {
        1: {"id": 1, "name": "Alice"},
        2: {"id": 2, "name": "Bob"},
        3: {"id": 3, "name": "Charlie"},
    }
    return [users_data.get(uid) for uid in user_ids]


class UserLoader(DataLoader):
    def __init__(self):
        super().__init__(self.batch_load_fn)

    async def batch_load_fn(self, keys: list[int]) -> list[dict | None]:
        return await fetch_users_from_db(keys)


async def main():
    user_loader = UserLoader()
    user1, user2, user3 = await asyncio.gather(
        user_loader.load(1), user_loader.load(2), user_loader.load(1)
    )
    print(user1, user2, user3)
    print(await user_loader.load_many([2, 3, 4]))


asyncio.run(main())
