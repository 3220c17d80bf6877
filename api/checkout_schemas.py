"""Request and response models of checkouts (bazaar/checkout/checkouts.py, workflows/checkout.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, Field

from api.schemas import OrderOut, example
from bazaar.auth import Principal
from bazaar.models import Checkout, CheckoutStatus
from bazaar.payments.money import Money
from bazaar.temporal import checkout_workflow_id
from bazaar.text import single_line


class CheckoutIn(BaseModel):
    model_config = example({"payment_method": "pm_card_visa"})
    payment_method: Annotated[str, single_line(3, 64, pattern=r"^pm_[A-Za-z0-9_]+$", strip=False)]


class CheckoutOut(BaseModel):
    """One payment for the cart, and the order it placed with each seller."""

    id: uuid.UUID
    status: CheckoutStatus = Field(
        description="`pending` while the payment runs; `paid`: charged once, each order runs on its own; "
        "`payment_failed`: declined or refused, nothing taken, the orders cancelled and the cart kept"
    )
    status_reason: str | None = Field(description="`payment_failed` or `payment_rejected` when not paid")
    buyer_id: uuid.UUID
    total: Money
    orders: list[OrderOut] = Field(description="one per seller, each with its own lines, total and state")
    workflow_id: str

    @classmethod
    def of_row(
        cls, checkout: Checkout, refunded: Mapping[uuid.UUID, int] | None = None, *, caller: Principal
    ) -> CheckoutOut:
        """The stored checkout as `caller` sees it; `refunded`: what was refunded of each order (as its order's own
        read shows it)."""
        refunded = refunded or {}
        return cls(
            id=checkout.id,
            status=checkout.status,
            status_reason=checkout.status_reason,
            buyer_id=checkout.buyer_id,
            total=Money(amount=checkout.amount, currency=checkout.currency),
            orders=[
                OrderOut.of_row(order, refunded.get(order.id, 0), caller=caller) for order in checkout.orders
            ],
            workflow_id=checkout_workflow_id(str(checkout.id)),
        )


class CheckoutPage(BaseModel):
    items: list[CheckoutOut]
    next_cursor: uuid.UUID | None = Field(description="pass as `before` for the next page; null on the last")
