"""Map every error to one machine-readable body: {"error": {"code", "message", "details", "trace_id"}}
(`ErrorOut`, the schema of every error response in the OpenAPI document; docs/api.md).

Bad input is a 422 naming the field; a missing header a route requires for its own reasons has its own code
(`REQUIRED_HEADERS`: 400 `idempotency_key_required`, 428 `precondition_required`); PostgreSQL or Temporal out
of reach is a 503 with Retry-After; anything else is a 500 that still leaves the client's keep-alive connection
usable (`InternalErrorMiddleware`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request, params
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api import methods
from bazaar.errors import DomainError, ErrorCode, Rejection
from bazaar.telemetry import trace_id

log = logging.getLogger("api")

# How long a client should wait before retrying a 503 (seconds): long enough for a pool to reconnect or a
# failover to finish, short enough that a blip costs little.
RETRY_AFTER_SECONDS = 5
# Temporal answers these when it cannot be reached or did not answer in time; other statuses are bugs or
# answers about the workflow, handled where they are expected.
# How Temporal's answers reach HTTP, the same way on every route: a rejected Update is the workflow's own
# rejection (`update_rejection`: 403/409/422 by its type); a workflow that is not there or has ended
# (`workflow_gone`) is answered by the route from the stored state; Temporal out of reach, or too busy to take
# another Update for a workflow, or an Update given up with its failed workflow task (`workflow_not_ready`: a worker
# died in it), is 503 with Retry-After (the `RPCError` handler below); anything else is a bug.
_TEMPORAL_UNREACHABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


def workflow_not_ready(exc: RPCError) -> bool:
    """The server gave up on an Update because the workflow task it rode in failed (a worker died in it, or the
    task was refused): nothing was done, and the same request with the same key can be sent again."""
    return exc.status == RPCStatusCode.FAILED_PRECONDITION and any(
        detail.type_url.endswith("WorkflowNotReadyFailure") for detail in exc.grpc_status.details
    )


def workflow_gone(exc: RPCError) -> bool:
    """The workflow is not there, or has ended: its state is final (the caller answers from the database)."""
    return exc.status == RPCStatusCode.NOT_FOUND


_HTTP_CODES = {
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


# How a workflow Update's rejection (the ApplicationError's type) maps to an API error; anything else is 409.
_UPDATE_REJECTIONS: dict[Rejection, ErrorCode] = {
    Rejection.FORBIDDEN: ErrorCode.FORBIDDEN,
    Rejection.INVALID_TRANSITION: ErrorCode.INVALID_TRANSITION,
    Rejection.INVALID_REQUEST: ErrorCode.VALIDATION_ERROR,
    Rejection.NEEDS_ATTENTION: ErrorCode.ORDER_NEEDS_ATTENTION,
    Rejection.PAYMENT_REJECTED: ErrorCode.PAYMENT_REJECTED,
    Rejection.IDEMPOTENCY_KEY_REUSED: ErrorCode.IDEMPOTENCY_KEY_REUSED,
}


def update_rejection(exc: WorkflowUpdateFailedError, details: dict[str, Any] | None = None) -> DomainError:
    """The API error for a rejected workflow Update: 403, 422, or 409 for a move not allowed now."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        rejection = _rejection(cause.type)
        code = _UPDATE_REJECTIONS[rejection] if rejection else ErrorCode.INVALID_TRANSITION
        return DomainError(code, cause.message, details)
    return DomainError(ErrorCode.INVALID_TRANSITION, "action not allowed now", details)


def _rejection(error_type: str | None) -> Rejection | None:
    try:
        return Rejection(error_type or "")
    except ValueError:  # not a rejection of ours (e.g. a failure converting the Update's payload)
        return None


class FieldError(BaseModel):
    """One problem with the request: where it is, what is wrong, and its kind."""

    loc: list[str | int] = Field(
        description='the source ("body", "query", "path", "header"), then the path to the field',
        examples=[["body", "price", "amount"]],
    )
    msg: str = Field(examples=["Input should be greater than 0"])
    type: str = Field(
        description="the kind of problem, e.g. missing, string_too_long", examples=["greater_than"]
    )


class ErrorInfo(BaseModel):
    code: ErrorCode = Field(
        description="what went wrong, for programs: each code is answered with one HTTP status (docs/api.md)"
    )
    message: str = Field(description="what went wrong, for people (names the field for bad input)")
    details: dict[str, Any] = Field(
        description="facts for programs, by code (e.g. `current_version` with 412, the `order` with a 409 "
        "on an order); `{}` when there are none"
    )
    trace_id: str | None = Field(
        default=None,
        description="the request's trace id (also its `X-Trace-Id` header): quote it to support, who find the "
        "request's trace and log lines by it (docs/operations.md, Traces)",
        pattern="^[0-9a-f]{32}$",
        examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
    )


class ErrorOut(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "sold_out",
                        "message": "the listing is sold out",
                        "details": {"available": 0},
                    }
                }
            ]
        }
    )
    error: ErrorInfo


class ValidationDetails(BaseModel):
    model_config = ConfigDict(extra="allow")
    errors: list[FieldError] = Field(
        default=[],
        description="every problem with the request: its fields, or `body` for the request as a whole",
    )


class ValidationErrorInfo(ErrorInfo):
    # Narrows `details` for the schema of a 422; a ValidationDetails is a dict-shaped object on the wire.
    details: ValidationDetails  # type: ignore[assignment]


class ValidationErrorOut(BaseModel):
    """The body of a 422: `ErrorOut` whose details list the fields in error."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "validation_error",
                        "message": "price.amount: Input should be greater than 0",
                        "details": {
                            "errors": [
                                {
                                    "loc": ["body", "price", "amount"],
                                    "msg": "Input should be greater than 0",
                                    "type": "greater_than",
                                }
                            ]
                        },
                    }
                }
            ]
        }
    )
    error: ValidationErrorInfo


# Headers a route requires for its own reasons (declared required, so the document says so): sent without
# them, and with nothing else wrong, a request gets their own code rather than a 422.
REQUIRED_HEADERS: dict[str, tuple[ErrorCode, str]] = {
    "idempotency-key": (ErrorCode.IDEMPOTENCY_KEY_REQUIRED, "send an Idempotency-Key header (e.g. a UUID)"),
    "if-match": (
        ErrorCode.PRECONDITION_REQUIRED,
        "send If-Match with the ETag of your last read (or * to overwrite whatever is there)",
    ),
}


def _missing_required_header(errors: list[dict[str, Any]]) -> DomainError | None:
    """The error for a request whose only problems are required headers of `REQUIRED_HEADERS` left out."""
    names = [
        str(e["loc"][1]).lower()
        for e in errors
        if e["type"] == "missing" and len(e["loc"]) == 2 and e["loc"][0] == "header"
    ]
    if not errors or len(names) != len(errors) or not all(name in REQUIRED_HEADERS for name in names):
        return None
    return DomainError(*REQUIRED_HEADERS[names[0]])


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error = {"code": code, "message": message, "details": details or {}}
    current = trace_id()  # inside the request's server span (api.telemetry)
    if current is not None:
        error["trace_id"] = current
    return {"error": error}


def unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        error_body(ErrorCode.SERVICE_UNAVAILABLE, message),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def database_unreachable(exc: BaseException) -> bool:
    """Whether a database error means "cannot be reached or cannot serve now, retry" rather than a bug:
    refused or lost connections, pool timeouts, and PostgreSQL's operational errors (shutdown, too many
    connections, statement timeout, deadlock). Data and programming errors are bugs: a 500."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def located(error: Mapping[str, Any]) -> dict[str, Any]:
    """One validation error as the API names it: a body that is not JSON is the body's error (FastAPI puts the
    character offset where a field's name goes), said with where it broke; our own refusals (a ValueError in a
    validator) without pydantic's "Value error, " before them."""
    loc, msg = list(error.get("loc", ())), error.get("msg")
    if error.get("type") == "value_error" and isinstance(msg, str):
        msg = msg.removeprefix("Value error, ")
    if error.get("type") == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int):
        detail = (error.get("ctx") or {}).get("error")
        loc, msg = ["body"], f"not valid JSON at character {loc[1]}" + (f" ({detail})" if detail else "")
    return {"loc": loc, "msg": msg, "type": error.get("type")}


def _where(loc: Sequence[Any]) -> str:
    """A validation error's location for people: "title", "price.amount", "query parameter q"."""
    if not loc:
        return "request"
    source, *path = (str(part) for part in loc)
    name = ".".join(path)
    if source == "body":
        return name or "body"
    return f"{source} parameter {name}" if name else source


def _internal_error() -> JSONResponse:
    return JSONResponse(error_body(ErrorCode.INTERNAL_ERROR, "internal error"), status_code=500)


class InternalErrorMiddleware:
    """Turns an exception that escaped every handler into the 500 JSON body, as an ordinary response.

    Installed inside Starlette's ServerErrorMiddleware, which would send its 500 and then re-raise: uvicorn
    then drops the keep-alive connection without `Connection: close`, and a client reusing it reads a
    connection reset. Here the exception ends with the response, so the connection stays usable. Once a
    response has started there is no status left to send: that exception goes on up (and the connection is
    closed, which is right for a half-sent body).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            if started:
                raise
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            await _internal_error()(scope, receive, send)


# What an operation that takes a form reads (FastAPI parses both).
FORM_MEDIA = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _not_json(request: Request, errors: list[dict[str, Any]]) -> DomainError | None:
    """415 for a body sent under a media type the operation does not read: a JSON body under another type or
    none (FastAPI reads only `application/json` and `+json` bodies as JSON: anything else reached validation as
    bytes, "Input should be a valid dictionary"), and anything but a form sent to an operation that takes one (its
    fields were then "required")."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    json_media = media == "application/json" or media.endswith("+json")
    route = request.scope.get("route")
    body = getattr(route, "body_field", None)
    if body is not None and isinstance(body.field_info, params.Form):
        if media in FORM_MEDIA:
            return None
        # Found from outside: text, or no Content-Type, reached validation as a form without fields (a 422).
        return DomainError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "this operation takes a form (Content-Type: application/x-www-form-urlencoded), not "
            + ("JSON" if json_media else media or "a body without a Content-Type"),
        )
    if json_media:
        return None
    if not any(e["loc"] == ["body"] and e["type"] in ("dict_type", "model_attributes_type") for e in errors):
        return None
    return DomainError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"the body must be JSON (Content-Type: application/json), not {media or 'sent without a Content-Type'}",
    )


def install(app: FastAPI) -> None:
    app.add_middleware(InternalErrorMiddleware)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        details = exc.details
        if exc.code == ErrorCode.VALIDATION_ERROR and "errors" not in details:
            # Every validation_error lists its errors (docs/api.md); one the request as a whole caused names the body.
            details = {**details, "errors": [{"loc": ["body"], "msg": exc.message, "type": "invalid"}]}
        return JSONResponse(
            error_body(exc.code, exc.message, details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [located(e) for e in exc.errors()]
        if (missing := _missing_required_header(errors)) is not None:
            return await domain_error(request, missing)
        if (sent_as := _not_json(request, errors)) is not None:
            return await domain_error(request, sent_as)
        # The message names the (first) field, so a person reading only the message knows what to fix.
        message = "request is invalid"
        if errors:
            message = f"{_where(errors[0]['loc'])}: {errors[0]['msg']}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more)"
        return JSONResponse(
            jsonable_encoder(error_body(ErrorCode.VALIDATION_ERROR, message, {"errors": errors})),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that could not be parsed (e.g. a broken form): bad input
            return JSONResponse(
                error_body(
                    ErrorCode.VALIDATION_ERROR,
                    f"body: {exc.detail}",
                    {"errors": [{"loc": ["body"], "msg": str(exc.detail), "type": "body_invalid"}]},
                ),
                status_code=ErrorCode.VALIDATION_ERROR.status,
            )
        # Statuses outside the API's contract (405 for a method no operation has) keep a code of their own.
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 503:
            headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
        if exc.status_code == 405:
            headers["Allow"] = methods.allowed_methods(request, headers.get("Allow", ""))
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers or None
        )

    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    @app.exception_handler(psycopg.Error)
    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        if not database_unreachable(exc):
            raise exc  # a bug, not an outage: InternalErrorMiddleware answers 500 and logs it
        log.warning("database unavailable: %s", exc)
        return unavailable("the database is unavailable, retry shortly")

    @app.exception_handler(RPCError)
    async def temporal_error(_: Request, exc: RPCError) -> JSONResponse:
        if exc.status not in _TEMPORAL_UNREACHABLE and not workflow_not_ready(exc):
            raise exc
        log.warning("temporal unavailable: %s", exc)
        return unavailable("the workflow service is unavailable, retry shortly")

    @app.exception_handler(ConnectionError)
    async def connection_error(_: Request, exc: ConnectionError) -> JSONResponse:
        # A dependency refused or dropped a raw connection (drivers normally wrap these; this catches the
        # ones that escape unwrapped).
        log.warning("dependency unavailable: %s", exc)
        return unavailable("a service is unavailable, retry shortly")
