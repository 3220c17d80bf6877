"""The outbox tests (notifications, dispute cases, integrations events) work on a migrated database of their own
(the `outbox_url` and `db` fixtures, tests/conftest.py): users and orders made straight in it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.models import Listing, ListingStatus, Order, OrderStatus, PaymentState, User

Sessions = async_sessionmaker[AsyncSession]
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], within: float = 20.0) -> T:
    """`check()`'s first truthy value, polled every 50 ms; fails after `within` seconds (what a sender does
    happens in its own time)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert value, f"condition not met within {within}s"
    return value


async def make_users(db: Sessions, count: int, name: str = "Outbox") -> list[User]:
    made = [
        User(
            email=f"{name.lower()}-{uuid.uuid4().hex[:10]}@example.com",
            password_hash="-",
            display_name=name,
            roles=["buyer"],
        )
        for _ in range(count)
    ]
    async with db() as session, session.begin():
        session.add_all(made)
    return made


async def stored_order(
    db: Sessions,
    buyer: User,
    seller: User,
    *,
    title: str,
    amount: int,
    status: OrderStatus,
    payment_state: PaymentState,
    state_seq: int = 1,
) -> Order:
    """An order of one unit of a listing of `seller`'s (sold out by it), as its workflow would have stored it."""
    order_id = uuid.uuid4()
    async with db() as session, session.begin():
        listing = Listing(
            seller_id=seller.id,
            title=title,
            price_amount=amount,
            currency="EUR",
            category_slug="home",
            condition="good",
            quantity=0,
            status=ListingStatus.SOLD,
        )
        session.add(listing)
        await session.flush()
        order = Order(
            id=order_id,
            buyer_id=buyer.id,
            seller_id=seller.id,
            listing_id=listing.id,
            listing_title=title,
            quantity=1,
            unit_amount=amount,
            amount=amount,
            currency="EUR",
            status=status,
            payment_state=payment_state,
            idempotency_key=str(order_id),
            workflow_id=f"order-{order_id}",
            state_seq=state_seq,
        )
        session.add(order)
    return order
