"""The buyer's cart: listings of any sellers, one currency, each line with the quantity wanted and the price the
buyer saw when they set it.

The cart holds no stock: a line is a wish, re-checked against the listing whenever the cart is read (a line that
sold out, left sale or changed price says so) and again, under row locks, when the cart is checked out. Setting a
line again (the same quantity will do) takes the listing's current price: that is how a buyer accepts a new price.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.checkout.models import CartLine
from bazaar.errors import DomainError, ErrorCode
from bazaar.listings import stock
from bazaar.models import Listing, ListingStatus, User
from bazaar.payments.money import chargeable_problem

MAX_LINES = 50


class LineProblem(enum.StrEnum):
    """Why a line cannot be checked out as it is."""

    LISTING_NOT_AVAILABLE = "listing_not_available"  # archived, back to draft, or its seller may not sell now
    SOLD_OUT = "sold_out"  # fewer left than the line wants (`available_quantity` says how many)
    PRICE_CHANGED = "price_changed"  # not the price the buyer saw: set the line again to accept it


def sold_out(left: int) -> DomainError:
    """Fewer units left than asked for: how many are (`details.available`)."""
    message = f"only {left} left of this listing" if left else "the listing is sold out"
    return DomainError(ErrorCode.SOLD_OUT, message, {"available": left})


def purchase_problem(listing: Listing | None, buyer_id: uuid.UUID, quantity: int) -> DomainError | None:
    """Why `buyer_id` cannot buy `quantity` of `listing` now, as the error the API answers; None if they can.
    The friendly check before anything is reserved: a reservation re-checks under the listing's row lock."""
    if listing is None or listing.status not in (ListingStatus.ACTIVE, ListingStatus.SOLD):
        return DomainError(ErrorCode.LISTING_NOT_AVAILABLE, "the listing is not for sale")
    if not listing.seller_can_sell:  # the seller cannot take charges now, or their account is deactivated
        return DomainError(ErrorCode.LISTING_NOT_AVAILABLE, "the listing is not for sale now")
    if listing.seller_id == buyer_id:
        return DomainError(
            ErrorCode.OWN_LISTING, "you cannot buy your own listing", {"listing_id": str(listing.id)}
        )
    if listing.status == ListingStatus.SOLD or listing.quantity < quantity:
        return sold_out(listing.quantity if listing.status != ListingStatus.SOLD else 0)
    problem = chargeable_problem(listing.price_amount * quantity, listing.currency)
    if problem is not None:  # what makes the total: the listing's price and the quantity asked
        asked = {
            "listing_id": str(listing.id),
            "quantity": quantity,
            "amount": listing.price_amount * quantity,
        }
        return DomainError(ErrorCode.AMOUNT_NOT_CHARGEABLE, problem, {**asked, "currency": listing.currency})
    return None


@dataclass(frozen=True)
class Line:
    """A cart line as it stands now."""

    listing: Listing
    quantity: int
    seen_amount: int
    seen_currency: str

    @property
    def available_quantity(self) -> int:
        return stock.available(self.listing)

    @property
    def problem(self) -> LineProblem | None:
        listing = self.listing
        if listing.status not in (ListingStatus.ACTIVE, ListingStatus.SOLD) or not listing.seller_can_sell:
            return LineProblem.LISTING_NOT_AVAILABLE
        if self.available_quantity < self.quantity:
            return LineProblem.SOLD_OUT
        if (listing.price_amount, listing.currency) != (self.seen_amount, self.seen_currency):
            return LineProblem.PRICE_CHANGED
        return None


@dataclass(frozen=True)
class Cart:
    lines: list[Line]

    @property
    def currency(self) -> str | None:
        """The cart's currency: its lines' (one per cart), None while it is empty."""
        return self.lines[0].seen_currency if self.lines else None

    @property
    def total(self) -> int:
        """What the lines cost at the prices the buyer saw (what a checkout would charge once each line is
        ready)."""
        return sum(line.seen_amount * line.quantity for line in self.lines)

    @property
    def ready(self) -> bool:
        """Every line can be checked out as it is."""
        return bool(self.lines) and all(line.problem is None for line in self.lines)

    @property
    def seller_count(self) -> int:
        return len({line.listing.seller_id for line in self.lines})


async def read(session: AsyncSession, buyer_id: uuid.UUID) -> Cart:
    """The buyer's cart, oldest line first, each with its listing as it is now."""
    rows = await session.execute(
        select(CartLine, Listing)
        .join(Listing, Listing.id == CartLine.listing_id)
        .where(CartLine.buyer_id == buyer_id)
        .order_by(CartLine.added_at, CartLine.listing_id)
    )
    return Cart(
        [Line(listing, line.quantity, line.seen_amount, line.seen_currency) for line, listing in rows]
    )


async def set_line(session: AsyncSession, buyer_id: uuid.UUID, listing_id: uuid.UUID, quantity: int) -> Cart:
    """Put `quantity` of a listing in the cart (a new line, or the line's new quantity), at its current price."""
    await _lock(session, buyer_id)
    listing = await session.get(Listing, listing_id)
    # The listing in the path is not there, or is someone else's draft that was never public (404, as its read
    # answers: its id says nothing); one that is or was on sale but is not now: 409.
    unseen = listing is not None and listing.published_at is None and listing.seller_id != buyer_id
    if listing is None or unseen:
        raise DomainError(ErrorCode.NOT_FOUND, "listing not found")
    refusal = purchase_problem(listing, buyer_id, quantity)
    if refusal is not None:
        raise refusal
    cart = await read(session, buyer_id)
    others = [line for line in cart.lines if line.listing.id != listing_id]
    if len(others) >= MAX_LINES:
        raise DomainError(
            ErrorCode.CART_FULL, f"a cart holds at most {MAX_LINES} listings", {"max": MAX_LINES}
        )
    if others and others[0].seen_currency != listing.currency:
        raise DomainError(
            ErrorCode.CURRENCY_MISMATCH,
            f"the cart is in {others[0].seen_currency}; this listing is priced in {listing.currency}",
            {"cart_currency": others[0].seen_currency, "listing_currency": listing.currency},
        )
    total = sum(line.seen_amount * line.quantity for line in others) + listing.price_amount * quantity
    problem = chargeable_problem(total, listing.currency, "cart total")
    if problem is not None:
        raise DomainError(ErrorCode.AMOUNT_NOT_CHARGEABLE, problem)
    values = {"quantity": quantity, "seen_amount": listing.price_amount, "seen_currency": listing.currency}
    await session.execute(
        insert(CartLine)
        .values(buyer_id=buyer_id, listing_id=listing_id, **values)
        .on_conflict_do_update(index_elements=[CartLine.buyer_id, CartLine.listing_id], set_=values)
    )
    # The cart as `read` would give it now: a changed line keeps its place, a new one comes last.
    line = Line(listing, quantity, listing.price_amount, listing.currency)
    lines = [line if held.listing.id == listing_id else held for held in cart.lines]
    return Cart(lines if len(others) < len(cart.lines) else [*lines, line])


async def remove_line(session: AsyncSession, buyer_id: uuid.UUID, listing_id: uuid.UUID) -> Cart:
    await _lock(session, buyer_id)
    removed = await session.execute(
        delete(CartLine).where(CartLine.buyer_id == buyer_id, CartLine.listing_id == listing_id)
    )
    if not getattr(removed, "rowcount", 0):
        raise DomainError(ErrorCode.NOT_FOUND, "that listing is not in your cart")
    return await read(session, buyer_id)


async def empty(session: AsyncSession, buyer_id: uuid.UUID) -> None:
    await _lock(session, buyer_id)
    await session.execute(delete(CartLine).where(CartLine.buyer_id == buyer_id))


async def _lock(session: AsyncSession, buyer_id: uuid.UUID) -> None:
    """One change of a buyer's cart at a time (its line limit and currency hold under concurrent requests)."""
    await session.execute(select(User.id).where(User.id == buyer_id).with_for_update())
