"""The event writers on real PostgreSQL (a database of this module's own): an order transition's events read
from its row in the event's own statement, once per transition; a listing's; reviews stay blind; disputes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bazaar.auth import Principal
from bazaar.integrations import events
from bazaar.integrations.models import Event
from bazaar.models import (
    LedgerAccount,
    Order,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentKind,
    PaymentOutcome,
    PaymentState,
    User,
)
from bazaar.payments import ledger
from bazaar.trust import disputes, reviews
from bazaar.trust.models import DisputeResolution, DisputeSource, DisputeStatus
from tests.support.outbox import Sessions, make_users, stored_order

pytestmark = pytest.mark.integration


async def an_order(db: Sessions, status: OrderStatus) -> tuple[User, User, Order]:
    seller, buyer = await make_users(db, 2, "Events")
    order = await stored_order(
        db,
        buyer,
        seller,
        title="Lamp",
        amount=2_500,
        status=status,
        payment_state=PaymentState.RELEASED,
        state_seq=5,
    )
    return seller, buyer, order


async def written(db: Sessions, **where: object) -> list[Event]:
    async with db() as session:
        statement = select(Event).order_by(Event.id)
        for name, value in where.items():
            statement = statement.where(getattr(Event, name) == value)
        return list((await session.scalars(statement)).all())


async def test_a_completion_writes_the_order_and_the_payout_once(db: Sessions) -> None:
    seller, buyer, order = await an_order(db, OrderStatus.COMPLETED)
    async with db() as session, session.begin():
        session.add(
            Payment(
                order_id=order.id,
                kind=PaymentKind.TRANSFER,
                idempotency_key=f"{order.id}:transfer:1",
                amount=2_220,
                currency="EUR",
                outcome=PaymentOutcome.SUCCEEDED,
            )
        )
    for _ in range(2):  # the activity runs again after a lost answer
        async with db() as session, session.begin():
            await events.record_order_transition(
                session, order.id, 5, "completed", "fulfilled", "released", "order.completed"
            )
    done, payout = await written(db, seller_id=seller.id)
    assert done.type == "order.completed" and payout.type == "payout.sent"
    assert done.data == {
        "object": "order",
        "id": str(order.id),
        "status": "completed",
        "previous_status": "fulfilled",
        "action": "order.completed",
        "reason": None,
        "payment_state": "released",
        "buyer_id": str(buyer.id),
        "seller_id": str(seller.id),
        "listing_id": str(order.listing_id),
        "listing_title": "Lamp",
        "quantity": 1,
        "amount": 2_500,
        "refunded_amount": 0,
        "currency": "EUR",
        "tracking": None,
        # Placed before lines existed (no line rows): its one listing is its line, as the order's read shows.
        "lines": [
            {
                "listing_id": str(order.listing_id),
                "listing_title": "Lamp",
                "quantity": 1,
                "unit_amount": 2_500,
                "refunded_quantity": 0,
            }
        ],
    }
    assert payout.data == {
        "object": "payout",
        "order_id": str(order.id),
        "seller_id": str(seller.id),
        "status": "sent",
        "amount": 2_220,
        "currency": "EUR",
    }


async def test_a_payout_on_hold_carries_what_is_due(db: Sessions) -> None:
    """Nothing was sent: the amount is what the release left due to the seller (booked before the event)."""
    seller, _, order = await an_order(db, OrderStatus.COMPLETED)
    async with db() as session, session.begin():
        release = {
            LedgerAccount.ESCROW: -2_500,
            LedgerAccount.PLATFORM_FEES: 280,
            LedgerAccount.SELLER_PAYABLE: 2_220,
        }
        await ledger.post(session, f"{order.id}:release:1", order.id, seller.id, "EUR", release)
        await events.record_order_transition(
            session, order.id, 5, "completed", "fulfilled", "payout_on_hold", "order.completed"
        )
    [_, held] = await written(db, seller_id=seller.id)
    assert held.type == "payout.on_hold" and held.data["amount"] == 2_220


async def test_an_order_event_has_every_line_and_what_was_refunded(db: Sessions) -> None:
    seller, buyer, order = await an_order(db, OrderStatus.PAID)
    other = (
        await stored_order(
            db,
            buyer,
            seller,
            title="Shade",
            amount=750,
            status=OrderStatus.PAID,
            payment_state=PaymentState.HELD_IN_ESCROW,
        )
    ).listing_id
    async with db() as session, session.begin():
        session.add_all(
            [
                OrderLine(
                    order_id=order.id,
                    listing_id=order.listing_id,
                    position=0,
                    listing_title="Lamp",
                    quantity=1,
                    unit_amount=1_000,
                ),
                OrderLine(
                    order_id=order.id,
                    listing_id=other,
                    position=1,
                    listing_title="Shade",
                    quantity=2,
                    unit_amount=750,
                    refunded_quantity=1,
                ),
                Payment(
                    order_id=order.id,
                    kind=PaymentKind.REFUND,
                    idempotency_key=f"{order.id}:refund:1",
                    amount=750,
                    currency="EUR",
                    outcome=PaymentOutcome.SUCCEEDED,
                ),
            ]
        )
    async with db() as session, session.begin():
        await events.record_order_transition(
            session, order.id, 6, "paid", "paid", "held_in_escrow", "order.partially_refunded"
        )
    [updated] = [e for e in await written(db, seller_id=seller.id) if e.type == "order.updated"]
    assert updated.data["refunded_amount"] == 750
    assert [
        (x["listing_title"], x["quantity"], x["unit_amount"], x["refunded_quantity"])
        for x in updated.data["lines"]
    ] == [
        ("Lamp", 1, 1_000, 0),
        ("Shade", 2, 750, 1),
    ]


async def test_reviews_are_blind_until_revealed(db: Sessions) -> None:
    seller, buyer, order = await an_order(db, OrderStatus.COMPLETED)
    async with db() as session, session.begin():
        await reviews.open_window(session, order.id, closes_at=datetime.now(UTC) + timedelta(days=1))
    async with db() as session, session.begin():
        await reviews.submit(session, order.id, Principal(buyer.id, frozenset({"buyer"})), 4, "Fine lamp")
    [created] = [e for e in await written(db, type="review.created") if e.data["order_id"] == str(order.id)]
    assert created.seller_id is None  # the buyer's review: the platform's only, while blind
    assert "rating" not in created.data and "text" not in created.data
    async with db() as session, session.begin():
        await reviews.submit(session, order.id, Principal(seller.id, frozenset({"seller"})), 5, "Quick")
    mine = await written(db, seller_id=seller.id)
    assert [e.type for e in mine] == ["review.created", "review.revealed", "review.revealed"]
    assert sorted(e.data["rating"] for e in mine[1:]) == [4, 5]


async def test_a_dispute_opened_and_resolved_once_each(db: Sessions) -> None:
    seller, buyer, order = await an_order(db, OrderStatus.FULFILLED)
    for _ in range(2):  # retried activities
        async with db() as session, session.begin():
            await disputes.open_case(
                session, order.id, DisputeSource.BUYER, "not_as_described", "Bent", buyer.id
            )
        async with db() as session, session.begin():
            await disputes.set_status(
                session, order.id, DisputeStatus.RESOLVED, DisputeResolution.PARTIAL_REFUND, 1_000
            )
    opened, resolved = await written(db, seller_id=seller.id)
    assert opened.type == "dispute.opened" and opened.data["status"] == "open"
    assert resolved.type == "dispute.resolved"
    assert resolved.data["resolution"] == "partial_refund" and resolved.data["refund_amount"] == 1_000
