"""OpenTelemetry on the blog example over a real uvicorn server: with the SDK's in-memory
exporter and opentelemetry-instrumentation-asgi, ``GET /posts?limit=20`` gives exactly one
batch span per loader per level, each in the request's trace, and the metrics agree."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from aiodataloader.observe import add_global_observer, remove_global_observer
from aiodataloader.otel import OpenTelemetryObserver
from examples.blog.app import QUERY_COUNT_HEADER, create_app
from examples.blog.db import SeedSize

from .examples_support import needs_blog_dependencies

pytestmark = [pytest.mark.anyio, needs_blog_dependencies]

SMALL = SeedSize(authors=40, posts=300, comments=3_000)
BATCH = "GraphQL DataLoader Batch "


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """``app`` on uvicorn at 127.0.0.1 (a free port), in this event loop, lifespan included."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        with anyio.fail_after(60):  # seeding the database takes a moment
            while not server.started and not task.done():  # noqa: ASYNC110  # no event to await
                await asyncio.sleep(0.02)
        if not server.started:
            raise RuntimeError("uvicorn did not start") from (
                task.exception() if task.done() else None
            )
        host, port = sock.getsockname()
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()


@pytest.fixture
def telemetry() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, TracerProvider]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)
    add_global_observer(observer)
    try:
        yield spans, metrics, tracer_provider
    finally:
        remove_global_observer(observer)
        tracer_provider.shutdown()
        meter_provider.shutdown()


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_batch_span_per_loader_per_level_in_the_request_trace(
    telemetry: tuple[InMemorySpanExporter, InMemoryMetricReader, TracerProvider],
) -> None:
    spans, metrics, tracer_provider = telemetry
    app = OpenTelemetryMiddleware(create_app(seed_size=SMALL), tracer_provider=tracer_provider)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        spans.clear()
        response = await client.get("/posts", params={"limit": 20})
        assert response.status_code == 200, response.text
        posts = response.json()
        statements = int(response.headers[QUERY_COUNT_HEADER])

    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
    assert server.name == "GET /posts"
    batches = [s for s in finished if s.name.startswith(BATCH)]
    by_loader: dict[str, list[int]] = {}
    for batch in sorted(batches, key=lambda s: s.start_time or 0):
        attributes = dict(batch.attributes or {})
        assert batch.name == BATCH + str(attributes["graphql.dataloader.name"])
        by_loader.setdefault(batch.name[len(BATCH) :], []).append(
            int(attributes["graphql.dataloader.batch.size"])  # type: ignore[arg-type]
        )

    comments = [comment for post in posts for comment in post["comments"]]
    assert by_loader == {
        # The authors of the posts, then (a level down) those of their comments that are
        # not cached yet.
        "AuthorLoader": [
            len({post["author"]["id"] for post in posts}),
            len({c["author"]["id"] for c in comments} - {p["author"]["id"] for p in posts}),
        ],
        "CommentsOfPostLoader": [20],
        "TagsOfPostLoader": [20],
    }
    # One statement per batch, and one for the posts themselves.
    assert statements == len(batches) + 1
    by_id = {s.context.span_id: s for s in finished}
    for batch in batches:
        assert batch.context.trace_id == server.context.trace_id
        assert ancestors(batch, by_id)[-1] == "GET /posts"
        assert batch.links, batch.name
        assert all(link.context.trace_id == server.context.trace_id for link in batch.links)

    data = metrics.get_metrics_data()
    assert data is not None
    keys_sent: dict[object, float] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "graphql.dataloader.batch.size":
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        name = (point.attributes or {})["graphql.dataloader.name"]
                        keys_sent[name] = point.sum
    assert keys_sent == {name: sum(sizes) for name, sizes in by_loader.items()}
