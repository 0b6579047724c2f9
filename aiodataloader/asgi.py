"""Request-scoped DataLoaders for any ASGI app (Starlette, FastAPI, GraphQL servers).

``LoaderMiddleware`` gives every ``http`` request and every ``websocket`` connection its own
lazy ``Loaders`` container, and tears it down once the response has been fully sent.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar, cast

import anyio
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from aiodataloader import DataLoader

__all__ = [
    "LoaderFactory",
    "LoaderMiddleware",
    "LoaderRegistry",
    "Loaders",
    "current_loaders",
    "get_loaders",
]

logger = logging.getLogger("aiodataloader")

L = TypeVar("L", bound=DataLoader[Any, Any])

#: ``factory(conn)`` builds one loader for the request or websocket connection ``conn``.
LoaderFactory = Callable[[HTTPConnection], L]

# A top-level scope key, not scope["state"]: lifespan state is shared (shallow-copied) between
# requests on some servers and leaked across keep-alive requests on others.
_SCOPE_KEY = "aiodataloader.loaders"
_current_loaders: ContextVar[Loaders | None] = ContextVar("aiodataloader.loaders", default=None)

_NOT_INSTALLED = (
    "No Loaders container for this {where}: LoaderMiddleware is not installed. Install it with "
    "`app.add_middleware(LoaderMiddleware, registry=registry)` "
    "(from aiodataloader.asgi import LoaderMiddleware), or "
    "`Starlette(middleware=[Middleware(LoaderMiddleware, registry=registry)])`. "
    "Middleware added later wraps it, so code that needs loaders must run inside it."
)


def _check_loader_class(loader_cls: object) -> None:
    if not (isinstance(loader_cls, type) and issubclass(loader_cls, DataLoader)):
        raise TypeError(f"expected a DataLoader subclass, got {loader_cls!r}")


def _default_factory(loader_cls: type[L]) -> Callable[[HTTPConnection], L]:
    """The class itself, if it can be built without arguments."""
    try:
        inspect.signature(loader_cls).bind()
        builds_without_args = callable(getattr(loader_cls, "batch_load_fn", None))
    except TypeError:
        builds_without_args = False
    except ValueError:  # no signature to inspect: let the call decide
        builds_without_args = True
    if not builds_without_args:
        name = loader_cls.__name__
        raise TypeError(
            f"{name} cannot be built without arguments: register a factory for it with "
            f"`LoaderRegistry.register({name}, lambda conn: {name}(...))`"
        )
    return lambda conn: loader_cls()


class LoaderRegistry:
    """How to build each loader class: ``register(loader_cls, factory)``.

    A DataLoader subclass whose constructor needs no arguments is its own factory and needs no
    registration.
    """

    def __init__(self) -> None:
        self._factories: dict[type[DataLoader[Any, Any]], Callable[[HTTPConnection], Any]] = {}

    def register(
        self, loader_cls: type[L], factory: Callable[[HTTPConnection], L] | None = None
    ) -> None:
        """Build ``loader_cls`` with ``factory(conn)`` (sync); registering again replaces it."""
        _check_loader_class(loader_cls)
        if factory is None:
            factory = _default_factory(loader_cls)
        elif not callable(factory):
            raise TypeError(
                f"factory for {loader_cls.__name__} must be callable as factory(conn), "
                f"got {factory!r}"
            )
        self._factories[loader_cls] = factory

    def factory_for(self, loader_cls: type[L]) -> Callable[[HTTPConnection], L]:
        """The registered factory, or the class itself if it needs no arguments."""
        _check_loader_class(loader_cls)
        factory = self._factories.get(loader_cls)
        if factory is None:
            # Remembered so the signature is inspected once per class, not once per request.
            factory = self._factories[loader_cls] = _default_factory(loader_cls)
        return factory

    def __contains__(self, loader_cls: object) -> bool:
        return cast(Any, loader_cls) in self._factories


class Loaders:
    """The loaders of one request or websocket connection, each built on first use.

    ``LoaderMiddleware`` makes one per request. ``async with Loaders(conn, registry)`` makes a
    shorter scope of your own, e.g. one per websocket message or GraphQL subscription event.
    """

    __slots__ = ("__weakref__", "_conn", "_loaders", "registry")

    def __init__(self, conn: HTTPConnection, registry: LoaderRegistry | None = None) -> None:
        self.registry = registry if registry is not None else LoaderRegistry()
        self._conn: HTTPConnection | None = conn
        self._loaders: dict[type[DataLoader[Any, Any]], DataLoader[Any, Any]] = {}

    def get(self, loader_cls: type[L]) -> L:
        """This request's ``loader_cls`` instance, built by its factory on first use."""
        loader = self._loaders.get(loader_cls)
        if loader is not None:
            return loader  # type: ignore[return-value]  # keyed by its own class
        factory = self.registry.factory_for(loader_cls)
        if self._conn is None:
            raise RuntimeError(
                f"cannot build {loader_cls.__name__}: the request of this Loaders has ended "
                "and it was torn down; loaders must not outlive the request that built them"
            )
        loader = factory(self._conn)
        if not isinstance(loader, loader_cls):
            raise TypeError(
                f"the factory for {loader_cls.__name__} returned {loader!r}, "
                f"not a {loader_cls.__name__} instance"
            )
        self._loaders[loader_cls] = loader
        return loader

    def clear_all(self) -> None:
        """Clear every built loader's cache, e.g. after a mutation or between messages."""
        for loader in self._loaders.values():
            loader.clear_all()

    def __len__(self) -> int:
        return len(self._loaders)

    def __repr__(self) -> str:
        names = ", ".join(cls.__name__ for cls in self._loaders)
        return f"<Loaders [{names}]{' closed' if self._conn is None else ''}>"

    async def __aenter__(self) -> Loaders:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Tear down, newest loader first: ``cancel_pending()``, ``clear_all()``, ``aclose()``.

        Shielded from cancellation. A failing step is logged on the ``aiodataloader`` logger and
        does not stop the others.
        """
        self._conn = None  # also breaks the scope -> Loaders -> connection -> scope cycle
        if not self._loaders:
            return
        loaders = list(self._loaders.values())
        self._loaders.clear()
        escaped: BaseException | None = None
        with anyio.CancelScope(shield=True):
            for loader in reversed(loaders):
                for step in ("cancel_pending", "clear_all", "aclose"):
                    try:
                        method = getattr(loader, step, None)
                        if method is None:
                            continue
                        result = method()
                        if inspect.isawaitable(result):
                            await result
                    except Exception:
                        logger.exception("%s() of %r failed during teardown", step, loader)
                    except BaseException as error:
                        # e.g. a CancelledError raised by the loader itself: finish the others,
                        # then let it through.
                        logger.exception("%s() of %r failed during teardown", step, loader)
                        escaped = escaped or error
        if escaped is not None:
            raise escaped


class LoaderMiddleware:
    """Pure ASGI middleware: one ``Loaders`` per ``http`` request and ``websocket`` connection.

    The container is torn down after the app returns, i.e. after the last body chunk and every
    BackgroundTasks task, on every exit path. Other scope types (lifespan) pass through.
    """

    def __init__(self, app: ASGIApp, registry: LoaderRegistry | None = None) -> None:
        self.app = app
        self.registry = registry if registry is not None else LoaderRegistry()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loaders = Loaders(HTTPConnection(scope), self.registry)
        # A nested LoaderMiddleware (e.g. around a mounted GraphQL app) hands the outer
        # container back when it is done.
        outer = scope.get(_SCOPE_KEY)
        scope[_SCOPE_KEY] = loaders
        token = _current_loaders.set(loaders)
        try:
            await self.app(scope, receive, send)
        except BaseException:
            # A teardown error is logged by aclose(); it never replaces the app's own error.
            with contextlib.suppress(BaseException):
                await loaders.aclose()
            raise
        else:
            await loaders.aclose()
        finally:
            _current_loaders.reset(token)
            if outer is not None:
                scope[_SCOPE_KEY] = outer


def get_loaders(conn: HTTPConnection) -> Loaders:
    """The ``Loaders`` of this request or websocket connection (a Request, WebSocket, ...)."""
    loaders: Loaders | None = conn.scope.get(_SCOPE_KEY)
    if loaders is None:
        raise RuntimeError(_NOT_INSTALLED.format(where="connection"))
    return loaders


def current_loaders() -> Loaders:
    """The ``Loaders`` of the request being handled, from anywhere inside it (e.g. resolvers)."""
    loaders = _current_loaders.get()
    if loaders is None:
        raise RuntimeError(
            _NOT_INSTALLED.format(where="context")
            + " current_loaders() only works while a request is being handled."
        )
    return loaders
