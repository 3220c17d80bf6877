"""Money: integer minor units plus an ISO 4217 code. Never floats."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class Money(BaseModel):
    """An amount in minor units (cents for EUR) of one currency."""

    model_config = ConfigDict(frozen=True)

    amount: int = Field(gt=0, le=100_000_000_00, description="Minor units, e.g. 1999 = 19.99 EUR")
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. EUR")

    @field_validator("currency")
    @classmethod
    def known_currency(cls, value: str) -> str:
        code = value.upper()
        if code not in CURRENCY_EXPONENTS:
            raise ValueError(f"unsupported currency {value!r}; one of {sorted(CURRENCY_EXPONENTS)}")
        return code


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
