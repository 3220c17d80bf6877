"""The Stripe form decoder (what the SDK sends on the wire)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from stripe_sandbox.forms import FormError, parse_form


def test_nested_brackets_lists_and_metadata() -> None:
    body = urlencode(
        [
            ("amount", "100"),
            ("metadata[order_id]", "o1"),
            ("metadata[0]", "zero"),
            ("expand[0]", "latest_charge"),
            ("expand[1]", "customer"),
            ("capabilities[transfers][requested]", "true"),
            ("types[]", "a"),
            ("types[]", "b"),
            ("created[gte]", "5"),
        ]
    )
    assert parse_form(body) == {
        "amount": "100",
        "metadata": {"order_id": "o1", "0": "zero"},
        "expand": ["latest_charge", "customer"],
        "capabilities": {"transfers": {"requested": "true"}},
        "types": ["a", "b"],
        "created": {"gte": "5"},
    }


def test_conflicting_keys_are_rejected() -> None:
    with pytest.raises(FormError):
        parse_form("a=1&a[b]=2")
    with pytest.raises(FormError):
        parse_form("a[b=1")
