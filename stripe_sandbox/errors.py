"""Stripe-shaped API errors, so the official SDK maps them to its own exception classes."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An API error rendered as ``{"error": {...}}`` with Stripe's HTTP status.

    ``store_idempotent`` mirrors Stripe's rule that a result is saved under an
    Idempotency-Key only once the endpoint started executing: parameter
    validation failures are not saved, card declines are.
    """

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
        store_idempotent: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = extra or {}
        self.store_idempotent = store_idempotent

    def body(self) -> dict[str, Any]:
        """The JSON body Stripe would send."""
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        if self.decline_code is not None:
            err["decline_code"] = self.decline_code
        err.update(self.extra)
        return {"error": err}


def invalid(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    """A 400 ``invalid_request_error`` (validation failure, not saved for idempotency)."""
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, obj_id: str, param: str = "id") -> StripeError:
    """Stripe's 404 for an unknown object id."""
    return StripeError(
        404, "invalid_request_error", f"No such {kind}: '{obj_id}'", code="resource_missing", param=param
    )
