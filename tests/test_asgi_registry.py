"""LoaderRegistry, Loaders and the lookup functions: every factory shape, every misuse with
its clear error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from aiodataloader import DataLoader
from aiodataloader.asgi import (
    LoaderMiddleware,
    LoaderRegistry,
    Loaders,
    current_loaders,
    get_loaders,
    loaders_from,
)

from .asgi_client import asgi_client

pytestmark = pytest.mark.anyio


class SquareLoader(DataLoader[int, int]):
    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        return [k * k for k in keys]


class ScaledLoader(DataLoader[int, int]):
    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        return [k * self.factor for k in keys]


class Session:
    """A resource: records what happens to it."""

    def __init__(self, log: list[str] | None = None, name: str = "session") -> None:
        self.log = log if log is not None else []
        self.name = name

    def __repr__(self) -> str:
        return f"<Session {self.name}>"


def http_conn(headers: list[tuple[bytes, bytes]] | None = None) -> HTTPConnection:
    return HTTPConnection(
        {"type": "http", "headers": headers or [], "path": "/", "query_string": b""}
    )


# --- register: what it refuses --------------------------------------------------------------


@pytest.mark.parametrize("bad", [object(), "SquareLoader", DataLoader[int, int], None])
def test_register_rejects_what_is_not_a_class(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"expected a class \(a DataLoader subclass or a resource"):
        LoaderRegistry().register(bad)


def test_register_rejects_a_factory_that_is_not_callable() -> None:
    with pytest.raises(
        TypeError,
        match=r"the factory for ScaledLoader must be callable as factory\(scope\) or factory\(\), "
        r"got 42$",
    ):
        LoaderRegistry().register(ScaledLoader, 42)  # type: ignore[call-overload]


async def test_register_rejects_a_coroutine_passed_instead_of_its_function() -> None:
    async def make() -> Session:
        return Session()

    with pytest.raises(
        TypeError,
        match=r"the factory for Session must be callable .* got <coroutine .*> "
        r"\(pass the function, not its result\)",
    ):
        LoaderRegistry().register(Session, make())  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "factory",
    [
        lambda a, b: Session(),
        lambda *, scope: Session(),
    ],
    ids=["two parameters", "keyword-only"],
)
def test_register_rejects_a_factory_of_the_wrong_shape(factory: Any) -> None:
    with pytest.raises(
        TypeError,
        match=r"the factory for Session must take no argument or one \(the request's Loaders "
        r"container\), got <function .*> with the signature \(",
    ):
        LoaderRegistry().register(Session, factory)


def test_register_rejects_a_parameter_annotated_with_something_else() -> None:
    def factory(session: Session) -> ScaledLoader:
        return ScaledLoader(2)

    with pytest.raises(
        TypeError,
        match=r"the factory for ScaledLoader must take no argument or one .*: its parameter is "
        r"annotated <class '.*Session'>, expected Loaders",
    ):
        LoaderRegistry().register(ScaledLoader, factory)  # type: ignore[arg-type]


def test_register_rejects_enter_that_is_not_a_bool() -> None:
    with pytest.raises(TypeError, match=r"enter for Session must be True or False, got 'yes'"):
        LoaderRegistry().register(Session, Session, enter="yes")  # type: ignore[call-overload]


def test_register_without_factory_needs_a_class_built_without_arguments() -> None:
    registry = LoaderRegistry()
    registry.register(SquareLoader)
    registry.register(Session)
    assert SquareLoader in registry
    assert Session in registry
    with pytest.raises(
        TypeError,
        match=r"ScaledLoader cannot be built without arguments: register a factory for it with "
        r"`LoaderRegistry.register\(ScaledLoader, factory\)`, e\.g\. "
        r"`lambda scope: ScaledLoader\(\.\.\.\)`",
    ):
        registry.register(ScaledLoader)
    assert ScaledLoader not in registry
    assert registry.factory_for(Session) is Session


def test_registering_again_replaces_the_factory() -> None:
    registry = LoaderRegistry()
    registry.register(ScaledLoader, lambda: ScaledLoader(2))
    registry.register(ScaledLoader, lambda: ScaledLoader(5))
    assert Loaders(registry=registry).get(ScaledLoader).factor == 5


# --- every factory shape, through get() and aget() --------------------------------------------


def _sync(scope: Loaders) -> Session:
    return Session(name="sync")


async def _async(scope: Loaders) -> Session:
    await anyio.lowlevel.checkpoint()
    return Session(name="async")


def _generator(scope: Loaders) -> Iterator[Session]:
    session = Session(name="generator")
    yield session
    session.log.append("generator cleanup")


async def _async_generator(scope: Loaders) -> AsyncIterator[Session]:
    session = Session(name="async generator")
    await anyio.lowlevel.checkpoint()
    yield session
    await anyio.lowlevel.checkpoint()
    session.log.append("async generator cleanup")


class SessionContext:
    def __init__(self) -> None:
        self.session = Session(name="context manager")

    def __enter__(self) -> Session:
        self.session.log.append("enter")
        return self.session

    def __exit__(self, *exc_info: object) -> None:
        self.session.log.append("context manager cleanup")


class AsyncSessionContext:
    def __init__(self) -> None:
        self.session = Session(name="async context manager")

    async def __aenter__(self) -> Session:
        self.session.log.append("aenter")
        return self.session

    async def __aexit__(self, *exc_info: object) -> None:
        await anyio.lowlevel.checkpoint()
        self.session.log.append("async context manager cleanup")


SHAPES: dict[str, tuple[Any, bool, list[str], list[str]]] = {
    # name: (factory, async only, the session's log while open, and after teardown)
    "sync": (_sync, False, [], []),
    "sync without argument": (lambda: Session(name="sync"), False, [], []),
    "async": (_async, True, [], []),
    "async without argument": (lambda: _async(Loaders()), True, [], []),
    "generator": (_generator, False, [], ["generator cleanup"]),
    "async generator": (_async_generator, True, [], ["async generator cleanup"]),
    "context manager": (
        lambda scope: SessionContext(),
        False,
        ["enter"],
        ["enter", "context manager cleanup"],
    ),
    "async context manager": (
        lambda: AsyncSessionContext(),
        True,
        ["aenter"],
        ["aenter", "async context manager cleanup"],
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_every_factory_shape_builds_once_and_cleans_up_at_teardown(shape: str) -> None:
    factory, async_only, while_open, after = SHAPES[shape]
    registry = LoaderRegistry()
    registry.register(Session, factory)
    async with Loaders(registry=registry) as scope:
        session = await scope.aget(Session)
        assert isinstance(session, Session)
        assert await scope.aget(Session) is session
        assert scope.get(Session) is session  # once built, get() serves any shape
        assert session.log == while_open
    assert session.log == after

    # get() builds with sync factories only.
    async with Loaders(registry=registry) as scope:
        if async_only:
            with pytest.raises(
                TypeError,
                match=r"the factory for Session (is async|returned an awaitable|returned an "
                r"async context manager): use `await scope\.aget\(Session\)` \(get\(\) builds "
                r"with sync factories only\)",
            ):
                scope.get(Session)
            assert Session not in scope
        else:
            assert scope.get(Session).log == while_open


async def test_enter_false_keeps_a_returned_context_manager_as_it_is() -> None:
    registry = LoaderRegistry()
    registry.register(AsyncSessionContext, AsyncSessionContext, enter=False)
    async with Loaders(registry=registry) as scope:
        context = scope.get(AsyncSessionContext)
    assert context.session.log == []


async def test_a_resource_that_is_itself_a_context_manager_is_entered_and_exited() -> None:
    class Client:
        log: list[str] = []

        async def __aenter__(self) -> Client:
            self.log.append("open")
            return self

        async def __aexit__(self, *exc_info: object) -> None:
            self.log.append("close")

    registry = LoaderRegistry()
    registry.register(Client)  # builds without arguments, entered as the resource itself
    async with Loaders(registry=registry) as scope:
        client = await scope.aget(Client)
        assert client.log == ["open"]
    assert client.log == ["open", "close"]


async def test_a_loader_factory_gets_the_requests_resources_from_the_container() -> None:
    class SessionLoader(DataLoader[int, str]):
        def __init__(self, session: Session) -> None:
            super().__init__()
            self.session = session

        async def batch_load_fn(self, keys: list[int]) -> list[str]:
            return [f"{self.session.name}:{k}" for k in keys]

    async def session_loader(scope: Loaders) -> SessionLoader:
        return SessionLoader(await scope.aget(Session))

    registry = LoaderRegistry()
    registry.register(Session, _async_generator)
    registry.register(SessionLoader, session_loader)
    async with Loaders(registry=registry) as scope:
        loader = await scope.aget(SessionLoader)
        assert loader.session is await scope.aget(Session)
        assert await loader.load(1) == "async generator:1"
        assert repr(scope) == "<Loaders [Session, SessionLoader]>"
    assert repr(scope) == "<Loaders [] closed>"


async def test_factories_see_the_connection_by_annotation_or_through_the_container() -> None:
    seen: dict[str, Any] = {}

    def takes_connection(conn: HTTPConnection) -> ScaledLoader:
        seen["annotated"] = conn
        return ScaledLoader(int(conn.headers["x-factor"]))

    def takes_request(conn: Request[State]) -> Session:
        seen["request"] = conn
        return Session()

    def takes_scope(scope: Loaders) -> SquareLoader:
        seen["scope"] = scope
        return SquareLoader()

    registry = LoaderRegistry()
    registry.register(ScaledLoader, takes_connection)
    registry.register(Session, takes_request)
    registry.register(SquareLoader, takes_scope)
    conn = http_conn([(b"x-factor", b"3")])
    async with Loaders(conn, registry) as scope:
        assert scope.get(ScaledLoader).factor == 3
        scope.get(Session)
        scope.get(SquareLoader)
    assert seen == {"annotated": conn, "request": conn, "scope": scope}


async def test_an_unannotated_factory_of_050_still_reads_the_connection_with_a_warning() -> None:
    registry = LoaderRegistry()
    registry.register(ScaledLoader, lambda conn: ScaledLoader(int(conn.headers["x-factor"])))
    async with Loaders(http_conn([(b"x-factor", b"4")]), registry) as scope:
        with pytest.warns(
            DeprecationWarning,
            match=r"an unannotated factory parameter receives the request's Loaders container "
            r"now, not its HTTPConnection \(0\.5\.0\): use `scope\.connection\.headers`, or "
            r"annotate the parameter HTTPConnection\. Loaders forwarding `headers` to its "
            r"connection goes away in the next release",
        ):
            assert scope.get(ScaledLoader).factor == 4
        with pytest.raises(AttributeError, match=r"'Loaders' object has no attribute 'nope'"):
            scope.nope  # type: ignore[attr-defined]


async def test_a_container_without_connection_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"<Loaders \[\]> has no connection: it was built "):
        Loaders().connection
    with pytest.raises(TypeError, match=r"connection must be an HTTPConnection .* got 'conn'"):
        Loaders("conn")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"registry must be a LoaderRegistry, got \{\}"):
        Loaders(None, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"teardown_timeout must be a number of seconds > 0"):
        Loaders(teardown_timeout=0)


# --- get / aget: what they refuse -----------------------------------------------------------


async def test_an_unregistered_resource_names_itself_and_register() -> None:
    message = (
        r"Session is not registered: register a factory for it with "
        r"`registry\.register\(Session, factory\)` on the LoaderRegistry given to "
        r"LoaderMiddleware \(or to this Loaders\)"
    )
    scope = Loaders()
    with pytest.raises(TypeError, match=message):
        scope.get(Session)
    with pytest.raises(TypeError, match=message):
        await scope.aget(Session)


async def test_get_rejects_what_is_not_a_class() -> None:
    with pytest.raises(TypeError, match=r"expected a class \(a DataLoader subclass or a resource"):
        Loaders().get("Session")  # type: ignore[arg-type]


async def test_an_unregistered_loader_that_needs_arguments_names_register() -> None:
    with pytest.raises(
        TypeError,
        match=r"ScaledLoader cannot be built without arguments: register a factory for it",
    ):
        Loaders().get(ScaledLoader)
    with pytest.raises(TypeError, match=r"DataLoader cannot be built without arguments"):
        Loaders().get(DataLoader)


async def test_a_factory_that_returns_another_type_is_refused_and_its_context_exited() -> None:
    exited: list[str] = []

    @contextlib.asynccontextmanager
    async def wrong() -> AsyncIterator[str]:
        yield "not a session"
        exited.append("exited")

    registry = LoaderRegistry()
    registry.register(ScaledLoader, lambda scope: SquareLoader())  # type: ignore[arg-type,return-value]
    registry.register(Session, wrong)  # type: ignore[arg-type]
    scope = Loaders(registry=registry)
    with pytest.raises(
        TypeError,
        match=r"the factory for ScaledLoader returned <.*SquareLoader.*>, "
        r"not a ScaledLoader instance",
    ):
        scope.get(ScaledLoader)
    with pytest.raises(
        TypeError, match=r"the factory for Session returned 'not a session', not a Session"
    ):
        await scope.aget(Session)
    assert exited == ["exited"]
    assert len(scope) == 0


async def test_a_factory_that_asks_for_its_own_class_is_a_clear_error() -> None:
    async def loops(scope: Loaders) -> Session:
        return await scope.aget(Session)

    registry = LoaderRegistry()
    registry.register(Session, loops)
    with pytest.raises(
        RuntimeError, match=r"Session is being built already: its factory asked for it"
    ):
        await Loaders(registry=registry).aget(Session)


async def test_a_factory_that_asks_for_its_own_class_after_waiting_is_a_clear_error() -> None:
    # Every factory shape; each suspends first, so the question comes from a resumed build.
    async def coroutine(scope: Loaders) -> Session:
        await asyncio.sleep(0)
        return await scope.aget(Session)

    async def generator(scope: Loaders) -> AsyncIterator[Session]:
        await asyncio.sleep(0)
        yield await scope.aget(Session)

    class Entering:
        def __init__(self, scope: Loaders) -> None:
            self.scope = scope

        async def __aenter__(self) -> Session:
            await asyncio.sleep(0)
            return await self.scope.aget(Session)

        async def __aexit__(self, *exc_info: object) -> None:
            pass

    async def returns_entering(scope: Loaders) -> Entering:
        await asyncio.sleep(0)
        return Entering(scope)  # entered by the container once this coroutine is done

    for factory in (coroutine, generator, Entering, returns_entering):
        registry = LoaderRegistry()
        # An awaitable of a context manager works, but is not among the typed shapes.
        registry.register(Session, factory)  # type: ignore[arg-type]
        with pytest.raises(
            RuntimeError, match=r"Session is being built already: its factory asked for it"
        ):
            with anyio.fail_after(5):  # never a hang
                await Loaders(registry=registry).aget(Session)


async def test_concurrent_aget_of_one_class_builds_it_once() -> None:
    built: list[Session] = []
    release = asyncio.Event()

    class SlowToOpen:
        async def __aenter__(self) -> Session:
            await release.wait()
            built.append(Session())
            return built[-1]

        async def __aexit__(self, *exc_info: object) -> None:
            pass

    registry = LoaderRegistry()
    registry.register(Session, SlowToOpen)  # a sync factory: get() would not refuse it at once
    scope = Loaders(registry=registry)
    getters = [asyncio.ensure_future(scope.aget(Session)) for _ in range(5)]
    await anyio.lowlevel.checkpoint()
    with pytest.raises(RuntimeError, match=r"Session is being built by an async factory call"):
        scope.get(Session)
    release.set()
    assert await asyncio.gather(*getters) == built * 5
    assert len(built) == 1


async def test_when_the_first_builder_is_cancelled_a_waiter_builds_instead() -> None:
    calls: list[int] = []
    first_started = asyncio.Event()

    async def slow(scope: Loaders) -> Session:
        calls.append(len(calls))
        if len(calls) == 1:
            first_started.set()
            await asyncio.sleep(3600)
        return Session(name=f"build {len(calls)}")

    registry = LoaderRegistry()
    registry.register(Session, slow)
    scope = Loaders(registry=registry)
    first = asyncio.ensure_future(scope.aget(Session))
    await first_started.wait()
    second = asyncio.ensure_future(scope.aget(Session))
    await anyio.lowlevel.checkpoint()
    first.cancel()
    assert (await second).name == "build 2"
    assert first.cancelled()


async def test_a_failing_factory_is_logged_and_nothing_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Loaders) -> Session:
        raise OSError("database down")

    registry = LoaderRegistry()
    registry.register(Session, broken)
    scope = Loaders(registry=registry)
    with (
        caplog.at_level(logging.WARNING, logger="aiodataloader"),
        pytest.raises(OSError, match="database down"),
    ):
        await scope.aget(Session)
    assert [r.getMessage() for r in caplog.records] == [
        "the factory for Session raised OSError('database down')"
    ]
    assert Session not in scope


# --- override -----------------------------------------------------------------------------


async def test_override_swaps_a_factory_inside_the_block_only() -> None:
    registry = LoaderRegistry()
    registry.register(ScaledLoader, lambda: ScaledLoader(2))
    with registry.override(ScaledLoader, lambda: ScaledLoader(7)):
        assert Loaders(registry=registry).get(ScaledLoader).factor == 7
        with registry.override(ScaledLoader, lambda: ScaledLoader(9)):
            assert Loaders(registry=registry).get(ScaledLoader).factor == 9
        assert Loaders(registry=registry).get(ScaledLoader).factor == 7
    assert Loaders(registry=registry).get(ScaledLoader).factor == 2
    # A class that was not registered is unregistered again afterwards.
    with registry.override(Session, lambda: Session(name="fake")):
        assert Loaders(registry=registry).get(Session).name == "fake"
    assert Session not in registry


# --- after teardown -----------------------------------------------------------------------


async def test_get_after_teardown_raises() -> None:
    registry = LoaderRegistry()
    registry.register(Session)
    scope = Loaders(registry=registry)
    scope.get(SquareLoader)
    await scope.aclose()
    for cls in (SquareLoader, Session):
        with pytest.raises(
            RuntimeError,
            match=rf"cannot build {cls.__name__}: the request of this Loaders has ended and it "
            r"was torn down; loaders and resources must not outlive the request",
        ):
            scope.get(cls)
        with pytest.raises(RuntimeError, match=rf"cannot build {cls.__name__}: the request"):
            await scope.aget(cls)


async def test_a_kept_loader_refuses_to_load_after_teardown() -> None:
    async with Loaders() as scope:
        loader = scope.get(SquareLoader)
        assert await loader.load(3) == 9
    for call in (lambda: loader.load(3), lambda: loader.load_many([1]), lambda: loader.prime(1, 1)):
        with pytest.raises(RuntimeError, match=r"SquareLoader.*its request has ended"):
            call()


async def test_clear_all_clears_every_built_loader() -> None:
    async with Loaders(http_conn()) as loaders:
        loader = loaders.get(SquareLoader)
        loader.prime(3, -1)
        assert await loader.load(3) == -1
        loaders.clear_all()
        assert await loader.load(3) == 9


# --- a shared instance ------------------------------------------------------------------


async def test_a_factory_that_returns_a_shared_loader_is_refused_while_its_owner_lives() -> None:
    shared = SquareLoader()
    registry = LoaderRegistry()
    registry.register(SquareLoader, lambda: shared)
    first = Loaders(registry=registry)
    assert first.get(SquareLoader) is shared
    second = Loaders(registry=registry)
    with pytest.raises(
        RuntimeError,
        match=r"the factory for SquareLoader returned <SquareLoader .*>, which belongs to "
        r"another request's Loaders \(<Loaders \[SquareLoader\]>\): factories must build a new "
        r"loader per request",
    ):
        second.get(SquareLoader)
    await second.aclose()
    await first.aclose()


async def test_a_shared_plain_resource_is_fine() -> None:
    settings = Session(name="settings")  # no cleanup: an app-wide object, e.g. an engine
    registry = LoaderRegistry()
    registry.register(Session, lambda: settings)
    async with Loaders(registry=registry) as first, Loaders(registry=registry) as second:
        assert first.get(Session) is second.get(Session) is settings


# --- teardown order and errors ------------------------------------------------------------


class Recorder(DataLoader[int, int]):
    log: list[str]
    fail_in: str | None = None

    async def batch_load_fn(self, keys: list[int]) -> list[int]:
        return keys

    def clear_all(self) -> Recorder:
        self.log.append(f"clear_all {type(self).__name__}")
        if self.fail_in == "clear_all":
            raise ValueError("clear_all broke")
        super().clear_all()
        return self

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.log.append(f"aclose {type(self).__name__}")
        if self.fail_in == "aclose":
            raise OSError("aclose broke")


class First(Recorder):
    pass


class Second(Recorder):
    pass


class Third(Recorder):
    pass


async def test_teardown_goes_newest_first_over_loaders_and_resources_and_logs_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    registry = LoaderRegistry()
    for cls, fail_in in [(First, None), (Second, "aclose"), (Third, "clear_all")]:

        def factory(scope: Loaders, cls: type[Recorder] = cls, fail: Any = fail_in) -> Any:
            loader = cls()
            loader.log, loader.fail_in = log, fail
            return loader

        registry.register(cls, factory)

    async def session(scope: Loaders) -> AsyncIterator[Session]:
        yield Session(log)
        log.append("session cleanup")

    registry.register(Session, session)
    loaders = Loaders(http_conn(), registry)
    loaders.get(First)
    await loaders.aget(Session)
    loaders.get(Second)
    loaders.get(Third)
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        await loaders.aclose()
    assert log == [
        "clear_all Third",
        "aclose Third",
        "clear_all Second",
        "aclose Second",
        "session cleanup",
        "clear_all First",
        "aclose First",
    ]
    failures = [r for r in caplog.records if r.name == "aiodataloader"]
    assert [(r.levelno, r.getMessage().split(" of ")[0]) for r in failures] == [
        (logging.ERROR, "clear_all()"),
        (logging.ERROR, "aclose()"),
    ]
    errors = [r.exc_info[1] for r in failures if r.exc_info]
    assert [type(e) for e in errors] == [ValueError, OSError]
    assert failures[0].getMessage().endswith(" failed during teardown")


async def test_resource_cleanup_gets_the_requests_error() -> None:
    seen: list[object] = []

    async def session(scope: Loaders) -> AsyncIterator[Session]:
        try:
            yield Session()
        except ValueError as error:
            seen.append(error)  # e.g. roll back
            raise
        else:
            seen.append("commit")

    registry = LoaderRegistry()
    registry.register(Session, session)
    async with Loaders(registry=registry) as scope:
        await scope.aget(Session)

    async def fails() -> None:
        async with Loaders(registry=registry) as scope:
            await scope.aget(Session)
            raise ValueError("endpoint broke")

    with pytest.raises(ValueError, match="endpoint broke"):
        await fails()
    assert seen[0] == "commit"
    assert isinstance(seen[1], ValueError)


async def test_teardown_cancels_pending_loads() -> None:
    started = anyio.Event()

    class Slow(DataLoader[int, int]):
        async def batch_load_fn(self, keys: list[int]) -> list[int]:
            started.set()
            await anyio.sleep_forever()
            raise AssertionError

    loaders = Loaders(http_conn())
    in_flight = loaders.get(Slow).load(1)
    await started.wait()
    queued = loaders.get(Slow).load(2)
    with anyio.fail_after(5):
        await loaders.aclose()
    assert in_flight.cancelled()
    assert queued.done()


# --- lookups without the middleware ---------------------------------------------------------


async def test_loaders_from_without_middleware_explains_how_to_install_it() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"LoaderMiddleware is not installed\. Install it with "
        r"`app\.add_middleware\(LoaderMiddleware, registry=registry\)`",
    ):
        loaders_from(http_conn())


async def test_get_loaders_is_the_deprecated_name_of_loaders_from() -> None:
    scope = Loaders()
    conn = HTTPConnection({"type": "http", "aiodataloader.loaders": scope})
    with pytest.warns(
        DeprecationWarning,
        match=r"get_loaders\(conn\) is now loaders_from\(conn\); get_loaders goes away",
    ):
        assert get_loaders(conn) is scope


async def test_current_loaders_outside_a_request_explains_how_to_install_it() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"LoaderMiddleware is not installed.*app\.add_middleware\(LoaderMiddleware.*"
        r"current_loaders\(\) only works while a request is being handled",
    ):
        current_loaders()


async def test_app_without_middleware_fails_clearly() -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(await loaders_from(request).get(SquareLoader).load(2)))

    app = Starlette(routes=[Route("/", endpoint)])
    async with asgi_client(app) as client:
        with pytest.raises(RuntimeError, match="LoaderMiddleware is not installed"):
            await client.get("/")


def test_middleware_rejects_bad_options() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError

    with pytest.raises(TypeError, match=r"LoaderMiddleware: registry must be a LoaderRegistry"):
        LoaderMiddleware(app, registry=object())  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"teardown_timeout must be a number of seconds > 0, got -1"
    ):
        LoaderMiddleware(app, teardown_timeout=-1)


# --- what the middleware passes through and leaves alone ------------------------------------


async def test_lifespan_and_other_scopes_pass_through_untouched() -> None:
    seen: list[tuple[Scope, Loaders | None]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            found: Loaders | None = current_loaders()
        except RuntimeError:
            found = None
        seen.append((scope, found))

    async def receive() -> Message:
        raise AssertionError

    async def send(message: Message) -> None:
        raise AssertionError

    middleware = LoaderMiddleware(app)
    for scope in ({"type": "lifespan", "state": {}}, {"type": "custom"}):
        before = dict(scope)
        await middleware(scope, receive, send)
        assert seen[-1] == (scope, None)
        assert scope == before


async def test_http_scope_state_is_never_written() -> None:
    states: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        current_loaders().get(SquareLoader)
        states.append(dict(scope["state"]))
        await PlainTextResponse("ok")(scope, receive, send)

    async def server_with_lifespan_state(scope: Scope, receive: Receive, send: Send) -> None:
        await LoaderMiddleware(app)({**scope, "state": {}}, receive, send)

    transport = httpx.ASGITransport(app=server_with_lifespan_state)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/")).text == "ok"
    assert states == [{}]


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [
        ("starlette", "aiodataloader.asgi", "asgi"),
        ("fastapi", "aiodataloader.fastapi", "fastapi"),
        ("opentelemetry", "aiodataloader.otel", "otel"),
        ("redis", "aiodataloader.redis", "redis"),
    ],
)
def test_a_missing_extra_names_what_to_install(blocked: str, module: str, extra: str) -> None:
    # A fresh interpreter in which the framework cannot be imported, as without the extra.
    code = f"import sys; sys.modules[{blocked!r}] = None; import {module}"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"ImportError: {module} needs ")
    assert f"install the `{extra}` extra, e.g. pip install 'aiodataloader[{extra}]'" in last_line
