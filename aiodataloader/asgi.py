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
  complete even under a native ``Task.cancel()``, which an anyio shield does not stop. Each
  step runs in the request's own task (anyio cancel scopes and ``asyncio.timeout`` inside it
  see the task they expect), and while it waits on a future the task waits on a stand-in, so
  a cancellation hits the stand-in and the step goes on. Rejected: a task per step (costs
  more than the whole middleware, and a cleanup must not change tasks halfway); awaiting
  inline (a cancellation cuts the cleanup in half).
- Nothing is built until used: the middleware puts a three-item slot under a private scope
  key and in a context variable, and the container is made on first access. Never
  ``scope["state"]``, which some servers share between requests. The final ``send`` runs
  outside our context, so a task the server starts in it (the next pipelined request) does
  not inherit it.
- Tests swap factories with ``registry.override(cls, factory)``, which every access path sees.
  FastAPI's ``app.dependency_overrides`` replaces only what FastAPI injects.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import warnings
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterator,
)
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from contextvars import ContextVar
from functools import partial
from types import CoroutineType, GeneratorType, MappingProxyType, TracebackType
from typing import Any, Final, TypeAlias, TypeVar, cast, get_origin, overload

try:
    import anyio
    from starlette.datastructures import MutableHeaders
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as error:  # pragma: no cover - depends on the environment
    from aiodataloader._extras import missing_extra

    raise missing_extra("aiodataloader.asgi", "Starlette", "asgi", error) from error

from aiodataloader.loader import DataLoader
from aiodataloader.observe import (
    LoaderCounters,
    LoaderObserver,
    RequestStats,
    checked_observer,
    observe,
)
from aiodataloader.value_cache import ValueCache, give_value_cache

__all__ = [
    "LoaderFactory",
    "LoaderMiddleware",
    "LoaderRegistry",
    "Loaders",
    "ValueCacheChooser",
    "current_loaders",
    "get_loaders",
    "loaders_from",
]

logger = logging.getLogger("aiodataloader")
#: A DEBUG line per request with its loaders' statistics: enable this logger's DEBUG level.
request_logger = logging.getLogger("aiodataloader.requests")

T = TypeVar("T")
ConnectionT = TypeVar("ConnectionT", bound=HTTPConnection)

DEFAULT_TEARDOWN_TIMEOUT: Final = 5.0

# A top-level scope key, not scope["state"]: lifespan state is shared (shallow-copied) between
# requests on some servers and leaked across keep-alive requests on others.
_SCOPE_KEY: Final = "aiodataloader.loaders"
# Under that key and in this variable: the request's slot, a list [middleware, container, ASGI
# scope]. The container is built on first use ("build nothing until used": a list costs a
# fraction of a container), and the middleware is set to None when the request ends, so a
# task that outlives it cannot build a container that nobody would tear down. (A Loaders
# placed there by hand is used as it is.)
_current: ContextVar[list[Any] | None] = ContextVar("aiodataloader.loaders", default=None)
_MIDDLEWARE, _CONTAINER_BUILT, _ASGI_SCOPE = range(3)

_NOT_INSTALLED = (
    "No Loaders container for this {where}: LoaderMiddleware is not installed. Install it with "
    "`app.add_middleware(LoaderMiddleware, registry=registry)` "
    "(from aiodataloader.asgi import LoaderMiddleware), or "
    "`Starlette(middleware=[Middleware(LoaderMiddleware, registry=registry)])`. "
    "Middleware added later wraps it, so code that needs loaders must run inside it."
)

_CLOSED_REASON = "its request has ended; loaders must not outlive the request that built them"

# How a factory is called.
_NO_ARGUMENT, _CONTAINER, _CONNECTION, _CONTAINER_FORWARDING = range(4)
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
        # 0.5.0 called an unannotated factory with the connection. One that reads what only a
        # connection has (``conn.app``, ``conn.headers``) gets the container through a proxy
        # that forwards those to the connection, with a DeprecationWarning. Judged by the
        # names its code reads, so that every other factory gets the container itself and
        # the container needs no __getattr__ (which slows every attribute read on it).
        code = getattr(inspect.unwrap(factory), "__code__", None)
        if code is not None and not _CONNECTION_ONLY.isdisjoint(code.co_names):
            return _CONTAINER_FORWARDING
        return _CONTAINER
    if isinstance(annotation, str):
        # Unresolvable text (a name imported under TYPE_CHECKING): judged by its last name.
        return _CONNECTION if annotation.rsplit(".", 1)[-1] in _CONNECTION_NAMES else _CONTAINER
    annotated = get_origin(annotation) or annotation  # Request[State] is a Request
    if isinstance(annotated, type):
        if issubclass(annotated, HTTPConnection):
            return _CONNECTION
        if issubclass(annotated, Loaders):
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

    __slots__ = (
        "call",
        "call_bare",
        "cls",
        "enter",
        "factory",
        "has_aclose",
        "idle_skips_cancel",
        "is_async",
        "is_loader",
    )

    def __init__(self, cls: type[Any], factory: Callable[..., Any] | None, enter: bool) -> None:
        check_registrable(cls)
        if not isinstance(enter, bool):
            raise TypeError(f"enter for {cls.__name__} must be True or False, got {enter!r}")
        self.cls = cls
        self.is_loader = issubclass(cls, DataLoader)
        self.has_aclose = self.is_loader and callable(getattr(cls, "aclose", None))
        # The core's cancel_pending() returns at once for an idle loader; teardown skips the
        # call then, unless the class overrides it (its override may do more).
        self.idle_skips_cancel = (
            self.is_loader and getattr(cls, "cancel_pending", None) is DataLoader.cancel_pending
        )
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
        # A factory without argument is called as it is, without a wrapper's frame.
        self.call_bare: Callable[[], Any] | None = None
        if convention == _NO_ARGUMENT:
            call = _ignore_scope(factory)
            self.call_bare = factory
        elif convention == _CONNECTION:
            call = _with_connection(factory)
        elif convention == _CONTAINER_FORWARDING:
            call = _with_forwarding(factory)
        else:
            call = factory
        self.call = call


def _ignore_scope(factory: Callable[[], Any]) -> Callable[[Loaders], Any]:
    return lambda scope: factory()


def _with_connection(factory: Callable[[HTTPConnection], Any]) -> Callable[[Loaders], Any]:
    return lambda scope: factory(scope.connection)


def _with_forwarding(factory: Callable[[Any], Any]) -> Callable[[Loaders], Any]:
    return lambda scope: factory(_ForwardingToConnection(scope))


class _ForwardingToConnection:
    """What a 0.5.0-style factory receives: the container, and for one more release what
    only a connection has (``conn.app``, ``conn.headers``), with a DeprecationWarning."""

    __slots__ = ("_loaders",)

    def __init__(self, loaders: Loaders) -> None:
        self._loaders = loaders

    def __getattr__(self, name: str) -> Any:
        loaders = self._loaders
        if name in _CONNECTION_ONLY:
            warnings.warn(
                "an unannotated factory parameter receives the request's Loaders container "
                f"now, not its HTTPConnection (0.5.0): use `scope.connection.{name}`, or "
                f"annotate the parameter HTTPConnection. Loaders forwarding `{name}` to its "
                "connection goes away in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(loaders.connection, name)
        return getattr(loaders, name)


class LoaderRegistry:
    """How to build each loader and resource of a request: ``register(cls, factory)``.

    A class that builds without arguments (e.g. a DataLoader subclass with its own
    ``batch_load_fn``) needs no factory, and needs no registration either for a DataLoader.
    """

    __slots__ = ("_observers", "_recipes", "value_caches")

    def __init__(self, *, value_caches: ValueCacheChooser | None = None) -> None:
        """``value_caches(cls, scope)`` gives each loader this registry builds that has
        none of its own a shared value cache (or None): e.g. ``lambda cls, scope:
        caches.get(cls)``, or a per-request prefix from ``scope.connection``."""
        if value_caches is not None and not callable(value_caches):
            raise TypeError(
                "LoaderRegistry: value_caches must be callable as value_caches(cls, scope) "
                f"-> ValueCache | None; got {value_caches!r}"
            )
        self._recipes: dict[type[Any], _Recipe] = {}
        self.value_caches = value_caches
        self._observers: tuple[LoaderObserver, ...] = ()

    def add_observer(self, observer: LoaderObserver) -> None:
        """Attach ``observer`` (``aiodataloader.observe``) to every loader that this registry
        builds from now on."""
        observer = checked_observer(observer, "LoaderRegistry.add_observer()")
        self._observers = (*self._observers, observer)

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


# What the container keeps of each instance: (recipe, instance, exit), where exit is the
# __exit__ or __aexit__ of an entered context manager (or None).
_Built = tuple["_Recipe", Any, Any]

# Shared by every container that has built nothing yet; replaced before the first insert.
_NO_INSTANCES: dict[type[Any], Any] = cast("dict[type[Any], Any]", MappingProxyType({}))

# Which container owns a live resource with a cleanup, by id (a loader's own is its
# _scope_owner): a factory that returns a shared instance would let one request's teardown
# clean up what another request still uses. Entries go at teardown (a container that is never
# closed keeps its own alive).
_owners: dict[int, Loaders] = {}


class Loaders:
    """The loaders and resources of one request or websocket connection, built on first use.

    ``LoaderMiddleware`` makes one per request. ``async with Loaders(conn, registry)`` makes
    a scope of your own, e.g. one per websocket message or GraphQL subscription event.
    """

    # Class-level defaults, so that the middleware's container costs two attribute writes
    # per request until something is built.
    registry: LoaderRegistry
    teardown_timeout: float
    _scope: Scope | None = None
    _connection: HTTPConnection | None = None
    _instances: dict[type[Any], Any] = _NO_INSTANCES
    _built: list[_Built] | None = None
    # The class being built by aget, and what marks its build (see _builder); a future for
    # those who wait for it, made only when one does.
    _building: dict[type[Any], object] | None = None
    _waiting: dict[type[Any], asyncio.Future[None]] | None = None
    _closed = False
    # After teardown: each loader's name and counters (not the loader, which is freed), so
    # that the statistics stay readable.
    _torn_down: list[tuple[str, LoaderCounters]] | None = None

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
            return instances[cls]  # type: ignore[no-any-return]  # keyed by its own class
        recipe = self._recipe_to_build(cls)
        if recipe.is_async:
            raise _use_aget(cls, "is async")
        if self._building is not None and cls in self._building:
            raise RuntimeError(
                f"{cls.__name__} is being built by an async factory call already: use "
                f"`await scope.aget({cls.__name__})`"
            )
        try:
            value: Any = recipe.call(self)
        except Exception as failure:
            _log_factory_failure(cls, failure)
            raise
        if not isinstance(value, cls) and inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited: close it so Python does not warn as well
            raise _use_aget(cls, "returned an awaitable")
        exit_: Any = None
        if recipe.enter and not recipe.is_loader:
            kind = _context_kind(value)
            if kind == _SYNC_CONTEXT or (kind == _ASYNC_CONTEXT and hasattr(value, "__enter__")):
                manager: Any = value
                exit_ = type(manager).__exit__.__get__(manager)
                value = manager.__enter__()
            elif kind == _ASYNC_CONTEXT:
                raise _use_aget(cls, "returned an async context manager")
        error = self._accept(recipe, value, exit_)
        if error is not None:
            if exit_ is not None:
                exit_(None, None, None)
            raise error
        return value  # type: ignore[no-any-return]  # checked by _accept

    async def aget(self, cls: type[T]) -> T:
        """This request's ``cls``, built on first use by its factory (sync or async).

        Concurrent calls for one class build it once.
        """
        instances = self._instances
        if cls in instances:
            return instances[cls]  # type: ignore[no-any-return]  # keyed by its own class
        if self._closed:
            raise self._closed_error(cls)
        registry = self.registry
        recipe = registry._recipes.get(cls) or registry._recipe(cls)
        building = self._building
        if building is None:
            building = self._building = {}
        elif cls in building:
            return await self._wait_for_build(cls)  # type: ignore[no-any-return]
        # What the build awaits tells a factory that asks for its own class (the coroutine it
        # awaits is running then: the request is on its own stack) from a call that waits
        # for another task's build (that coroutine is suspended). Set when the build first
        # awaits: before that, nothing else can run.
        building[cls] = None
        try:
            # The build, inline (not a coroutine of its own: it runs once per class and request).
            call_bare = recipe.call_bare
            value: Any = call_bare() if call_bare is not None else recipe.call(self)
            if type(value) is CoroutineType:  # an async def factory: the common case
                building[cls] = value
                value = await value
            elif not isinstance(value, cls) and _is_awaitable(value):
                building[cls] = _builder(value)
                value = await value
            exit_: Any = None
            if recipe.enter and not recipe.is_loader:
                kind = _context_kind(value)
                if kind == _ASYNC_CONTEXT:
                    exit_ = type(value).__aexit__.__get__(value)
                    entering = value.__aenter__()
                    building[cls] = _builder(entering)  # what the build awaits now
                    value = await entering
                elif kind == _SYNC_CONTEXT:
                    exit_ = type(value).__exit__.__get__(value)
                    value = value.__enter__()
            # The request may have ended while the factory awaited (a client that went away).
            error = self._closed_error(cls) if self._closed else self._accept(recipe, value, exit_)
            if error is not None:
                await _exit_now(cls, exit_)  # exit what was entered: nobody else will
                raise error
            return value  # type: ignore[no-any-return]  # checked by _accept
        except Exception as failure:
            _log_factory_failure(cls, failure)
            raise
        finally:
            del building[cls]
            waiting = self._waiting
            if waiting is not None and cls in waiting:
                waiting.pop(cls).set_result(None)

    async def _wait_for_build(self, cls: type[Any]) -> Any:
        """``aget`` while another call builds ``cls``: its result, or a build of our own if
        that call failed or was cancelled."""
        building = cast("dict[type[Any], object]", self._building)
        while cls in building:
            if _builds_here(building[cls]):
                raise RuntimeError(
                    f"{cls.__name__} is being built already: its factory asked for it"
                )
            waiting = self._waiting
            if waiting is None:
                waiting = self._waiting = {}
            done = waiting.get(cls)
            if done is None:
                done = waiting[cls] = asyncio.get_running_loop().create_future()
            await asyncio.shield(done)
            if cls in self._instances:
                return self._instances[cls]
        return await self.aget(cls)

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

    def _accept(self, recipe: _Recipe, value: Any, exit_: Any) -> Exception | None:
        """Keep what a factory built for this container; or the error that refuses it (then
        nothing is kept)."""
        cls = recipe.cls
        try:
            wrong_type = not isinstance(value, cls)
        except TypeError:  # e.g. a Protocol that is not runtime-checkable
            wrong_type = False
        if wrong_type:
            return TypeError(
                f"the factory for {cls.__name__} returned {value!r}, not a {cls.__name__} instance"
            )
        is_loader = recipe.is_loader
        if is_loader or exit_ is not None:
            # A loader knows its container (an attribute read, no lookup); a resource with a
            # cleanup is looked up by identity. A torn-down owner no longer holds it.
            owner = value._scope_owner if is_loader else _owners.get(id(value))
            if owner is not None and owner is not self and not owner._closed:
                kind = "loader" if is_loader else "resource"
                return RuntimeError(
                    f"the factory for {cls.__name__} returned {value!r}, which belongs to "
                    f"another request's Loaders ({owner!r}): factories must build a new "
                    f"{kind} per request"
                )
            if is_loader:
                value._scope_owner = self
                registry = self.registry
                choose = registry.value_caches
                if choose is not None:
                    value_cache = choose(cls, self)
                    if value_cache is not None:
                        give_value_cache(value, value_cache)
                for observer in registry._observers:
                    observe(value, observer)
            else:
                _owners[id(value)] = self
        built = self._built
        if built is None:
            built = self._built = []
            self._instances = {}
        self._instances[cls] = value
        built.append((recipe, value, exit_))
        return None

    def clear_all(self) -> None:
        """Clear every built loader's cache, e.g. after a mutation or between messages."""
        for recipe, instance, _ in self._built or ():
            if recipe.is_loader:
                instance.clear_all()

    def stats(self) -> RequestStats:
        """The statistics of this scope's loaders, summed per loader name; after teardown,
        as they were at its end."""
        if self._torn_down is not None:
            return RequestStats.of_counters(self._torn_down)
        return RequestStats.of(value for recipe, value, _ in self._built or () if recipe.is_loader)

    def __contains__(self, cls: object) -> bool:
        """Whether this container has built ``cls``."""
        return cls in self._instances

    def __len__(self) -> int:
        return len(self._instances)

    def __repr__(self) -> str:
        names = ", ".join(cls.__name__ for cls in self._instances)
        return f"<Loaders [{names}]{' closed' if self._closed else ''}>"

    async def __aenter__(self) -> Loaders:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """The teardown of ``aclose()``; ``exc``, the error the scope ends with, is thrown
        into generator factories (and given to context managers) as ``with`` would."""
        built = self._built
        scope = self._scope
        self._closed = True
        self._scope = None  # also breaks the scope -> Loaders -> scope cycle
        self._connection = None
        if not built:
            return
        self._built = None
        self._instances = _NO_INSTANCES
        torn_down: list[tuple[str, LoaderCounters]] = []
        self._torn_down = torn_down
        await _Teardown(self.teardown_timeout, exc).run(self, built, torn_down)
        if request_logger.isEnabledFor(logging.DEBUG):
            request_logger.debug("%s: %s", _request_line(scope), self.stats().describe())

    async def aclose(self) -> None:
        """Tear down, newest first, loaders and resources together.

        A loader is closed (a later ``load()`` raises ``RuntimeError``), its pending loads are
        cancelled, its cache cleared and its own ``aclose()`` awaited if it has one; a resource
        gets its cleanup. All of it within ``teardown_timeout`` seconds: a step that overruns
        is cancelled and abandoned with a warning, and the steps after it still run. A failing
        step is logged on the ``aiodataloader`` logger and does not stop the others. A native
        ``Task.cancel()`` waits until the teardown is done, then goes on.
        """
        await self.__aexit__(None, None, None)


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
#: ``value_caches(cls, scope)``: the shared value cache of a loader the registry builds.
ValueCacheChooser: TypeAlias = Callable[
    [type[DataLoader[Any, Any]], Loaders], ValueCache[Any] | None
]


# What a 0.5.0 factory could read on its connection and cannot on the container.
_CONNECTION_ONLY = frozenset(
    {"scope", *(name for name in dir(HTTPConnection) if not name.startswith("_"))}
) - frozenset(dir(Loaders))


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"teardown_timeout must be a number of seconds > 0, got {timeout!r}")


_NOT_A_CONTEXT, _SYNC_CONTEXT, _ASYNC_CONTEXT = range(3)
# What a factory's result is, by its type: looked up once per type, not once per request.
_context_kinds: dict[type[Any], int] = {}


def _context_kind(value: object) -> int:
    kind = _context_kinds.get(type(value))
    if kind is None:
        cls = type(value)
        if hasattr(cls, "__aenter__") and hasattr(cls, "__aexit__"):
            kind = _ASYNC_CONTEXT
        elif hasattr(cls, "__enter__") and hasattr(cls, "__exit__"):
            kind = _SYNC_CONTEXT
        else:
            kind = _NOT_A_CONTEXT
        kind = _context_kinds.setdefault(cls, kind)
    return kind


# Which result types are awaitable: looked up once per type (an ABC check costs more than
# the rest of a build). Generators are asked one by one: only some are awaitable.
_awaitable_types: dict[type[Any], bool] = {}


def _is_awaitable(value: object) -> bool:
    cls = type(value)
    awaitable = _awaitable_types.get(cls)
    if awaitable is None:
        awaitable = inspect.isawaitable(value)
        if cls is not GeneratorType:
            _awaitable_types[cls] = awaitable
    return awaitable


def _builder(awaited: Any) -> object:
    """What marks a build that awaits ``awaited``: the coroutine itself (no lookup), or for
    another awaitable the task that awaits it."""
    return awaited if type(awaited) is CoroutineType else asyncio.current_task()


def _builds_here(builder: object) -> bool:
    """Whether the build marked ``builder`` is the one this call is made from: its coroutine
    is running (only the current stack's coroutines are), or its task is the current one."""
    if type(builder) is CoroutineType:
        return bool(builder.cr_running)
    return builder is not None and builder is asyncio.current_task()


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


class _Teardown:
    """One container's teardown: the steps of each instance, newest first, within a budget.

    An async step (``cancel_pending``, a loader's ``aclose``, a resource's ``__aexit__``)
    runs in the request's own task, driven by ``_drive``: a step that does not suspend costs
    no more than a call, and one that does sees the task it expects (anyio cancel scopes and
    ``asyncio.timeout`` inside it work). While it waits on a future, the task waits on a
    stand-in for it, so a ``Task.cancel()`` of the request cancels the stand-in, not the step.
    """

    __slots__ = (
        "cancelled",
        "deadline",
        "error",
        "escaped",
        "grace",
        "loop",
        "pending_bound",
        "shield",
        "timeout",
    )

    def __init__(self, timeout: float, error: BaseException | None) -> None:
        # The clock starts at the first step that waits (see _Drive): the steps before it
        # returned at once, and most teardowns have none that waits.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timeout = timeout
        self.deadline = 0.0  # set with the loop, when the clock starts
        # Once the budget is spent, each later step still gets a slice of it: a stuck loader
        # must not leave the session it used open.
        self.grace = timeout / 10
        # Half the budget for the core's own bound on a loader's pending batches, so that it
        # abandons a stuck batch (and names it) before the step overruns.
        self.pending_bound = timeout / 2
        self.error = error
        self.cancelled = False
        self.escaped: BaseException | None = None
        self.shield: anyio.CancelScope | None = None

    async def run(
        self, owner: Loaders, built: list[_Built], torn_down: list[tuple[str, LoaderCounters]]
    ) -> None:
        """Tear down what ``owner`` built, newest first, and note each loader's name and
        counters in ``torn_down`` (in build order)."""
        pending_timeout = self.pending_bound
        try:
            for recipe, instance, exit_ in reversed(built):
                if recipe.is_loader:
                    instance._scope_owner = None  # a kept loader must not keep its container
                    name = instance.name  # loader_name(), inline
                    torn_down.append(
                        (name if name is not None else type(instance).__name__, instance._counters)
                    )
                    try:
                        DataLoader.close(instance, _CLOSED_REASON)
                    except Exception as failure:
                        self._failed(recipe, instance, "close", failure)
                    # An idle loader (no batch queued or running: the common case at the end
                    # of a request) has nothing to cancel; the core's own test, read here to
                    # save a coroutine per loader.
                    if not (
                        recipe.idle_skips_cancel
                        and instance._batch is None
                        and not instance._running
                    ):
                        await self._cancel_pending(recipe, instance, pending_timeout)
                    try:
                        instance.clear_all()
                    except Exception as failure:
                        self._failed(recipe, instance, "clear_all", failure)
                    if recipe.has_aclose:
                        drive = self._start(recipe, instance, "aclose")
                        if drive is not None:
                            await self._finish(recipe, instance, "aclose", drive)
                elif exit_ is not None:
                    key = id(instance)  # a resource with a cleanup: in _owners (see _accept)
                    if _owners.get(key) is owner:
                        del _owners[key]
                    drive = self._start(recipe, instance, "cleanup", exit_=exit_)
                    if drive is not None:
                        await self._finish(recipe, instance, "cleanup", drive)
        finally:
            torn_down.reverse()
            if self.shield is not None:
                self.shield.__exit__(None, None, None)
        if self.escaped is not None and self.error is None:
            raise self.escaped
        if self.cancelled:
            raise asyncio.CancelledError

    async def _cancel_pending(self, recipe: _Recipe, instance: Any, bound: float) -> None:
        # Inline: a cancel_pending() that has nothing to wait for returns without suspending.
        drive = None
        try:
            pending = instance.cancel_pending(timeout=bound)
            drive = _Drive(self, pending, pending.send(None))
        except StopIteration:
            pass
        except BaseException as failure:
            self._failed(recipe, instance, "cancel_pending", failure)
        if drive is not None:
            await self._finish(recipe, instance, "cancel_pending", drive)

    def _start(
        self,
        recipe: _Recipe,
        instance: Any,
        name: str,
        exit_: Any = None,
    ) -> _Drive | None:
        """Start a step; None if it is over already (most are: an idle loader, a session
        closed in memory), else what to await for the rest of it."""
        try:
            if exit_ is not None:
                error = self.error
                awaitable = (
                    exit_(None, None, None)
                    if error is None
                    else exit_(type(error), error, error.__traceback__)
                )
            else:
                awaitable = getattr(instance, name)()
            coro: Coroutine[Any, Any, Any]
            if type(awaitable) is CoroutineType:
                coro = awaitable
            elif inspect.isawaitable(awaitable):
                coro = _await(awaitable)
            else:
                return None  # a sync cleanup, or a loader's aclose() that is a plain method
            first = coro.send(None)
        except StopIteration:
            return None
        except BaseException as failure:
            self._failed(recipe, instance, name, failure)
            return None
        return _Drive(self, coro, first)

    async def _finish(self, recipe: _Recipe, instance: Any, name: str, drive: _Drive) -> None:
        outcome = await drive
        if outcome is _ABANDONED:
            logger.warning(
                "%s did not finish within the teardown timeout and ignored cancellation; abandoned",
                _step_label(recipe.cls, instance, name),
            )
        elif outcome is _CANCELLED_LATE:
            logger.warning(
                "%s did not finish within the teardown timeout; cancelled",
                _step_label(recipe.cls, instance, name),
            )
        elif outcome is not None:
            self._failed(recipe, instance, name, cast(BaseException, outcome))

    def _failed(self, recipe: _Recipe, instance: Any, name: str, failure: BaseException) -> None:
        if failure is self.error:
            return  # a cleanup that re-raises the request's own error: not a failure of its own
        logger.error(
            "%s failed during teardown",
            _step_label(recipe.cls, instance, name),
            exc_info=(type(failure), failure, failure.__traceback__),
        )
        if not isinstance(failure, (Exception, asyncio.CancelledError)) and self.escaped is None:
            self.escaped = failure  # KeyboardInterrupt, SystemExit: raised after the others


_ABANDONED = object()
_CANCELLED_LATE = object()


class _Drive:
    """Awaiting it runs ``coro`` to its end in the current task, as ``await coro`` would, but
    a cancellation of the task is recorded on the teardown instead of reaching ``coro``, and
    ``coro`` is cancelled at the teardown's deadline, then abandoned after a grace period.

    The awaited value is None when ``coro`` finished, the exception it raised, or a marker
    for "cancelled late" or "abandoned".
    """

    __slots__ = ("coro", "first", "teardown")

    def __init__(self, teardown: _Teardown, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.teardown = teardown
        self.coro = coro
        self.first = first  # what coro yielded when it was first sent None

    def __await__(self) -> Generator[Any, None, object]:
        teardown, coro, loop = self.teardown, self.coro, self.teardown.loop
        if loop is None:
            loop = teardown.loop = asyncio.get_running_loop()
            teardown.deadline = loop.time() + teardown.timeout
        if teardown.shield is None:
            # anyio re-delivers its cancellation at every await until the scope is left.
            teardown.shield = anyio.CancelScope(shield=True).__enter__()
        cancelled_by_us = False
        waited = self.first
        self.first = None
        while True:
            if waited is None:  # a bare yield (asyncio.sleep(0)): one trip around the loop
                try:
                    yield None
                except asyncio.CancelledError:
                    teardown.cancelled = True
            elif getattr(waited, "_asyncio_future_blocking", None) is None:
                _close(coro)
                return RuntimeError(f"a teardown step yielded {waited!r}, not a future")
            else:
                waited._asyncio_future_blocking = False  # taken over, as a Task does
            while waited is not None and not waited.done():
                if loop.time() >= teardown.deadline:
                    if cancelled_by_us:
                        _close(coro)  # stop driving it, whether or not it lets itself close
                        teardown.deadline = loop.time()  # spent: later steps get the grace
                        return _ABANDONED
                    # As Task.cancel() does: cancel what it waits on, then let it react.
                    cancelled_by_us = True
                    teardown.deadline = loop.time() + teardown.grace
                    waited.cancel()
                    break
                stand_in = loop.create_future()
                wake = partial(_wake, stand_in)
                waited.add_done_callback(wake)
                timer = loop.call_at(teardown.deadline, wake, None)
                try:
                    yield from stand_in
                except asyncio.CancelledError:
                    # A Task.cancel() of the request: finish first, then let it go on.
                    teardown.cancelled = True
                finally:
                    waited.remove_done_callback(wake)
                    timer.cancel()
            try:
                waited = coro.send(None)
            except StopIteration:
                return _CANCELLED_LATE if cancelled_by_us else None
            except BaseException as failure:
                if cancelled_by_us and isinstance(failure, asyncio.CancelledError):
                    return _CANCELLED_LATE
                return failure


def _wake(stand_in: asyncio.Future[None], _: object) -> None:
    if not stand_in.done():
        stand_in.set_result(None)


def _close(coro: Coroutine[Any, Any, Any]) -> None:
    # A step that awaits again on GeneratorExit cannot be closed: it is left as it is.
    with contextlib.suppress(RuntimeError):
        coro.close()


def _step_label(cls: type[Any], instance: Any, step: str) -> str:
    if step == "cleanup":
        return f"cleanup of {cls.__name__} {instance!r}"
    return f"{step}() of {instance!r}"


def _exc_info(error: BaseException) -> tuple[type[BaseException], BaseException, Any]:
    return type(error), error, error.__traceback__


def _request_line(scope: Scope | None) -> str:
    """``GET /posts``, ``WEBSOCKET /ws``; or ``Loaders`` for a container with no ASGI scope."""
    if scope is None:
        return "Loaders"
    return f"{scope.get('method', scope['type'].upper())} {scope.get('path', '')}"


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


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
        server_timing: bool = False,
    ) -> None:
        if registry is not None and not isinstance(registry, LoaderRegistry):
            raise TypeError(
                f"LoaderMiddleware: registry must be a LoaderRegistry, got {registry!r}"
            )
        _check_timeout(teardown_timeout)
        if not isinstance(server_timing, bool):
            raise TypeError(
                f"LoaderMiddleware: server_timing must be True or False, got {server_timing!r}"
            )
        #: Add a ``Server-Timing`` header to each response: per loader, its batches and its
        #: time in the batch function (as far as the response has got when it starts).
        self.server_timing = server_timing
        self.app = app
        self.registry = registry if registry is not None else LoaderRegistry()
        self.teardown_timeout = teardown_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        slot: list[Any] = [self, None, scope]
        # A nested LoaderMiddleware (e.g. around a mounted GraphQL app) hands the outer
        # container back when it is done.
        outer = scope.get(_SCOPE_KEY)
        scope[_SCOPE_KEY] = slot
        token = _current.set(slot)
        try:
            if kind == "http":
                send = _send_outside(send)
                if self.server_timing:
                    send = _send_with_server_timing(send, slot)
            await self.app(scope, receive, send)
        except BaseException as error:
            loaders = _end(slot)
            if loaders is not None:
                # The container's own rule: its teardown never replaces the app's error.
                await loaders.__aexit__(type(error), error, error.__traceback__)
            raise
        else:
            # _end(slot), inline: this runs once per request.
            slot[_MIDDLEWARE] = slot[_ASGI_SCOPE] = None
            loaders = slot[_CONTAINER_BUILT]
            if loaders is not None:
                await loaders.__aexit__(None, None, None)
        finally:
            _current.reset(token)
            if outer is not None:
                scope[_SCOPE_KEY] = outer


def _send_outside(send: Send) -> Send:
    """The server's ``send``, with the final body message sent outside any request's context:
    a server may start the next pipelined request's task inside it (uvicorn does), and that
    task must not inherit this request's container (nor an enclosing one's). A plain call
    for every other message."""

    def send_outside(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            return _send_outside_context(send, message)
        return send(message)

    return send_outside


async def _send_outside_context(send: Send, message: Message) -> None:
    token = _current.set(None)
    try:
        await send(message)
    finally:
        _current.reset(token)


def _end(slot: list[Any]) -> Loaders | None:
    """End a request's slot: no container can be built for it any more. Also breaks the
    scope -> slot -> scope cycle, which would leave every request's scope to the cyclic GC."""
    slot[_MIDDLEWARE] = slot[_ASGI_SCOPE] = None
    loaders: Loaders | None = slot[_CONTAINER_BUILT]
    return loaders


def _open(slot: list[Any]) -> Loaders:
    """The container of a request's slot, built now if this is its first use."""
    loaders: Loaders | None = slot[_CONTAINER_BUILT]
    if loaders is None:
        middleware: LoaderMiddleware | None = slot[_MIDDLEWARE]
        if middleware is None:
            raise RuntimeError(
                "the request of this context has ended and its Loaders was torn down; "
                "loaders and resources must not outlive the request that built them"
            )
        # LoaderMiddleware's container, inline: the class defaults cover every other field.
        loaders = slot[_CONTAINER_BUILT] = Loaders.__new__(Loaders)
        loaders.registry = middleware.registry
        loaders.teardown_timeout = middleware.teardown_timeout
        loaders._scope = slot[_ASGI_SCOPE]
    return loaders


def _send_with_server_timing(send: Send, slot: list[Any]) -> Send:
    """``send`` that adds the loaders' ``Server-Timing`` to the response's headers."""

    def send_timed(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            loaders: Loaders | None = slot[_CONTAINER_BUILT]
            timing = loaders.stats().server_timing() if loaders is not None else ""
            if timing:
                MutableHeaders(scope=message).append("Server-Timing", timing)
        return send(message)

    return send_timed


def loaders_from(conn: HTTPConnection) -> Loaders:
    """The ``Loaders`` of this request or websocket connection (a Request, WebSocket, ...)."""
    slot = conn.scope.get(_SCOPE_KEY)
    if type(slot) is list:
        loaders: Loaders | None = slot[_CONTAINER_BUILT]
        return loaders if loaders is not None else _open(slot)
    if slot is None:
        raise RuntimeError(_NOT_INSTALLED.format(where="connection"))
    return cast(Loaders, slot)


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
    slot = _current.get()
    if slot is None:
        raise RuntimeError(
            _NOT_INSTALLED.format(where="context")
            + " current_loaders() only works while a request is being handled."
        )
    loaders: Loaders | None = slot[_CONTAINER_BUILT]
    return loaders if loaders is not None else _open(slot)
