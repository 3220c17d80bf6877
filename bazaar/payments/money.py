"""Money: integer minor units plus an ISO 4217 code. Never floats."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from bazaar.json_types import JSON_NUMBER

# Currencies we accept, with their minor-unit exponent (ISO 4217). Extend deliberately.
CURRENCY_EXPONENTS: dict[str, int] = {
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "CAD": 2,
    "AUD": 2,
    "JPY": 0,
}


# What the payment provider can charge, in minor units: Stripe's documented minimum charge amount per
# currency (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts) and its maximum of
# eight digits. A price or order total outside this range would only fail at the provider, after the order
# was placed; it is refused at the edge instead. stripe_sandbox/engine.py enforces the same table.
MIN_CHARGE: dict[str, int] = {
    "USD": 50,
    "EUR": 50,
    "GBP": 30,
    "CHF": 50,
    "SEK": 300,
    "NOK": 300,
    "DKK": 250,
    "PLN": 200,
    "CZK": 1500,
    "CAD": 50,
    "AUD": 50,
    "JPY": 50,
}
MAX_CHARGE = 99_999_999
# An amount to move, in minor units: a price, a refund, a resolution's part. The bounds sit inside the type, so
# the document states them on an optional field too (a constraint on `X | None` itself is not JSON Schema).
ChargeableAmount = Annotated[int, Field(gt=0, le=MAX_CHARGE), JSON_NUMBER]


class Currency(enum.StrEnum):
    """The codes of CURRENCY_EXPONENTS as a type: every request field and query parameter that takes a currency
    is this one enum (one `Currency` in the document, one type in a generated client);
    tests/bazaar/payments/test_money.py keeps the two in step."""

    EUR = "EUR"
    USD = "USD"
    GBP = "GBP"
    CHF = "CHF"
    SEK = "SEK"
    NOK = "NOK"
    DKK = "DKK"
    PLN = "PLN"
    CZK = "CZK"
    CAD = "CAD"
    AUD = "AUD"
    JPY = "JPY"


def chargeable_problem(amount: int, currency: str, what: str = "amount") -> str | None:
    """None if the provider can charge `amount` minor units of `currency`, else why not, for people
    (`what` names the amount: "price", "order total", ...)."""
    if currency not in CURRENCY_EXPONENTS:
        return f"unsupported currency {currency!r}; one of {sorted(CURRENCY_EXPONENTS)}"
    minimum = MIN_CHARGE[currency]
    if amount < minimum:
        return (
            f"{what} {format_money(amount, currency)} is below the minimum charge of "
            f"{format_money(minimum, currency)}"
        )
    if amount > MAX_CHARGE:
        return (
            f"{what} {format_money(amount, currency)} is above the maximum charge of "
            f"{format_money(MAX_CHARGE, currency)}"
        )
    return None


# Marks a schema that the API's document states as the `Currency` component (api.openapi replaces it by a ref).
AS_CURRENCY = "x-as-currency"
# A currency in an answer: read as any stored code (an amount in a currency no longer offered is still answered,
# never a 500), documented as the `Currency` a request takes (one type in a generated client).
AnsweredCurrency = Annotated[str, Field(json_schema_extra={AS_CURRENCY: True})]


class Money(BaseModel):
    """An amount in minor units (cents for EUR) of one currency, as the API answers it.

    Responses only: no upper bound and no currency check, so stored data (an order total, a refund) always
    serialises; a request validates `Price` instead. Its currency is documented as the `Currency` a request
    takes (`AnsweredCurrency`).
    """

    model_config = ConfigDict(frozen=True)

    amount: int = Field(ge=0, description="Minor units, e.g. 1999 = 19.99 EUR")
    currency: AnsweredCurrency


class Price(BaseModel):
    """A price in a request: minor units of a supported currency that the payment provider can charge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # currency first: the amount's check needs it (pydantic validates fields in order). Exactly the document's
    # enum, as every other currency the API takes: "eur" is a 422 like "XXX".
    currency: Currency = Field(description="ISO 4217 code, e.g. EUR")
    amount: ChargeableAmount = Field(
        description="Minor units, e.g. 1999 = 19.99 EUR; at least the currency's minimum charge "
        "(e.g. 50 for EUR), at most 99,999,999",
    )

    @field_validator("amount")
    @classmethod
    def chargeable(cls, value: int, info: ValidationInfo) -> int:
        currency = info.data.get("currency")
        if currency is not None and (problem := chargeable_problem(value, currency, "price")):
            raise ValueError(problem)
        return value


def platform_fee(amount: int, fee_bps: int, fee_fixed: int) -> int:
    """Fee in minor units: percentage (basis points, rounded half up) plus a fixed part, capped at amount."""
    percent_part = (amount * fee_bps + 5_000) // 10_000
    return min(amount, percent_part + fee_fixed)


def format_money(amount: int, currency: str) -> str:
    """For people (mail, inbox): "450.00 EUR", "1200 JPY". Exact: integer arithmetic, no floats."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{minor:0{exponent}d} {currency}" if exponent else f"{sign}{whole} {currency}"


def shares_of(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (minor units: each share rounded down, the units left over going
    to the largest remainders, the earlier weight first on a tie), so the shares always sum to `total`. Weights
    that sum to nothing share it equally."""
    if not weights:
        return []
    weights = [max(0, w) for w in weights]
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * len(weights), len(weights)
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares
