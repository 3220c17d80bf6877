"""What the API tells operators about each request: its trace (OpenTelemetry: the FastAPI instrumentation's
server span, under which the Temporal calls, the SQL statements and the Meilisearch calls are made), its trace
id (the `X-Trace-Id` response header, the error body's `trace_id`, its log lines), and the request metrics
(`bazaar_http_request_duration_seconds`, per route template, method and status: count, errors and latency).

Labels are bounded: the route is the template (`/v1/orders/{order_id}`, never an id; `unmatched` for paths
no route has), the method one of the HTTP methods (`other` else), the status the code the API answered.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from opentelemetry import context, trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import REGISTRY
from bazaar.settings import get_settings
from bazaar.telemetry import configure_logging, instrument_http_clients, setup_tracing, trace_id

TRACE_HEADER = "X-Trace-Id"
HTTP_DURATION = Histogram(
    "bazaar_http_request_duration_seconds",
    "API requests by route template, method and status: latency (count = requests; 5xx = errors)",
    ["route", "method", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
# Probes and scrapes: no spans (they would drown the requests that matter); still counted in the metrics.
# Searches get theirs from api/search_direct.py (same name, cheaper: docs/benchmarks.md, "Search speed").
PROBES = ("/healthz", "/readyz", "/metrics")
UNTRACED = ",".join(f"{path}$" for path in (*PROBES, "/v1/search/listings"))


_IDS = RandomIdGenerator()


def _unrecorded_span() -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(trace_id=_IDS.generate_trace_id(), span_id=_IDS.generate_span_id(), is_remote=False)
    )


class RequestTelemetryMiddleware:
    """Adds `X-Trace-Id` to every response and observes the request in `HTTP_DURATION`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler ends as a 500 (or a dropped connection)
        # Probes and scrapes record no span, but their answers still carry an id to quote: a trace id of their own,
        # current for the request, with nothing recorded under it. (Searches make their own span: api/search_direct.)
        probe = scope.get("path") in PROBES and trace_id() is None
        token = context.attach(trace.set_span_in_context(_unrecorded_span())) if probe else None

        async def send_with_trace_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                current = trace_id()
                if current is not None:
                    headers = list(message.get("headers", []))
                    headers.append((TRACE_HEADER.lower().encode(), current.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace_id)
        finally:
            if token is not None:
                context.detach(token)
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope.get("method", "")
            HTTP_DURATION.labels(route, method if method in _METHODS else "other", str(status)).observe(
                time.perf_counter() - started
            )


def install(app: FastAPI) -> None:
    """Tracing for this process (exporters from the settings), the HTTP client spans, the server spans, and
    the middleware above (outermost of ours, so it sees the status of every response, 500s included)."""
    setup_tracing("api", get_settings())
    instrument_http_clients()
    FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED, exclude_spans=["receive", "send"])
    app.add_middleware(RequestTelemetryMiddleware)


def configure_api_logging() -> None:
    """At start: the API's own log lines and uvicorn's (access log included) carry the request's trace id."""
    configure_logging(logging.INFO, loggers=("uvicorn", "uvicorn.error", "uvicorn.access"))
