"""What a cart line says about itself, and who may buy what (bazaar/checkout/cart.py); no services needed."""

from __future__ import annotations

import uuid

import pytest

from bazaar.checkout.cart import Cart, Line, LineProblem, purchase_problem
from bazaar.errors import ErrorCode
from bazaar.models import Listing, ListingStatus

SELLER, BUYER = uuid.uuid4(), uuid.uuid4()


def listing(**values: object) -> Listing:
    made = Listing(
        id=uuid.uuid4(),
        seller_id=SELLER,
        title="Brompton",
        price_amount=45_000,
        currency="EUR",
        quantity=2,
        status=ListingStatus.ACTIVE,
    )
    made.seller_can_sell = True
    for name, value in values.items():
        setattr(made, name, value)
    return made


def line(quantity: int = 1, seen: tuple[int, str] = (45_000, "EUR"), **values: object) -> Line:
    return Line(listing(**values), quantity, *seen)


@pytest.mark.parametrize(
    ("made", "problem", "available"),
    [
        (line(), None, 2),
        (line(quantity=3), LineProblem.SOLD_OUT, 2),
        (Line(listing(status=ListingStatus.SOLD, quantity=0), 1, 45_000, "EUR"), LineProblem.SOLD_OUT, 0),
        (line(status=ListingStatus.ARCHIVED), LineProblem.LISTING_NOT_AVAILABLE, 0),
        (line(status=ListingStatus.DRAFT), LineProblem.LISTING_NOT_AVAILABLE, 0),
        (line(seller_can_sell=False), LineProblem.LISTING_NOT_AVAILABLE, 0),
        (line(seen=(40_000, "EUR")), LineProblem.PRICE_CHANGED, 2),
        (line(seen=(45_000, "GBP")), LineProblem.PRICE_CHANGED, 2),
    ],
)
def test_a_line_says_why_it_cannot_be_bought_as_it_is(
    made: Line, problem: LineProblem | None, available: int
) -> None:
    assert (made.problem, made.available_quantity) == (problem, available)


def test_a_cart_totals_the_prices_the_buyer_saw_and_is_ready_only_when_every_line_is() -> None:
    assert (Cart([]).total, Cart([]).currency, Cart([]).ready, Cart([]).seller_count) == (0, None, False, 0)
    repriced = line(seen=(40_000, "EUR"))
    cart = Cart([line(quantity=2), repriced])
    assert (cart.total, cart.currency, cart.ready, cart.seller_count) == (
        2 * 45_000 + 40_000,
        "EUR",
        False,
        1,
    )
    assert Cart([line(quantity=2), line()]).ready is True


def test_who_may_buy_what() -> None:
    def code(found: Listing | None, buyer: uuid.UUID = BUYER, quantity: int = 1) -> ErrorCode | None:
        refusal = purchase_problem(found, buyer, quantity)
        return None if refusal is None else refusal.code

    assert code(listing()) is None
    assert code(None) == ErrorCode.LISTING_NOT_AVAILABLE
    assert code(listing(status=ListingStatus.DRAFT)) == ErrorCode.LISTING_NOT_AVAILABLE
    assert code(listing(), buyer=SELLER) == ErrorCode.OWN_LISTING
    assert code(listing(), quantity=3) == ErrorCode.SOLD_OUT
    assert code(listing(price_amount=99_999_999), quantity=2) == ErrorCode.AMOUNT_NOT_CHARGEABLE
