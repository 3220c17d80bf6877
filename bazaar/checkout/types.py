"""The checkout's workflow payloads (workflows/checkout.py): what the API starts it with, what its reservation
finds, and what buyers and operators see of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from bazaar.models import CheckoutStatus
from bazaar.orders.types import OrderLineView


@dataclass
class CheckoutLine:
    """A cart line as the buyer checks it out: the price they saw is the price they pay (or the line is refused)."""

    listing_id: str
    quantity: int
    seen_amount: int
    seen_currency: str


@dataclass
class StartCheckout:
    checkout_id: str
    buyer_id: str
    payment_method: str
    idempotency_key: str
    lines: list[CheckoutLine]
    # The order terms of the moment (bazaar.orders.terms), frozen for every order the checkout places.
    terms: dict[str, bool | int] = field(
        default_factory=dict
    )  # bool first: the converter would make True an int


@dataclass
class CheckoutPlacement:
    """The create-checkout request: a retry with the same Idempotency-Key must pay the same way."""

    payment_method: str = ""


@dataclass
class LineRefusal:
    """Why a line could not be bought (nothing was reserved for any line)."""

    listing_id: str
    # listing_not_available | own_listing | sold_out | price_changed | currency_mismatch, or the cart changed
    # since the request read it: not_in_cart | quantity_changed
    problem: str
    available_quantity: int = 0


@dataclass
class SellerOrder:
    """The order a checkout places with one seller."""

    order_id: str
    seller_id: str
    amount: int
    lines: list[OrderLineView]


@dataclass
class Reservation:
    """Stock reserved for every line, and the orders made (or, `refusals`, nothing at all)."""

    ok: bool
    refusals: list[LineRefusal] = field(default_factory=list)
    # When not ok: lines_unavailable | currency_mismatch | amount_not_chargeable | invalid_request, cart_empty (its
    # lines left the cart, e.g. paid by another checkout) or checkout_in_progress (another is being paid).
    reason: str | None = None
    amount: int = 0
    currency: str = ""
    orders: list[SellerOrder] = field(default_factory=list)


@dataclass
class CheckoutView:
    checkout_id: str
    buyer_id: str
    status: CheckoutStatus | None  # None: refused (nothing stored)
    reason: str | None = None
    amount: int = 0
    currency: str = ""
    payment_intent_id: str | None = None
    refusals: list[LineRefusal] = field(default_factory=list)
    orders: list[SellerOrder] = field(default_factory=list)
    attention: str | None = None  # the charge keeps failing past its bound: support sees it
