"""Refunds by the seller or support while the money is in escrow (`POST /v1/orders/{id}/refund`), on the real
stack: the provider's refund, the ledger, the fee on what the buyer still pays, the buyer told, and the limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bazaar.orders.terms import DEFAULT_TERMS
from bazaar.payments.money import platform_fee
from tests.support.http import support_user, wait_until
from tests.support.money import (
    act,
    assert_balanced,
    ledger_accounts,
    paid_order,
    payment_intents_for,
    provider_list,
    refunds_for,
    refused,
    transfers_for,
)

pytestmark = pytest.mark.integration

PRICE = 45_000


def intent_of(stack: Any, order_id: str) -> str:
    (intent,) = payment_intents_for(stack, order_id)
    return str(intent["id"])


def test_a_partial_refund_keeps_the_order_and_the_release_pays_the_rest(
    http: httpx.Client, stack: Any
) -> None:
    seller, buyer, order = paid_order(http)
    act(http, order["id"], "accept", seller)
    refunded = act(http, order["id"], "refund", seller, {"amount": 1500, "reason": "Scratch on the frame"})
    assert (refunded["status"], refunded["refunded"]) == ("confirmed", {"amount": 1500, "currency": "EUR"})
    assert refunded["payment_state"] == "held_in_escrow"
    assert "refund" in refunded["allowed_actions"]
    assert [r["amount"] for r in refunds_for(stack, intent_of(stack, order["id"]))] == [1500]

    act(http, order["id"], "fulfil", seller)
    done = act(http, order["id"], "confirm-receipt", buyer)
    # The fee is charged on what the buyer still pays (PLATFORM_FEE_REFUNDED_PRO_RATA, default true).
    fee = platform_fee(PRICE - 1500, DEFAULT_TERMS["fee_bps"], DEFAULT_TERMS["fee_fixed"])
    assert (done["status"], done["payment_state"]) == ("completed", "released")
    assert [t["amount"] for t in transfers_for(stack, order["id"])] == [PRICE - 1500 - fee]
    assert_balanced(stack, order["id"])
    accounts = ledger_accounts(stack, order["id"])
    assert accounts.get("refunds") == 1500 and accounts.get("platform_fees") == fee, accounts

    inbox = wait_until(
        lambda: [
            n
            for n in http.get("/v1/notifications", headers=buyer.headers).json()["items"]
            if n["event_type"] == "order_refunded"
        ],
        timeout=10,
    )
    assert "15.00 EUR" in inbox[0]["body"], inbox[0]


def test_refunding_everything_ends_the_order_and_gives_the_stock_back(http: httpx.Client, stack: Any) -> None:
    seller, _, order = paid_order(http, quantity=1)
    staff = support_user(http, stack)
    first = act(http, order["id"], "refund", staff, {"amount": 10_000})
    assert first["status"] == "paid"
    whole = act(http, order["id"], "refund", seller, {"amount": PRICE - 10_000})
    assert (whole["status"], whole["payment_state"]) == ("refunded", "refunded")
    assert whole["refunded"] == {"amount": PRICE, "currency": "EUR"}
    listing = http.get(f"/v1/listings/{order['listing_id']}").json()
    assert (listing["quantity"], listing["status"]) == (1, "active")
    assert sorted(r["amount"] for r in refunds_for(stack, intent_of(stack, order["id"]))) == [
        10_000,
        PRICE - 10_000,
    ]
    assert_balanced(stack, order["id"])
    again = refused(http, order["id"], "refund", seller, {"amount": 1})
    assert again.status_code == 409, again.text


def test_a_refund_above_what_is_held_or_by_the_buyer_is_refused_and_moves_nothing(
    http: httpx.Client, stack: Any
) -> None:
    seller, buyer, order = paid_order(http)
    too_much = refused(http, order["id"], "refund", seller, {"amount": PRICE + 1})
    assert too_much.status_code == 422, too_much.text
    assert too_much.json()["error"]["code"] == "validation_error"
    by_buyer = refused(http, order["id"], "refund", buyer, {"amount": 100})
    assert by_buyer.status_code == 403, by_buyer.text
    for bad in (
        {"amount": 0},
        {"amount": -5},
        {"amount": "12.50"},
        {"amount": 100, "reason": "a\u0000b"},
        {},
    ):
        answered = refused(http, order["id"], "refund", seller, bad)
        assert answered.status_code == 422, (bad, answered.text)
    current = http.get(f"/v1/orders/{order['id']}", headers=seller.headers).json()
    assert current["status"] == "paid"
    assert refunds_for(stack, intent_of(stack, order["id"])) == []


def test_support_refunds_after_the_release_taking_the_share_back_from_the_seller(
    http: httpx.Client, stack: Any
) -> None:
    seller, buyer, order = paid_order(http)
    staff = support_user(http, stack)
    act(http, order["id"], "accept", seller)
    act(http, order["id"], "fulfil", seller)
    act(http, order["id"], "confirm-receipt", buyer)  # released: the order's run has ended
    fee = platform_fee(PRICE, DEFAULT_TERMS["fee_bps"], DEFAULT_TERMS["fee_fixed"])
    [transfer] = transfers_for(stack, order["id"])
    assert transfer["amount"] == PRICE - fee
    assert refused(http, order["id"], "refund", seller, {"amount": 1_000}).status_code == 409  # support only

    # A reopened run refunds 10,000: the fee comes back pro rata, the rest from the seller's transfer.
    first = act(http, order["id"], "refund", staff, {"amount": 10_000, "reason": "Returned the saddle"})
    assert (first["status"], first["payment_state"]) == ("completed", "released")
    fee_back = fee * 10_000 // PRICE
    reversals = provider_list(stack, f"/v1/transfers/{transfer['id']}/reversals")
    assert [r["amount"] for r in reversals] == [10_000 - fee_back]
    assert ledger_accounts(stack, order["id"]).get("platform_fees") == fee - fee_back
    assert_balanced(stack, order["id"])

    # Another run (the state loaded again, part of the release already taken back) refunds the rest.
    rest = PRICE - 10_000
    whole = act(http, order["id"], "refund", staff, {"amount": rest})
    assert (whole["status"], whole["payment_state"]) == ("refunded", "refunded")
    reversed_total = sum(
        r["amount"] for r in provider_list(stack, f"/v1/transfers/{transfer['id']}/reversals")
    )
    assert reversed_total == transfer["amount"]  # the seller keeps nothing
    accounts = ledger_accounts(stack, order["id"])
    assert accounts.get("refunds") == PRICE and "platform_fees" not in accounts, accounts
    assert sorted(r["amount"] for r in refunds_for(stack, intent_of(stack, order["id"]))) == [10_000, rest]
    assert_balanced(stack, order["id"])
