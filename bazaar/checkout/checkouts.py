"""A checkout's database steps (run by `activities/checkout.py` for the `Checkout` workflow): reserve every line's
stock and make one order per seller in one transaction (all or nothing), then either mark it paid (the buyer's
cart loses the lines bought) or, when the payment failed, cancel its orders and give the stock back.

A buyer has one checkout being paid at a time: the reservation holds the buyer's row lock, refuses while another
of their checkouts is `pending` (its charge not settled), and checks that the lines are still the cart's, so the
same cart is never charged twice (a paid checkout takes its lines out of the cart; a failed one leaves them).

The orders a checkout makes are ordinary orders (`orders` rows with `order_lines`) that start `pending` like any
other; each seller's order workflow takes it from there once the checkout's one charge succeeded.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.checkout import cart
from bazaar.checkout.cart import LineProblem
from bazaar.checkout.models import CartLine
from bazaar.checkout.types import CheckoutLine, LineRefusal, Reservation, SellerOrder, StartCheckout
from bazaar.integrations import events
from bazaar.integrations.events import EventType
from bazaar.listings import stock
from bazaar.models import (
    AuditEvent,
    Checkout,
    CheckoutStatus,
    Listing,
    Order,
    OrderLine,
    OrderStatus,
    PaymentState,
    User,
)
from bazaar.orders.types import OrderEvent, Party, line_view
from bazaar.payments.money import chargeable_problem
from bazaar.temporal import checkout_workflow_id, order_workflow_id

# Each seller's order of a checkout: its id derives from the checkout and the seller (a retried step makes the same).
ORDER_OF_CHECKOUT = uuid.UUID("0b7f5a8e-52c4-4f0f-8d3e-7d9c1e6a4b21")


# Why a line of the request is not what the buyer's cart holds now (it changed after the API read it).
NOT_IN_CART = "not_in_cart"
QUANTITY_CHANGED = "quantity_changed"


def order_id_for(checkout_id: str, seller_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(ORDER_OF_CHECKOUT, f"{checkout_id}:{seller_id}")


def _cart_change(held: CartLine | None, line: CheckoutLine) -> str | None:
    """How the buyer's cart line differs from the line as the request read it (None: it is the same)."""
    if held is None:
        return NOT_IN_CART
    if held.quantity != line.quantity:
        return QUANTITY_CHANGED
    if (held.seen_amount, held.seen_currency) != (line.seen_amount, line.seen_currency):
        return LineProblem.PRICE_CHANGED  # set again since: the buyer agreed to another price
    return None


def _refusal(listing: Listing | None, buyer_id: uuid.UUID, line: CheckoutLine) -> str | None:
    """Why a line cannot be bought as the buyer saw it (the cart's own rule, under the row lock)."""
    if listing is None:
        return LineProblem.LISTING_NOT_AVAILABLE
    if listing.seller_id == buyer_id:
        return "own_listing"
    return cart.Line(listing, line.quantity, line.seen_amount, line.seen_currency).problem


async def reserve(session: AsyncSession, req: StartCheckout) -> Reservation:
    """Take the stock of every line and make the checkout and its orders, or nothing at all (every line that
    cannot be bought as the buyer saw it, or is no longer in the cart as the request read it, is named). Refused
    while another checkout of the buyer's is being paid. Listings are locked in id order: concurrent checkouts of
    the same last units queue, and exactly the ones that find enough get it."""
    checkout_id = uuid.UUID(req.checkout_id)
    buyer_id = uuid.UUID(req.buyer_id)
    # One reservation of a buyer's at a time, and none while their cart changes (`cart._lock` takes this row FOR
    # UPDATE): concurrent checkouts of one cart queue here, and each sees what the one before committed. NO KEY
    # UPDATE, so rows referring to the buyer (another order of theirs) are not held up by it.
    await session.execute(select(User.id).where(User.id == buyer_id).with_for_update(key_share=True))
    existing = await session.get(Checkout, checkout_id)
    if existing is not None:  # a retry after the commit (the lock waited out one committing): the same one
        return reservation_of(existing)
    if await pending_checkout(session, buyer_id) is not None:  # its lines may be these: never charge twice
        return Reservation(ok=False, reason="checkout_in_progress")
    held = {
        line.listing_id: line
        for line in await session.scalars(select(CartLine).where(CartLine.buyer_id == buyer_id))
    }
    if not held:  # e.g. a checkout of the same cart was paid meanwhile and took its lines
        return Reservation(ok=False, reason="cart_empty")
    listings = await stock.locked(session, (uuid.UUID(line.listing_id) for line in req.lines))
    refusals: list[LineRefusal] = []
    for line in req.lines:
        listing = listings.get(uuid.UUID(line.listing_id))
        changed = _cart_change(held.get(uuid.UUID(line.listing_id)), line)
        problem = changed or _refusal(listing, buyer_id, line)
        if problem is not None:
            refusals.append(LineRefusal(line.listing_id, problem, stock.available(listing)))
    currencies = {line.seen_currency for line in req.lines}
    if refusals or not req.lines:
        return Reservation(ok=False, refusals=refusals, reason="lines_unavailable")
    if len(currencies) != 1:
        return Reservation(ok=False, reason="currency_mismatch")
    [currency] = currencies
    total = sum(line.seen_amount * line.quantity for line in req.lines)
    if chargeable_problem(total, currency) is not None:
        return Reservation(ok=False, reason="amount_not_chargeable")

    session.add(
        Checkout(
            id=checkout_id,
            buyer_id=buyer_id,
            idempotency_key=req.idempotency_key,
            payment_method=req.payment_method,
            status=CheckoutStatus.PENDING,
            amount=total,
            currency=currency,
            workflow_id=checkout_workflow_id(req.checkout_id),
        )
    )
    await session.flush()  # the orders refer to it
    by_seller: dict[uuid.UUID, list[tuple[Listing, int]]] = {}
    for line in req.lines:
        listing = listings[uuid.UUID(line.listing_id)]
        by_seller.setdefault(listing.seller_id, []).append((listing, line.quantity))
    for seller_id, bought in by_seller.items():
        order_id = order_id_for(req.checkout_id, seller_id)
        first, first_quantity = bought[0]
        session.add(
            Order(
                id=order_id,
                buyer_id=buyer_id,
                seller_id=seller_id,
                listing_id=first.id,
                listing_title=first.title,
                quantity=first_quantity,
                unit_amount=first.price_amount,
                amount=sum(listing.price_amount * quantity for listing, quantity in bought),
                currency=currency,
                status=OrderStatus.PENDING,
                payment_state=PaymentState.NONE,
                idempotency_key=f"checkout:{req.checkout_id}:{seller_id}",
                payment_method=req.payment_method,
                workflow_id=order_workflow_id(str(order_id)),
                stock_reserved=True,
                state_seq=1,
                checkout_id=checkout_id,
            )
        )
        await session.flush()
        for position, (listing, quantity) in enumerate(bought):
            session.add(
                OrderLine(
                    order_id=order_id,
                    listing_id=listing.id,
                    position=position,
                    listing_title=listing.title,
                    quantity=quantity,
                    unit_amount=listing.price_amount,
                )
            )
            stock.take(session, listing, quantity)
        session.add(
            AuditEvent(
                actor_id=buyer_id,
                actor_role=Party.BUYER,
                subject_type="order",
                subject_id=str(order_id),
                action=OrderEvent.PLACED,
                data={"status": OrderStatus.PENDING, "checkout_id": req.checkout_id},
                dedupe_key=f"order:{order_id}:state:1",
            )
        )
    await session.flush()
    stored = await session.get(Checkout, checkout_id, populate_existing=True)
    assert stored is not None
    return reservation_of(stored)


async def pending_checkout(session: AsyncSession, buyer_id: uuid.UUID) -> uuid.UUID | None:
    """The buyer's checkout whose charge has not settled yet, if there is one."""
    found: uuid.UUID | None = await session.scalar(
        select(Checkout.id)
        .where(Checkout.buyer_id == buyer_id, Checkout.status == CheckoutStatus.PENDING)
        .order_by(Checkout.created_at)
        .limit(1)
    )
    return found


def reservation_of(checkout: Checkout) -> Reservation:
    return Reservation(
        ok=True,
        amount=checkout.amount,
        currency=checkout.currency,
        orders=seller_orders(checkout.orders),
    )


def seller_orders(orders: Sequence[Order]) -> list[SellerOrder]:
    return [
        SellerOrder(
            order_id=str(order.id),
            seller_id=str(order.seller_id),
            amount=order.amount,
            lines=[line_view(line) for line in order.lines],
        )
        for order in orders
    ]


async def mark_paid(session: AsyncSession, checkout_id: uuid.UUID, payment_intent_id: str) -> None:
    """The charge succeeded: the checkout is paid and the lines bought leave the buyer's cart. A line the buyer
    changed since the checkout read it (another quantity) stays: the cart keeps what they asked for last."""
    checkout = await session.get(Checkout, checkout_id, with_for_update=True)
    assert checkout is not None
    if checkout.status == CheckoutStatus.PAID:
        return
    checkout.status = CheckoutStatus.PAID
    checkout.payment_intent_id = payment_intent_id
    bought = [(line.listing_id, line.quantity) for order in checkout.orders for line in order.lines]
    await session.execute(
        delete(CartLine).where(
            CartLine.buyer_id == checkout.buyer_id, tuple_(CartLine.listing_id, CartLine.quantity).in_(bought)
        )
    )
    await events.record(
        session, EventType.CHECKOUT_PAID, None, _event_data(checkout), f"checkout:{checkout.id}:paid"
    )


async def fail(
    session: AsyncSession, checkout_id: uuid.UUID, reason: str, payment_intent_id: str | None
) -> None:
    """The charge was declined or refused: nothing was taken. Its orders are cancelled with `reason` and their
    stock goes back; the cart keeps its lines (the buyer may pay another way)."""
    checkout = await session.get(Checkout, checkout_id, with_for_update=True)
    assert checkout is not None
    if checkout.status == CheckoutStatus.PAYMENT_FAILED:
        return
    checkout.status = CheckoutStatus.PAYMENT_FAILED
    checkout.status_reason = reason
    checkout.payment_intent_id = payment_intent_id
    orders = (
        await session.scalars(
            select(Order).where(Order.checkout_id == checkout_id).order_by(Order.id).with_for_update()
        )
    ).all()
    await stock.give_back(
        session,
        [
            (line.listing_id, line.quantity)
            for order in orders
            if order.stock_reserved
            for line in order.lines
        ],
    )
    action = OrderEvent.PAYMENT_REJECTED if reason == "payment_rejected" else OrderEvent.PAYMENT_FAILED
    for order in orders:
        order.stock_reserved = False
        order.status = OrderStatus.CANCELLED
        order.status_reason = reason
        order.payment_state = PaymentState.FAILED
        order.state_seq = 2
        session.add(
            AuditEvent(
                actor_id=None,
                actor_role=Party.SYSTEM,
                subject_type="order",
                subject_id=str(order.id),
                action=OrderEvent.PAYMENT_REJECTED
                if reason == "payment_rejected"
                else OrderEvent.PAYMENT_FAILED,
                data={"status": OrderStatus.CANCELLED, "reason": reason, "checkout_id": str(checkout_id)},
                dedupe_key=f"order:{order.id}:state:2",
            )
        )
    await session.flush()
    for order in orders:
        await events.record_order_transition(
            session, order.id, 2, OrderStatus.CANCELLED, OrderStatus.PENDING, PaymentState.FAILED, action
        )
    data = _event_data(checkout)
    await events.record(
        session, EventType.CHECKOUT_PAYMENT_FAILED, None, data, f"checkout:{checkout.id}:failed"
    )


def _event_data(checkout: Checkout) -> dict[str, Any]:
    return {
        "object": "checkout",
        "id": str(checkout.id),
        "status": checkout.status.value,
        "reason": checkout.status_reason,
        "buyer_id": str(checkout.buyer_id),
        "amount": checkout.amount,
        "currency": checkout.currency,
        "orders": [
            {"id": str(o.id), "seller_id": str(o.seller_id), "amount": o.amount} for o in checkout.orders
        ],
    }
