"""Map every error to one machine-readable body: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from bazaar.errors import DomainError, ErrorCode

log = logging.getLogger("api")

_HTTP_CODES = {
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}


# How a workflow Update's rejection (an ApplicationError type) maps to an API error; anything else is 409.
_UPDATE_REJECTIONS = {"Forbidden": ErrorCode.FORBIDDEN, "InvalidRequest": ErrorCode.VALIDATION_ERROR}


def update_rejection(exc: WorkflowUpdateFailedError, details: dict[str, Any] | None = None) -> DomainError:
    """The API error for a rejected workflow Update: 403, 422, or 409 for a move not allowed now."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        code = _UPDATE_REJECTIONS.get(cause.type or "", ErrorCode.INVALID_TRANSITION)
        return DomainError(code, cause.message, details)
    return DomainError(ErrorCode.INVALID_TRANSITION, "action not allowed now", details)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        return JSONResponse(
            jsonable_encoder(
                error_body(ErrorCode.VALIDATION_ERROR, "request is invalid", {"errors": errors})
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal error"), status_code=500)
