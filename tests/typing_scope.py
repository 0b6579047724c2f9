# pyright: strict, reportUnnecessaryTypeIgnoreComment=true
"""Checked by mypy --strict and pyright strict: user code of the request scope type-checks,
for every factory shape, ``get``/``aget``, ``get_resource`` and ``RequestLoaders``.

The ``# type: ignore[...]`` lines must be rejected by both checkers, since an unneeded ignore
is an error for both. Pyright widens the class's type to accept a factory of another type
(``T`` becomes a union), so the checks only mypy makes are in tests/typing_scope_mypy.py.

tests/test_fastapi_loader.py runs the app below, so nothing here rots.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection, Request

from aiodataloader import DataLoader
from aiodataloader.asgi import (
    LoaderFactory,
    LoaderMiddleware,
    LoaderRegistry,
    Loaders,
    current_loaders,
    loaders_from,
)
from aiodataloader.fastapi import RequestLoaders, get_loader, get_resource

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value: object, expected: object) -> object:
        return value


class Session:
    def __init__(self, name: str = "session") -> None:
        self.name = name
        self.closed = False


class CurrentUser:
    def __init__(self, name: str) -> None:
        self.name = name


class Tenant:
    def __init__(self, name: str) -> None:
        self.name = name


class Clock:
    pass


class Ledger:
    pass


class Cache:
    pass


class Names(DataLoader[int, str]):
    def __init__(self, session: Session, user: CurrentUser) -> None:
        super().__init__()
        self.session = session
        self.user = user

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"{self.user.name}@{self.session.name}:{k}" for k in keys]


class Tags(DataLoader[int, list[str]]):
    async def batch_load_fn(self, keys: list[int]) -> list[list[str]]:
        return [[f"tag{k}"] for k in keys]


# Every factory shape.
async def session_factory(scope: Loaders) -> AsyncIterator[Session]:  # async generator
    session = Session()
    try:
        yield session
    finally:
        session.closed = True


def current_user(scope: Loaders) -> CurrentUser:  # sync, reads the connection
    return CurrentUser(scope.connection.headers.get("x-user", "anonymous"))


def tenant(conn: Request) -> Tenant:  # 0.5.0 style: annotated with the connection
    return Tenant(conn.url.hostname or "")


def clock() -> Iterator[Clock]:  # generator, no argument
    yield Clock()


@contextlib.asynccontextmanager
async def ledger(scope: Loaders) -> AsyncGenerator[Ledger]:  # returns an async context manager
    yield Ledger()


async def names(scope: Loaders) -> Names:  # async, asks for resources
    return Names(await scope.aget(Session), scope.get(CurrentUser))


cache_factory: LoaderFactory[Cache] = lambda: contextlib.nullcontext(Cache())  # noqa: E731

registry = LoaderRegistry()
registry.register(Session, session_factory)
registry.register(CurrentUser, current_user)
registry.register(Tenant, tenant)
registry.register(Clock, clock)
registry.register(Ledger, ledger)
registry.register(Cache, cache_factory)
registry.register(Names, names)
registry.register(Tags)
registry.register(Tags, lambda scope: Tags())
registry.register(Tags, lambda: Tags(), enter=False)

app = FastAPI()
app.add_middleware(LoaderMiddleware, registry=registry, teardown_timeout=2.0)

SessionDep = Annotated[Session, Depends(get_resource(Session))]
NamesDep = Annotated[Names, Depends(get_loader(Names))]


@app.get("/names/{key}")
async def read_name(
    key: int, session: SessionDep, names: NamesDep, scope: RequestLoaders
) -> dict[str, Any]:
    return {
        "name": await names.load(key),
        "shared": names.session is session,
        "tenant": (await scope.aget(Tenant)).name,
        "tags": await (await scope.aget(Tags)).load(key),
        "built": [
            type(scope.get(Clock)).__name__,
            type(await scope.aget(Ledger)).__name__,
            type(scope.get(Cache)).__name__,
        ],
    }


async def typed_surface(conn: HTTPConnection) -> None:
    """Never called: only its types matter."""
    scope = loaders_from(conn)
    assert_type(scope, Loaders)
    assert_type(scope.get(Tags), Tags)
    assert_type(await scope.aget(Session), Session)
    assert_type(await current_loaders().aget(Names), Names)
    assert_type(scope.connection, HTTPConnection)
    assert_type(get_resource(Session), Callable[[HTTPConnection], Coroutine[Any, Any, Session]])
    assert_type(get_loader(Names), Callable[[HTTPConnection], Coroutine[Any, Any, Names]])
    with registry.override(Names, lambda scope: Names(Session("fake"), CurrentUser("test"))):
        pass
    async with Loaders(conn, registry) as own:
        assert_type(own, Loaders)

    # Both checkers reject these.
    get_loader(Session)  # type: ignore[type-var]
    scope.get("Session")  # type: ignore[arg-type]
    registry.register(Session, two_parameters)  # type: ignore[arg-type]
    registry.register(Session, 42)  # type: ignore[call-overload]
    registry.register(Session, lambda scope: Session(scope.headers))  # type: ignore[attr-defined]


def two_parameters(scope: Loaders, other: Loaders) -> Session:
    return Session()
