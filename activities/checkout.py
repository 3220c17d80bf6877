"""The checkout's database steps (bazaar/checkout/checkouts.py), run as local activities of the `Checkout`
workflow in the orders worker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from temporalio import activity

from activities.database import activity_transaction
from bazaar.checkout import checkouts
from bazaar.checkout.types import Reservation, StartCheckout


@dataclass
class CheckoutOutcome:
    checkout_id: str
    paid: bool
    reason: str | None = None  # payment_failed | payment_rejected, when not paid
    payment_intent_id: str | None = None


class CheckoutActivities:
    @activity.defn
    async def reserve_checkout(self, req: StartCheckout) -> Reservation:
        """Stock for every line and one order per seller, in one transaction: all or nothing."""
        async with activity_transaction() as session:
            return await checkouts.reserve(session, req)

    @activity.defn
    async def settle_checkout(self, outcome: CheckoutOutcome) -> None:
        """Paid: the cart loses the lines bought. Not paid: the orders are cancelled and the stock goes back."""
        checkout_id = uuid.UUID(outcome.checkout_id)
        async with activity_transaction() as session:
            if outcome.paid:
                assert outcome.payment_intent_id is not None
                await checkouts.mark_paid(session, checkout_id, outcome.payment_intent_id)
            else:
                await checkouts.fail(
                    session, checkout_id, outcome.reason or "payment_failed", outcome.payment_intent_id
                )
