"""Traces and log correlation for every process (OpenTelemetry).

Each process calls `setup_tracing` once at start (the API in `api.telemetry`, `worker.py`, `sender.py`). Spans
are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (a collector; the standard
`OTEL_EXPORTER_OTLP_*` variables tune the exporter, `OTEL_TRACES_SAMPLER` the sampling) and appended as JSON lines
to `<TRACES_DIR>/<process>.jsonl` when `TRACES_DIR` is set (`make run` does: no extra service needed; read one
trace with `python -m cli trace <trace id>`). With neither, spans are not recorded, but every request still has a
trace id: it is in the request's log lines, its `X-Trace-Id` header and error bodies, and it travels with the
request into Temporal (the SDK's TracingInterceptor, `bazaar.temporal.connect`) and the notification outbox, so
the worker's and the sender's log lines of that request carry the same id.

The trace of one order: the API's HTTP span -> `StartUpdateWithStartWorkflow:Order` (Temporal client) ->
`RunWorkflow:Order` / `HandleUpdate:placement` -> `StartActivity:<name>` -> `RunActivity:<name>` -> the SQL
statements (SQLAlchemy) and the provider calls (httpx: Stripe); the emails the order's transition queued are
sent under the same trace (`smtp send`, from the row's stored `traceparent`). A search's trace ends in its
Meilisearch call; a listing change's in the batch of the search sync (`python -m search_sync`, which sets up
tracing too) that indexed it (`search-sync batch`, from the listing outbox row's stored `traceparent`) and that
batch's Meilisearch writes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine

from bazaar.settings import Settings

SERVICE_PREFIX = "bazaar-"
# A JSON-lines trace file is rotated (to `.1`, replacing the previous one) past this size.
MAX_TRACE_FILE_BYTES = 64 * 1024 * 1024
_PROPAGATOR = TraceContextTextMapPropagator()


class _Switch(Sampler):
    """Records spans only once something exports them: until then every span still gets a trace id (for logs,
    headers and error bodies, and to propagate), but costs no attribute recording. Once on, the standard
    `OTEL_TRACES_SAMPLER` decides (default: parent-based, always on)."""

    def __init__(self) -> None:
        self.on = False
        self.sampler = _get_from_env_or_default()

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        sampler = self.sampler if self.on else ALWAYS_OFF
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"Switch({self.sampler.get_description() if self.on else 'off'})"


class JsonLinesSpanExporter(SpanExporter):
    """Finished spans, one compact JSON object a line (`span_record`), appended to one file per process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span), default=str) + "\n" for span in spans)
        with self.lock:
            try:
                if self.path.exists() and self.path.stat().st_size > MAX_TRACE_FILE_BYTES:
                    self.path.replace(self.path.with_suffix(self.path.suffix + ".1"))
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(lines)
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as the JSON-lines exporter writes it (and `read_trace` reads it back)."""
    ctx = span.get_span_context()
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "trace_id": trace.format_trace_id(ctx.trace_id) if ctx else None,
        "span_id": trace.format_span_id(ctx.span_id) if ctx else None,
        "parent_id": trace.format_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": start,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


class _Telemetry:
    """What `setup_tracing` installed in this process."""

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.switch = _Switch()
        self.exporting: set[str] = set()  # where spans already go (a second app in one process adds none)


_STATE = _Telemetry()


def setup_tracing(
    service: str, settings: Settings, processors: Iterable[SpanProcessor] = ()
) -> TracerProvider:
    """Install this process's tracer provider (once; later calls add exporters to it). `service` names the
    process: `api`, `worker`, `sender`, `search-sync` (spans carry `service.name` = `bazaar-<service>`)."""
    provider = _STATE.provider
    if provider is None:
        resource = Resource.create({"service.name": SERVICE_PREFIX + service, "service.namespace": "bazaar"})
        provider = TracerProvider(resource=resource, sampler=_STATE.switch)
        trace.set_tracer_provider(provider)
        _STATE.provider = provider
    found = list(processors)
    if settings.otel_exporter_otlp_endpoint:
        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        if endpoint not in _STATE.exporting:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _STATE.exporting.add(endpoint)
            found.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if settings.traces_dir:
        path = Path(settings.traces_dir).resolve() / f"{service}.jsonl"
        if str(path) not in _STATE.exporting:
            _STATE.exporting.add(str(path))
            found.append(BatchSpanProcessor(JsonLinesSpanExporter(path)))
    for processor in found:
        add_span_processor(processor)
    return provider


def add_span_processor(processor: SpanProcessor) -> None:
    """Export spans to `processor` too, and start recording them (tests: an in-memory exporter)."""
    if _STATE.provider is None:
        raise RuntimeError("setup_tracing() first")
    _STATE.provider.add_span_processor(processor)
    _STATE.switch.on = True


def recording() -> bool:
    return _STATE.switch.on


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered. At exit this happens by itself, except in a process killed by a signal's
    default action: uvicorn re-raises the SIGTERM it handled once it has shut down, so the API flushes here."""
    if _STATE.provider is not None:
        _STATE.provider.force_flush(timeout_millis)


def stop_recording() -> None:
    """Record no more spans (a test's in-memory exporter is done); trace ids go on being made."""
    _STATE.switch.on = False


def instrument_engine(engine: AsyncEngine) -> None:
    """SQL statements as spans (the SQLAlchemy instrumentation), under whatever span is current. Only while
    spans are recorded: the instrumentation costs each statement some work even for spans nobody keeps."""
    if not recording():
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_instrumentation
    from opentelemetry.metrics import NoOpUpDownCounter

    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", sqlalchemy_instrumentation)
    EngineTracer(  # type: ignore[no-untyped-call]
        _ChildSpansOnly(tracer), engine.sync_engine, NoOpUpDownCounter("db.client.connections.usage")
    )


class _ChildSpansOnly:
    """A tracer that makes spans only inside another one: a statement of a request or an activity is part of
    its trace; a background flush or poll would otherwise start a trace of one statement every few seconds."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start_span(self, name: str, context: Context | None = None, **kwargs: Any) -> trace.Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self.tracer.start_span(name, context, **kwargs)


def instrument_http_clients() -> None:
    """Every httpx client of this process (Stripe's, Meilisearch's writes) makes a span per request."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


# ---------------------------------------------------------------------------------------- trace context


def trace_id() -> str | None:
    """The current trace id (32 hex digits), or None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def traceparent() -> str | None:
    """The current span as a W3C `traceparent` value, to store with work done later (the outbox)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_of(stored: str | None) -> Context | None:
    """The trace context a stored `traceparent` names (None: start a new trace)."""
    return _PROPAGATOR.extract({"traceparent": stored}) if stored else None


def batch_parent(stored: Iterable[str | None]) -> tuple[Context | None, list[Link]]:
    """Where the span of work done for many stored rows goes (a search sync batch): into the trace of the first
    row that names one, so that request's trace shows the work, with links to the traces of the others."""
    parent: Context | None = None
    seen: set[int] = set()
    links: list[Link] = []
    for ctx in filter(None, map(context_of, stored)):
        span = trace.get_current_span(ctx).get_span_context()
        if not span.is_valid or span.trace_id in seen:  # a malformed value, or a trace already named
            continue
        seen.add(span.trace_id)
        if parent is None:
            parent = ctx
        else:
            links.append(Link(span))
    return parent, links


@contextmanager
def resumed(stored: str | None) -> Iterator[None]:
    """Inside: the trace a stored `traceparent` names is current (spans join it, log lines carry its id)."""
    ctx = context_of(stored)
    token = otel_context.attach(ctx) if ctx is not None else None
    try:
        yield
    finally:
        if token is not None:
            otel_context.detach(token)


# ---------------------------------------------------------------------------------------------- logging


class TraceFormatter(logging.Formatter):
    """Appends ` trace_id=<id>` to every line logged inside a trace (wraps another formatter, or formats
    with `fmt`)."""

    def __init__(self, fmt: str | None = None, inner: logging.Formatter | None = None) -> None:
        super().__init__(fmt)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record) if self.inner is not None else super().format(record)
        current = trace_id()
        return f"{line} trace_id={current}" if current else line


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: int = logging.INFO, loggers: Sequence[str] = ()) -> None:
    """The process's log lines with their trace ids: the root logger gets a stderr handler if it has none,
    and the handlers of `loggers` (e.g. uvicorn's, which it configured itself) keep their format plus the id."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(TraceFormatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(level)
    for name in loggers:
        for each in logging.getLogger(name).handlers:
            if not isinstance(each.formatter, TraceFormatter):
                each.setFormatter(TraceFormatter(inner=each.formatter or logging.Formatter()))


# ------------------------------------------------------------------------------------ reading JSON lines


def read_trace(traces_dir: Path, wanted: str) -> list[dict[str, Any]]:
    """Every span of trace `wanted` in the JSON-lines files of `traces_dir`, oldest first."""
    wanted = wanted.lower().removeprefix("0x")
    found: list[dict[str, Any]] = []
    for path in sorted(traces_dir.glob("*.jsonl*")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if wanted in line:
                    record = json.loads(line)
                    if record.get("trace_id") == wanted:
                        found.append(record)
    return sorted(found, key=lambda r: r["start_ns"])


def format_trace(spans: list[dict[str, Any]]) -> str:
    """A trace as an indented tree: `duration  service  name  [status]`, children under their parent."""
    ids = {span["span_id"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)

    def walk(parent: str | None, depth: int) -> Iterator[str]:
        for span in children.get(parent, []):
            status = "" if span["status"] != "ERROR" else "  [ERROR]"
            yield (
                f"{span['duration_ms']:>10.1f} ms  {span['service'] or '?':<16} {'  ' * depth}{span['name']}{status}"
            )
            yield from walk(span["span_id"], depth + 1)

    return "\n".join(walk(None, 0))
