"""Request and response models of a seller's payout account (the connected account at the payment provider)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, HttpUrl, UrlConstraints

from api.schemas import CountryCode, example
from bazaar.models import PayoutAccount
from bazaar.payments import onboarding
from bazaar.payments.money import AnsweredCurrency, Currency
from bazaar.text import refuse_control_characters

# The check runs on the raw string: URL parsing would silently drop tabs and line breaks (WHATWG).
AppUrl = Annotated[
    HttpUrl, UrlConstraints(max_length=2048, allowed_schemes=["http", "https"]), refuse_control_characters()
]


class PayoutAccountIn(BaseModel):
    model_config = example({"country": "DE", "default_currency": "EUR"})
    country: CountryCode
    default_currency: Currency = Currency.EUR


class PayoutRequirementsOut(onboarding.Requirements):
    """What the payment provider still needs from the seller, as it last reported."""


class PayoutAccountOut(BaseModel):
    """The account and its standing at the provider. The standing comes from the provider's reports
    (`account.updated`): null until the first one."""

    provider_account_id: str
    country: str
    default_currency: AnsweredCurrency
    details_submitted: bool | None = Field(
        description="the seller gave the provider the details it asked for"
    )
    charges_enabled: bool | None = Field(
        description="the account can take charges: publishing needs it (not false), and while it is false the "
        "seller's listings are left out of search"
    )
    payouts_enabled: bool | None = Field(description="the provider pays the account out")
    requirements: PayoutRequirementsOut | None

    @classmethod
    def of(cls, account: PayoutAccount) -> PayoutAccountOut:
        requirements = onboarding.requirements_of(account)
        return cls(
            provider_account_id=account.provider_account_id,
            country=account.country,
            default_currency=account.default_currency,
            details_submitted=account.details_submitted,
            charges_enabled=account.charges_enabled,
            payouts_enabled=account.payouts_enabled,
            requirements=None if requirements is None else PayoutRequirementsOut(**requirements.model_dump()),
        )


class OnboardingLinkIn(BaseModel):
    """Where the provider sends the seller back: pages of the app, which reads the account's standing afterwards
    (GET /v1/payout-account)."""

    model_config = example(
        {
            "refresh_url": "https://app.example.com/seller/onboarding/refresh",
            "return_url": "https://app.example.com/seller/onboarding/done",
        },
    )
    refresh_url: AppUrl = Field(description="for a link that expired or was used: make a new one there")
    return_url: AppUrl = Field(description="after the seller leaves the onboarding (finished or not)")


class OnboardingLinkOut(BaseModel):
    url: str = Field(description="the provider's hosted onboarding: open it in the seller's browser, once")
    expires_at: datetime
