"""The terms an order freezes when it is placed, and their defaults: one home for both.

The settings name each term for operators (`ORDER_ACCEPTANCE_TIMEOUT_SECONDS`, `PLATFORM_FEE_BPS`, ...) with these
defaults, and `Settings.order_terms()` hands the current values to a new order. The order's start payload
(`PlaceOrder`) has the same defaults, so a history recorded before a term existed replays with the value it had
then: change a default here only together with a new workflow type (docs/workflow-versioning.md).
"""

from __future__ import annotations

from typing import Final, TypedDict


class OrderTerms(TypedDict):
    """What an order freezes when it is placed (fields of bazaar.orders.types.PlaceOrder)."""

    acceptance_timeout_seconds: int
    acceptance_reminder_seconds: int  # before the acceptance deadline
    dispute_window_seconds: int
    fee_bps: int  # platform fee, basis points of the total
    fee_fixed: int  # platform fee, minor units per order
    # A refund gives back the platform fee in proportion (the fee is charged on what the buyer keeps paying),
    # or not (the fee on the whole order stays with the platform; the seller's share bears the refund).
    fee_refunded_pro_rata: bool
    review_window_seconds: int
    dispute_escalation_seconds: int
    notification_max_attempts: int
    # Failure bounds (docs/failure-rules.md): how long a database step / a provider call may keep failing
    # transiently before the order is flagged for support, and how often it then retries.
    step_timeout_seconds: int
    provider_timeout_seconds: int
    attention_retry_seconds: int


DEFAULT_TERMS: Final = OrderTerms(
    acceptance_timeout_seconds=48 * 3600,
    acceptance_reminder_seconds=12 * 3600,
    dispute_window_seconds=7 * 24 * 3600,
    fee_bps=1000,
    fee_fixed=30,
    fee_refunded_pro_rata=True,
    review_window_seconds=14 * 24 * 3600,
    dispute_escalation_seconds=5 * 24 * 3600,
    notification_max_attempts=6,
    step_timeout_seconds=60,
    provider_timeout_seconds=600,
    attention_retry_seconds=600,
)
