"""Who may move a return, and when: the return's rules (workflows/returns.py checks them in its validators and again
under its lock; the API shows `allowed_actions`). Pure."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.exceptions import ApplicationError

from bazaar.errors import Rejection
from bazaar.orders.types import Actor
from bazaar.returns.models import ReturnStatus
from bazaar.returns.types import ReturnAction, ReturnRequest, ReturnView, StartReturn

# Why a return escalated when its refund was refused at receipt (the seller has the lines back): support's
# approval asks the order again (`bazaar.returns.returns.received`, workflows/returns.py).
REFUND_REFUSED_AT_RECEIPT = "refund_refused"

# Who may do what, in which state (support may always stand in for the seller).
RULES: dict[ReturnAction, dict[ReturnStatus, frozenset[str]]] = {
    ReturnAction.APPROVE: {ReturnStatus.REQUESTED: frozenset({"seller", "support"})},
    ReturnAction.REJECT: {ReturnStatus.REQUESTED: frozenset({"seller", "support"})},
    ReturnAction.CANCEL: {
        ReturnStatus.REQUESTED: frozenset({"buyer"}),
        ReturnStatus.APPROVED: frozenset({"buyer"}),
    },
    ReturnAction.SHIP: {ReturnStatus.APPROVED: frozenset({"buyer"})},
    ReturnAction.RECEIVE: {ReturnStatus.SHIPPED: frozenset({"seller", "support"})},
    ReturnAction.RESOLVE: {ReturnStatus.ESCALATED: frozenset({"support"})},
}


def allowed_actions(status: ReturnStatus | None) -> list[ReturnAction]:
    return sorted(action for action, states in RULES.items() if status in states)


def allowed_to(
    status: ReturnStatus | None, actor: Actor, buyer_id: str, seller_id: str
) -> list[ReturnAction]:
    """Of what a return allows now, what this actor may take: as its buyer or seller, or as support on a return
    that is not of their own order."""
    parties = {
        "buyer" if actor.user_id == buyer_id else "",
        "seller" if actor.user_id == seller_id else "",
    } - {""}
    if not parties and actor.is_support:
        parties = {"support"}
    return (
        [a for a in allowed_actions(status) if parties & RULES[a].get(status, frozenset())] if status else []
    )


def authorize(action: ReturnAction, req: ReturnRequest, view: ReturnView) -> str:
    """The acting party, or the rejection (403: never this actor; 409: not now)."""
    parties = {
        "buyer" if req.actor.user_id == view.buyer_id else "",
        "seller" if req.actor.user_id == view.seller_id else "",
        "support" if req.actor.is_support else "",
    } - {""}
    allowed = RULES[action]
    if not parties & frozenset[str]().union(*allowed.values()):
        raise ApplicationError(f"you may not {action} this return", type=Rejection.FORBIDDEN)
    acting = sorted(parties & allowed.get(view.status, frozenset())) if view.status is not None else []
    if not acting:
        raise ApplicationError(
            f"cannot {action} a return that is {view.status}", type=Rejection.INVALID_TRANSITION
        )
    if action == ReturnAction.REJECT or (action == ReturnAction.RESOLVE and req.approve is False):
        if not req.reason:
            raise ApplicationError("say why the return is rejected (reason)", type=Rejection.INVALID_REQUEST)
    if action == ReturnAction.RESOLVE and req.approve is None:
        raise ApplicationError("resolve needs approve: true or false", type=Rejection.INVALID_REQUEST)
    return acting[0]


Ask = tuple[list[tuple[str, int]], str, str, list[str]]


def ask(
    lines: Iterable[tuple[object, int]], reason: str, message: str | None, photos: Iterable[object]
) -> Ask:
    """A return's ask as two asks under one Idempotency-Key are compared: its (listing, quantity) lines in any
    order, its reason, its message and its photo links (found from outside: another message or photos under the
    same key were answered with the first return, the new text dropped)."""
    lines_asked = sorted((str(listing), quantity) for listing, quantity in lines)
    return lines_asked, str(reason), message or "", [str(photo) for photo in photos]


def same_request(asked: StartReturn, first: StartReturn) -> bool:
    """Whether two asks under one Idempotency-Key are the same return."""

    def of(request: StartReturn) -> Ask:
        lines = ((line.listing_id, line.quantity) for line in request.lines)
        return ask(lines, request.reason, request.message, request.photos)

    return of(asked) == of(first)
