"""The request scope for any ASGI app (Starlette, FastAPI, GraphQL servers).

``LoaderRegistry`` says how to build each loader and each resource a request needs (a database
session, the current user); ``LoaderMiddleware`` gives every ``http`` request and every
``websocket`` connection its own lazy container, ``Loaders``, and tears it down once the
response has been fully sent.

Design, and what was rejected:

- Registry and container are separate (as in svcs): the registry lives as long as the app,
  the container as long as a request. Factories receive the container (or nothing), so a
  loader's factory asks for the request's session with ``await scope.aget(AsyncSession)``.
  Rejected: factories that receive the ``HTTPConnection`` only (0.5.0), which cannot reach
  anything else of the request; and dependency injection by parameter types (dishka), more
  machinery than a loader needs.
- ``get`` builds with sync factories only and ``aget`` with any, like svcs; one ``get`` that
  blocks on async factories cannot exist in a running loop. Concurrent ``aget`` of one class
  builds it once (svcs builds twice).
- Generator factories are ``contextlib`` context managers, and a returned context manager is
  entered (``enter=True``): one teardown shape for every resource, run with the request's
  error, as FastAPI's dependencies with ``yield`` are.
- The whole teardown lives in the container (``aclose`` / ``async with``), so a scope of the
  user's own gets the same rules as the middleware's: newest first, loaders and resources
  together; bounded by ``teardown_timeout``; errors logged, never replacing the app's error;
  complete even under a native ``Task.cancel()``. Steps that may await run in a task of their
  own, awaited in a loop that outlasts the cancellation (a task can be abandoned, an
  ``await`` in the request's task cannot); steps that do not await run inline, because a
  task per request would cost more than the whole middleware.
- The container is found through a private scope key and a context variable, never
  ``scope["state"]``, which some servers share between requests. ``send`` runs outside our
  context, so a task the server starts in it (the next pipelined request) does not inherit it.
- Tests swap factories with ``registry.override(cls, factory)``, which every access path sees.
  FastAPI's ``app.dependency_overrides`` replaces only what FastAPI injects.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from contextvars import ContextVar, copy_context
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, cast, overload

try:
    import anyio
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"aiodataloader.asgi needs Starlette ({error}): install the `asgi` extra, "
        "e.g. pip install 'aiodataloader[asgi]' (or '.[asgi]' from a clone)"
    ) from error

from aiodataloader.loader import DataLoader

__all__ = [
    "LoaderFactory",
    "LoaderMiddleware",
    "LoaderRegistry",
    "Loaders",
    "current_loaders",
    "get_loaders",
    "loaders_from",
]

logger = logging.getLogger("aiodataloader")

T = TypeVar("T")
L = TypeVar("L", bound=DataLoader[Any, Any])
ConnectionT = TypeVar("ConnectionT", bound=HTTPConnection)

DEFAULT_TEARDOWN_TIMEOUT: Final = 5.0

# A top-level scope key, not scope["state"]: lifespan state is shared (shallow-copied) between
# requests on some servers and leaked across keep-alive requests on others.
_SCOPE_KEY: Final = "aiodataloader.loaders"
_current: ContextVar[Loaders | None] = ContextVar("aiodataloader.loaders", default=None)

_NOT_INSTALLED = (
    "No Loaders container for this {where}: LoaderMiddleware is not installed. Install it with "
    "`app.add_middleware(LoaderMiddleware, registry=registry)` "
    "(from aiodataloader.asgi import LoaderMiddleware), or "
    "`Starlette(middleware=[Middleware(LoaderMiddleware, registry=registry)])`. "
    "Middleware added later wraps it, so code that needs loaders must run inside it."
)

_CLOSED_REASON = "its request has ended; loaders must not outlive the request that built them"

# How a factory is called.
_NO_ARGUMENT, _CONTAINER, _CONNECTION = range(3)
_CONNECTION_NAMES = frozenset({"HTTPConnection", "Request", "WebSocket"})


def _describe(value: object) -> str:
    return value.__name__ if isinstance(value, type) else repr(value)


def check_registrable(cls: object, *, loader: bool = False) -> None:
    """Raise a ``TypeError`` unless ``cls`` is a class (a DataLoader subclass if ``loader``)."""
    if loader:
        if not (isinstance(cls, type) and issubclass(cls, DataLoader)):
            raise TypeError(f"expected a DataLoader subclass, got {cls!r}")
    elif not isinstance(cls, type):
        raise TypeError(f"expected a class (a DataLoader subclass or a resource type), got {cls!r}")


def _calling_convention(cls: type[Any], factory: Callable[..., Any]) -> int:
    try:
        signature = inspect.signature(factory, eval_str=True)
    except NameError:  # names imported under TYPE_CHECKING: read them as text
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins): call it bare
        return _NO_ARGUMENT
    required = [
        p
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    shape = (
        f"the factory for {cls.__name__} must take no argument or one (the request's "
        f"Loaders container), got {_describe(factory)} with the signature {signature}"
    )
    if not required:
        return _NO_ARGUMENT
    if len(required) > 1 or required[0].kind is inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(shape)
    annotation = required[0].annotation
    if annotation is inspect.Parameter.empty or annotation in (Any, object):
        # 0.5.0 factories were called with the connection: the container forwards what it
        # lacks to its connection, with a DeprecationWarning.
        return _CONTAINER
    if isinstance(annotation, str):
        # Unresolvable text (a name imported under TYPE_CHECKING): judged by its last name.
        return _CONNECTION if annotation.rsplit(".", 1)[-1] in _CONNECTION_NAMES else _CONTAINER
    if isinstance(annotation, type):
        if issubclass(annotation, HTTPConnection):
            return _CONNECTION
        if issubclass(annotation, Loaders):
            return _CONTAINER
    raise TypeError(f"{shape}: its parameter is annotated {annotation!r}, expected Loaders")


def _builds_without_arguments(cls: type[Any]) -> bool:
    try:
        inspect.signature(cls).bind()
    except TypeError:
        return False
    except ValueError:  # no signature to inspect: let the call decide
        return True
    return not issubclass(cls, DataLoader) or callable(getattr(cls, "batch_load_fn", None))


class _Recipe:
    """A registered factory with what was learnt about it at ``register()``."""

    __slots__ = ("call", "cls", "enter", "factory", "is_async", "is_loader")

    def __init__(self, cls: type[Any], factory: Callable[..., Any] | None, enter: bool) -> None:
        check_registrable(cls)
        if not isinstance(enter, bool):
            raise TypeError(f"enter for {cls.__name__} must be True or False, got {enter!r}")
        self.cls = cls
        self.is_loader = issubclass(cls, DataLoader)
        self.enter = enter
        if factory is None:
            if not _builds_without_arguments(cls):
                raise TypeError(
                    f"{cls.__name__} cannot be built without arguments: register a factory for "
                    f"it with `LoaderRegistry.register({cls.__name__}, factory)`, e.g. "
                    f"`lambda scope: {cls.__name__}(...)`"
                )
            factory = cls
        elif not callable(factory):
            hint = " (pass the function, not its result)" if inspect.isawaitable(factory) else ""
            if inspect.iscoroutine(factory):
                factory.close()  # never awaited: close it so Python does not warn twice
            raise TypeError(
                f"the factory for {cls.__name__} must be callable as factory(scope) or "
                f"factory(), got {factory!r}{hint}"
            )
        self.factory = factory
        convention = _calling_convention(cls, factory)
        # Generator factories become context managers: one teardown shape for all.
        if inspect.isasyncgenfunction(factory):
            factory = contextlib.asynccontextmanager(factory)
            self.enter = True
        elif inspect.isgeneratorfunction(factory):
            factory = contextlib.contextmanager(factory)
            self.enter = True
        self.is_async = inspect.iscoroutinefunction(self.factory) or inspect.isasyncgenfunction(
            self.factory
        )
        call: Callable[[Loaders], Any]
        if convention == _NO_ARGUMENT:
            call = _ignore_scope(factory)
        elif convention == _CONNECTION:
            call = _with_connection(factory)
        else:
            call = factory
        self.call = call


def _ignore_scope(factory: Callable[[], Any]) -> Callable[[Loaders], Any]:
    return lambda scope: factory()


def _with_connection(factory: Callable[[HTTPConnection], Any]) -> Callable[[Loaders], Any]:
    return lambda scope: factory(scope.connection)


class LoaderRegistry:
    """How to build each loader and resource of a request: ``register(cls, factory)``.

    A class that builds without arguments (e.g. a DataLoader subclass with its own
    ``batch_load_fn``) needs no factory, and needs no registration either for a DataLoader.
    """

    __slots__ = ("_recipes",)

    def __init__(self) -> None:
        self._recipes: dict[type[Any], _Recipe] = {}

    @overload
    def register(
        self, cls: type[T], factory: Callable[[Loaders], FactoryResult[T]], *, enter: bool = True
    ) -> None: ...
    @overload
    def register(
        self, cls: type[T], factory: Callable[[], FactoryResult[T]], *, enter: bool = True
    ) -> None: ...
    @overload
    def register(  # 0.5.0: a factory whose parameter is annotated HTTPConnection (or a subclass)
        self,
        cls: type[T],
        factory: Callable[[ConnectionT], FactoryResult[T]],
        *,
        enter: bool = True,
    ) -> None: ...
    @overload
    def register(self, cls: type[Any], factory: None = None, *, enter: bool = True) -> None: ...

    def register(
        self,
        cls: type[T],
        factory: Callable[..., FactoryResult[T]] | None = None,
        *,
        enter: bool = True,
    ) -> None:
        """Build ``cls`` once per request with ``factory(scope)`` or ``factory()``.

        The factory may be sync or async, a generator or async generator (its code after
        ``yield`` runs at teardown, with the request's error thrown in), or return a context
        manager, which is entered now and exited at teardown (unless ``enter=False``).
        Registering again replaces the factory.
        """
        self._recipes[cls] = _Recipe(cls, factory, enter)

    @contextlib.contextmanager
    def override(
        self, cls: type[T], factory: LoaderFactory[T] | None = None, *, enter: bool = True
    ) -> Iterator[None]:
        """For tests: build ``cls`` with ``factory`` inside the ``with`` block, then restore.

        Reaches every access path (``get_loader``, ``get_resource``, ``loaders_from``,
        ``current_loaders``), in every request that starts a build meanwhile; a container
        that built ``cls`` already keeps its instance.
        """
        previous = self._recipes.get(cls)
        self._recipes[cls] = _Recipe(cls, factory, enter)
        try:
            yield
        finally:
            if previous is None:
                self._recipes.pop(cls, None)
            else:
                self._recipes[cls] = previous

    def factory_for(self, cls: type[T]) -> LoaderFactory[T]:
        """The factory registered for ``cls`` (the class itself if it needs no arguments)."""
        return cast("LoaderFactory[T]", self._recipe(cls).factory)

    def __contains__(self, cls: object) -> bool:
        return cls in self._recipes

    def _recipe(self, cls: type[Any]) -> _Recipe:
        recipe = self._recipes.get(cls)
        if recipe is not None:
            return recipe
        if isinstance(cls, type) and issubclass(cls, DataLoader):
            # Remembered, so the signature is inspected once per class, not per request.
            recipe = self._recipes[cls] = _Recipe(cls, None, True)
            return recipe
        check_registrable(cls)
        raise TypeError(
            f"{cls.__name__} is not registered: register a factory for it with "
            f"`registry.register({cls.__name__}, factory)` on the LoaderRegistry given to "
            "LoaderMiddleware (or to this Loaders)"
        )


# What the container keeps of each instance: (class, instance, is_loader, exit), where exit is
# the __exit__ or __aexit__ of an entered context manager (or None).
_Built = tuple[type[Any], Any, bool, Any]

# Which container owns a live loader (or resource with cleanup), by id: a factory that returns
# a shared instance would let one request's teardown cancel another request's loads.
_owners: weakref.WeakValueDictionary[int, Loaders] = weakref.WeakValueDictionary()
# Teardown steps given up after the timeout: referenced until they end, so that asyncio does
# not destroy them while pending.
_abandoned: set[asyncio.Task[Any]] = set()


class _BuildInProgress:
    """An ``aget`` build that others wait for; the future is made only if one does."""

    __slots__ = ("done", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.done: asyncio.Future[None] | None = None

    def wait(self) -> asyncio.Future[None]:
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
        return self.done

    def finished(self) -> None:
        if self.done is not None:
            self.done.set_result(None)


class Loaders:
    """The loaders and resources of one request or websocket connection, built on first use.

    ``LoaderMiddleware`` makes one per request. ``async with Loaders(conn, registry)`` makes
    a scope of your own, e.g. one per websocket message or GraphQL subscription event.
    """

    __slots__ = (
        "__weakref__",
        "_building",
        "_built",
        "_closed",
        "_connection",
        "_instances",
        "_scope",
        "registry",
        "teardown_timeout",
    )

    def __init__(
        self,
        connection: HTTPConnection | None = None,
        registry: LoaderRegistry | None = None,
        *,
        teardown_timeout: float = DEFAULT_TEARDOWN_TIMEOUT,
    ) -> None:
        if connection is not None and not isinstance(connection, HTTPConnection):
            raise TypeError(
                f"Loaders(connection, registry): connection must be an HTTPConnection "
                f"(a Request or WebSocket) or None, got {connection!r}"
            )
        if registry is not None and not isinstance(registry, LoaderRegistry):
            raise TypeError(f"registry must be a LoaderRegistry, got {registry!r}")
        _check_timeout(teardown_timeout)
        self.registry = registry if registry is not None else LoaderRegistry()
        self.teardown_timeout = teardown_timeout
        self._connection = connection
        self._scope: Scope | None = None
        self._instances: dict[type[Any], Any] = {}
        self._built: list[_Built] = []
        self._building: dict[type[Any], _BuildInProgress] | None = None
        self._closed = False

    @classmethod
    def _for_scope(cls, scope: Scope, registry: LoaderRegistry, timeout: float) -> Loaders:
        # The middleware's constructor: the HTTPConnection is built only if a factory asks.
        loaders = cls.__new__(cls)
        loaders.registry = registry
        loaders.teardown_timeout = timeout
        loaders._connection = None
        loaders._scope = scope
        loaders._instances = {}
        loaders._built = []
        loaders._building = None
        loaders._closed = False
        return loaders

    @property
    def connection(self) -> HTTPConnection:
        """The request or websocket connection of this scope."""
        connection = self._connection
        if connection is None:
            if self._scope is None:
                raise RuntimeError(
                    f"{self!r} has no connection: it was built without one"
                    + (" (or was torn down)" if self._closed else "")
                )
            connection = self._connection = HTTPConnection(self._scope)
        return connection

    def get(self, cls: type[T]) -> T:
        """This request's ``cls``, built on first use by a sync factory."""
        instances = self._instances
        if cls in instances:
            return cast(T, instances[cls])
        recipe = self._recipe_to_build(cls)
        if recipe.is_async:
            raise _use_aget(cls, "is async")
        if self._building is not None and cls in self._building:
            raise RuntimeError(
                f"{cls.__name__} is being built by an async factory call already: use "
                f"`await scope.aget({cls.__name__})`"
            )
        try:
            value = recipe.call(self)
        except Exception as failure:
            _log_factory_failure(cls, failure)
            raise
        if inspect.isawaitable(value) and not isinstance(value, cls):
            if inspect.iscoroutine(value):
                value.close()  # never awaited: close it so Python does not warn as well
            raise _use_aget(cls, "returned an awaitable")
        exit_: Any = None
        if recipe.enter and not isinstance(value, DataLoader):
            if hasattr(value, "__enter__") and hasattr(value, "__exit__"):
                exit_ = type(value).__exit__.__get__(value)
                value = value.__enter__()
            elif hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
                raise _use_aget(cls, "returned an async context manager")
        error = self._refusal(recipe, value, exit_)
        if error is not None:
            if exit_ is not None:
                exit_(None, None, None)
            raise error
        return cast(T, self._keep(recipe, value, exit_))

    async def aget(self, cls: type[T]) -> T:
        """This request's ``cls``, built on first use by its factory (sync or async).

        Concurrent calls for one class build it once.
        """
        instances = self._instances
        if cls in instances:
            return cast(T, instances[cls])
        recipe = self._recipe_to_build(cls)
        building = self._building
        if building is None:
            building = self._building = {}
        task = asyncio.current_task()
        while cls in building:
            in_progress = building[cls]
            if in_progress.task is task:
                raise RuntimeError(
                    f"{cls.__name__} is being built already: its factory asked for it"
                )
            await asyncio.shield(in_progress.wait())  # then built, failed, or to retry
            if cls in instances:
                return cast(T, instances[cls])
            recipe = self._recipe_to_build(cls)
        in_progress = building[cls] = _BuildInProgress(task)
        try:
            return cast(T, await self._build_async(recipe))
        except Exception as failure:
            _log_factory_failure(cls, failure)
            raise
        finally:
            del building[cls]
            in_progress.finished()

    async def _build_async(self, recipe: _Recipe) -> Any:
        cls = recipe.cls
        value = recipe.call(self)
        if inspect.isawaitable(value) and not isinstance(value, cls):
            value = await value
        exit_: Any = None
        if recipe.enter and not isinstance(value, DataLoader):
            if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
                exit_ = type(value).__aexit__.__get__(value)
                value = await value.__aenter__()
            elif hasattr(value, "__enter__") and hasattr(value, "__exit__"):
                exit_ = type(value).__exit__.__get__(value)
                value = value.__enter__()
        # The request may have ended while the factory awaited (a client that went away).
        error = self._closed_error(cls) if self._closed else self._refusal(recipe, value, exit_)
        if error is not None:
            # Exit what was entered: nobody else will.
            await _exit_now(cls, exit_)
            raise error
        return self._keep(recipe, value, exit_)

    def _recipe_to_build(self, cls: type[Any]) -> _Recipe:
        if self._closed:
            raise self._closed_error(cls)
        return self.registry._recipe(cls)

    def _closed_error(self, cls: type[Any]) -> RuntimeError:
        return RuntimeError(
            f"cannot build {getattr(cls, '__name__', cls)}: the request of this Loaders has "
            "ended and it was torn down; loaders and resources must not outlive the request "
            "that built them"
        )

    def _refusal(self, recipe: _Recipe, value: Any, exit_: Any) -> Exception | None:
        cls = recipe.cls
        try:
            wrong_type = not isinstance(value, cls)
        except TypeError:  # e.g. a Protocol that is not runtime-checkable
            wrong_type = False
        if wrong_type:
            return TypeError(
                f"the factory for {cls.__name__} returned {value!r}, not a {cls.__name__} instance"
            )
        if recipe.is_loader or exit_ is not None:
            owner = _owners.get(id(value))
            if owner is not None and owner is not self and not owner._closed:
                kind = "loader" if recipe.is_loader else "resource"
                return RuntimeError(
                    f"the factory for {cls.__name__} returned {value!r}, which belongs to "
                    f"another request's Loaders ({owner!r}): factories must build a new "
                    f"{kind} per request"
                )
        return None

    def _keep(self, recipe: _Recipe, value: Any, exit_: Any) -> Any:
        if recipe.is_loader or exit_ is not None:
            _owners[id(value)] = self
        self._instances[recipe.cls] = value
        self._built.append((recipe.cls, value, recipe.is_loader, exit_))
        return value

    def clear_all(self) -> None:
        """Clear every built loader's cache, e.g. after a mutation or between messages."""
        for _, instance, is_loader, _ in self._built:
            if is_loader:
                instance.clear_all()

    def __contains__(self, cls: object) -> bool:
        """Whether this container has built ``cls``."""
        return cls in self._instances

    def __len__(self) -> int:
        return len(self._instances)

    def __repr__(self) -> str:
        names = ", ".join(cls.__name__ for cls in self._instances)
        return f"<Loaders [{names}]{' closed' if self._closed else ''}>"

    if not TYPE_CHECKING:
        # Type checkers do not see this: 0.5.0 code that reads the connection through the
        # container is flagged there, and works here for one more release.
        def __getattr__(self, name: str) -> Any:
            connection = self._connection
            if connection is None and self._scope is not None:
                connection = self.connection
            if not name.startswith("_") and hasattr(connection, name):
                warnings.warn(
                    "an unannotated factory parameter receives the request's Loaders "
                    "container now, not its HTTPConnection (0.5.0): use "
                    f"`scope.connection.{name}`, or annotate the parameter HTTPConnection. "
                    f"Loaders forwarding `{name}` to its connection goes away in the next "
                    "release",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return getattr(connection, name)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    async def __aenter__(self) -> Loaders:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._teardown(exc)

    async def aclose(self) -> None:
        """Tear down, newest first, loaders and resources together.

        A loader is closed (a later ``load()`` raises ``RuntimeError``), its pending loads are
        cancelled, its cache cleared and its own ``aclose()`` awaited if it has one; a resource
        gets its cleanup. All of it within ``teardown_timeout`` seconds: a step that overruns
        is cancelled and abandoned with a warning, and the steps after it still run. A failing
        step is logged on the ``aiodataloader`` logger and does not stop the others. A native
        ``Task.cancel()`` waits until the teardown is done, then goes on.
        """
        await self._teardown(None)

    async def _teardown(self, error: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._scope = None  # also breaks the scope -> Loaders -> scope cycle
        self._connection = None
        built = self._built
        if not built:
            return
        self._built = []
        self._instances = {}
        for _, instance, _, _ in built:
            if _owners.get(id(instance)) is self:
                del _owners[id(instance)]
        await _Teardown(self.teardown_timeout, error).run(reversed(built))


#: What a factory may return for ``T``: the value, an awaitable of it, a generator or async
#: generator that yields it once (cleanup after ``yield``), or a context manager entered for it.
FactoryResult: TypeAlias = (
    T
    | Awaitable[T]
    | Iterator[T]
    | AsyncIterator[T]
    | AbstractContextManager[T]
    | AbstractAsyncContextManager[T]
)
#: ``factory(scope)`` or ``factory()``: builds one ``T`` for one request.
LoaderFactory: TypeAlias = Callable[[Loaders], FactoryResult[T]] | Callable[[], FactoryResult[T]]


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"teardown_timeout must be a number of seconds > 0, got {timeout!r}")


def _use_aget(cls: type[Any], why: str) -> TypeError:
    return TypeError(
        f"the factory for {cls.__name__} {why}: use `await scope.aget({cls.__name__})` "
        "(get() builds with sync factories only)"
    )


def _log_factory_failure(cls: type[Any], failure: BaseException) -> None:
    # One line: the traceback comes with the app's own error.
    logger.warning("the factory for %s raised %r", cls.__name__, failure)


async def _exit_now(cls: type[Any], exit_: Any) -> None:
    if exit_ is None:
        return
    try:
        result = exit_(None, None, None)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("cleanup of %s failed", cls.__name__)


if sys.version_info >= (3, 12):

    def _start_task(coro: Any) -> asyncio.Task[Any]:
        # Eager: a step that never suspends is done here, without a trip through the loop.
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
else:

    def _start_task(coro: Any) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(coro)


def _start_outside_request(coro: Any) -> asyncio.Task[Any]:
    # A step task must not keep the container alive through its context (it may be abandoned).
    context = copy_context()
    context.run(_current.set, None)
    return context.run(_start_task, coro)


class _Teardown:
    """One container's teardown: the steps of each instance, newest first, within a budget."""

    __slots__ = ("cancelled", "deadline", "error", "escaped", "grace", "loop", "shield")

    def __init__(self, timeout: float, error: BaseException | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + timeout
        # Once the budget is spent, each later step still gets a slice of it: a stuck loader
        # must not leave the session it used open.
        self.grace = timeout / 10
        self.error = error
        self.cancelled = False
        self.escaped: BaseException | None = None
        self.shield: anyio.CancelScope | None = None

    async def run(self, built: Iterable[_Built]) -> None:
        try:
            for cls, instance, is_loader, exit_ in built:
                if is_loader:
                    if self._close_and_probe(instance):
                        await self._step(cls, instance, "cancel_pending", self._cancel(instance))
                    self._sync_step(cls, instance, "clear_all", instance.clear_all)
                    aclose = getattr(instance, "aclose", None)
                    if aclose is not None:
                        await self._step(cls, instance, "aclose", aclose)
                elif exit_ is not None:
                    error = self.error
                    args = (None, None, None) if error is None else _exc_info(error)
                    if inspect.iscoroutinefunction(exit_):
                        await self._step(cls, instance, "cleanup", partial(exit_, *args))
                    else:
                        self._sync_step(cls, instance, "cleanup", partial(exit_, *args))
        finally:
            if self.shield is not None:
                self.shield.__exit__(None, None, None)
        if self.escaped is not None and self.error is None:
            raise self.escaped
        if self.cancelled:
            raise asyncio.CancelledError

    def _close_and_probe(self, loader: DataLoader[Any, Any]) -> bool:
        """Close the loader; True if it has pending loads whose batch tasks must be awaited."""
        try:
            DataLoader.close(loader, _CLOSED_REASON)
            # An idle loader's cancel_pending() returns without suspending: run it by hand
            # to learn that, which keeps the common case free of a task. A busy one cancels
            # its loads before it first suspends, and is called again in a task to wait.
            probe = loader.cancel_pending(timeout=self._remaining())
            try:
                probe.send(None)
            except StopIteration:
                return False
            probe.close()
            return True
        except BaseException as failure:
            self._failed(type(loader), loader, "close", failure)
            return False

    def _cancel(self, loader: DataLoader[Any, Any]) -> Callable[[], Awaitable[None]]:
        # Half the step's budget, so the core abandons a stuck batch (and names it) first.
        return lambda: loader.cancel_pending(timeout=self._remaining() / 2)

    def _remaining(self) -> float:
        return max(self.deadline - self.loop.time(), self.grace)

    def _sync_step(self, cls: type[Any], instance: Any, name: str, step: Callable[[], Any]) -> None:
        try:
            step()
        except BaseException as failure:
            self._failed(cls, instance, name, failure)

    async def _step(
        self, cls: type[Any], instance: Any, name: str, step: Callable[[], Awaitable[Any]]
    ) -> None:
        """Run ``step`` in a task of its own, so that it can be abandoned, and await it
        through any cancellation of the request's task."""
        if self.shield is None:
            # anyio re-delivers its cancellation at every await until the scope is left.
            self.shield = anyio.CancelScope(shield=True).__enter__()
        task = _start_outside_request(_run_step(step))
        if not task.done():
            await self._wait(task, self._remaining())
        if not task.done():
            task.cancel()
            await self._wait(task, self.grace)
        if not task.done():
            _abandoned.add(task)
            task.add_done_callback(_abandoned.discard)
            logger.warning(
                "%s did not finish within the teardown timeout and ignored cancellation; abandoned",
                _step_label(cls, instance, name),
            )
            self.deadline = self.loop.time()  # the budget is spent: later steps get the grace
            return
        failure = asyncio.CancelledError() if task.cancelled() else task.exception()
        if failure is not None:
            self._failed(cls, instance, name, failure)

    async def _wait(self, task: asyncio.Task[Any], seconds: float) -> None:
        until = self.loop.time() + seconds
        while not task.done():
            try:
                await asyncio.wait((task,), timeout=max(until - self.loop.time(), 0.0))
            except asyncio.CancelledError:
                # A native Task.cancel() of the request: finish first, then let it go on.
                self.cancelled = True
                continue
            return

    def _failed(self, cls: type[Any], instance: Any, name: str, failure: BaseException) -> None:
        if failure is self.error:
            return  # a cleanup that re-raises the request's own error: not a failure of its own
        logger.error(
            "%s failed during teardown",
            _step_label(cls, instance, name),
            exc_info=(type(failure), failure, failure.__traceback__),
        )
        if not isinstance(failure, (Exception, asyncio.CancelledError)) and self.escaped is None:
            self.escaped = failure  # KeyboardInterrupt, SystemExit: raised after the others


def _step_label(cls: type[Any], instance: Any, step: str) -> str:
    if step == "cleanup":
        return f"cleanup of {cls.__name__} {instance!r}"
    return f"{step}() of {instance!r}"


def _exc_info(error: BaseException) -> tuple[type[BaseException], BaseException, Any]:
    return type(error), error, error.__traceback__


async def _run_step(step: Callable[[], Awaitable[Any]]) -> None:
    await step()


class LoaderMiddleware:
    """Pure ASGI middleware: one ``Loaders`` per ``http`` request and ``websocket`` connection.

    The container is torn down after the app returns, i.e. after the last body chunk and every
    BackgroundTasks task, on every exit path. Other scope types (lifespan) pass through.
    """

    def __init__(
        self,
        app: ASGIApp,
        registry: LoaderRegistry | None = None,
        *,
        teardown_timeout: float = DEFAULT_TEARDOWN_TIMEOUT,
    ) -> None:
        if registry is not None and not isinstance(registry, LoaderRegistry):
            raise TypeError(
                f"LoaderMiddleware: registry must be a LoaderRegistry, got {registry!r}"
            )
        _check_timeout(teardown_timeout)
        self.app = app
        self.registry = registry if registry is not None else LoaderRegistry()
        self.teardown_timeout = teardown_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loaders = Loaders._for_scope(scope, self.registry, self.teardown_timeout)
        # A nested LoaderMiddleware (e.g. around a mounted GraphQL app) hands the outer
        # container back when it is done.
        outer = scope.get(_SCOPE_KEY)
        scope[_SCOPE_KEY] = loaders
        token = _current.set(loaders)

        async def send_outside(message: Message) -> None:
            # The server may start the next pipelined request's task inside send(): it must
            # not inherit this request's container.
            inner = _current.set(outer)
            try:
                await send(message)
            finally:
                _current.reset(inner)

        try:
            async with loaders:
                await self.app(scope, receive, send_outside)
        finally:
            _current.reset(token)
            if outer is not None:
                scope[_SCOPE_KEY] = outer


def loaders_from(conn: HTTPConnection) -> Loaders:
    """The ``Loaders`` of this request or websocket connection (a Request, WebSocket, ...)."""
    loaders: Loaders | None = conn.scope.get(_SCOPE_KEY)
    if loaders is None:
        raise RuntimeError(_NOT_INSTALLED.format(where="connection"))
    return loaders


def get_loaders(conn: HTTPConnection) -> Loaders:
    """Deprecated name of ``loaders_from``, kept for one release."""
    warnings.warn(
        "get_loaders(conn) is now loaders_from(conn); get_loaders goes away in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return loaders_from(conn)


def current_loaders() -> Loaders:
    """The ``Loaders`` of the request being handled, from anywhere inside it (e.g. resolvers)."""
    loaders = _current.get()
    if loaders is None:
        raise RuntimeError(
            _NOT_INSTALLED.format(where="context")
            + " current_loaders() only works while a request is being handled."
        )
    return loaders
