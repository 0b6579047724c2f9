"""DataLoaders in a plain Starlette app (no FastAPI): ``loaders_from(request).get(...)``.

uvicorn examples.starlette_minimal:app
curl 'http://127.0.0.1:8000/users?ids=1,2,3'    # 3 users, 1 batch call
"""

import asyncio

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, loaders_from

USERS = {1: "Ada Lovelace", 2: "Grace Hopper", 3: "Barbara Liskov"}  # stands in for a database


class UserLoader(DataLoader[int, str | None]):
    def __init__(self, users: dict[int, str]) -> None:
        super().__init__()
        self.users = users

    async def batch_load_fn(self, keys: list[int]) -> list[str | None]:
        return [self.users.get(key) for key in keys]


registry = LoaderRegistry()
# A factory gets nothing, or the request's container (its resources, and the connection as
# scope.connection). A loader whose constructor needs no arguments needs no registration.
registry.register(UserLoader, lambda: UserLoader(USERS))


async def list_users(request: Request) -> JSONResponse:
    try:
        ids = [int(part) for part in request.query_params.get("ids", "").split(",") if part]
    except ValueError:
        return JSONResponse({"detail": "ids must be comma-separated integers"}, status_code=422)
    users = loaders_from(request).get(UserLoader)  # the same instance for the whole request
    names = await asyncio.gather(*(users.load(user_id) for user_id in ids))
    return JSONResponse([{"id": i, "name": name} for i, name in zip(ids, names, strict=True)])


app = Starlette(
    routes=[Route("/users", list_users)],
    middleware=[Middleware(LoaderMiddleware, registry=registry)],
)
