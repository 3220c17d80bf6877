"""The operators' texts of an order (bazaar.orders.details): one-line summaries and what it is waiting for."""

from __future__ import annotations

from datetime import UTC, datetime

from bazaar.models import OrderStatus, PaymentState
from bazaar.orders.details import Waiting, current_details, static_details, summary
from bazaar.orders.types import OrderAction, OrderView
from bazaar.trust.models import DisputeSource


def view(**fields: object) -> OrderView:
    base: dict[str, object] = {
        "order_id": "o-1",
        "status": OrderStatus.PAID,
        "reason": None,
        "buyer_id": "b-1",
        "listing_id": "l-1",
        "quantity": 1,
        "amount": 45_000,
        "currency": "EUR",
    }
    return OrderView(**{**base, **fields})  # type: ignore[arg-type]


def test_summary_is_one_line_with_amount_title_and_people() -> None:
    assert summary(45_000, "EUR", "road bike", "anna", "bob") == "Order 450.00 EUR: road bike, anna -> bob"
    long = summary(1200, "JPY", "a\nvery " + "long " * 30 + "title", "Anna\tB", "Bob")
    assert "\n" not in long and "\t" not in long
    assert long.startswith("Order 1200 JPY: a very long") and "…, Anna B -> Bob" in long


def test_static_details_name_the_ids() -> None:
    text = static_details("o-1", "l-1", 2, "s-1", "b-1")
    assert text.splitlines() == [
        "**Order** `o-1`",
        "**Listing** `l-1`, quantity 2",
        "**Seller** `s-1`",
        "**Buyer** `b-1`",
    ]


def test_the_deadline_shows_only_for_the_state_it_belongs_to() -> None:
    until = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    paid = view(allowed_actions=[OrderAction.ACCEPT, OrderAction.DECLINE])
    assert current_details(paid, Waiting(OrderStatus.PAID, until)) == (
        "waiting for the seller to accept until 2026-11-28 12:00 UTC\nnext: accept, decline"
    )
    # The deadline was the paid state's: a confirmed order has none.
    confirmed = view(status=OrderStatus.CONFIRMED)
    assert current_details(confirmed, Waiting(OrderStatus.PAID, until)) == (
        "waiting for the seller to ship\nnext: none"
    )


def test_attention_chargeback_and_ends() -> None:
    stuck = view(status=OrderStatus.COMPLETED, payment_state=PaymentState.RELEASED, attention="transfer: 503")
    text = current_details(stuck, Waiting(retry=3, next_retry=datetime(2026, 11, 28, 12, 10, tzinfo=UTC)))
    assert text.startswith(
        "needs attention: transfer: 503 (retry 3, next at 2026-11-28 12:10 UTC; support can retry now) | "
    )
    chargeback = view(
        status=OrderStatus.DISPUTED,
        dispute_source=DisputeSource.CHARGEBACK,
        chargeback_id="dp_1",
        chargeback_amount=45_000,
    )
    assert current_details(chargeback).startswith(
        "chargeback dp_1 (450.00 EUR): waiting for the card network's decision"
    )
    cancelled = view(status=OrderStatus.CANCELLED, reason="seller_declined")
    assert current_details(cancelled) == "cancelled (seller_declined): nothing left to do\nnext: none"
