"""An httpx client that calls an ASGI app in-process, as the ASGI tests use it."""

from __future__ import annotations

from typing import Any

import httpx


def asgi_client(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """Returns after the whole response, so the app's teardown has run by then."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
