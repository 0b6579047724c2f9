"""FastAPI glue: the request's loaders and resources as dependencies.

    users: Annotated[UserLoader, Depends(get_loader(UserLoader))]
    session: Annotated[AsyncSession, Depends(get_resource(AsyncSession))]
    scope: RequestLoaders

Needs ``LoaderMiddleware`` (from ``aiodataloader.asgi``) on the app. A resource is the very
object that the request's loader factories get from the container: one session per request.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations at runtime.
import inspect
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

try:
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ImportError as error:  # pragma: no cover - depends on the environment
    from aiodataloader._extras import missing_extra

    raise missing_extra("aiodataloader.fastapi", "FastAPI", "fastapi", error) from error

from aiodataloader.asgi import Loaders, check_registrable, loaders_from
from aiodataloader.loader import DataLoader

__all__ = ["RequestLoaders", "get_loader", "get_resource"]

T = TypeVar("T")
L = TypeVar("L", bound=DataLoader[Any, Any])

#: A FastAPI dependency: ``async def dependency(conn: HTTPConnection) -> T``.
Dependency = Callable[[HTTPConnection], Coroutine[Any, Any, T]]

# One dependency per class, forever: FastAPI caches dependencies per request and looks up
# dependency_overrides by the callable's identity, so a new closure per call would build a
# second instance (no shared batching) and make overrides silently miss.
_dependencies: dict[type[Any], Callable[[HTTPConnection], Any]] = {}


def _dependency_for(cls: type[Any], maker: str) -> Callable[[HTTPConnection], Any]:
    cached = _dependencies.get(cls)
    if cached is not None:
        return cached

    # async, so FastAPI calls it on the event loop instead of a worker thread; its only
    # parameter is the connection: nothing in the OpenAPI schema, and websockets work.
    async def dependency(conn: HTTPConnection) -> Any:
        return await loaders_from(conn).aget(cls)

    dependency.__name__ = dependency.__qualname__ = f"{maker}({cls.__name__})"
    return _dependencies.setdefault(cls, dependency)


class _DependencyMaker:
    """``get_loader`` / ``get_resource``: call it with the class to get the dependency.

    FastAPI reads a dependency's signature when the route is declared; this one refuses to
    have one, so ``Depends(get_loader)`` fails there with the right form in the message.
    """

    def __init__(self, name: str, loaders_only: bool, example: str) -> None:
        self.__name__ = self.__qualname__ = name
        self._loaders_only = loaders_only
        self._example = example

    @property
    def __signature__(self) -> inspect.Signature:
        raise TypeError(
            f"{self.__name__} makes a dependency: call it with the class, "
            f"`Depends({self.__name__}({self._example}))`, not `Depends({self.__name__})`"
        )

    def __repr__(self) -> str:
        return f"<aiodataloader.fastapi.{self.__name__}>"

    def make(self, cls: type[Any]) -> Callable[[HTTPConnection], Any]:
        cached = _dependencies.get(cls)
        if cached is not None:
            return cached
        check_registrable(cls, loader=self._loaders_only)
        return _dependency_for(cls, self.__name__)


class _GetLoader(_DependencyMaker):
    def __call__(self, loader_cls: type[L]) -> Dependency[L]:
        """The dependency that returns this request's ``loader_cls`` instance.

        The same callable for the same class every time, so use it as the key of
        ``app.dependency_overrides`` (or, for every access path, ``registry.override``).
        """
        return self.make(loader_cls)


class _GetResource(_DependencyMaker):
    def __call__(self, cls: type[T]) -> Dependency[T]:
        """The dependency that returns this request's ``cls`` resource, the very object the
        request's loader factories get with ``scope.aget(cls)``."""
        return self.make(cls)


get_loader = _GetLoader("get_loader", True, "UserLoader")
get_resource = _GetResource("get_resource", False, "AsyncSession")


async def _request_loaders(conn: HTTPConnection) -> Loaders:
    return loaders_from(conn)


#: The request's ``Loaders`` container as a parameter: ``async def f(scope: RequestLoaders)``.
RequestLoaders = Annotated[Loaders, Depends(_request_loaders)]
