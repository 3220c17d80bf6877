"""The one error type of the domain: a machine-readable code, a human message, an HTTP status; and why a
workflow refuses an Update (`Rejection`)."""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    """A machine-readable error code and the HTTP status it is answered with (`code.status`)."""

    status: int

    def __new__(cls, value: str, status: int) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        return member

    VALIDATION_ERROR = "validation_error", 422
    NOT_AUTHENTICATED = "not_authenticated", 401
    INVALID_CREDENTIALS = "invalid_credentials", 401
    FORBIDDEN = "forbidden", 403
    NOT_FOUND = "not_found", 404
    UNKNOWN_CATEGORY = "unknown_category", 422
    PAYOUT_ACCOUNT_REQUIRED = "payout_account_required", 409
    PAYOUT_ACCOUNT_EXISTS = "payout_account_exists", 409
    PAYOUT_ACCOUNT_NOT_READY = "payout_account_not_ready", 409  # the provider reports it cannot take charges
    PAYOUT_ACCOUNT_REFUSED = "payout_account_refused", 409  # the provider refused a request about the account
    INVALID_TRANSITION = "invalid_transition", 409
    PRECONDITION_FAILED = "precondition_failed", 412
    PRECONDITION_REQUIRED = "precondition_required", 428
    LISTING_NOT_AVAILABLE = "listing_not_available", 409
    SOLD_OUT = "sold_out", 409
    CART_FULL = "cart_full", 409
    # A scope has as many webhook endpoints as it may (`details.limit`): delete one first.
    WEBHOOK_ENDPOINTS_FULL = "webhook_endpoints_full", 409
    CART_EMPTY = "cart_empty", 409
    # A line sold out, left sale or changed price: `details.lines` says which.
    CART_CHANGED = "cart_changed", 409
    # Another checkout of the buyer's is still being paid: `details.checkout_id` names it (poll it, then retry).
    CHECKOUT_IN_PROGRESS = "checkout_in_progress", 409
    RETURN_NOT_ALLOWED = "return_not_allowed", 409  # not returnable now: `details.reason` says why
    OWN_LISTING = "own_listing", 422
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required", 400
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", 422
    CURRENCY_MISMATCH = "currency_mismatch", 422
    SERVICE_UNAVAILABLE = "service_unavailable", 503
    RATE_LIMITED = "rate_limited", 429
    INVALID_SIGNATURE = "invalid_signature", 400
    INVALID_EVENT = "invalid_event", 400  # a signed webhook event we cannot read (no id, no data object)
    REVIEW_NOT_ALLOWED = "review_not_allowed", 409
    REVIEW_EXISTS = "review_exists", 409
    AMOUNT_NOT_CHARGEABLE = "amount_not_chargeable", 422
    ORDER_NEEDS_ATTENTION = "order_needs_attention", 409
    PAYMENT_REJECTED = "payment_rejected", 409
    # Outside any operation's own contract, but answered all the same: in the enum so a client parses them.
    METHOD_NOT_ALLOWED = "http_405", 405  # a method the path does not have (`Allow` names those it has)
    PAYLOAD_TOO_LARGE = "payload_too_large", 413  # a request body over the API's limit (1 MiB, api/app.py)
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415  # a JSON body sent as another content type
    INTERNAL_ERROR = "internal_error", 500  # a bug; never for bad input


class Rejection(enum.StrEnum):
    """Why a workflow refused an Update: the `type` of the ApplicationError it raises (the API answers it
    with an `ErrorCode`, api/errors.py; anything else is a 409)."""

    FORBIDDEN = "Forbidden"  # this actor may never do this to this order
    INVALID_TRANSITION = "InvalidTransition"  # not in the current state (e.g. lost a race)
    INVALID_REQUEST = "InvalidRequest"  # the request itself is wrong (422)
    NEEDS_ATTENTION = "NeedsAttention"  # a step keeps failing and support is on it
    PAYMENT_REJECTED = "PaymentRejected"  # the provider refused the money movement; nothing changed
    IDEMPOTENCY_KEY_REUSED = "IdempotencyKeyReused"  # the key was used for a different order


class DomainError(Exception):
    """Raised by domain actions; the API maps it to `{"error": {"code", "message", "details"}}`."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def status(self) -> int:
        return self.code.status


def field_error(field: str, message: str, kind: str, where: str = "body", **details: Any) -> DomainError:
    """422 `validation_error` about one field of the request (`where`: body, query, path), shaped like the API's
    own request validation errors (`details.errors`: `loc`, `msg`, `type`), with any further `details`."""
    return DomainError(
        ErrorCode.VALIDATION_ERROR,
        f"{field}: {message}",
        {"errors": [{"loc": [where, field], "msg": message, "type": kind}], **details},
    )
