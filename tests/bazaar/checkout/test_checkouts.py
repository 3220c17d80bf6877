"""The checkout's reservation on real PostgreSQL (a database of this module's own, bazaar/checkout/checkouts.py):
one checkout of a buyer's is paid at a time, and a reservation takes only lines that are still the cart's as the
request read them, so the same cart is never charged twice; what the checkout's orders show as refunded."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from bazaar.checkout import checkouts
from bazaar.checkout.models import CartLine
from bazaar.checkout.types import CheckoutLine, LineRefusal, Reservation, StartCheckout
from bazaar.models import (
    Checkout,
    CheckoutStatus,
    Listing,
    ListingStatus,
    Payment,
    PaymentKind,
    PaymentOutcome,
    User,
)
from bazaar.payments import ledger
from tests.support.outbox import Sessions, make_users

pytestmark = pytest.mark.integration

PRICES = {"Lamp": 2_500, "Chair": 6_000, "Rug": 9_000}


async def a_shop(db: Sessions) -> tuple[User, dict[str, Listing]]:
    """A buyer whose cart holds two lamps and a chair (two sellers), and the listings (ten of each, and a rug)."""
    lamp_seller, chair_seller, buyer = await make_users(db, 3, "Checkout")
    sellers = {"Lamp": lamp_seller, "Chair": chair_seller, "Rug": chair_seller}
    listings = {
        title: Listing(
            seller_id=sellers[title].id,
            title=title,
            price_amount=price,
            currency="EUR",
            category_slug="home",
            condition="good",
            quantity=10,
            status=ListingStatus.ACTIVE,
        )
        for title, price in PRICES.items()
    }
    async with db() as session, session.begin():
        session.add_all(listings.values())
        await session.flush()
        for title, quantity in (("Lamp", 2), ("Chair", 1)):
            session.add(
                CartLine(
                    buyer_id=buyer.id,
                    listing_id=listings[title].id,
                    quantity=quantity,
                    seen_amount=PRICES[title],
                    seen_currency="EUR",
                )
            )
    return buyer, listings


def request(buyer: User, listings: dict[str, Listing], **quantities: int) -> StartCheckout:
    """A checkout of `quantities` (by title; the cart as a_shop filled it by default), as the API sends it."""
    wanted = quantities or {"Lamp": 2, "Chair": 1}
    return StartCheckout(
        checkout_id=str(uuid.uuid4()),
        buyer_id=str(buyer.id),
        payment_method="pm_card_visa",
        idempotency_key=str(uuid.uuid4()),
        lines=[CheckoutLine(str(listings[t].id), n, PRICES[t], "EUR") for t, n in wanted.items()],
    )


async def reserve(db: Sessions, req: StartCheckout) -> Reservation:
    async with db() as session, session.begin():
        return await checkouts.reserve(session, req)


async def stock(db: Sessions, listings: dict[str, Listing]) -> dict[str, int]:
    async with db() as session:
        rows = await session.execute(
            select(Listing.title, Listing.quantity).where(Listing.id.in_([x.id for x in listings.values()]))
        )
        return {title: quantity for title, quantity in rows}


async def stored(db: Sessions, buyer: User) -> list[CheckoutStatus]:
    async with db() as session:
        return list(
            (await session.scalars(select(Checkout.status).where(Checkout.buyer_id == buyer.id))).all()
        )


async def test_concurrent_reservations_of_one_cart_make_one_checkout(db: Sessions) -> None:
    buyer, listings = await a_shop(db)
    answers = await asyncio.gather(*(reserve(db, request(buyer, listings)) for _ in range(5)))
    assert sorted((a.ok, a.reason) for a in answers) == [(False, "checkout_in_progress")] * 4 + [(True, None)]
    [made] = [a for a in answers if a.ok]
    assert (made.amount, len(made.orders)) == (2 * 2_500 + 6_000, 2)
    assert await stored(db, buyer) == [CheckoutStatus.PENDING]
    assert await stock(db, listings) == {"Lamp": 8, "Chair": 9, "Rug": 10}  # taken once


async def test_a_retried_reservation_is_the_same_one_while_it_is_pending(db: Sessions) -> None:
    buyer, listings = await a_shop(db)
    req = request(buyer, listings)
    first = await reserve(db, req)
    assert first.ok
    assert await reserve(db, req) == first  # its own pending checkout does not refuse it
    assert await stock(db, listings) == {"Lamp": 8, "Chair": 9, "Rug": 10}


async def test_paid_lines_are_not_charged_again_and_a_declined_cart_can_be_paid_again(db: Sessions) -> None:
    buyer, listings = await a_shop(db)
    declined = request(buyer, listings)
    assert (await reserve(db, declined)).ok
    async with db() as session, session.begin():
        await checkouts.fail(session, uuid.UUID(declined.checkout_id), "payment_failed", "pi_declined")
    assert await stock(db, listings) == {"Lamp": 10, "Chair": 10, "Rug": 10}

    # The declined card left the lines in the cart: the buyer pays again, and that one is paid.
    paid = request(buyer, listings)
    assert (await reserve(db, paid)).ok
    async with db() as session, session.begin():
        await checkouts.mark_paid(session, uuid.UUID(paid.checkout_id), "pi_paid")

    # A request that read the cart before the payment took its lines finds them gone: nothing taken.
    late = await reserve(db, request(buyer, listings))
    assert (late.ok, late.reason) == (False, "cart_empty")
    async with db() as session, session.begin():
        session.add(
            CartLine(
                buyer_id=buyer.id,
                listing_id=listings["Rug"].id,
                quantity=1,
                seen_amount=9_000,
                seen_currency="EUR",
            )
        )
    later = await reserve(db, request(buyer, listings))
    assert (later.ok, later.reason) == (False, "lines_unavailable")
    assert [r.problem for r in later.refusals] == ["not_in_cart", "not_in_cart"]
    assert sorted(await stored(db, buyer)) == sorted([CheckoutStatus.PAYMENT_FAILED, CheckoutStatus.PAID])
    assert await stock(db, listings) == {"Lamp": 8, "Chair": 9, "Rug": 10}


async def test_a_reservation_takes_only_lines_the_cart_still_holds_as_they_were_read(db: Sessions) -> None:
    buyer, listings = await a_shop(db)
    refused = await reserve(db, request(buyer, listings, Lamp=1, Chair=1, Rug=1))
    assert (refused.ok, refused.reason) == (False, "lines_unavailable")
    assert refused.refusals == [
        LineRefusal(str(listings["Lamp"].id), "quantity_changed", 10),
        LineRefusal(str(listings["Rug"].id), "not_in_cart", 10),
    ]
    # The buyer set the chair again at a new price after the request read the cart.
    async with db() as session, session.begin():
        line = await session.get(CartLine, (buyer.id, listings["Chair"].id))
        assert line is not None
        line.seen_amount = 5_500
    repriced = await reserve(db, request(buyer, listings))
    assert [(r.listing_id, r.problem) for r in repriced.refusals] == [
        (str(listings["Chair"].id), "price_changed")
    ]
    assert await stored(db, buyer) == []
    assert await stock(db, listings) == {"Lamp": 10, "Chair": 10, "Rug": 10}


async def test_a_line_changed_while_the_checkout_is_paid_stays_in_the_cart(db: Sessions) -> None:
    """Found from outside: a quantity the buyer set (and was answered 200) while the checkout's payment ran was
    lost, the paid checkout took the changed line out of the cart with the ones it bought."""
    buyer, listings = await a_shop(db)
    req = request(buyer, listings)
    assert (await reserve(db, req)).ok
    async with db() as session, session.begin():  # the buyer wants three lamps now (PUT /v1/cart/lines/{id})
        line = await session.get(CartLine, (buyer.id, listings["Lamp"].id))
        assert line is not None
        line.quantity = 3
    async with db() as session, session.begin():
        await checkouts.mark_paid(session, uuid.UUID(req.checkout_id), "pi_paid")
    async with db() as session:
        left = (
            await session.execute(
                select(CartLine.listing_id, CartLine.quantity).where(CartLine.buyer_id == buyer.id)
            )
        ).all()
    assert [tuple(row) for row in left] == [(listings["Lamp"].id, 3)]  # the chair was bought as it was read


async def test_what_was_refunded_of_each_order(db: Sessions) -> None:
    buyer, listings = await a_shop(db)
    made = await reserve(db, request(buyer, listings))
    first, second = (uuid.UUID(o.order_id) for o in made.orders)
    async with db() as session, session.begin():
        for order_id, amount, outcome in (
            (first, 1_000, PaymentOutcome.SUCCEEDED),
            (first, 500, PaymentOutcome.SUCCEEDED),
            (first, 700, PaymentOutcome.FAILED),
            (second, 300, PaymentOutcome.PENDING),
        ):
            session.add(
                Payment(
                    order_id=order_id,
                    kind=PaymentKind.REFUND,
                    idempotency_key=str(uuid.uuid4()),
                    amount=amount,
                    currency="EUR",
                    outcome=outcome,
                )
            )
    async with db() as session:
        assert await ledger.refunded_by_order(session, [first, second]) == {first: 1_500}
        assert await ledger.refunded_by_order(session, []) == {}
