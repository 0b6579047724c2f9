"""Bad input gets a 4xx with a clear message, never a 500.

The request body limit itself is FastAPI's (``FastAPI(max_body_size=...)`` in ``app.py``):
a body over it is answered with 413 as soon as its ``Content-Length``, or the bytes read so
far, exceed it, without reading the rest.
"""

from __future__ import annotations

import json
from typing import Any

from cross_web import HTTPException as GraphQLHTTPException  # what Strawberry answers with
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse, Response

#: The largest request body the blog reads; a GraphQL document is a few kilobytes.
MAX_BODY_BYTES = 64 * 1024


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: renders any ``str``, lone surrogates too."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


async def validation_error(request: Request, error: Exception) -> Response:
    """FastAPI's 422, without echoing the input: an input such as ``1e400`` (infinity) or a
    lone surrogate cannot be rendered as JSON, and would turn the 422 into a 500."""
    if not isinstance(error, RequestValidationError):  # registered for this class only
        raise error
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    return AsciiJSONResponse({"detail": detail}, status_code=422)


def decode_graphql_body(body: str | bytes) -> object:
    """A GraphQL-over-HTTP body is a JSON object; anything else is a 400 that says so."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise GraphQLHTTPException(
            400,
            "the request body must be a JSON object such as "
            f'{{"query": "{{ posts {{ id }} }}"}}, got a JSON {type(data).__name__}',
        )
    return data
