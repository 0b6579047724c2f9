"""FastAPI glue: ``Annotated[UserLoader, Depends(get_loader(UserLoader))]``.

Needs ``LoaderMiddleware`` (from ``aiodataloader.asgi``) on the app.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency's annotations at runtime.
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection

from aiodataloader import DataLoader
from aiodataloader.asgi import get_loaders

__all__ = ["get_loader"]

L = TypeVar("L", bound=DataLoader[Any, Any])

LoaderDependency = Callable[[HTTPConnection], Coroutine[Any, Any, L]]

# One dependency per class, forever: FastAPI caches dependencies per request and looks up
# dependency_overrides by the callable's identity, so a new closure per call would build a
# second loader (no shared batching) and make overrides silently miss.
_dependencies: dict[type[DataLoader[Any, Any]], Callable[[HTTPConnection], Any]] = {}


def get_loader(loader_cls: type[L]) -> LoaderDependency[L]:
    """The FastAPI dependency that returns this request's ``loader_cls`` instance.

    The same callable for the same class every time, so use it as the key of
    ``app.dependency_overrides`` in tests. Its only parameter is the ``HTTPConnection``: it adds
    nothing to the OpenAPI schema and works on websocket routes.
    """
    cached = _dependencies.get(loader_cls)
    if cached is not None:
        return cached
    given = cast(object, loader_cls)  # callers without a type checker pass anything
    if not (isinstance(given, type) and issubclass(given, DataLoader)):
        raise TypeError(f"expected a DataLoader subclass, got {given!r}")

    # async, so FastAPI calls it on the event loop instead of a worker thread.
    async def dependency(conn: HTTPConnection) -> Any:
        return get_loaders(conn).get(loader_cls)

    dependency.__name__ = dependency.__qualname__ = f"get_loader({loader_cls.__name__})"
    return _dependencies.setdefault(loader_cls, dependency)
