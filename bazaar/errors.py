"""The one error type of the domain: a machine-readable code, a human message, an HTTP status."""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.StrEnum):
    VALIDATION_ERROR = "validation_error"
    NOT_AUTHENTICATED = "not_authenticated"
    INVALID_CREDENTIALS = "invalid_credentials"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    EMAIL_TAKEN = "email_taken"
    UNKNOWN_CATEGORY = "unknown_category"
    PAYOUT_ACCOUNT_REQUIRED = "payout_account_required"
    PAYOUT_ACCOUNT_EXISTS = "payout_account_exists"
    INVALID_TRANSITION = "invalid_transition"
    PRECONDITION_FAILED = "precondition_failed"
    PRECONDITION_REQUIRED = "precondition_required"
    LISTING_NOT_AVAILABLE = "listing_not_available"
    SOLD_OUT = "sold_out"
    OWN_LISTING = "own_listing"
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    CURRENCY_MISMATCH = "currency_mismatch"
    SERVICE_UNAVAILABLE = "service_unavailable"
    RATE_LIMITED = "rate_limited"
    INVALID_SIGNATURE = "invalid_signature"
    REVIEW_NOT_ALLOWED = "review_not_allowed"
    REVIEW_EXISTS = "review_exists"
    AMOUNT_NOT_CHARGEABLE = "amount_not_chargeable"
    ORDER_NEEDS_ATTENTION = "order_needs_attention"
    PAYMENT_REJECTED = "payment_rejected"


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.NOT_AUTHENTICATED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.EMAIL_TAKEN: 409,
    ErrorCode.UNKNOWN_CATEGORY: 422,
    ErrorCode.PAYOUT_ACCOUNT_REQUIRED: 409,
    ErrorCode.PAYOUT_ACCOUNT_EXISTS: 409,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.PRECONDITION_FAILED: 412,
    ErrorCode.PRECONDITION_REQUIRED: 428,
    ErrorCode.LISTING_NOT_AVAILABLE: 409,
    ErrorCode.SOLD_OUT: 409,
    ErrorCode.OWN_LISTING: 422,
    ErrorCode.IDEMPOTENCY_KEY_REQUIRED: 400,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.CURRENCY_MISMATCH: 422,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INVALID_SIGNATURE: 400,
    ErrorCode.REVIEW_NOT_ALLOWED: 409,
    ErrorCode.REVIEW_EXISTS: 409,
    ErrorCode.AMOUNT_NOT_CHARGEABLE: 422,
    ErrorCode.ORDER_NEEDS_ATTENTION: 409,
    ErrorCode.PAYMENT_REJECTED: 409,
}


class DomainError(Exception):
    """Raised by domain actions; the API maps it to `{"error": {"code", "message", "details"}}`."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def status(self) -> int:
        return _STATUS[self.code]
