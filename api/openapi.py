"""The OpenAPI document is the contract apps generate their clients from (docs/api.md): every status an
operation can answer is in it, each error with the one error schema (`ErrorOut`, or `ValidationErrorOut` for a
422), with the headers that come with it, and named operations (`placeOrder`, `acceptOrder`).

Two sources, so no route repeats what every route of its kind answers:

- **Facts about each route**, read from its dependencies by `complete` (one post-processing step of the
  document FastAPI builds, installed as the app's `openapi()`): a required bearer token -> 401; a role check
  (`api.deps.require_role`) -> 403; an id in the path -> 404; parameters or a body -> 422; PostgreSQL, Temporal
  or the search backend behind it -> 503 with Retry-After; a rate limit -> 429 with Retry-After, RateLimit and
  RateLimit-Policy (a dependency `api.ratelimits.rate_limited` marks: `route_rate_limits`); an optional token
  (`api.deps.MaybeCaller`) -> the operation may be called without one (and a bad one is a 401).
- **What only the route knows**, in its `responses=`: `errors(...)` for its own error codes (409, 412, 428,
  400, ...), `LOCATION`/`ETAG` headers, the 202 of a workflow still working, the 200 of a replay.

Error responses carry `x-error-codes`, the codes they may hold (their description lists them too).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security.base import SecurityBase
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import deps
from api.errors import ErrorOut, ValidationErrorOut
from api.ratelimits import route_rate_limits
from api.schemas import without_null
from bazaar.errors import ErrorCode
from bazaar.payments.money import AS_CURRENCY
from bazaar.settings import get_settings

CODES = "x-error-codes"
SCHEMAS = "#/components/schemas/"
STRING: dict[str, Any] = {"type": "string"}


class Route(Protocol):
    """What this module reads of a route (an APIRoute, or FastAPI's view of one included from a router)."""

    name: str
    path_format: str
    methods: set[str]
    include_in_schema: bool
    dependant: Dependant
    body_field: Any


def operation_id(route: APIRoute) -> str:
    """The operation's name in generated clients: its function's name in camelCase (`place_order` ->
    `placeOrder`). Unique across the API (`complete` refuses a duplicate), stable as long as the function
    keeps its name: renaming a route function renames the client method."""
    first, *rest = route.name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)


# ------------------------------------------------------------------------------ what a route declares


def header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or STRING}


LOCATION = {
    "Location": header(
        "where the resource is (poll it for a 202)", {"type": "string", "format": "uri-reference"}
    )
}
ETAG = {"ETag": header('the version of the resource, e.g. "3": send it as If-Match to change it')}
RETRY_AFTER = {"Retry-After": header("seconds to wait before retrying", {"type": "integer", "minimum": 0})}
# On every answer of a rate-limited operation (api.security), so a client can slow down before a 429.
RATE_QUOTA_HEADERS = {
    "RateLimit": header(
        'the quota left in the current window, e.g. "default";r=0;t=42 (IETF RateLimit fields)'
    ),
    "RateLimit-Policy": header('the quota, e.g. "default";q=10;w=60: 10 requests per 60 seconds'),
}
RATE_LIMIT_HEADERS = {**RETRY_AFTER, **RATE_QUOTA_HEADERS}
WWW_AUTHENTICATE = {"WWW-Authenticate": header("Bearer")}
# On every response (api.telemetry): a client shows it to support with an error.
TRACE_ID = {
    "X-Trace-Id": {
        **header(
            "the request's trace id (32 hex digits), also `error.trace_id`: support finds the request by it",
            {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        ),
        "required": True,
    }
}
# On every answer (api.security): whether and how long a cache may keep it. Components, referred to.
CACHE_CONTROL_HEADER = header(
    "`no-store` on every answer to a request with credentials (a token, an API key, the console's cookie); "
    "`public, max-age=300` on the category tree; else absent"
)
# On every answer (api.security): the browser-facing protections, the same on each.
PROTECTION_HEADERS = {
    "X-Content-Type-Options": header("`nosniff`"),
    "X-Frame-Options": header("`DENY`"),
    "Content-Security-Policy": header("`frame-ancestors 'none'` (the console's pages set a fuller policy)"),
    "Referrer-Policy": header("`no-referrer`"),
}
SHARED_HEADERS = {"Cache-Control": CACHE_CONTROL_HEADER, **PROTECTION_HEADERS}
EVERY_ANSWER = {name: {"$ref": f"#/components/headers/{name}"} for name in SHARED_HEADERS}
VARY = {
    "Vary": header("`Authorization`: the answer depends on who asks (its seller and support read drafts)")
}

# What each status means, before the codes it may carry.
_TITLES = {
    400: "Bad request",
    401: "Not authenticated: no, an expired or an invalid bearer token",
    403: "Forbidden: the caller may not do this",
    404: "Not found (or not visible to the caller)",
    409: "Conflict with the resource's current state",
    412: "Precondition failed: If-Match does not match the current ETag",
    413: "Request body too large",
    415: "Unsupported media type: send the body as application/json",
    422: "Invalid request (for `validation_error`, `details.errors` names each field)",
    428: "Precondition required: send If-Match",
    429: "Too many requests: retry after Retry-After",
    503: "A service behind the API is unavailable: retry after Retry-After",
}
_ERROR_HEADERS = {401: WWW_AUTHENTICATE, 429: RATE_LIMIT_HEADERS, 503: RETRY_AFTER}


def errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error codes a route answers itself, grouped by their status."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        response = out.setdefault(
            code.status,
            {"model": ValidationErrorOut if code.status == 422 else ErrorOut, "description": "", CODES: []},
        )
        response[CODES].append(code.value)
    return out


def merge(*parts: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """Several `responses=` dicts as one (error codes of one status are joined)."""
    out: dict[int | str, dict[str, Any]] = {}
    for part in parts:
        for status, response in part.items():
            if status in out and CODES in out[status] and CODES in response:
                out[status] = {**out[status], CODES: [*out[status][CODES], *response[CODES]]}
            else:
                out[status] = {**out.get(status, {}), **response}
    return out


# ---------------------------------------------------------------------------------- facts of a route


# Dependencies behind which PostgreSQL, Temporal or the search backend can be out of reach (503).
_BACKENDS: frozenset[Callable[..., Any]] = frozenset(
    {deps.session, deps.temporal, deps.search_service, deps.meili}
)


@dataclass(frozen=True)
class RouteFacts:
    token: bool  # sends a bearer token (required or optional)
    token_required: bool
    role: bool
    path_params: bool
    inputs: bool
    backend: bool
    rate_limited: bool


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def facts(route: Route) -> RouteFacts:
    tree = list(_dependants(route.dependant))
    calls = [d.call for d in tree if d.call is not None]
    role_check = f"{deps.require_role.__qualname__}.<locals>."
    return RouteFacts(
        token=any(isinstance(call, SecurityBase) for call in calls),
        token_required=deps.principal in calls,
        role=any(getattr(call, "__qualname__", "").startswith(role_check) for call in calls),
        path_params=any(d.path_params for d in tree),
        inputs=route.body_field is not None
        or any(d.path_params or d.query_params or d.header_params or d.cookie_params for d in tree),
        backend=any(call in _BACKENDS for call in calls),
        rate_limited=bool(route_rate_limits(route.dependant)),
    )


# ------------------------------------------------------------------------------- the document itself


def install(app: FastAPI) -> None:
    """Serve the completed document as the app's `openapi()` (built once, like FastAPI's)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        before = app.openapi_schema
        doc = build()
        if doc is not before:  # freshly built by FastAPI: complete it once
            try:
                complete(app, doc)
            except BaseException:
                app.openapi_schema = None
                raise
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def complete(app: FastAPI, doc: dict[str, Any]) -> None:
    # Where this deployment answers, so a generated client's default base URL is right (read when the document
    # is first built, from the process's settings).
    doc["servers"] = [
        {"url": get_settings().public_base_url, "description": "this deployment (PUBLIC_BASE_URL)"}
    ]
    doc.setdefault("components", {}).setdefault("headers", {}).update(SHARED_HEADERS)
    schemas: dict[str, Any] = doc["components"].setdefault("schemas", {})
    _add_models(schemas, ErrorOut, ValidationErrorOut)
    seen: dict[str, str] = {}
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        route: Route = context  # type: ignore[assignment]  # an APIRoute's context has its attributes
        route_facts = facts(route)
        for method in sorted(route.methods):
            operation = doc["paths"][route.path_format][method.lower()]
            where = f"{method} {route.path_format}"
            if operation["operationId"] in seen:
                raise RuntimeError(
                    f"operationId {operation['operationId']} of {where} is also {seen[operation['operationId']]}"
                )
            seen[operation["operationId"]] = where
            _complete_operation(operation, route_facts)
            _hoist_body_defs(operation, schemas)
    for operations in doc.get("webhooks", {}).values():
        for operation in operations.values():
            # A receiver's answers: any 2xx takes the event, anything else is retried (not an error body of ours).
            operation["responses"] = {
                "2XX": {"description": "taken: any 2xx (anything else, or no answer in time, is retried)"}
            }
            operation["security"] = []  # Bazaar signs what it sends (the webhook-signature header) instead
    _currencies_as_the_enum(schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"{SCHEMAS}{unused}"' not in _text(doc):
            schemas.pop(unused, None)


def _complete_operation(operation: dict[str, Any], route: RouteFacts) -> None:
    for parameter in operation.get("parameters", []):
        _not_null(parameter)
    responses: dict[str, Any] = operation["responses"]
    if f'"{SCHEMAS}HTTPValidationError"' in _text(responses.get("422", {})):
        responses["422"] = {}  # FastAPI's own 422 body, which this API never sends: ours replaces it
    if route.token and not route.token_required:
        # The token is optional: without one the caller is anonymous (an empty requirement), with one it
        # must be valid.
        operation["security"] = [{}, *operation.get("security", [])]
    elif not route.token:
        operation.setdefault("security", [])  # public: stated, so a client sends no credentials
    generic: list[ErrorCode] = []
    if route.token:
        generic.append(ErrorCode.NOT_AUTHENTICATED)
    if route.role:
        generic.append(ErrorCode.FORBIDDEN)
    if route.path_params:
        generic.append(ErrorCode.NOT_FOUND)
    if route.inputs:
        generic.append(ErrorCode.VALIDATION_ERROR)
    if route.rate_limited:
        generic.append(ErrorCode.RATE_LIMITED)
    if route.backend:
        generic.append(ErrorCode.SERVICE_UNAVAILABLE)
    if "requestBody" in operation:
        generic.append(ErrorCode.PAYLOAD_TOO_LARGE)
        if {"application/json", "application/x-www-form-urlencoded"} & operation["requestBody"].get(
            "content", {}
        ).keys():
            generic.append(ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    for code in generic:
        response = responses.setdefault(str(code.status), {})
        if _is_own_body(response):
            continue  # the route answers this status with a body of its own (e.g. /readyz's 503)
        if code not in response.get(CODES, []):
            response[CODES] = [*response.get(CODES, []), code.value]
    for status, response in responses.items():
        if CODES in response or (int(status) >= 400 and _is_empty(response)):
            _error_response(int(status), response)
        elif status in ("204", "304"):
            response.pop("content", None)  # no body
        # What every answer carries (api.telemetry, api.security): the trace id, caching, a limited operation's quota.
        always = {**TRACE_ID, **EVERY_ANSWER, **(RATE_QUOTA_HEADERS if route.rate_limited else {})}
        response["headers"] = {**always, **response.get("headers", {})}
    operation["responses"] = dict(sorted(responses.items()))


def _currencies_as_the_enum(node: Any) -> None:
    """An answered currency (`bazaar.payments.money.AnsweredCurrency`: any stored code at run time) is stated as
    the `Currency` a request takes, so a generated client has one type for both (found from outside: a string)."""
    if isinstance(node, dict):
        if node.pop(AS_CURRENCY, False):
            description = node.get("description")
            node.clear()
            node.update(
                {"$ref": SCHEMAS + "Currency"} | ({"description": description} if description else {})
            )
        for value in node.values():
            _currencies_as_the_enum(value)
    elif isinstance(node, list):
        for item in node:
            _currencies_as_the_enum(item)


def _not_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is one a client leaves out; it has no null to send (a header, a query string and
    a path hold text). Pydantic types `str | None = None` as "a string or null", which generated clients turn
    into a parameter that takes None (found from outside: one then failed inside its HTTP client)."""
    without_null(parameter.get("schema", {}))


def _hoist_body_defs(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A body schema declared by hand (`openapi_extra`, built with `ref_template=SCHEMAS + "{model}"`) keeps
    its models in components, where its refs point: `$defs` nested in an operation are not resolvable."""
    for media in operation.get("requestBody", {}).get("content", {}).values():
        for name, schema in media.get("schema", {}).pop("$defs", {}).items():
            schemas.setdefault(name, schema)


def _error_response(status: int, response: dict[str, Any]) -> None:
    codes: list[str] = list(dict.fromkeys(response.get(CODES) or []))
    response[CODES] = codes
    title = _TITLES.get(status, "Error")
    response["description"] = f"{title}. Codes: " + ", ".join(f"`{c}`" for c in codes) if codes else title
    model = ValidationErrorOut if status == 422 else ErrorOut
    response["content"] = {"application/json": {"schema": {"$ref": f"{SCHEMAS}{model.__name__}"}}}
    response["headers"] = {**_ERROR_HEADERS.get(status, {}), **TRACE_ID, **response.get("headers", {})}


def _is_empty(response: dict[str, Any]) -> bool:
    return all(not media.get("schema") for media in response.get("content", {}).values())


def _is_own_body(response: dict[str, Any]) -> bool:
    """A response the route declared with a schema other than the error bodies."""
    refs = {f"{SCHEMAS}{model.__name__}" for model in (ErrorOut, ValidationErrorOut)}
    return CODES not in response and any(
        media.get("schema") and media["schema"].get("$ref") not in refs
        for media in response.get("content", {}).values()
    )


def _add_models(schemas: dict[str, Any], *models: type[BaseModel]) -> None:
    _, top = models_json_schema(
        [(model, "serialization") for model in models], ref_template=SCHEMAS + "{model}"
    )
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def _text(doc: dict[str, Any]) -> str:
    return json.dumps(doc)
