"""The search endpoint's hot path: well-formed `GET /v1/search/listings` answered as plain ASGI.

Profiled under load (docs/benchmarks.md), the FastAPI route spent more of the API's CPU on routing, solving
its dependencies and validating fifteen query parameters one by one than on the search itself. This middleware
is the innermost of the app's, so every other one still runs (request metrics and X-Trace-Id, security and
RateLimit headers, the 500 handler); it opens the search's server span itself (`DirectSearch`). It answers a
search whose parameters are all plain: it parses them with the route's rules, applies the same limit
(`api.ratelimits.search_limit`), asks the same service and sends the same bytes (`api.routes.search.render`). Anything it does not recognise as plain (a value to convert or refuse, an
unknown category, a repeated parameter, a cross-field problem) goes to the FastAPI route untouched, before
anything is counted, so every error keeps its documented shape. Errors after counting (429, a database out of
reach) go to the app's own exception handlers, as the route's would.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ratelimits import search_limit
from api.routes import search as route
from api.schemas import INT64_MAX
from bazaar.listings.lifecycle import cached_taxonomy
from bazaar.models import ListingCondition
from bazaar.payments.money import Currency
from bazaar.search.index import MAX_TOTAL_HITS
from bazaar.search.query import ListingQuery, SortOrder
from bazaar.search.service import SearchService
from bazaar.text import SINGLE_LINE_FORBIDDEN

# Plain values only: what pydantic would read the same way (no leading zeros, signs, exponents, spaces).
_INT = re.compile(r"0|[1-9][0-9]{0,18}")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,4})(?:\.[0-9]{1,15})?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CURRENCIES = frozenset(Currency)
_CONDITIONS = frozenset(c.value for c in ListingCondition)
_SORTS = {s.value: s for s in SortOrder}
_BOOLS = {"true": True, "false": False}
_TRACER = trace.get_tracer("api.search")
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})
_SCALARS = frozenset(
    {"q", "min_price", "max_price", "currency", "seller_id", "lat", "lng", "radius_km", "sort", "page"}
    | {"per_page", "facets"}
)


def _int(value: str, low: int, high: int) -> int | None:
    if not _INT.fullmatch(value):
        return None
    number = int(value)
    return number if low <= number <= high else None


def _decimal(value: str, low: float, high: float, low_open: bool = False) -> float | None:
    if not _DECIMAL.fullmatch(value):
        return None
    number = float(value)
    return number if (number > low if low_open else number >= low) and number <= high else None


def parse(query_string: bytes) -> ListingQuery | None:
    """The search these parameters ask for, read exactly as the route reads them; None when any of them is
    not plain (the route then answers, errors included). Unknown parameters are ignored, as by the route."""
    scalars: dict[str, str] = {}
    categories: list[str] = []
    conditions: list[str] = []
    # As Starlette reads a query string (latin-1 bytes, then percent-decoding as UTF-8).
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in _SCALARS:
            if name in scalars:
                return None  # which one wins is the route's business
            scalars[name] = value
        elif name == "category":
            if not 1 <= len(value) <= 64 or SINGLE_LINE_FORBIDDEN.search(value):
                return None
            categories.append(value)
        elif name == "condition":
            if value not in _CONDITIONS:
                return None
            conditions.append(value)
    if len(categories) > 10 or len(conditions) > 5:
        return None
    query = ListingQuery(
        categories=list(dict.fromkeys(categories)), conditions=list(dict.fromkeys(conditions))
    )
    for name, value in scalars.items():
        if not _assign(query, name, value):
            return None
    return query if route.cross_field_problem(query) is None else None


def _assign(query: ListingQuery, name: str, value: str) -> bool:
    """Set one parameter on `query`; False when the value is not plain."""
    parsed: Any
    match name:
        case "q":
            # single_line(max_length=200): stripped (only ASCII spaces here), no control characters.
            parsed = value.strip(" ")
            if len(parsed) > 200 or SINGLE_LINE_FORBIDDEN.search(value) or parsed.strip() != parsed:
                return False
        case "min_price" | "max_price":
            parsed = _int(value, 0, INT64_MAX)
        case "currency":
            parsed = value if value in _CURRENCIES else None
        case "seller_id":
            parsed = value if _UUID.fullmatch(value) else None
        case "lat":
            parsed = _decimal(value, -90, 90)
        case "lng":
            parsed = _decimal(value, -180, 180)
        case "radius_km":
            parsed = _decimal(value, 0, 20_000, low_open=True)
        case "sort":
            parsed = _SORTS.get(value)
        case "page":
            parsed = _int(value, 1, MAX_TOTAL_HITS)
        case "per_page":
            parsed = _int(value, 1, 100)
        case "facets":
            parsed = _BOOLS.get(value)
        case _:
            return False
    if parsed is None:
        return False
    setattr(query, name, parsed)
    return True


class DirectSearch:
    """ASGI middleware: plain searches answered here, everything else passed on (module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # For scope["route"], as routing would set it (per-route metrics name the route's template).
        self.route = next(r for r in route.router.routes if getattr(r, "path", None) == route.PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != route.PATH:
            await self.app(scope, receive, send)
            return
        # The path's server span, here rather than from the FastAPI instrumentation (which leaves this path
        # alone, api.telemetry.UNTRACED): matching the route again and collecting its attributes cost about a
        # third of the API's CPU per search (docs/benchmarks.md). Same name; an incoming traceparent is continued.
        # Another method than GET gets the span too (its 405 carries a trace id like every answer), then the app.
        method = scope["method"]
        answer = self._search if method == "GET" else self.app
        with _TRACER.start_as_current_span(
            f"{method} {route.PATH}",  # as the FastAPI instrumentation names a route's span
            context=_incoming(scope),
            kind=SpanKind.SERVER,
        ) as span:
            if not span.is_recording():
                await answer(scope, receive, send)
                return
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await answer(scope, receive, send_status)
            finally:
                span.set_attributes(
                    {
                        "http.request.method": method,
                        "http.route": route.PATH,
                        "url.path": route.PATH,
                        "http.response.status_code": status,
                    }
                )
                if status >= 500:
                    span.set_status(StatusCode.ERROR)

    async def _search(self, scope: Scope, receive: Receive, send: Send) -> None:
        entered = time.perf_counter()
        query = parse(scope["query_string"])
        if query is None or scope.get("root_path") or not _known_categories(query):
            await self.app(scope, receive, send)
            return
        app: FastAPI = scope["app"]
        request = Request(scope, receive)
        scope["route"] = self.route
        try:
            await search_limit(request)
            service: SearchService = app.state.search
            result = await service.search(query)
        except Exception as exc:
            handler = _handler(app, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
        body, headers = route.render(result, query, entered)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *((name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        route.observe(result)


def _incoming(scope: Scope) -> Context | None:
    """The caller's trace context (W3C traceparent/tracestate, baggage), if it sent one."""
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _PROPAGATED
    }
    return propagate.extract(carrier) if carrier else None


def _known_categories(query: ListingQuery) -> bool:
    """Every category named is in the cached taxonomy (not cached, or unknown: the route looks and answers)."""
    if not query.categories:
        return True
    tree = cached_taxonomy()
    return tree is not None and all(c in tree for c in query.categories)


def _handler(app: FastAPI, exc: Exception) -> Any:
    """The app's handler of `exc` as its ExceptionMiddleware would pick it (the catch-all is not its)."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in app.exception_handlers:
            return app.exception_handlers[cls]
    return None


def install(app: FastAPI) -> None:
    """Call before any other `add_middleware`: the first added is the innermost."""
    app.add_middleware(DirectSearch)
