"""Who may do what to an order, and when: pure rules, testable without a Temporal server.

Both order workflow versions use them in their Update validators and handlers (rules issue no commands,
so changing them is replay-safe). A rejection is an ApplicationError whose type the API maps to HTTP:
`Forbidden` (403: this actor may never do this to this order), `InvalidTransition` (409: not in the order's
current state, e.g. the buyer's cancel lost a race with the seller's accept), `NeedsAttention` (409: a step
keeps failing and support is on it), `InvalidRequest` (422).
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from bazaar.orders.types import Actor, OrderView
from bazaar.text import control_character_problem

_ALL_STATES = ("pending", "paid", "confirmed", "fulfilled", "completed", "disputed")

# action -> {state it is allowed in: parties who may do it there}
RULES: dict[str, dict[str, frozenset[str]]] = {
    "accept": {"paid": frozenset({"seller"})},
    "decline": {"paid": frozenset({"seller"})},
    "cancel": {
        # pending: waits for the charge's outcome, then cancels (with a refund if it succeeded)
        "pending": frozenset({"buyer", "support"}),
        "paid": frozenset({"buyer", "support"}),
        "confirmed": frozenset({"seller", "support"}),
    },
    "fulfil": {"confirmed": frozenset({"seller"})},
    "confirm_receipt": {"fulfilled": frozenset({"buyer"})},
    "open_dispute": {"fulfilled": frozenset({"buyer"})},
    "resolve_dispute": {"disputed": frozenset({"support"})},
    "retry_transfer": {"completed": frozenset({"support"})},
    # Support re-runs the step an order is stuck on (any state; only while the order needs attention).
    "retry": {state: frozenset({"support"}) for state in _ALL_STATES},
}
# What support may still do while a step is stuck (a cancel waits for the step, then cancels).
DURING_ATTENTION = frozenset({"retry", "cancel"})
RESOLUTIONS = ("release", "refund", "partial_refund")
# Tracking and dispute text reach the order's projection (jsonb, text columns) and people's mail: the API
# validates them, and the workflow re-checks, so a bad value is refused instead of wedging a transition.
TRACKING_FIELDS = frozenset({"carrier", "tracking_number", "tracking_url"})
TEXT_LIMIT = 5000


def parties(actor: Actor, view: OrderView | None) -> set[str]:
    found = set()
    if view is not None and actor.user_id == view.buyer_id:
        found.add("buyer")
    if view is not None and view.seller_id and actor.user_id == view.seller_id:
        found.add("seller")
    if actor.is_support:
        found.add("support")
    return found


def blocked(action: str, view: OrderView) -> str | None:
    """Why an action the status allows cannot happen now because of where the money is or a stuck step."""
    if view.attention is not None and action not in DURING_ATTENTION:
        return f"the order needs attention ({view.attention}); support has been told"
    if action == "retry" and view.attention is None:
        return "nothing to retry: no step of this order is failing"
    if action == "resolve_dispute" and view.payment_state == "chargeback":
        return "the card network is deciding this chargeback; wait for its decision"
    if action == "retry_transfer" and view.payment_state != "transfer_failed":
        return "only a failed payout can be retried"
    return None


def authorize(action: str, actor: Actor, view: OrderView | None) -> str:
    """The party acting, or a rejection: Forbidden (never this actor) before a state rejection."""
    acting_as = parties(actor, view)
    if view is None:
        raise ApplicationError("the order is still being placed", type="InvalidTransition")
    rules = RULES[action]
    if not acting_as & frozenset().union(*rules.values()):
        raise ApplicationError(f"you may not {action} this order", view, type="Forbidden")
    reason = blocked(action, view)
    if reason is not None and view.attention is not None and action not in DURING_ATTENTION:
        raise ApplicationError(reason, view, type="NeedsAttention")
    allowed_now = rules.get(view.status)
    if allowed_now is None or reason:
        raise ApplicationError(
            reason or f"cannot {action} an order that is {view.status}", view, type="InvalidTransition"
        )
    acting = sorted(acting_as & allowed_now)
    if not acting:
        # The actor may do this in another state (e.g. the buyer's cancel after the seller accepted).
        raise ApplicationError(
            f"cannot {action} an order that is {view.status}", view, type="InvalidTransition"
        )
    return acting[0]


def allowed_actions(view: OrderView) -> list[str]:
    return sorted(a for a, states in RULES.items() if view.status in states and not blocked(a, view))


def check_request(action: str, request_text: dict[str, str | None]) -> None:
    """Refuse text that cannot be stored or mailed (control characters, oversized values)."""
    for name, value in request_text.items():
        if value is None:
            continue
        problem = control_character_problem(value, multiline=name == "message")
        if problem is None and len(value) > TEXT_LIMIT:
            problem = f"longer than {TEXT_LIMIT} characters"
        if problem is not None:
            raise ApplicationError(f"{action}: {name} {problem}", type="InvalidRequest")


def check_resolution(resolution: str | None) -> None:
    if resolution not in RESOLUTIONS:
        raise ApplicationError("resolution must be release, refund or partial_refund", type="InvalidRequest")
