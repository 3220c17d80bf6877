"""The answer to a placement still running (api.routes.orders._pending), without a server: once the workflow is
placing the order, a database that cannot serve the row's read makes the answer the request's own terms (202),
never a 503 that tells the client nothing was done."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from api.routes.orders import _pending
from bazaar.auth import Principal
from bazaar.models import Listing, OrderStatus, PaymentState
from bazaar.orders.types import OrderAction, PlaceOrder


class UnreachableSession:
    """A session whose reads fail the way an exhausted pool or a lost server fails them."""

    def __init__(self, error: Exception) -> None:
        self.error, self.rolled_back = error, False

    def expire_all(self) -> None:
        pass

    async def get(self, *_: Any) -> None:
        raise self.error

    async def rollback(self) -> None:
        self.rolled_back = True


BUYER = Principal(uuid.uuid4(), frozenset({"buyer"}))


def request() -> PlaceOrder:
    return PlaceOrder(str(uuid.uuid4()), str(BUYER.user_id), str(uuid.uuid4()), 2, "pm_card_visa", "key-1")


@pytest.mark.parametrize(
    "error",
    [
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
        sa_exc.OperationalError("SELECT", {}, Exception("server closed the connection")),
    ],
)
def test_a_placement_whose_row_cannot_be_read_answers_with_what_was_asked(error: Exception) -> None:
    asked = request()
    listing = Listing(seller_id=uuid.uuid4(), title="Kettle", price_amount=1500, currency="EUR")
    session = UnreachableSession(error)
    answer = asyncio.run(_pending(session, uuid.UUID(asked.order_id), asked, listing, BUYER))  # type: ignore[arg-type]
    assert session.rolled_back
    assert (answer.id, answer.status, answer.payment_state) == (
        uuid.UUID(asked.order_id),
        OrderStatus.PENDING,
        PaymentState.NONE,
    )
    assert (answer.listing_title, answer.quantity, answer.seller_id) == ("Kettle", 2, listing.seller_id)
    assert answer.total is not None and (answer.total.amount, answer.total.currency) == (3000, "EUR")
    assert answer.allowed_actions == [OrderAction.CANCEL]


def test_a_database_error_that_is_a_bug_is_not_hidden() -> None:
    asked = request()
    session = UnreachableSession(sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error")))
    with pytest.raises(sa_exc.ProgrammingError):
        asyncio.run(_pending(session, uuid.UUID(asked.order_id), asked, None, BUYER))  # type: ignore[arg-type]
