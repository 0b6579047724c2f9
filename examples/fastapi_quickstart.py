"""The README's FastAPI quickstart: one ``UserLoader`` per request, one query per batch.

uvicorn examples.fastapi_quickstart:app
curl 'http://127.0.0.1:8000/users?ids=1&ids=2&ids=3'    # 3 users, 1 batch call
"""

import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware
from aiodataloader.fastapi import get_loader

USERS = {1: "Ada Lovelace", 2: "Grace Hopper", 3: "Barbara Liskov"}  # stands in for a database


class UserLoader(DataLoader[int, str | None]):
    async def batch_load_fn(self, keys: list[int]) -> dict[int, str]:
        # One query for every key loaded in the same tick: SELECT ... WHERE id IN (keys).
        # Keys missing from the returned mapping resolve to None.
        return {key: USERS[key] for key in keys if key in USERS}


app = FastAPI()
app.add_middleware(LoaderMiddleware)  # a new, empty set of loaders for every request

Users = Annotated[UserLoader, Depends(get_loader(UserLoader))]


@app.get("/users/{user_id}")
async def read_user(user_id: int, users: Users) -> dict[str, int | str]:
    name = await users.load(user_id)
    if name is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    return {"id": user_id, "name": name}


@app.get("/users")
async def read_users(
    users: Users, ids: Annotated[list[int], Query(max_length=100)]
) -> list[dict[str, int | str | None]]:
    # Each load() is separate, yet all of them are answered by one batch_load_fn call.
    names = await asyncio.gather(*(users.load(user_id) for user_id in ids))
    return [{"id": user_id, "name": name} for user_id, name in zip(ids, names, strict=True)]
