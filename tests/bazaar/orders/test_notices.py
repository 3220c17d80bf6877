"""What a transition adds to the seller's order counters (`outcome_of`): each order ends once, and a dispute
counts once its order has ended, so the rates over ended orders stay within 0-1."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bazaar.models import OrderStatus
from bazaar.orders.notices import outcome_of
from bazaar.orders.types import OrderEvent, OrderView
from bazaar.trust.models import DisputeSource

E = OrderEvent


def _view(status: OrderStatus, reason: str | None = None, disputed: bool = False) -> OrderView:
    return OrderView(
        order_id="o",
        status=status,
        reason=reason,
        buyer_id="b",
        listing_id="l",
        quantity=1,
        dispute_source=DisputeSource.BUYER if disputed else None,
    )


@pytest.mark.parametrize(
    ("action", "view", "completed_before", "counted"),
    [
        (E.COMPLETED, _view(OrderStatus.COMPLETED, "buyer_confirmed"), False, ("completed", False)),
        (E.COMPLETED, _view(OrderStatus.COMPLETED, "dispute_released", True), False, ("completed", True)),
        (E.COMPLETED, _view(OrderStatus.COMPLETED, "chargeback_won"), True, (None, False)),  # counted before
        (E.CANCELLED, _view(OrderStatus.CANCELLED, "seller_declined"), False, ("cancelled", False)),
        (E.CANCELLED, _view(OrderStatus.CANCELLED, "acceptance_timeout"), False, ("cancelled", False)),
        (E.CANCELLED, _view(OrderStatus.CANCELLED, "buyer_cancelled"), False, (None, False)),
        (E.REFUNDED, _view(OrderStatus.REFUNDED, "dispute_refunded", True), False, ("refunded", True)),
        (E.REFUNDED, _view(OrderStatus.REFUNDED, "seller_refunded"), False, ("refunded", False)),
        (E.REFUNDED, _view(OrderStatus.REFUNDED, "support_refunded"), True, (None, False)),  # ended completed
        (E.CHARGEBACK_LOST, _view(OrderStatus.REFUNDED, "chargeback_lost", True), False, ("refunded", True)),
        (E.CHARGEBACK_LOST, _view(OrderStatus.DISPUTED, "chargeback_lost", True), False, (None, False)),
        (E.PARTIALLY_REFUNDED, _view(OrderStatus.FULFILLED), False, (None, False)),
        (E.DISPUTED, _view(OrderStatus.DISPUTED, "not_received", True), False, (None, False)),  # at its end
        (E.CHARGEBACK, _view(OrderStatus.DISPUTED, "chargeback", True), True, (None, True)),  # ended already
        (E.ACCEPTED, _view(OrderStatus.CONFIRMED), False, (None, False)),
        # Refunded in full (cancelled after payment) before a chargeback: it ended then, not at the decision.
        (E.CHARGEBACK_LOST, _view(OrderStatus.REFUNDED, "chargeback_lost", True), True, (None, True)),
    ],
)
def test_an_order_ends_once_and_a_dispute_counts_once_it_has_ended(
    action: OrderEvent, view: OrderView, completed_before: bool, counted: tuple[str | None, bool]
) -> None:
    assert outcome_of(action, view, completed_before) == counted


@pytest.mark.parametrize("action", [E.CHARGEBACK, E.CHARGEBACK_LOST, E.CHARGEBACK_WON])
@pytest.mark.parametrize("completed_before", [False, True])
def test_a_chargeback_on_an_order_refunded_in_full_counts_nothing(
    action: OrderEvent, completed_before: bool
) -> None:
    """It ended when it was refunded (counted then, or not the seller's doing), not by the network."""
    refunded = replace(
        _view(OrderStatus.REFUNDED, "chargeback_lost"),
        amount=10_000,
        refunded_amount=10_000,
        dispute_source=DisputeSource.CHARGEBACK,
    )
    assert outcome_of(action, refunded, completed_before) == (None, False)
    partly = replace(refunded, refunded_amount=4_000)
    assert outcome_of(E.CHARGEBACK, partly, True) == (None, True)  # as any chargeback after a completion
