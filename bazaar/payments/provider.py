"""What Bazaar's objects look like at the payment provider: how a provider object names its order, and the
payloads of a seller's payout (connected) account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bazaar.temporal import ORDER_WORKFLOW_PREFIX, order_id_from_workflow_id


def order_id_of(obj: dict[str, Any]) -> str | None:
    """The order a provider object belongs to: our `metadata.order_id`, else its transfer group (which
    the order workflow sets to its workflow id, `order-<order id>`)."""
    order_id = (obj.get("metadata") or {}).get("order_id")
    group = str(obj.get("transfer_group") or "")
    if not order_id and group.startswith(ORDER_WORKFLOW_PREFIX):
        order_id = order_id_from_workflow_id(group)
    return str(order_id) if order_id else None


@dataclass
class PayoutAccountRequest:
    user_id: str
    email: str
    country: str
    default_currency: str


@dataclass
class PayoutAccountResult:
    provider_account_id: str
    country: str
    default_currency: str
    created: bool = True  # False: the seller's account was there already (a request that came in between)


# The provider refused to make an onboarding link (an account it does not know, or cannot onboard): final.
ONBOARDING_LINK_REFUSED = "OnboardingLinkRefused"


@dataclass
class OnboardingLinkRequest:
    provider_account_id: str
    refresh_url: (
        str  # where the provider sends a seller whose link expired or was used (make a new one there)
    )
    return_url: str  # where the provider sends the seller after onboarding (not proof of it: the events are)


@dataclass
class OnboardingLink:
    url: str
    expires_at: int  # Unix seconds: links are short-lived and work once
