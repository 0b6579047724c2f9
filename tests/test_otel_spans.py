"""The OpenTelemetry observer with the real SDK: spans per batch, links to the callers'
spans, errors and cancellation on the span, and the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aiodataloader import DataLoader
from aiodataloader.observe import observe
from aiodataloader.otel import METRICS, OpenTelemetryObserver

pytestmark = pytest.mark.anyio


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def observer(self, **options: Any) -> OpenTelemetryObserver:
        return OpenTelemetryObserver(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def finished(self, prefix: str = "GraphQL DataLoader Batch") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(prefix)]

    def points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        found: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metrics])
    yield Telemetry(spans, metrics, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


async def double(keys: list[int]) -> list[int]:
    return [key * 2 for key in keys]


async def test_one_span_per_batch_with_the_draft_attributes(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    loader = observe(DataLoader(double, name="UserLoader"), telemetry.observer())

    async def resolver(field: str, key: int) -> int:
        with tracer.start_as_current_span(field):
            return await loader.load(key)

    with tracer.start_as_current_span("request"):
        results = await asyncio.gather(
            resolver("Post.author", 1), resolver("Post.editor", 2), resolver("Post.author", 1)
        )
    assert list(results) == [2, 4, 2]

    (batch,) = telemetry.finished()
    assert batch.name == "GraphQL DataLoader Batch UserLoader"
    assert batch.kind is SpanKind.INTERNAL
    assert dict(batch.attributes or {}) == {
        "graphql.processing.type": "dataloader_batch",
        "graphql.dataloader.name": "UserLoader",
        "graphql.dataloader.batch.size": 2,
    }
    assert batch.status.status_code is StatusCode.UNSET
    resolvers = telemetry.finished("Post.")
    request = telemetry.finished("request")[0]
    # Under the request's trace: a child of the span current at the first load.
    assert batch.context.trace_id == request.context.trace_id
    assert batch.parent is not None
    assert batch.parent.span_id in {s.context.span_id for s in resolvers}
    # Linked to the two resolvers whose loads it sends (the third one was a cache hit).
    linked = {link.context.span_id for link in batch.links}
    sent = {s.context.span_id for s in resolvers if s.name in ("Post.author", "Post.editor")}
    assert len(linked) == 2
    assert linked <= sent


async def test_the_batch_function_runs_under_the_batch_span(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")

    async def query(keys: list[int]) -> list[int]:
        with tracer.start_as_current_span("SELECT users"):
            return keys

    await observe(DataLoader(query, name="UserLoader"), telemetry.observer()).load(1)
    (batch,) = telemetry.finished()
    (sql,) = telemetry.finished("SELECT")
    assert sql.parent is not None
    assert sql.parent.span_id == batch.context.span_id


async def test_spans_links_and_nesting_through_the_context_api_alone(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where OpenTelemetry's runtime context is not the default ContextVar one, the observer
    # reads and sets the current context through the API (attach, detach, Context.run).
    import aiodataloader.otel

    monkeypatch.setattr(aiodataloader.otel, "_OTEL_CONTEXT", None)
    tracer = telemetry.tracer_provider.get_tracer("test")

    async def query(keys: list[int]) -> list[int]:
        with tracer.start_as_current_span("SELECT users"):
            return [key * 2 for key in keys]

    loader = observe(DataLoader(query, name="UserLoader"), telemetry.observer())

    async def resolver(field: str, key: int) -> int:
        with tracer.start_as_current_span(field):
            return await loader.load(key)

    with tracer.start_as_current_span("request") as request:
        assert list(
            await asyncio.gather(resolver("Post.author", 1), resolver("Post.editor", 2))
        ) == [2, 4]
        assert trace.get_current_span() is request  # the batch span was detached
    (batch,) = telemetry.finished()
    (sql,) = telemetry.finished("SELECT")
    assert sql.parent is not None
    assert sql.parent.span_id == batch.context.span_id
    resolvers = {s.context.span_id for s in telemetry.finished("Post.")}
    assert {link.context.span_id for link in batch.links} == resolvers


async def test_links_are_capped(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    loader = observe(DataLoader(double, name="L"), telemetry.observer(max_links=3))

    async def resolver(key: int) -> int:
        with tracer.start_as_current_span(f"resolver {key}"):
            return await loader.load(key)

    await asyncio.gather(*(resolver(key) for key in range(10)))
    (batch,) = telemetry.finished()
    assert len(batch.links) == 3
    assert dict(batch.attributes or {})["graphql.dataloader.batch.size"] == 10


async def test_keys_are_recorded_only_when_asked_for(telemetry: Telemetry) -> None:
    loader = observe(DataLoader(double, name="L"), telemetry.observer(record_keys=True, max_keys=2))
    await loader.load_many([3, 1, 2])
    (batch,) = telemetry.finished()
    assert (batch.attributes or {})["graphql.dataloader.batch.keys"] == ("3", "1")


async def test_a_failed_batch_records_the_error(telemetry: Telemetry) -> None:
    async def broken(keys: list[int]) -> list[int]:
        raise ConnectionError("database went away")

    loader = observe(DataLoader(broken, name="Broken"), telemetry.observer())
    with pytest.raises(ConnectionError):
        await loader.load(1)
    (batch,) = telemetry.finished()
    assert batch.status.status_code is StatusCode.ERROR
    assert batch.status.description == "ConnectionError: database went away"
    assert (batch.attributes or {})["error.type"] == "ConnectionError"
    (event,) = batch.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.message"] == "database went away"


async def test_keys_rejected_in_place_are_counted_on_the_span(telemetry: Telemetry) -> None:
    async def half(keys: list[int]) -> list[int | Exception]:
        return [KeyError(key) if key % 2 else key for key in keys]

    loader = observe(DataLoader(half, name="Half"), telemetry.observer())
    await loader.load_many([1, 2, 3], return_exceptions=True)
    (batch,) = telemetry.finished()
    assert (batch.attributes or {})["aiodataloader.batch.failed_keys"] == 2
    assert batch.status.status_code is StatusCode.UNSET


async def test_a_cancelled_batch_is_visible_on_its_span(telemetry: Telemetry) -> None:
    started = asyncio.Event()

    async def slow(keys: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("never reached")

    loader = observe(DataLoader(slow, name="Slow"), telemetry.observer())
    pending = loader.load(1)
    await started.wait()
    await loader.cancel_pending()
    assert pending.cancelled()
    (batch,) = telemetry.finished()
    assert batch.status.status_code is StatusCode.ERROR
    assert batch.status.description == "cancelled"
    attributes = dict(batch.attributes or {})
    assert attributes["aiodataloader.batch.cancelled"] is True
    assert attributes["error.type"] == "CancelledError"


async def test_the_metrics(telemetry: Telemetry) -> None:
    loader = observe(DataLoader(double, name="UserLoader"), telemetry.observer())
    await loader.load_many([1, 2, 3])
    await loader.load_many([1, 4])  # one hit, one miss

    points = telemetry.points()
    assert set(points) == set(METRICS)
    name = {"graphql.dataloader.name": "UserLoader"}
    (size,) = points["graphql.dataloader.batch.size"]
    assert isinstance(size, HistogramDataPoint)
    assert (size.count, size.sum, size.max, dict(size.attributes or {})) == (2, 4, 3, name)
    (duration,) = points["graphql.dataloader.batch.duration"]
    assert duration.count == 2
    assert duration.sum > 0
    (hits,) = points["graphql.dataloader.cache.hits"]
    (misses,) = points["graphql.dataloader.cache.misses"]
    assert (hits.value, misses.value) == (1, 4)
    assert dict(hits.attributes or {}) == dict(misses.attributes or {}) == name


async def test_a_failed_batch_has_an_error_type_on_its_duration(telemetry: Telemetry) -> None:
    async def broken(keys: list[int]) -> list[int]:
        raise ConnectionError("database went away")

    loader = observe(DataLoader(broken, name="Broken"), telemetry.observer())
    with pytest.raises(ConnectionError):
        await loader.load(1)
    (duration,) = telemetry.points()["graphql.dataloader.batch.duration"]
    assert dict(duration.attributes or {}) == {
        "graphql.dataloader.name": "Broken",
        "error.type": "ConnectionError",
    }


def test_bad_options_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^OpenTelemetryObserver: max_links must be an int >= 0; got -1$"
    ):
        OpenTelemetryObserver(max_links=-1)
    with pytest.raises(
        ValueError, match=r"^OpenTelemetryObserver: max_keys must be an int >= 0; got '5'$"
    ):
        OpenTelemetryObserver(max_keys="5")  # type: ignore[arg-type]


async def test_sequential_batches_each_restore_the_callers_context(
    telemetry: Telemetry,
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    loader = observe(DataLoader(double, name="UserLoader"), telemetry.observer())
    with tracer.start_as_current_span("resolver") as resolver:
        assert await loader.load(1) == 2
        assert await loader.load(2) == 4
        assert trace.get_current_span() is resolver
    first, second = telemetry.finished()
    for batch in (first, second):
        assert batch.parent is not None
        assert batch.parent.span_id == resolver.get_span_context().span_id
        (link,) = batch.links
        assert link.context.span_id == resolver.get_span_context().span_id


async def test_histogram_exemplars_point_at_the_batch_span(telemetry: Telemetry) -> None:
    # The SDK's default exemplar filter ("trace_based") samples measurements made with a
    # sampled span current: the histograms are recorded while the batch span is.
    await observe(DataLoader(double, name="UserLoader"), telemetry.observer()).load_many([1, 2])
    (batch,) = telemetry.finished()
    points = telemetry.points()
    for metric in ("graphql.dataloader.batch.size", "graphql.dataloader.batch.duration"):
        (point,) = points[metric]
        (exemplar,) = point.exemplars
        assert (exemplar.trace_id, exemplar.span_id) == (
            batch.context.trace_id,
            batch.context.span_id,
        )


async def test_exemplars_are_turned_off_with_the_sdks_filter() -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter()
    )
    tracer_provider = TracerProvider()
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)
    await observe(DataLoader(double, name="UserLoader"), observer).load_many([1, 2])
    data = reader.get_metrics_data()
    assert data is not None
    histograms = [
        metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name.startswith("graphql.dataloader.batch.")
    ]
    assert len(histograms) == 2
    for metric in histograms:
        (point,) = metric.data.data_points
        assert isinstance(point, HistogramDataPoint)
        assert point.count == 1
        assert not point.exemplars
    meter_provider.shutdown()
    tracer_provider.shutdown()
