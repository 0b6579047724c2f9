"""The README's request-scope examples, run: each ``# region NAME`` is a README code block,
byte for byte (tests/test_readme.py checks), on a real SQLAlchemy 2.0 session (SQLite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry, Loaders, current_loaders
from aiodataloader.fastapi import RequestLoaders, get_loader, get_resource

from .asgi_client import asgi_client

pytestmark = pytest.mark.anyio


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


engine = create_async_engine("sqlite+aiosqlite://")
sessionmaker = async_sessionmaker(engine, expire_on_commit=False)


# region resources-and-factories
class CurrentUser:
    def __init__(self, name: str) -> None:
        self.name = name


class UserLoader(DataLoader[int, User | None]):
    def __init__(self, session: AsyncSession) -> None:
        super().__init__()
        self.session = session

    async def batch_load_fn(self, keys: list[int]) -> list[User | None]:
        rows = await self.session.scalars(select(User).where(User.id.in_(keys)))
        by_id = {user.id: user for user in rows}
        return [by_id.get(key) for key in keys]


async def session_factory(scope: Loaders) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:  # closed at teardown, after the response
        yield session


async def users(scope: Loaders) -> UserLoader:
    return UserLoader(await scope.aget(AsyncSession))  # the request's one session


registry = LoaderRegistry()
registry.register(AsyncSession, session_factory)
registry.register(CurrentUser, lambda scope: CurrentUser(scope.connection.headers["x-user"]))
registry.register(UserLoader, users)
# endregion


# region fastapi-resources
SessionDep = Annotated[AsyncSession, Depends(get_resource(AsyncSession))]
UserLoaderDep = Annotated[UserLoader, Depends(get_loader(UserLoader))]

app = FastAPI()
app.add_middleware(LoaderMiddleware, registry=registry)


@app.post("/users/{user_id}/rename")
async def rename(
    user_id: int, name: str, session: SessionDep, users: UserLoaderDep, scope: RequestLoaders
) -> dict[str, str | None]:
    assert users.session is session  # one session per request, endpoint and loaders alike
    user = await users.load(user_id)
    if user is None:
        return {"name": None}
    user.name = name
    await session.commit()
    editor = await scope.aget(CurrentUser)
    return {"name": user.name, "by": editor.name}


# anywhere inside a request, e.g. a Strawberry resolver:
async def user_name(user_id: int) -> str | None:
    user = await (await current_loaders().aget(UserLoader)).load(user_id)
    return user.name if user else None


# endregion


@app.get("/users/{user_id}/name")
async def read_name(user_id: int) -> str | None:
    return await user_name(user_id)


@pytest.fixture(autouse=True)
async def database() -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with sessionmaker() as session:
        session.add_all([User(id=1, name="ada"), User(id=2, name="grace")])
        await session.commit()
    yield
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)


async def test_resources_and_fastapi() -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/users/1/rename", params={"name": "lovelace"}, headers={"x-user": "admin"}
        )
        assert response.json() == {"name": "lovelace", "by": "admin"}
        response = await client.post(
            "/users/9/rename", params={"name": "x"}, headers={"x-user": "a"}
        )
        assert response.json() == {"name": None}
        assert (await client.get("/users/2/name")).json() == "grace"
    async with sessionmaker() as session:
        assert (await session.get(User, 1)).name == "lovelace"  # type: ignore[union-attr]


async def test_testing_with_override() -> None:
    # region override
    class FakeUsers(UserLoader):
        async def batch_load_fn(self, keys: list[int]) -> list[User | None]:
            return [User(id=key, name=f"fake{key}") for key in keys]

    async def fake_users(scope: Loaders) -> UserLoader:
        return FakeUsers(await scope.aget(AsyncSession))

    # Reaches Depends(get_loader(...)), loaders_from() and current_loaders() alike:
    with registry.override(UserLoader, fake_users):
        async with asgi_client(app) as client:
            response = await client.post(
                "/users/5/rename", params={"name": "z"}, headers={"x-user": "t"}
            )
    assert response.json() == {"name": "z", "by": "t"}
    # endregion
    async with asgi_client(app) as client:  # restored afterwards
        response = await client.post(
            "/users/5/rename", params={"name": "z"}, headers={"x-user": "t"}
        )
    assert response.json() == {"name": None}


async def test_a_scope_of_your_own() -> None:
    # region own-scope
    async with Loaders(registry=registry) as scope:  # e.g. one per websocket message
        loader = await scope.aget(UserLoader)
        user = await loader.load(2)
        assert user is not None
        assert user.name == "grace"
    # torn down: the session is closed, and the loader refuses new loads
    with pytest.raises(RuntimeError, match="its request has ended"):
        loader.load(2)
    # endregion
