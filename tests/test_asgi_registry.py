"""LoaderRegistry, Loaders and the lookup functions: every misuse raises a clear error."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from starlette.applications import Starlette
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


def http_conn() -> HTTPConnection:
    return HTTPConnection({"type": "http", "headers": [], "path": "/", "query_string": b""})


# --- LoaderRegistry.register -------------------------------------------------------------


@pytest.mark.parametrize("bad", [int, object(), "SquareLoader", DataLoader[int, int]])
def test_register_rejects_what_is_not_a_dataloader_subclass(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"expected a DataLoader subclass, got "):
        LoaderRegistry().register(bad)


def test_register_rejects_a_factory_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match=r"factory for ScaledLoader must be callable.*got 42"):
        LoaderRegistry().register(ScaledLoader, 42)  # type: ignore[arg-type]


def test_register_without_factory_needs_a_class_built_without_arguments() -> None:
    registry = LoaderRegistry()
    registry.register(SquareLoader)
    assert SquareLoader in registry
    with pytest.raises(
        TypeError,
        match=r"ScaledLoader cannot be built without arguments: register a factory for it with "
        r"`LoaderRegistry.register\(ScaledLoader, ",
    ):
        registry.register(ScaledLoader)
    assert ScaledLoader not in registry


# --- Loaders.get ---------------------------------------------------------------------------


async def test_get_builds_once_and_returns_the_same_instance() -> None:
    calls: list[HTTPConnection] = []

    def factory(conn: HTTPConnection) -> ScaledLoader:
        calls.append(conn)
        return ScaledLoader(3)

    registry = LoaderRegistry()
    registry.register(ScaledLoader, factory)
    conn = http_conn()
    loaders = Loaders(conn, registry)
    first = loaders.get(ScaledLoader)
    assert loaders.get(ScaledLoader) is first
    assert calls == [conn]
    assert await first.load(2) == 6
    assert loaders.get(SquareLoader) is loaders.get(SquareLoader)  # its own default factory
    assert len(loaders) == 2
    assert repr(loaders) == "<Loaders [ScaledLoader, SquareLoader]>"
    await loaders.aclose()
    assert repr(loaders) == "<Loaders [] closed>"


async def test_get_rejects_what_is_not_a_dataloader_subclass() -> None:
    with pytest.raises(TypeError, match=r"expected a DataLoader subclass, got <class 'dict'>"):
        Loaders(http_conn()).get(dict)  # type: ignore[type-var]


async def test_get_of_an_unregistered_class_that_needs_arguments_names_register() -> None:
    with pytest.raises(
        TypeError,
        match=r"ScaledLoader cannot be built without arguments: "
        r"register a factory for it with `LoaderRegistry.register\(ScaledLoader",
    ):
        Loaders(http_conn()).get(ScaledLoader)


async def test_get_of_plain_dataloader_without_registration_names_register() -> None:
    with pytest.raises(TypeError, match=r"DataLoader cannot be built without arguments"):
        Loaders(http_conn()).get(DataLoader)


async def test_get_rejects_a_factory_that_returns_another_type() -> None:
    registry = LoaderRegistry()
    registry.register(ScaledLoader, lambda conn: SquareLoader())  # type: ignore[arg-type,return-value]
    with pytest.raises(
        TypeError,
        match=r"the factory for ScaledLoader returned <.*SquareLoader.*>, "
        r"not a ScaledLoader instance",
    ):
        Loaders(http_conn(), registry).get(ScaledLoader)


async def test_registering_again_replaces_the_factory() -> None:
    registry = LoaderRegistry()
    registry.register(ScaledLoader, lambda conn: ScaledLoader(2))
    registry.register(ScaledLoader, lambda conn: ScaledLoader(5))
    assert Loaders(http_conn(), registry).get(ScaledLoader).factor == 5


async def test_get_after_teardown_raises() -> None:
    loaders = Loaders(http_conn())
    loaders.get(SquareLoader)
    await loaders.aclose()
    with pytest.raises(RuntimeError, match=r"cannot build SquareLoader: the request .* has ended"):
        loaders.get(SquareLoader)


async def test_clear_all_clears_every_built_loader() -> None:
    async with Loaders(http_conn()) as loaders:
        loader = loaders.get(SquareLoader)
        loader.prime(3, -1)
        assert await loader.load(3) == -1
        loaders.clear_all()
        assert await loader.load(3) == 9


# --- teardown, order and errors -----------------------------------------------------------


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


async def test_teardown_goes_newest_first_and_logs_errors_without_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    registry = LoaderRegistry()
    for cls, fail_in in [(First, None), (Second, "aclose"), (Third, "clear_all")]:

        def factory(conn: HTTPConnection, cls: type[Recorder] = cls, fail: Any = fail_in) -> Any:
            loader = cls()
            loader.log, loader.fail_in = log, fail
            return loader

        registry.register(cls, factory)
    loaders = Loaders(http_conn(), registry)
    for cls in (First, Second, Third):
        loaders.get(cls)
    with caplog.at_level(logging.WARNING, logger="aiodataloader"):
        await loaders.aclose()
    assert log == [
        "clear_all Third",
        "aclose Third",
        "clear_all Second",
        "aclose Second",
        "clear_all First",
        "aclose First",
    ]
    failures = [r for r in caplog.records if r.name == "aiodataloader"]
    assert [(r.levelno >= logging.WARNING, r.getMessage().split(" of ")[0]) for r in failures] == [
        (True, "clear_all()"),
        (True, "aclose()"),
    ]
    errors = [r.exc_info[1] for r in failures if r.exc_info]
    assert [type(e) for e in errors] == [ValueError, OSError]


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


async def test_get_loaders_without_middleware_explains_how_to_install_it() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"LoaderMiddleware is not installed\. Install it with "
        r"`app\.add_middleware\(LoaderMiddleware, registry=registry\)`",
    ):
        get_loaders(http_conn())


async def test_current_loaders_outside_a_request_explains_how_to_install_it() -> None:
    with pytest.raises(
        RuntimeError,
        match=r"LoaderMiddleware is not installed.*app\.add_middleware\(LoaderMiddleware.*"
        r"current_loaders\(\) only works while a request is being handled",
    ):
        current_loaders()


async def test_app_without_middleware_fails_clearly() -> None:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(await get_loaders(request).get(SquareLoader).load(2)))

    app = Starlette(routes=[Route("/", endpoint)])
    async with asgi_client(app) as client:
        with pytest.raises(RuntimeError, match="LoaderMiddleware is not installed"):
            await client.get("/")


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
