"""Request and response models of the payment provider's webhook (api/routes/webhooks.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bazaar.text import single_line


class StripeObject(BaseModel):
    """The event's object (a PaymentIntent, a dispute, ...): what the webhook reads of it is typed, the rest
    is kept as it came."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    metadata: dict[str, Any] | None = None


class StripeEventData(BaseModel):
    model_config = ConfigDict(extra="allow")
    object: StripeObject


class StripeEventIn(BaseModel):
    """A payment provider event (Stripe's event object), as the webhook reads it."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "evt_1PqRsT2eZvKYlo2C",
                    "object": "event",
                    "type": "payment_intent.succeeded",
                    "created": 1767225600,
                    "data": {"object": {"id": "pi_3PqRsT", "object": "payment_intent", "amount": 45000}},
                }
            ]
        },
    )
    id: Annotated[str, single_line(1, 64, strip=False)]
    type: Annotated[str, single_line(1, 64, strip=False)]
    data: StripeEventData


class WebhookOut(BaseModel):
    received: Literal[True] = True
    duplicate: bool = Field(default=False, description="this event id was received before: nothing was done")
    handled: bool | None = Field(
        default=None,
        description="whether the event was passed to its order, or applied to its payout account (absent for a "
        "duplicate)",
    )
    order_id: uuid.UUID | None = Field(default=None, description="the order the event is about, when known")
