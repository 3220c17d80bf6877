"""The return's workflow payloads (workflows/returns.py): its start, its actors' requests, what both sides see."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from bazaar.orders.types import Actor, OrderLineView, RefundLine
from bazaar.returns.models import ReturnReason, ReturnStatus


class ReturnAction(enum.StrEnum):
    APPROVE = "approve"  # seller (or support once escalated)
    REJECT = "reject"  # seller (or support once escalated)
    SHIP = "ship"  # buyer, with the return shipment's tracking
    RECEIVE = "receive"  # seller: it arrived (restock or not); the refund goes out
    CANCEL = "cancel"  # buyer, before sending it
    RESOLVE = "resolve"  # support, on an escalated return: approve or reject (retry a refused refund)


@dataclass
class ReturnedLine:
    listing_id: str
    quantity: int


@dataclass
class ReturnTerms:
    response_seconds: int
    ship_seconds: int
    receipt_seconds: int


@dataclass
class StartReturn:
    return_id: str
    order_id: str
    buyer_id: str
    lines: list[ReturnedLine]
    reason: ReturnReason
    message: str | None
    photos: list[str]
    idempotency_key: str | None
    window_seconds: int
    terms: ReturnTerms


@dataclass
class ReturnRequest:
    """An actor's move on a return."""

    actor: Actor
    reason: str | None = None  # reject / resolve: why
    tracking: dict[str, str] | None = None  # ship
    restock: bool = False  # receive / resolve: put the lines back on sale
    approve: bool | None = None  # resolve: approve (True) or reject (False)


@dataclass
class ReturnView:
    return_id: str
    order_id: str
    buyer_id: str
    seller_id: str = ""
    status: ReturnStatus | None = None  # None: refused (nothing stored)
    status_reason: str | None = None
    amount: int = 0
    currency: str = ""
    lines: list[OrderLineView] = field(default_factory=list)
    tracking: dict[str, str] | None = None
    restocked: bool | None = None
    allowed_actions: list[ReturnAction] = field(default_factory=list)
    refusal_detail: str = ""  # refused at opening: what was wrong (e.g. how many of a line can be returned)


@dataclass
class ReturnOpened:
    """The return stored (or why not: `refusal`, nothing stored)."""

    ok: bool
    refusal: str | None = (
        None  # order_not_returnable | return_window_closed | invalid_lines | already_returned | nothing_to_refund
    )
    detail: str = ""
    seller_id: str = ""
    amount: int = 0
    currency: str = ""
    lines: list[OrderLineView] = field(default_factory=list)
    seq: int = 1


@dataclass
class ReturnTransition:
    """A move saved with its timeline event and notifications (one transaction; never backwards)."""

    return_id: str
    seq: int
    status: ReturnStatus
    status_reason: str | None
    actor_id: str | None
    actor_role: str
    action: str
    tracking: dict[str, str] | None = None
    restocked: bool | None = None
    notify: list[str] = field(default_factory=list)  # parties told: buyer | seller | support
    event_type: str = ""  # the notification's template
    # What the return refunded, when the order held less than the lines' value by then (other refunds took part).
    refunded_amount: int | None = None


@dataclass
class ReturnRefund:
    """The return's refund, made by the order itself (its `refund` Update: the order's money rules apply)."""

    return_id: str
    order_id: str
    amount: int
    actor: Actor
    reason: str
    # Which ask this is (the return's move count): each ask is its own Update of the order, retries of one ask the
    # same (an order's Update that failed in its handler answers a repeat of its id with that failure for good).
    attempt: int = 0
    # Asked again within one attempt, for less, after the order refused the first ask because other refunds had
    # taken part of what it held meanwhile (workflows.returns, RETURN_SETTLES_PATCH): its own Update.
    ask: int = 0
    lines: list[RefundLine] = field(
        default_factory=list
    )  # the units returned: the order counts them refunded
