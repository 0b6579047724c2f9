"""Websockets: one Loaders container per connection, torn down when the connection ends."""

from __future__ import annotations

import warnings

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, Loaders, current_loaders, loaders_from
from tests import typing_fastapi

with warnings.catch_warnings():
    # Starlette >= 1.2 prefers httpx2 for its TestClient; plain httpx works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


class Counter(DataLoader[int, str]):
    batches: list[list[int]] = []  # shared on purpose: the tests read it
    closed: list[Counter] = []  # the loaders themselves: ids can be reused after collection

    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        Counter.batches.append(keys)
        return [f"n{k}" for k in keys]

    async def aclose(self) -> None:
        Counter.closed.append(self)


@pytest.fixture(autouse=True)
def reset_counts() -> None:
    Counter.batches, Counter.closed = [], []


containers: list[Loaders] = []


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    loaders = loaders_from(websocket)
    containers.append(loaders)
    try:
        while True:
            text = await websocket.receive_text()
            if text == "clear":
                loaders.clear_all()
                continue
            assert current_loaders() is loaders
            await websocket.send_text(await loaders.get(Counter).load(int(text)))
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/ws", echo)], middleware=[Middleware(LoaderMiddleware)])


def test_one_container_per_connection_kept_across_messages() -> None:
    containers.clear()
    with TestClient(app) as client:
        for _ in range(2):
            with client.websocket_connect("/ws") as ws:
                for text in ("1", "1", "2", "clear", "1"):
                    if text == "clear":
                        ws.send_text(text)
                        continue
                    ws.send_text(text)
                    assert ws.receive_text() == f"n{text}"
    # Per connection: 1 and 2 are cached after their first load, until clear_all().
    assert Counter.batches == [[1], [2], [1]] * 2
    assert len(containers) == 2
    assert containers[0] is not containers[1]
    assert len(Counter.closed) == 2
    assert Counter.closed[0] is not Counter.closed[1]
    assert repr(containers[0]) == "<Loaders [] closed>"


def test_server_side_close_tears_down() -> None:
    async def close_after_one(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await loaders_from(websocket).get(Counter).load(5))
        await websocket.close()

    one_shot = Starlette(
        routes=[WebSocketRoute("/ws", close_after_one)], middleware=[Middleware(LoaderMiddleware)]
    )
    with TestClient(one_shot) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "n5"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()
    assert len(Counter.closed) == 1


def test_fastapi_websocket_route_with_get_loader() -> None:
    with TestClient(typing_fastapi.app) as client, client.websocket_connect("/ws") as ws:
        for key in (3, 4):
            ws.send_text(str(key))
            assert ws.receive_text() == f"user{key}"
