"""What crosses the order workflow's boundary: its input, its Update/Signal payloads, the view it answers
with, its id and its search attributes. The API, the webhook endpoint and both order workflow versions
(`workflows.order` and the frozen `workflows.legacy_order`) share these, so fields are only ever added,
with defaults (a running workflow must still decode what it was started with)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from bazaar.models import Order, OrderStatus, PaymentState
from bazaar.orders.terms import DEFAULT_TERMS
from bazaar.temporal import ORDER_SEARCH_ATTRIBUTES
from bazaar.trust.models import DisputeSource

# The order's states live with its table (`bazaar.models`: OrderStatus, PaymentState, both also search
# attributes); the other values that cross the workflow's boundary live here. All are StrEnums: a member
# equals its string, so the payloads and the stored histories hold the same values as before.

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
BUYER_ID = SearchAttributeKey.for_keyword("BuyerId")
SELLER_ID = SearchAttributeKey.for_keyword("SellerId")
LISTING_ID = SearchAttributeKey.for_keyword("ListingId")
ORDER_AMOUNT = SearchAttributeKey.for_int("OrderAmount")
PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")
NEEDS_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")
SEARCH_ATTRIBUTE_KEYS: list[SearchAttributeKey[Any]] = [
    ORDER_STATUS,
    BUYER_ID,
    SELLER_ID,
    LISTING_ID,
    ORDER_AMOUNT,
    PAYMENT_STATE,
    NEEDS_ATTENTION,
]
assert {k.name for k in SEARCH_ATTRIBUTE_KEYS} == set(ORDER_SEARCH_ATTRIBUTES)

# Orders a person must look at: a step failing past its bound, or a payout the provider refused.
STUCK_ORDERS_QUERY = f"(NeedsAttention = true OR PaymentState = '{PaymentState.TRANSFER_FAILED}') AND ExecutionStatus = 'Running'"
TERMINAL = frozenset(
    {OrderStatus.COMPLETED, OrderStatus.REFUNDED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
)


class Party(enum.StrEnum):
    """Who acts on an order (the timeline's and the dispute thread's `actor_role`/`author_role`)."""

    BUYER = "buyer"
    SELLER = "seller"
    SUPPORT = "support"
    SYSTEM = "system"  # the workflow itself: a deadline, the provider's answer, the card network


class OrderAction(enum.StrEnum):
    """What an actor can ask of an order: the workflow's Updates (`OrderView.allowed_actions`)."""

    ACCEPT = "accept"
    DECLINE = "decline"
    CANCEL = "cancel"
    FULFIL = "fulfil"
    CONFIRM_RECEIPT = "confirm_receipt"
    OPEN_DISPUTE = "open_dispute"
    RESOLVE_DISPUTE = "resolve_dispute"
    RETRY_TRANSFER = "retry_transfer"
    RETRY = "retry"
    REFUND = "refund"


class OrderEvent(enum.StrEnum):
    """An entry of the order's timeline (`audit_events.action` of subject `order`)."""

    PLACED = "order.placed"
    PAYMENT_STARTED = "order.payment_started"  # written by earlier versions only
    PAID = "order.paid"
    PAYMENT_FAILED = "order.payment_failed"
    PAYMENT_REJECTED = "order.payment_rejected"
    REMINDED = "order.reminded"
    ACCEPTED = "order.accepted"
    FULFILLED = "order.fulfilled"
    COMPLETED = "order.completed"
    CANCELLED = "order.cancelled"
    DISPUTED = "order.disputed"
    REFUNDED = "order.refunded"
    PARTIALLY_REFUNDED = "order.partially_refunded"
    # The seller's transfer after the completion that released it (it follows the Update's answer).
    PAYOUT_SENT = "order.payout_sent"
    PAYOUT_FAILED = "order.payout_failed"  # refused by the provider: support's `retry_transfer`
    PAYOUT_HELD = "order.payout_on_hold"  # waits until the provider enables the seller's payouts
    PAYOUT_RETRIED = "order.payout_retried"
    PAYOUT_RETRY_FAILED = "order.payout_retry_failed"
    CHARGEBACK = "order.chargeback"
    CHARGEBACK_WON = "order.chargeback_won"
    CHARGEBACK_LOST = "order.chargeback_lost"
    NEEDS_ATTENTION = "order.needs_attention"


# The transition that tells how the transfer after a release went, by the payment state it left.
PAYOUT_OUTCOMES = {
    PaymentState.RELEASED: OrderEvent.PAYOUT_SENT,
    PaymentState.TRANSFER_FAILED: OrderEvent.PAYOUT_FAILED,
    PaymentState.PAYOUT_ON_HOLD: OrderEvent.PAYOUT_HELD,
}


class ChargebackStatus(enum.StrEnum):
    """Where the card network's dispute of the order's charge stands."""

    WITHDRAWN = "withdrawn"  # the network took the money while it decides
    WON = "won"  # decided for the seller: the money is back
    LOST = "lost"  # decided for the buyer


@dataclass
class RefundLine:
    """Units of one of an order's lines to refund (by listing: an order has each listing once)."""

    listing_id: str
    quantity: int


@dataclass
class OrderLineView:
    """A listing an order bought, at the unit price frozen when it was placed."""

    listing_id: str
    listing_title: str
    quantity: int
    unit_amount: int


class StoredLine(Protocol):
    """A line as a table stores it (an order's, a return's)."""

    @property
    def listing_id(self) -> uuid.UUID: ...
    @property
    def listing_title(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_amount(self) -> int: ...


def line_view(line: StoredLine) -> OrderLineView:
    return OrderLineView(str(line.listing_id), line.listing_title, line.quantity, line.unit_amount)


def view_lines(view: OrderView) -> list[OrderLineView]:
    """What the order bought, as its workflow knows it: a single-listing order's one line is its listing."""
    if view.lines:
        return view.lines
    unit = view.amount // view.quantity if view.quantity else 0
    return [OrderLineView(view.listing_id, view.listing_title, view.quantity, unit)]


def order_line_views(order: Order) -> list[OrderLineView]:
    """The order's stored lines; one placed by a worker from before lines (a rolling deploy) bought its listing."""
    return [line_view(x) for x in order.lines] or [
        OrderLineView(str(order.listing_id), order.listing_title, order.quantity, order.unit_amount)
    ]


@dataclass
class CheckoutShare:
    """An order a checkout placed and paid for (workflows/checkout.py): the order starts paid, its share of the
    checkout's one charge already in its escrow; refunds are made on that charge, transfers in its group."""

    checkout_id: str
    payment_intent_id: str
    transfer_group: str
    seller_id: str
    listing_title: str
    amount: int
    currency: str
    lines: list[OrderLineView] = field(default_factory=list)


@dataclass
class PlaceOrder:
    order_id: str
    buyer_id: str
    listing_id: str
    quantity: int
    payment_method: str
    idempotency_key: str
    # Terms frozen at order time (settings may change while the order runs): bazaar.orders.terms.
    acceptance_timeout_seconds: int = DEFAULT_TERMS["acceptance_timeout_seconds"]
    dispute_window_seconds: int = DEFAULT_TERMS["dispute_window_seconds"]
    fee_bps: int = DEFAULT_TERMS["fee_bps"]
    fee_fixed: int = DEFAULT_TERMS["fee_fixed"]
    fee_refunded_pro_rata: bool = DEFAULT_TERMS["fee_refunded_pro_rata"]
    acceptance_reminder_seconds: int = DEFAULT_TERMS["acceptance_reminder_seconds"]
    review_window_seconds: int = DEFAULT_TERMS["review_window_seconds"]
    dispute_escalation_seconds: int = DEFAULT_TERMS["dispute_escalation_seconds"]
    notification_max_attempts: int = DEFAULT_TERMS["notification_max_attempts"]
    # A new run for an order whose workflow has ended (a late chargeback): load the state, never charge.
    reopen: bool = False
    step_timeout_seconds: int = DEFAULT_TERMS["step_timeout_seconds"]
    provider_timeout_seconds: int = DEFAULT_TERMS["provider_timeout_seconds"]
    attention_retry_seconds: int = DEFAULT_TERMS["attention_retry_seconds"]
    # Placed and paid by a checkout with other sellers' orders: no reservation or charge of its own.
    checkout: CheckoutShare | None = None


@dataclass
class Placement:
    """The create-order request, sent with the workflow's start (update-with-start): a retry with the same
    Idempotency-Key must ask for the same thing, or it is refused."""

    listing_id: str = ""
    quantity: int = 0
    payment_method: str = ""


@dataclass
class Actor:
    """Who asks: the authenticated user (the API vouches for it) and whether they are support staff."""

    user_id: str
    is_support: bool = False


@dataclass
class ActionRequest:
    actor: Actor
    reason: str | None = None  # free text for cancel; the reason code for a dispute
    message: str | None = None  # open_dispute: the buyer's account of what went wrong
    tracking: dict[str, str] | None = None  # fulfil: carrier, tracking number, url
    resolution: str | None = None  # resolve_dispute: release | refund | partial_refund
    refund_amount: int | None = None  # partial_refund and refund, minor units
    # refund by lines: these units of the order's lines (at their unit prices, unless refund_amount caps them)
    refund_lines: list[RefundLine] | None = None
    # The caller's Idempotency-Key for this action and a digest of what it asked: the same key with another
    # request is refused (`Rejection.IDEMPOTENCY_KEY_REUSED`) rather than answered with the first one's result.
    idempotency_key: str | None = None
    request_digest: str | None = None
    # refund: the return it refunds (a return's refund ends the order as `return_refunded`, whoever approved it)
    return_id: str | None = None


@dataclass
class PaymentReport:
    """What the provider's webhook said about a PaymentIntent of this order (payment_intent.*)."""

    event_id: str
    payment_intent_id: str
    status: str  # succeeded | failed
    amount: int
    currency: str


@dataclass
class ChargebackNotice:
    """A provider dispute on this order's charge (charge.dispute.*): the card network's side of a dispute."""

    dispute_id: str
    status: str  # the provider's dispute status: needs_response, under_review, ..., won, lost
    amount: int
    currency: str
    reason: str | None = None


@dataclass
class OrderView:
    """What buyer, seller and operators see of an order."""

    order_id: str
    status: OrderStatus  # `rejected` only here: a refused placement stores nothing
    reason: str | None
    buyer_id: str
    listing_id: str
    quantity: int
    seller_id: str = ""
    listing_title: str = ""
    amount: int = 0
    currency: str = ""
    payment_state: PaymentState = PaymentState.NONE
    payment_intent_id: str | None = None
    refunded_amount: int = 0
    platform_fee: int = 0
    tracking: dict[str, str] | None = None
    allowed_actions: list[OrderAction] = field(default_factory=list)
    dispute_source: DisputeSource | None = None
    chargeback_id: str | None = None  # the provider's dispute id
    chargeback_status: ChargebackStatus | None = None
    chargeback_amount: int = 0
    # Our PaymentIntent's status as the provider's webhooks report it (succeeded | failed).
    provider_payment_status: str | None = None
    unexpected_payment_intents: list[str] = field(default_factory=list)  # succeeded at the provider, not ours
    # Set while a step keeps failing past its bound: which step and why; support can `retry` it.
    attention: str | None = None
    # What it bought when a checkout placed it (empty for a single-listing order: its listing is its line).
    lines: list[OrderLineView] = field(default_factory=list)
    checkout_id: str | None = None
    # Units refunded by line (refunds by lines, returns), by listing id: what is left of a line to refund.
    refunded_units: dict[str, int] = field(default_factory=dict)


def still_held(view: OrderView) -> int:
    """What an order still holds for refunds (in escrow, or released to the seller): charged, less its refunds and
    what a chargeback took back."""
    taken_back = (ChargebackStatus.WITHDRAWN, ChargebackStatus.LOST)
    taken = view.chargeback_amount if view.chargeback_status in taken_back else 0
    return view.amount - view.refunded_amount - taken


def initial_search_attributes(req: PlaceOrder, seller_id: str = "", amount: int = 0) -> TypedSearchAttributes:
    """The attributes an order is started with, so operators can find it before its first transition."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(ORDER_STATUS, OrderStatus.PENDING),
            SearchAttributePair(BUYER_ID, req.buyer_id),
            SearchAttributePair(SELLER_ID, seller_id),
            SearchAttributePair(LISTING_ID, req.listing_id),
            SearchAttributePair(ORDER_AMOUNT, amount),
            SearchAttributePair(PAYMENT_STATE, PaymentState.NONE),
            SearchAttributePair(NEEDS_ATTENTION, False),
        ]
    )
