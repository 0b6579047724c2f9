"""OpenTelemetry for DataLoaders: a span per batch, and batch and cache metrics.

Install the extra (``pip install aiodataloader[otel]``, which needs ``opentelemetry-api``
only) and attach the observer, globally or to one loader::

    from aiodataloader.observe import add_global_observer
    from aiodataloader.otel import OpenTelemetryObserver

    add_global_observer(OpenTelemetryObserver())

Spans follow the draft GraphQL semantic conventions of the OpenTelemetry GraphQL working group
(``graphql/otel-wg``, stability "development"): one INTERNAL span per batch named
``GraphQL DataLoader Batch {name}``, a child of the span current where the batch's first load
was made, with links to the span of every caller whose load the batch serves. The batch
function runs with the batch span current, so the spans of its queries nest under it.

The draft defines no DataLoader metrics; the names here are this package's choice, in the
same namespace (see ``METRICS``).

Each histogram record is made while the batch span is current, so that with the SDK's default
exemplar filter a histogram's exemplars point at batch spans.

Spans are exported by the SDK's span processor: use ``BatchSpanProcessor`` (not
``SimpleSpanProcessor``) in production, so that a slow exporter never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextvars import Context, ContextVar
from typing import Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError as error:  # pragma: no cover - the test environment has opentelemetry-api
    from ._extras import missing_extra

    raise missing_extra("aiodataloader.otel", "the OpenTelemetry API", "otel", error) from error

from . import __version__
from .observe import BatchInfo, LoaderObserver

__all__ = ["METRICS", "OpenTelemetryObserver"]

SPAN_NAME: Final = "GraphQL DataLoader Batch"

# Attributes of the draft conventions.
PROCESSING_TYPE: Final = "graphql.processing.type"
DATALOADER_NAME: Final = "graphql.dataloader.name"
BATCH_SIZE: Final = "graphql.dataloader.batch.size"
BATCH_KEYS: Final = "graphql.dataloader.batch.keys"
ERROR_TYPE: Final = "error.type"
# Not in the draft: this package's own.
BATCH_FAILED_KEYS: Final = "aiodataloader.batch.failed_keys"
BATCH_CANCELLED: Final = "aiodataloader.batch.cancelled"

#: Metric name -> (instrument, unit, description). Every metric has the attribute
#: ``graphql.dataloader.name``; the duration also has ``error.type`` for a failed batch.
METRICS: Final = {
    "graphql.dataloader.batch.size": ("histogram", "{key}", "Keys per DataLoader batch."),
    "graphql.dataloader.batch.duration": (
        "histogram",
        "s",
        "Time in the DataLoader batch function, per batch.",
    ),
    "graphql.dataloader.cache.hits": (
        "observable counter",
        "{load}",
        "Loads served from the DataLoader cache (counted where the loader is observed "
        "from its construction on).",
    ),
    "graphql.dataloader.cache.misses": (
        "observable counter",
        "{load}",
        "Loads sent to the DataLoader batch function.",
    ),
}

_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class OpenTelemetryObserver(LoaderObserver):
    """A ``LoaderObserver`` that makes a span per batch and records batch and cache metrics.

    ``tracer_provider`` and ``meter_provider`` default to the global ones; pass
    ``meter_provider=NoOpMeterProvider()`` for spans only (the two histogram records of a
    batch cost about two thirds as much as its span). The histograms are recorded while the
    batch span is current: under the SDK's default exemplar filter (``trace_based``) their
    exemplars point at batch spans; ``MeterProvider(exemplar_filter=AlwaysOffExemplarFilter())``
    turns exemplars off (for every instrument). ``max_links``
    caps the links to callers' spans (the size attribute still counts every key).
    ``record_keys`` adds up to ``max_keys`` keys, as strings, to each span: off by
    default, since keys may be sensitive or of high cardinality.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        max_links: int = 32,
        record_keys: bool = False,
        max_keys: int = 20,
    ) -> None:
        for name, value in (("max_links", max_links), ("max_keys", max_keys)):
            if type(value) is not int or value < 0:
                raise ValueError(
                    f"OpenTelemetryObserver: {name} must be an int >= 0; got {value!r}"
                )
        self.max_links = max_links
        self.record_keys = record_keys
        self.max_keys = max_keys
        self._tracer = trace.get_tracer(
            "aiodataloader", __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter("aiodataloader", __version__, meter_provider=meter_provider)
        self._size, self._duration = (
            meter.create_histogram(
                name,
                METRICS[name][1],
                METRICS[name][2],
                explicit_bucket_boundaries_advisory=buckets,
            )
            for name, buckets in (
                ("graphql.dataloader.batch.size", _SIZE_BUCKETS),
                ("graphql.dataloader.batch.duration", _DURATION_BUCKETS),
            )
        )
        # Hits and misses only add to plain integers (a hit is far more frequent than a
        # batch, and an instrument's add() costs microseconds); the SDK reads the totals
        # when it collects.
        self._hits: dict[str, int] = {}
        name = "graphql.dataloader.cache.hits"
        meter.create_observable_counter(
            name, [self._observe_hits], METRICS[name][1], METRICS[name][2]
        )
        self._misses: dict[str, int] = {}
        name = "graphql.dataloader.cache.misses"
        meter.create_observable_counter(
            name, [self._observe_misses], METRICS[name][1], METRICS[name][2]
        )
        # Per loader name, made once: its span name and its metric attributes (the same
        # dict at every record).
        self._names: dict[str, tuple[str, dict[str, Any]]] = {}
        # The span of each batch in flight, and the token that made it current.
        self._spans: dict[BatchInfo, tuple[trace.Span, object]] = {}

    def on_batch_start(self, batch: BatchInfo) -> None:
        name = batch.name
        names = self._names.get(name)
        if names is None:
            names = self._names[name] = (f"{SPAN_NAME} {name}", {DATALOADER_NAME: name})
        keys = batch.keys
        # All attributes at the start: the SDK cleans them in one pass (each one set later
        # costs a lock and a pass of its own), and samplers see them.
        attributes: dict[str, Any] = {
            PROCESSING_TYPE: "dataloader_batch",
            DATALOADER_NAME: name,
            BATCH_SIZE: len(keys),
        }
        if self.record_keys:
            attributes[BATCH_KEYS] = [str(key) for key in keys[: self.max_keys]]
        var = _OTEL_CONTEXT
        parent = otel_context.get_current() if var is None else var.get()
        span = self._tracer.start_span(
            names[0], parent, SpanKind.INTERNAL, attributes, self._links(batch.callers)
        )
        # Current while the batch function runs, so that its own spans nest under it.
        context = trace.set_span_in_context(span, parent)
        token = otel_context.attach(context) if var is None else var.set(context)
        self._spans[batch] = (span, token)

    def on_batch_end(self, batch: BatchInfo) -> None:
        started = self._spans.pop(batch, None)
        name = batch.name
        names = self._names.get(name)
        if names is None:  # an end without a start: only if on_batch_start failed
            names = self._names[name] = (f"{SPAN_NAME} {name}", {DATALOADER_NAME: name})
        name_only = names[1]
        size = len(batch.keys)
        error = batch.error
        # Recorded while the batch span is current: with the SDK's default (trace-based)
        # exemplar filter, a sampled batch span is the exemplar of its records. (No explicit
        # context argument: opentelemetry-api 1.27 has none.)
        self._size.record(size, name_only)
        self._duration.record(
            batch.duration,
            name_only if error is None else {**name_only, ERROR_TYPE: type(error).__qualname__},
        )
        self._misses[name] = self._misses.get(name, 0) + size
        if started is None:
            return
        span, token = started
        var = _OTEL_CONTEXT
        if var is None:
            otel_context.detach(token)  # type: ignore[arg-type]  # the token attach() returned
        else:
            try:
                var.reset(token)  # type: ignore[arg-type]  # the token var.set() returned
            except (ValueError, RuntimeError):  # made in another context: the API logs it
                otel_context.detach(token)  # type: ignore[arg-type]
        if batch.failed_keys:
            span.set_attribute(BATCH_FAILED_KEYS, batch.failed_keys)
        if error is not None:
            span.set_attribute(ERROR_TYPE, type(error).__qualname__)
            if batch.cancelled:
                span.set_attribute(BATCH_CANCELLED, True)
                span.set_status(Status(StatusCode.ERROR, "cancelled"))
            else:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()

    def on_cache_hit(self, loader: Any, key: Any) -> None:
        name = loader.name  # loader_name(), inlined: this runs once per hit
        if name is None:
            name = type(loader).__name__
        self._hits[name] = self._hits.get(name, 0) + 1

    def _observe_hits(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {DATALOADER_NAME: name}) for name, n in list(self._hits.items())]

    def _observe_misses(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {DATALOADER_NAME: name}) for name, n in list(self._misses.items())]

    def _links(self, callers: Sequence[Context]) -> Sequence[Link]:
        max_links = self.max_links
        if not callers or not max_links:
            return ()
        var = _OTEL_CONTEXT
        if var is not None:
            # Each caller's OpenTelemetry context, read straight from its context, once per
            # distinct one: most loads of a batch come from a few spans, often one.
            spans: list[trace.Span] = []
            last: object = None
            seen: set[int] = set()
            for caller in callers:
                otel_context_of_caller = caller.get(var)
                if otel_context_of_caller is last:
                    continue
                last = otel_context_of_caller
                if otel_context_of_caller is None or id(otel_context_of_caller) in seen:
                    continue
                seen.add(id(otel_context_of_caller))
                spans.append(trace.get_current_span(otel_context_of_caller))
        else:
            spans = [caller.run(trace.get_current_span) for caller in callers]
        if len(spans) == 1:
            span_context = spans[0].get_span_context()
            return (Link(span_context),) if span_context.is_valid else ()
        links: list[Link] = []
        seen_spans: set[int] = set()
        for span in spans:
            span_context = span.get_span_context()
            if span_context.is_valid and span_context.span_id not in seen_spans:
                seen_spans.add(span_context.span_id)
                links.append(Link(span_context))
                if len(links) >= max_links:
                    break
        return links


def _otel_context_var() -> ContextVar[otel_context.Context] | None:
    """The ContextVar that holds OpenTelemetry's current context, read straight from each
    caller's context (tenfold cheaper than running code in it), where the runtime context is
    the default one; ``None`` otherwise."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


_OTEL_CONTEXT = _otel_context_var()
