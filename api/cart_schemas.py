"""Request and response models of the buyer's cart (bazaar/checkout/cart.py)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from api.schemas import LineQuantity, example
from bazaar.checkout import cart
from bazaar.payments.money import Money


class CartLineIn(BaseModel):
    model_config = example({"quantity": 1})
    quantity: LineQuantity = Field(description="how many the buyer wants")


class CartLineOut(BaseModel):
    listing_id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    quantity: int
    unit_price: Money = Field(description="the listing's price now")
    seen_price: Money = Field(
        description="the price the buyer saw when they last set the line: a checkout charges this one, so it "
        "refuses a line whose price changed until the buyer sets the line again"
    )
    available_quantity: int = Field(description="how many of the listing are for sale now")
    problem: cart.LineProblem | None = Field(description="why the line cannot be checked out as it is")


class CartOut(BaseModel):
    """The cart as it stands now: every line re-checked against its listing."""

    lines: list[CartLineOut]
    total: Money | None = Field(
        description="the lines at the prices the buyer saw; null while the cart is empty"
    )
    ready: bool = Field(description="the cart has lines and none has a problem")
    seller_count: int = Field(
        description="how many sellers the lines are from (a checkout makes an order each)"
    )

    @classmethod
    def of(cls, current: cart.Cart) -> CartOut:
        return cls(
            lines=[
                CartLineOut(
                    listing_id=line.listing.id,
                    seller_id=line.listing.seller_id,
                    title=line.listing.title,
                    quantity=line.quantity,
                    unit_price=Money(amount=line.listing.price_amount, currency=line.listing.currency),
                    seen_price=Money(amount=line.seen_amount, currency=line.seen_currency),
                    available_quantity=line.available_quantity,
                    problem=line.problem,
                )
                for line in current.lines
            ],
            total=None
            if current.currency is None
            else Money(amount=current.total, currency=current.currency),
            ready=current.ready,
            seller_count=current.seller_count,
        )
