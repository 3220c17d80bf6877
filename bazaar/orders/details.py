"""What operators read about an order in the Temporal UI and `temporal workflow describe`: a static summary set
when the API starts the workflow, and the current details the workflow keeps up to date (what it is waiting for,
until when, and what is failing).

Pure text: the API calls `summary`/`static_details` with the listing and the two people; the order workflow calls
`current_details` with its view. Current details are workflow metadata (read by the UI through the built-in
`__temporal_workflow_metadata` query), not history events, so changing these texts never affects replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bazaar.models import OrderStatus, PaymentState
    from bazaar.orders.types import OrderView
    from bazaar.payments.money import format_money
    from bazaar.trust.models import DisputeSource

TITLE_CHARS = 60  # the summary is one line in the UI's list


def utc(moment: datetime) -> str:
    """'2026-11-28 12:00 UTC'."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def summary(amount: int, currency: str, title: str, seller: str, buyer: str) -> str:
    """'Order 450.00 EUR: road bike, anna -> bob' (the goods go from the seller to the buyer)."""
    return (
        f"Order {format_money(amount, currency)}: {_one_line(title, TITLE_CHARS)}, "
        f"{_one_line(seller, 40)} -> {_one_line(buyer, 40)}"
    )


def checkout_summary(amount: int, currency: str, title: str, lines: int, checkout_id: str) -> str:
    """'Order 50.00 EUR: desk lamp (+1 more line), checkout 3f2a...': an order a checkout placed (the checkout
    workflow knows ids, not names)."""
    more = f" (+{lines - 1} more line{'s' if lines > 2 else ''})" if lines > 1 else ""
    return (
        f"Order {format_money(amount, currency)}: {_one_line(title, TITLE_CHARS)}{more}, "
        f"checkout {checkout_id[:8]}"
    )


def memo(listing_title: str, amount: int, currency: str, quantity: int) -> dict[str, object]:
    """The order's memo, set at its start: shown in the UI's workflow list and `temporal workflow describe`."""
    return {"listing_title": listing_title, "amount": amount, "currency": currency, "quantity": quantity}


def static_details(order_id: str, listing_id: str, quantity: int, seller_id: str, buyer_id: str) -> str:
    """Who and what, for the workflow's page (Temporal markdown)."""
    return "\n".join(
        [
            f"**Order** `{order_id}`",
            f"**Listing** `{listing_id}`, quantity {quantity}",
            f"**Seller** `{seller_id}`",
            f"**Buyer** `{buyer_id}`",
        ]
    )


@dataclass(frozen=True)
class Waiting:
    """What the workflow knows beyond its view: the deadline of the state it waits in, and, while a step keeps
    failing, how many rounds it has failed and when it is retried next."""

    status: OrderStatus | None = None  # the state `until` belongs to
    until: datetime | None = None
    retry: int = 0  # failing rounds of the current step (0: none)
    next_retry: datetime | None = None
    transfers: int = 0  # payout attempts so far
    paying_out: bool = False  # the transfer after a release is under way (it follows the Update's answer)


def current_details(view: OrderView, waiting: Waiting | None = None) -> str:
    """One line saying what the order is waiting for, plus the actions allowed next."""
    waiting = waiting or Waiting()
    headline = _headline(view, waiting)
    if view.attention is not None:
        retry = f"retry {waiting.retry}" if waiting.retry else "retrying"
        when = f", next at {utc(waiting.next_retry)}" if waiting.next_retry else ""
        headline = f"needs attention: {view.attention} ({retry}{when}; support can retry now) | {headline}"
    actions = ", ".join(str(a) for a in view.allowed_actions) or "none"
    return f"{headline}\nnext: {actions}"


def _headline(view: OrderView, waiting: Waiting) -> str:
    until = f" until {utc(waiting.until)}" if waiting.until and waiting.status == view.status else ""
    status = view.status
    if status == OrderStatus.PENDING:
        return "placing: reserving the stock and charging the buyer"
    if status == OrderStatus.PAID:
        return f"waiting for the seller to accept{until}"
    if status == OrderStatus.CONFIRMED:
        return "waiting for the seller to ship"
    if status == OrderStatus.FULFILLED:
        return f"shipped: waiting for the buyer to confirm receipt or open a dispute{until}"
    if status == OrderStatus.DISPUTED:
        if view.dispute_source == DisputeSource.CHARGEBACK:
            held = format_money(view.chargeback_amount, view.currency) if view.currency else ""
            return f"chargeback {view.chargeback_id or ''} ({held}): waiting for the card network's decision"
        return "disputed by the buyer: escrow frozen, waiting for support to resolve"
    if status == OrderStatus.COMPLETED and view.payment_state == PaymentState.PAYOUT_ON_HOLD:
        return (
            "completed, payout on hold: waiting for the provider to enable the seller's payouts "
            "(account.updated, or the daily re-check)"
        )
    if status == OrderStatus.COMPLETED and view.payment_state == PaymentState.TRANSFER_FAILED:
        return (
            f"completed, payout refused by the provider (transfer attempt {waiting.transfers}): "
            "waiting for support to retry the payout"
        )
    if status == OrderStatus.COMPLETED and waiting.paying_out:
        return "completed: escrow released, transferring the seller's payout"
    if status == OrderStatus.COMPLETED:
        return "completed: escrow released to the seller"
    reason = f" ({view.reason})" if view.reason else ""
    return f"{status}{reason}: nothing left to do"
