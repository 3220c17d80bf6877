"""Who may do what to an order, and when: pure rules, testable without a Temporal server.

Both order workflow versions use them in their Update validators and handlers (rules issue no commands,
so changing them is replay-safe). A rejection is an ApplicationError whose type (`Rejection`) the API maps to
HTTP: `Forbidden` (403: this actor may never do this to this order), `InvalidTransition` (409: not in the
order's current state, e.g. the buyer's cancel lost a race with the seller's accept), `NeedsAttention` (409: a
step keeps failing and support is on it), `InvalidRequest` (422).
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from bazaar.errors import Rejection
from bazaar.models import OrderStatus, PaymentState
from bazaar.orders.types import Actor, OrderAction, OrderLineView, OrderView, Party, RefundLine
from bazaar.text import control_character_problem
from bazaar.trust.models import DisputeResolution

_ALL_STATES = (
    OrderStatus.PENDING,
    OrderStatus.PAID,
    OrderStatus.CONFIRMED,
    OrderStatus.FULFILLED,
    OrderStatus.COMPLETED,
    OrderStatus.DISPUTED,
)
_BUYER, _SELLER, _SUPPORT = frozenset({Party.BUYER}), frozenset({Party.SELLER}), frozenset({Party.SUPPORT})

# action -> {state it is allowed in: parties who may do it there}
RULES: dict[OrderAction, dict[OrderStatus, frozenset[Party]]] = {
    OrderAction.ACCEPT: {OrderStatus.PAID: _SELLER},
    OrderAction.DECLINE: {OrderStatus.PAID: _SELLER},
    OrderAction.CANCEL: {
        # pending: waits for the charge's outcome, then cancels (with a refund if it succeeded)
        OrderStatus.PENDING: _BUYER | _SUPPORT,
        OrderStatus.PAID: _BUYER | _SUPPORT,
        OrderStatus.CONFIRMED: _SELLER | _SUPPORT,
    },
    OrderAction.FULFIL: {OrderStatus.CONFIRMED: _SELLER},
    OrderAction.CONFIRM_RECEIPT: {OrderStatus.FULFILLED: _BUYER},
    OrderAction.OPEN_DISPUTE: {OrderStatus.FULFILLED: _BUYER},
    OrderAction.RESOLVE_DISPUTE: {OrderStatus.DISPUTED: _SUPPORT},
    OrderAction.RETRY_TRANSFER: {OrderStatus.COMPLETED: _SUPPORT},
    # Support re-runs the step an order is stuck on (any state; only while the order needs attention).
    OrderAction.RETRY: {state: _SUPPORT for state in _ALL_STATES},
    # Part or all of the money back to the buyer: the seller or support while it is held in escrow, support also
    # after the release (the seller's share is taken back). A dispute's money is support's `resolve`.
    OrderAction.REFUND: {
        OrderStatus.PAID: _SELLER | _SUPPORT,
        OrderStatus.CONFIRMED: _SELLER | _SUPPORT,
        OrderStatus.FULFILLED: _SELLER | _SUPPORT,
        OrderStatus.COMPLETED: _SUPPORT,
    },
}
# Where the money may be for a refund: in escrow, or released (paid out, or the payout failed or on hold).
REFUNDABLE = frozenset(
    {
        PaymentState.HELD_IN_ESCROW,
        PaymentState.RELEASED,
        PaymentState.TRANSFER_FAILED,
        PaymentState.PAYOUT_ON_HOLD,
    }
)
# Released, but the seller's payout did not go: it waits for support's `retry_transfer` (or the provider).
PAYOUT_NOT_SENT = frozenset({PaymentState.TRANSFER_FAILED, PaymentState.PAYOUT_ON_HOLD})
# What support may still do while a step is stuck (a cancel waits for the step, then cancels).
DURING_ATTENTION = frozenset({OrderAction.RETRY, OrderAction.CANCEL})
RESOLUTIONS = tuple(DisputeResolution)
# Tracking and dispute text reach the order's projection (jsonb, text columns) and people's mail: the API
# validates them, and the workflow re-checks, so a bad value is refused instead of wedging a transition.
TRACKING_FIELDS = frozenset({"carrier", "tracking_number", "tracking_url"})
TEXT_LIMIT = 5000


def parties(actor: Actor, buyer_id: str | None, seller_id: str | None) -> set[Party]:
    """Who the actor is to an order with this buyer and seller (none, one or more parties)."""
    found = set()
    if buyer_id and actor.user_id == buyer_id:
        found.add(Party.BUYER)
    if seller_id and actor.user_id == seller_id:
        found.add(Party.SELLER)
    if actor.is_support:
        found.add(Party.SUPPORT)
    return found


OWN_ORDER_AS_SUPPORT = (
    "support staff act on an order they bought or sold as its buyer or seller only, not as support"
)


def refuse_support_on_own_order(
    party: str, actor_id: str, buyer_id: str | None, seller_id: str | None, *details: object
) -> None:
    """Support staff who bought or sold an order act on it as its buyer or seller only: support's powers
    (deciding a dispute, refunding, asking a party, approving a return) are never used on one's own order (403).
    Validators ask, not handlers: a validator does not run on replay, so a history from before this rule replays
    as it ran."""
    if party == Party.SUPPORT and actor_id in (buyer_id, seller_id):
        raise ApplicationError(OWN_ORDER_AS_SUPPORT, *details, type=Rejection.FORBIDDEN)


def allowed_to(
    actions: list[OrderAction], status: OrderStatus, actor: Actor, buyer_id: str | None, seller_id: str | None
) -> list[OrderAction]:
    """Of what an order allows now (`allowed_for`), what this actor may take: as its buyer or seller, or as
    support on an order that is not their own (`refuse_support_on_own_order`)."""
    acting_as = parties(actor, buyer_id, seller_id)
    if acting_as - {Party.SUPPORT}:
        acting_as.discard(Party.SUPPORT)
    return [a for a in actions if acting_as & RULES[a].get(status, frozenset())]


def may_ever(action: OrderAction, acting_as: set[Party]) -> bool:
    """Whether these parties may do `action` in some state of an order: if not, it is Forbidden in any."""
    return bool(acting_as & frozenset[Party]().union(*RULES[action].values()))


def blocked(action: OrderAction, payment_state: PaymentState, attention: str | None) -> str | None:
    """Why an action the status allows cannot happen now because of where the money is or a stuck step."""
    if attention is not None and action not in DURING_ATTENTION:
        return f"the order needs attention ({attention}); support has been told"
    if action == OrderAction.RETRY and attention is None:
        return "nothing to retry: no step of this order is failing"
    if action == OrderAction.RESOLVE_DISPUTE and payment_state == PaymentState.CHARGEBACK:
        return "the card network is deciding this chargeback; wait for its decision"
    if action == OrderAction.RETRY_TRANSFER and payment_state not in PAYOUT_NOT_SENT:
        return "only a failed or held payout can be retried"
    if action == OrderAction.REFUND and payment_state not in REFUNDABLE:
        return f"nothing can be refunded while the payment is {payment_state}"
    return None


def authorize(action: OrderAction, actor: Actor, view: OrderView | None) -> Party:
    """The party acting, or a rejection: Forbidden (never this actor) before a state rejection."""
    if view is None:
        raise ApplicationError("the order is still being placed", type=Rejection.INVALID_TRANSITION)
    acting_as = parties(actor, view.buyer_id, view.seller_id)
    rules = RULES[action]
    if not may_ever(action, acting_as):
        raise ApplicationError(f"you may not {action} this order", view, type=Rejection.FORBIDDEN)
    reason = blocked(action, view.payment_state, view.attention)
    if reason is not None and view.attention is not None and action not in DURING_ATTENTION:
        raise ApplicationError(reason, view, type=Rejection.NEEDS_ATTENTION)
    allowed_now = rules.get(view.status)
    if allowed_now is None or reason:
        raise ApplicationError(
            reason or f"cannot {action} an order that is {view.status}",
            view,
            type=Rejection.INVALID_TRANSITION,
        )
    acting = sorted(acting_as & allowed_now)
    if not acting:
        # The actor may do this in another state (e.g. the buyer's cancel after the seller accepted).
        raise ApplicationError(
            f"cannot {action} an order that is {view.status}", view, type=Rejection.INVALID_TRANSITION
        )
    return acting[0]


def allowed_actions(view: OrderView) -> list[OrderAction]:
    return allowed_for(view.status, view.payment_state, view.attention)


def allowed_for(
    status: OrderStatus, payment_state: PaymentState, attention: str | None = None
) -> list[OrderAction]:
    """What may happen next to an order in this state (the action answers' and the reads' `allowed_actions`)."""
    return sorted(
        a for a, states in RULES.items() if status in states and not blocked(a, payment_state, attention)
    )


def check_request(action: OrderAction, request_text: dict[str, str | None]) -> None:
    """Refuse text that cannot be stored or mailed (control characters, oversized values)."""
    for name, value in request_text.items():
        if value is None:
            continue
        problem = control_character_problem(value, multiline=name == "message")
        if problem is None and len(value) > TEXT_LIMIT:
            problem = f"longer than {TEXT_LIMIT} characters"
        if problem is not None:
            raise ApplicationError(f"{action}: {name} {problem}", type=Rejection.INVALID_REQUEST)


def check_resolution(resolution: str | None) -> None:
    """The request's resolution (a string from the caller): one of `DisputeResolution`."""
    if resolution not in RESOLUTIONS:
        raise ApplicationError(
            "resolution must be release, refund or partial_refund", type=Rejection.INVALID_REQUEST
        )


def lines_refund(
    asked: list[RefundLine], bought: list[OrderLineView], refunded: dict[str, int]
) -> tuple[int, dict[str, int]]:
    """What refunding these units of the order's lines gives back at their unit prices, and the units refunded by
    line after it. Refused (`INVALID_REQUEST`) when a listing is not one of the lines, or fewer of it are left to
    refund than asked (units already refunded by line, or by a return, count)."""
    lines = {line.listing_id: line for line in bought}
    wanted: dict[str, int] = {}
    for ask in asked:
        wanted[ask.listing_id] = wanted.get(ask.listing_id, 0) + ask.quantity
    after = dict(refunded)
    value = 0
    for listing_id, units in wanted.items():
        line = lines.get(listing_id)
        left = line.quantity - refunded.get(listing_id, 0) if line else 0
        if line is None or not 0 < units <= left:
            raise ApplicationError(
                f"listing {listing_id}: {left} of it can be refunded", type=Rejection.INVALID_REQUEST
            )
        value += line.unit_amount * units
        after[listing_id] = refunded.get(listing_id, 0) + units
    return value, after
