from __future__ import annotations

import pytest
from pydantic import ValidationError

from bazaar.money import Money, platform_fee


def test_money_is_integer_minor_units_with_a_known_currency() -> None:
    assert Money(amount=1999, currency="eur") == Money(amount=1999, currency="EUR")
    for bad in (
        {"amount": 0, "currency": "EUR"},
        {"amount": 10, "currency": "XXX"},
        {"amount": 19.99, "currency": "EUR"},
    ):
        with pytest.raises(ValidationError):
            Money(**bad)


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
