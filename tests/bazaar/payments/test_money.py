from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bazaar.payments.money import (
    CURRENCY_EXPONENTS,
    MAX_CHARGE,
    MIN_CHARGE,
    Currency,
    Money,
    Price,
    chargeable_problem,
    platform_fee,
    shares_of,
)
from stripe_sandbox import engine


# The input rules moved from Money to Price (Money is now the response type, which must accept whatever is
# stored); the same rejections are asserted, on the type that requests use.
def test_price_is_integer_minor_units_with_a_known_currency() -> None:
    assert Price(amount=1999, currency="EUR").currency == "EUR"
    for bad in (
        {"amount": 1999, "currency": "eur"},  # the document's enum is upper case, as every currency it takes
        {"amount": 0, "currency": "EUR"},
        {"amount": 10, "currency": "XXX"},
        {"amount": 19.99, "currency": "EUR"},
        {"amount": 1999, "currency": "EUR", "extra": 1},
    ):
        with pytest.raises(ValidationError):
            Price(**bad)


def test_every_currency_has_a_minimum_charge_and_a_type() -> None:
    assert set(MIN_CHARGE) == set(CURRENCY_EXPONENTS) == set(Currency)
    # The sandbox plays the provider: it must refuse exactly what the API refuses.
    assert engine.MIN_CHARGE == {code.lower(): amount for code, amount in MIN_CHARGE.items()}


@pytest.mark.parametrize(
    ("amount", "currency", "problem"),
    [
        (50, "EUR", None),
        (49, "EUR", "order total 0.49 EUR is below the minimum charge of 0.50 EUR"),
        (1, "EUR", "order total 0.01 EUR is below the minimum charge of 0.50 EUR"),
        (0, "EUR", "order total 0.00 EUR is below the minimum charge of 0.50 EUR"),
        (-5, "EUR", "order total -0.05 EUR is below the minimum charge of 0.50 EUR"),
        (30, "GBP", None),
        (29, "GBP", "order total 0.29 GBP is below the minimum charge of 0.30 GBP"),
        (1499, "CZK", "order total 14.99 CZK is below the minimum charge of 15.00 CZK"),
        (1500, "CZK", None),
        (49, "JPY", "order total 49 JPY is below the minimum charge of 50 JPY"),
        (MAX_CHARGE, "EUR", None),
        (MAX_CHARGE + 1, "EUR", "order total 1000000.00 EUR is above the maximum charge of 999999.99 EUR"),
        (MAX_CHARGE + 1, "JPY", "order total 100000000 JPY is above the maximum charge of 99999999 JPY"),
    ],
)
def test_chargeable_problem(amount: int, currency: str, problem: str | None) -> None:
    assert chargeable_problem(amount, currency, "order total") == problem


def test_chargeable_problem_defaults_and_unknown_currency() -> None:
    assert chargeable_problem(1, "EUR") == "amount 0.01 EUR is below the minimum charge of 0.50 EUR"
    assert "unsupported currency 'XXX'" in (chargeable_problem(100, "XXX") or "")
    for code, minimum in MIN_CHARGE.items():
        assert chargeable_problem(minimum, code) is None
        assert chargeable_problem(minimum - 1, code) is not None


@pytest.mark.parametrize(
    ("amount", "currency", "error"),
    [
        (1, "EUR", "price 0.01 EUR is below the minimum charge of 0.50 EUR"),
        (299, "SEK", "price 2.99 SEK is below the minimum charge of 3.00 SEK"),
        (MAX_CHARGE + 1, "EUR", "less than or equal to 99999999"),
        (2**63, "EUR", "less than or equal to 99999999"),
    ],
)
def test_a_price_must_be_chargeable(amount: int, currency: str, error: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Price(amount=amount, currency=currency)
    [only] = caught.value.errors()
    assert only["loc"] == ("amount",)
    assert error in only["msg"]
    assert Price(amount=MAX_CHARGE, currency="EUR").amount == MAX_CHARGE
    assert Price(amount=50, currency="JPY").amount == 50


@pytest.mark.parametrize(
    "stored",
    [
        {"amount": 100_000_000_01, "currency": "EUR"},  # above any input bound: an old or imported total
        {"amount": 2**63 - 1, "currency": "EUR"},
        {"amount": 0, "currency": "EUR"},
        {"amount": 1, "currency": "EUR"},  # below the minimum charge
        {"amount": 500, "currency": "HUF"},  # a currency no longer offered
    ],
)
def test_money_accepts_whatever_is_stored(stored: dict[str, Any]) -> None:
    """Money is the response type: validating stored data must never fail (that would be a 500)."""
    assert Money(**stored).model_dump() == stored


@pytest.mark.parametrize(
    ("amount", "bps", "fixed", "fee"),
    [
        (10_000, 1000, 30, 1_030),  # 10 % + 0.30
        (1_005, 1000, 0, 101),  # 100.5 rounds half up
        (20, 1000, 30, 20),  # never more than the amount
        (0, 1000, 30, 0),
    ],
)
def test_platform_fee(amount: int, bps: int, fixed: int, fee: int) -> None:
    assert platform_fee(amount, bps, fixed) == fee


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (15_000, [10_000, 5_000], [10_000, 5_000]),
        (100, [1, 1, 1], [34, 33, 33]),  # the unit left over to the first of equal remainders
        (10_001, [3, 3, 4], [3_000, 3_000, 4_001]),
        (7, [0, 0], [4, 3]),  # nothing held anywhere: equal parts
        (9_000, [10_000, 0, 5_000], [6_000, 0, 3_000]),
        (0, [5, 5], [0, 0]),
    ],
)
def test_shares_sum_to_the_total_in_proportion(total: int, weights: list[int], shares: list[int]) -> None:
    assert shares_of(total, weights) == shares
    assert sum(shares_of(total, weights)) == total
