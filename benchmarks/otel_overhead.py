"""What OpenTelemetry costs the blog example on uvicorn: latency p50, interleaved.

Four uvicorn servers (child processes) run the same blog app:

- ``plain``: no OpenTelemetry;
- ``asgi``: the SDK and ``opentelemetry-instrumentation-asgi`` (a server span per request);
- ``asgi + loaders``: the same, plus ``aiodataloader.otel.OpenTelemetryObserver`` (a span per
  batch with links, and the batch and cache metrics);
- ``asgi + spans``: the same observer with ``meter_provider=NoOpMeterProvider()``: its spans
  only.

Spans go through a ``BatchSpanProcessor`` to an exporter that drops them (the cost measured
is the app's, not an exporter's), metrics to an in-memory reader. One client sends
``GET /posts?limit=20`` to each server in turn, one request at a time, the order rotating
every round. It prints per server the latency p50/p90 and the CPU time the server process
used per request (all its threads; read from the server before and after the timed rounds),
and the ratios: of the p50s, the median of the per-round ratios, and of the CPU times. On a
machine shared with other work, the CPU time is the steadiest of them.

    python benchmarks/otel_overhead.py              # 600 rounds, about a minute and a half
    python benchmarks/otel_overhead.py --quick      # 60 rounds

``--per-batch`` measures instead the observer's hooks alone, in process, per batch: a batch of
20 keys from 20 caller tasks under one server span (as the blog's), through the same SDK
set-up, for the spans only, the spans and metrics, and the same with the SDK's exemplar filter
off. It prints the CPU time per batch, the variants interleaved; under callgrind, with
``--callgrind VARIANT``, it counts the instructions of that variant's batches only::

    valgrind --tool=callgrind --instr-atstart=no python benchmarks/otel_overhead.py \
        --per-batch --callgrind "spans and metrics"   # "Collected" / 2000 = per batch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
VARIANTS = ("plain", "asgi", "asgi + loaders", "asgi + spans")
PATH = "/posts?limit=20"
CPU_PATH = "/__cpu_seconds"  # answered by the benchmark's wrapper, not by the app


def discarding_tracer_provider() -> TracerProvider:
    """An SDK tracer provider whose spans go through a BatchSpanProcessor to an exporter
    that drops them: the cost measured is the app's, not an exporter's."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return provider


def serve(variant: str, port: int) -> None:
    """The server process of one variant."""
    import uvicorn
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from starlette.types import ASGIApp, Receive, Scope, Send

    from aiodataloader.observe import add_global_observer
    from aiodataloader.otel import OpenTelemetryObserver
    from examples.blog.app import create_app

    app: ASGIApp = create_app()
    if variant != "plain":
        tracer_provider = discarding_tracer_provider()
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        app = OpenTelemetryMiddleware(
            app, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        if variant == "asgi + loaders":
            add_global_observer(
                OpenTelemetryObserver(
                    tracer_provider=tracer_provider, meter_provider=meter_provider
                )
            )
        elif variant == "asgi + spans":
            add_global_observer(
                OpenTelemetryObserver(
                    tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider()
                )
            )

    async def with_cpu_time(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CPU_PATH:
            body = str(time.process_time()).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    uvicorn.run(with_cpu_time, host="127.0.0.1", port=port, log_level="warning")


BATCH_VARIANTS = ("spans", "spans and metrics", "spans and metrics, no exemplars")


def per_batch(callgrind: str | None, batches: int = 2000, rounds: int = 15) -> None:
    """The observer's hooks alone: CPU time (or, under callgrind, instructions) per batch."""
    import contextvars

    from opentelemetry import context, trace
    from opentelemetry.metrics import MeterProvider as MeterProviderAPI
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from aiodataloader.observe import BatchInfo
    from aiodataloader.otel import OpenTelemetryObserver

    tracer_provider = discarding_tracer_provider()
    meter_providers: dict[str, MeterProviderAPI] = {
        "spans": NoOpMeterProvider(),
        "spans and metrics": MeterProvider(metric_readers=[InMemoryMetricReader()]),
        "spans and metrics, no exemplars": MeterProvider(
            metric_readers=[InMemoryMetricReader()], exemplar_filter=AlwaysOffExemplarFilter()
        ),
    }
    observers = {
        variant: OpenTelemetryObserver(
            tracer_provider=tracer_provider, meter_provider=meter_providers[variant]
        )
        for variant in BATCH_VARIANTS
    }
    server = tracer_provider.get_tracer("server").start_span("GET /posts")
    context.attach(trace.set_span_in_context(server))
    callers = [contextvars.copy_context() for _ in range(20)]  # one per resolver task
    keys = list(range(20))

    def run(observer: OpenTelemetryObserver, n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            batch = BatchInfo(None, "AuthorLoader", keys, callers, 0.0)  # type: ignore[arg-type]
            observer.on_batch_start(batch)
            batch.duration = 0.001
            observer.on_batch_end(batch)
        return time.process_time() - started

    for observer in observers.values():
        run(observer, 300)
    if callgrind:
        switch = ["callgrind_control", "-i"]
        subprocess.run([*switch, "on", str(os.getpid())], capture_output=True, check=True)
        run(observers[callgrind], batches)
        subprocess.run([*switch, "off", str(os.getpid())], capture_output=True, check=True)
        print(f"{callgrind}: {batches} batches counted")
        return
    seconds: dict[str, list[float]] = {variant: [] for variant in BATCH_VARIANTS}
    for round_ in range(rounds):
        shift = round_ % len(BATCH_VARIANTS)
        for variant in BATCH_VARIANTS[shift:] + BATCH_VARIANTS[:shift]:
            seconds[variant].append(run(observers[variant], batches) / batches)
    print(f"the observer's hooks per batch (20 keys, 20 callers), {rounds} rounds interleaved")
    for variant, values in seconds.items():
        print(f"{variant:32} {statistics.median(values) * 1e6:7.1f} us CPU per batch (median)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(variant: str, stack: ExitStack) -> str:
    port = free_port()
    pythonpath = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, "--port", str(port)], cwd=REPO_ROOT, env=env
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {variant!r} server exited with {process.returncode}")
            try:
                if client.get(PATH).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {variant!r} server did not start in 60 s")
            time.sleep(0.1)


def percentile(values: Sequence[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(
    urls: dict[str, str], rounds: int, warmup: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Latencies (ms) per variant, and the server's CPU time per request (ms)."""
    latencies: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, float] = {}
    clients = {variant: httpx.Client(base_url=url, timeout=30.0) for variant, url in urls.items()}
    try:
        for round_ in range(-warmup, rounds):
            if round_ == 0:
                cpu = {v: float(clients[v].get(CPU_PATH).text) for v in VARIANTS}
            shift = round_ % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                started = time.perf_counter()
                response = clients[variant].get(PATH)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if round_ >= 0:
                    latencies[variant].append(elapsed * 1000)
        for variant in VARIANTS:
            used = float(clients[variant].get(CPU_PATH).text) - cpu[variant]
            cpu[variant] = used * 1000 / rounds
    finally:
        for client in clients.values():
            client.close()
    return latencies, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="60 rounds, 10 warm-up")
    parser.add_argument("--json", type=Path, default=RESULTS / "otel_overhead.json")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--per-batch", action="store_true", help="the observer's hooks alone")
    parser.add_argument("--callgrind", choices=BATCH_VARIANTS, help="under callgrind: one variant")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return
    if args.per_batch:
        per_batch(args.callgrind)
        return
    rounds, warmup = (60, 10) if args.quick else (args.rounds, args.warmup)

    with ExitStack() as stack:
        urls = {variant: start(variant, stack) for variant in VARIANTS}
        latencies, cpu = measure(urls, rounds, warmup)

    p50 = {variant: statistics.median(values) for variant, values in latencies.items()}
    print(f"GET {PATH}, {rounds} rounds, one request at a time, interleaved")
    print(f"{'server':16} {'p50 ms':>8} {'p90 ms':>8} {'CPU ms/request':>15}")
    for variant, values in latencies.items():
        p90 = percentile(values, 90)
        print(f"{variant:16} {p50[variant]:8.2f} {p90:8.2f} {cpu[variant]:15.2f}")
    ratios = {}
    for label, on, off in (
        ("loader spans and metrics on / off (both with ASGI)", "asgi + loaders", "asgi"),
        ("loader spans only on / off (both with ASGI)", "asgi + spans", "asgi"),
        ("all OpenTelemetry on / off", "asgi + loaders", "plain"),
    ):
        pairs = zip(latencies[on], latencies[off], strict=True)
        paired = statistics.median(a / b for a, b in pairs)
        ratios[label] = {
            "p50": p50[on] / p50[off],
            "paired_p50": paired,
            "cpu": cpu[on] / cpu[off],
        }
        print(
            f"{label}: p50 {p50[on] / p50[off]:.3f}, median of per-round ratios {paired:.3f}, "
            f"CPU per request {cpu[on] / cpu[off]:.3f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "rounds": rounds,
                "p50_ms": p50,
                "cpu_ms_per_request": cpu,
                "ratios": ratios,
                "latencies_ms": latencies,
            },
            indent=1,
        )
    )
    print(f"raw samples: {args.json}")


if __name__ == "__main__":
    main()
