"""The README's observability examples, verbatim (run by tests/test_observe_example.py)."""

from __future__ import annotations

import logging

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from starlette.applications import Starlette

from aiodataloader import DataLoader
from aiodataloader.asgi import LoaderMiddleware, LoaderRegistry
from aiodataloader.observe import BatchInfo, LoaderObserver, add_global_observer
from aiodataloader.otel import OpenTelemetryObserver

logger = logging.getLogger("myapp")


# region statistics
async def report(loader: DataLoader[int, str]) -> str:
    await loader.load_many([1, 2, 3])
    stats = loader.stats  # a frozen snapshot: batches, keys, failures, time
    return f"{stats.batches} batch(es), {stats.keys_dispatched} keys, {stats.batch_seconds:.4f} s"


# endregion


# region observer
class SlowBatches(LoaderObserver):
    """Logs every batch that takes more than 100 ms."""

    def on_batch_end(self, batch: BatchInfo) -> None:
        if batch.duration > 0.1:
            logger.warning("%s: %d keys took %.2f s", batch.name, batch.size, batch.duration)


def watch_slow_batches() -> None:
    add_global_observer(SlowBatches())  # or observe(loader, ...), or registry.add_observer(...)


# endregion


# region opentelemetry
def install_tracing(exporter: SpanExporter, reader: MetricReader) -> None:
    tracer_provider = TracerProvider()
    # The batch processor exports from a thread: a slow exporter never blocks the event loop.
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    add_global_observer(OpenTelemetryObserver())


# endregion


# region server-timing
def with_server_timing(app: Starlette, registry: LoaderRegistry) -> None:
    app.add_middleware(LoaderMiddleware, registry=registry, server_timing=True)
    # and a DEBUG line per request with the same figures:
    logging.getLogger("aiodataloader.requests").setLevel(logging.DEBUG)


# endregion
