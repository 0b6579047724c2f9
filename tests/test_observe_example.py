"""The README's observability examples (tests/observe_example.py) do what it says."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderRegistry, loaders_from
from aiodataloader.observe import GLOBAL_OBSERVERS, observe, remove_global_observer

from .observe_example import SlowBatches, report, watch_slow_batches, with_server_timing

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[1]


class Names(DataLoader[int, str]):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        return [f"name {key}" for key in keys]


class SlowNames(Names):
    async def batch_load_fn(self, keys: list[int]) -> list[str]:
        await asyncio.sleep(0.12)  # over the 100 ms the observer watches for
        return await super().batch_load_fn(keys)


async def test_statistics() -> None:
    assert (await report(Names())).startswith("1 batch(es), 3 keys, ")


async def test_the_observer_logs_slow_batches(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="myapp"):
        await observe(Names(), SlowBatches()).load(1)
        await observe(SlowNames(), SlowBatches()).load_many([1, 2])
    (record,) = caplog.records
    assert record.getMessage().startswith("SlowNames: 2 keys took 0.1")


async def test_watch_slow_batches_watches_every_loader(caplog: pytest.LogCaptureFixture) -> None:
    watch_slow_batches()
    (watcher,) = [o for o in GLOBAL_OBSERVERS if isinstance(o, SlowBatches)]
    try:
        with caplog.at_level(logging.WARNING, logger="myapp"):
            await SlowNames().load(1)  # no observe(): the global observer sees it
    finally:
        remove_global_observer(watcher)
    assert caplog.records[0].getMessage().startswith("SlowNames: 1 keys took 0.1")


def test_install_tracing_makes_a_span_per_batch_and_the_metrics() -> None:
    # A process of its own: the global providers can be set once per process.
    script = textwrap.dedent(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from aiodataloader import DataLoader
        from tests.observe_example import install_tracing

        async def names(keys):
            return [str(key) for key in keys]

        async def main():
            await DataLoader(names, name="Names").load_many([1, 2, 3, 1])  # a hit

        spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
        install_tracing(spans, reader)
        asyncio.run(main())
        trace.get_tracer_provider().force_flush()
        (span,) = spans.get_finished_spans()
        print(span.name, span.attributes["graphql.dataloader.batch.size"])
        data = reader.get_metrics_data()
        scopes = [s for r in data.resource_metrics for s in r.scope_metrics]
        print(sorted(m.name for s in scopes for m in s.metrics))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [
        "GraphQL DataLoader Batch Names 3",
        "['graphql.dataloader.batch.duration', 'graphql.dataloader.batch.size', "
        "'graphql.dataloader.cache.hits', 'graphql.dataloader.cache.misses']",
    ]


async def test_with_server_timing() -> None:
    async def endpoint(request: Request) -> Response:
        names = loaders_from(request).get(Names)
        return PlainTextResponse(", ".join(await names.load_many([1, 2])))

    app = Starlette(routes=[Route("/", endpoint)])
    with_server_timing(app, LoaderRegistry())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        response = await client.get("/")
    assert response.text == "name 1, name 2"
    assert response.headers["Server-Timing"].startswith("Names;dur=")
    assert response.headers["Server-Timing"].endswith(';desc="1 batch, 2 keys"')
    logging.getLogger("aiodataloader.requests").setLevel(logging.NOTSET)
