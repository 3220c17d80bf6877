"""What an order's transition tells people: the notifications written with the transition (an outbox the
notification sender drains, off the order's critical path) and the seller's reputation counter.

Pure: the order workflow calls it with its view and gets data back; nothing here issues a command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bazaar.models import OrderStatus, PaymentState
    from bazaar.orders.types import OrderEvent, OrderView, Party
    from bazaar.payments.money import format_money
    from bazaar.trust.models import DisputeSource
    from bazaar.trust.notifications import NotificationEvent

# The moves of a chargeback: opened, then decided.
_CHARGEBACK_MOVES = frozenset({OrderEvent.CHARGEBACK, OrderEvent.CHARGEBACK_WON, OrderEvent.CHARGEBACK_LOST})
# Cancellations that count against the seller's reputation (not the buyer's change of mind).
SELLER_CANCELLATIONS = frozenset({"seller_declined", "seller_cancelled", "acceptance_timeout"})


@dataclass
class Effects:
    """What a transition implies beyond the order's own state."""

    notices: list[NotificationEvent] = field(default_factory=list)
    opens_reviews: bool = False


def minutes(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


def notice(
    view: OrderView, key: str, event_type: str, parties: list[Party], data: dict[str, str] | None = None
) -> NotificationEvent:
    """One business event of this order (`order:<id>:<key>`, notified once) for its buyer and/or seller."""
    return NotificationEvent(
        event_key=f"order:{view.order_id}:{key}",
        event_type=event_type,
        recipient_ids=[view.buyer_id if p == Party.BUYER else view.seller_id for p in parties],
        data={
            "order_id": view.order_id,
            "buyer_id": view.buyer_id,
            "listing_title": view.listing_title,
            "amount": format_money(view.amount, view.currency),
            **(data or {}),
        },
    )


def effects_of(
    action: OrderEvent,
    view: OrderView,
    *,
    payout: int,
    transfers: int,
    accept_by: datetime,
    reviews_close_at: datetime,
) -> Effects:
    """The notifications of `action` (a timeline event) leading to `view`, and whether it opens the reviews."""
    payout_text = {"payout": format_money(payout, view.currency)}
    buyer, seller = [Party.BUYER], [Party.SELLER]
    if action == OrderEvent.PAID:
        return Effects([notice(view, "paid", "order_paid", seller, {"deadline": minutes(accept_by)})])
    if action == OrderEvent.ACCEPTED:
        return Effects([notice(view, "accepted", "order_accepted", buyer)])
    if action == OrderEvent.FULFILLED:
        tracking = ", ".join(f"{k}: {v}" for k, v in sorted((view.tracking or {}).items()))
        return Effects(
            [notice(view, "shipped", "order_shipped", buyer, {"tracking": tracking or "none given"})]
        )
    if action == OrderEvent.CANCELLED:
        if view.reason == "seller_declined":
            return Effects([notice(view, "cancelled", "order_declined", buyer)])
        reason = (view.reason or "cancelled").replace("_", " ")
        return Effects([notice(view, "cancelled", "order_cancelled", buyer + seller, {"reason": reason})])
    if action == OrderEvent.COMPLETED and view.reason == "chargeback_won":
        # Completed again after a won chargeback: the reviews opened the first time.
        return Effects([notice(view, "completed-again", "order_completed", seller, payout_text)])
    if action == OrderEvent.COMPLETED:
        event_type = {
            PaymentState.TRANSFER_FAILED: "payout_delayed",
            PaymentState.PAYOUT_ON_HOLD: "payout_on_hold",
        }.get(view.payment_state, "order_completed")
        invitation = notice(
            view,
            "review_invitation",
            "review_invitation",
            buyer + seller,
            {"deadline": minutes(reviews_close_at)},
        )
        return Effects(
            [notice(view, "completed", event_type, seller, payout_text), invitation], opens_reviews=True
        )
    if action in (OrderEvent.PAYOUT_FAILED, OrderEvent.PAYOUT_HELD):
        # The transfer that followed the completion did not go: the completion's notice had announced it.
        event_type = "payout_delayed" if action == OrderEvent.PAYOUT_FAILED else "payout_on_hold"
        return Effects([notice(view, f"payout-{transfers}", event_type, seller, payout_text)])
    if action == OrderEvent.PAYOUT_RETRIED:
        return Effects([notice(view, f"payout-retried-{transfers}", "order_completed", seller, payout_text)])
    if action == OrderEvent.PARTIALLY_REFUNDED or (
        action == OrderEvent.REFUNDED and view.reason in ("seller_refunded", "support_refunded")
    ):
        # Keyed by the running total, so each refund is told once.
        refunded = {"refunded": format_money(view.refunded_amount, view.currency)}
        return Effects(
            [notice(view, f"refunded-{view.refunded_amount}", "order_refunded", buyer + seller, refunded)]
        )
    return Effects()


def outcome_of(action: OrderEvent, view: OrderView, completed_before: bool) -> tuple[str | None, bool]:
    """What `action` adds to the seller's order counters: how the order ended, once (completed; cancelled by
    the seller; refunded without ever completing), and whether it was disputed, counted once it has ended (a
    dispute or chargeback on an order that had completed counts when it opens), so every rate over ended
    orders stays within 0-1. `completed_before`: the order completed earlier (a refund then ends nothing new).
    A chargeback on an order refunded in full before it counts nothing: the order ended then, not by the network."""
    if (
        action in _CHARGEBACK_MOVES
        and view.dispute_source == DisputeSource.CHARGEBACK
        and view.refunded_amount >= view.amount > 0
    ):
        return None, False
    disputed = view.dispute_source is not None
    if action == OrderEvent.COMPLETED:
        # Completed again after a won chargeback: counted the first time.
        return (None if view.reason == "chargeback_won" else "completed"), disputed
    if action == OrderEvent.CANCELLED:
        return ("cancelled" if view.reason in SELLER_CANCELLATIONS else None), False
    if view.status == OrderStatus.REFUNDED and action in (OrderEvent.REFUNDED, OrderEvent.CHARGEBACK_LOST):
        return (None if completed_before else "refunded"), disputed
    if action in (OrderEvent.DISPUTED, OrderEvent.CHARGEBACK):
        return None, completed_before
    return None, False
