"""Stripe webhooks: verify the signature on the raw body, and remember each event id once."""

from __future__ import annotations

from typing import Annotated

import stripe
from fastapi import APIRouter, Header, Request
from sqlalchemy.dialects.postgresql import insert

from api.deps import Session
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import StripeEvent
from bazaar.settings import get_settings

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("/stripe")
async def stripe_webhook(
    request: Request, session: Session, stripe_signature: Annotated[str | None, Header()] = None
) -> dict[str, object]:
    """Who may call: whoever holds the webhook secret (the signature is the authentication)."""
    payload = await request.body()
    try:
        event = stripe.Webhook.construct_event(
            payload, stripe_signature or "", get_settings().require("stripe_webhook_secret")
        )
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise DomainError(ErrorCode.INVALID_SIGNATURE, "invalid Stripe-Signature") from exc
    inserted = await session.execute(
        insert(StripeEvent)
        .values(id=event.id, type=event.type, payload=event.to_dict())
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(StripeEvent.id)
    )
    return {"received": True, "duplicate": inserted.first() is None}
