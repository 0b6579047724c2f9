# pyright: strict, reportUnnecessaryTypeIgnoreComment=true
"""Checked by mypy --strict and pyright strict: the typed surface of aiodataloader.fastapi/asgi.

Also a real app: tests/test_fastapi_loader.py imports and runs it, so nothing here rots.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, WebSocket
from starlette.requests import HTTPConnection

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, current_loaders, loaders_from
from aiodataloader.fastapi import get_loader

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value: object, expected: object) -> object:
        return value


class UserLoader(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"user{k}" for k in keys]


class PostLoader(DataLoader[int, list[str]]):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    async def batch_load_fn(self, keys: list[int]) -> list[list[str]]:
        return [[f"{self.prefix}{k}"] for k in keys]


registry = LoaderRegistry()
registry.register(
    PostLoader, lambda scope: PostLoader(scope.connection.headers.get("x-prefix", "post"))
)

app = FastAPI()
app.add_middleware(LoaderMiddleware, registry=registry)

UserLoaderDep = Annotated[UserLoader, Depends(get_loader(UserLoader))]


@app.get("/users/{user_id}")
async def read_user(
    user_id: int,
    users: UserLoaderDep,
    posts: Annotated[PostLoader, Depends(get_loader(PostLoader))],
) -> dict[str, Any]:
    return {"name": await users.load(user_id), "posts": await posts.load(user_id)}


@app.websocket("/ws")
async def user_names(websocket: WebSocket, users: UserLoaderDep) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(await users.load(int(text)))


def typed_surface(conn: HTTPConnection) -> None:
    """Never called: only its types matter."""
    dependency = get_loader(UserLoader)
    assert_type(dependency, Callable[[HTTPConnection], Coroutine[Any, Any, UserLoader]])
    assert_type(loaders_from(conn).get(PostLoader), PostLoader)
    assert_type(current_loaders().get(UserLoader), UserLoader)
    # Both checkers must reject these: an unneeded ignore is an error for both.
    get_loader(int)  # type: ignore[type-var]
    loaders_from(conn).get("UserLoader")  # type: ignore[arg-type]
