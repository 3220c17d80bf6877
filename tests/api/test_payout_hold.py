"""A payout waits while the provider has the seller's payouts disabled, and goes out when it enables them again
(the real stack: sandbox controls, `account.updated` webhooks, the order workflow's hold and its Signal)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_payout_onboarding import control, status_when
from tests.support.http import published_listing, register, seller_with_payout, wait_until
from tests.support.money import act, act_then_paid_out, assert_balanced, place, transfers_for

pytestmark = pytest.mark.integration

READY, NO_PAYOUTS = [True, True, True], [True, True, False]


def order_of(http: httpx.Client, order_id: str, actor: Any) -> dict[str, Any]:
    found = http.get(f"/v1/orders/{order_id}", headers=actor.headers)
    assert found.status_code == 200, found.text
    return dict(found.json())


def test_a_payout_waits_while_payouts_are_disabled_and_goes_out_when_enabled(
    http: httpx.Client, stack: Any
) -> None:
    seller = seller_with_payout(http)
    account_id = status_when(http, seller, READY)["provider_account_id"]
    item = published_listing(http, seller)
    buyer = register(http, ["buyer"], "Buyer")
    placed = place(http, buyer, item["id"])
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    act(http, order_id, "accept", seller)
    act(http, order_id, "fulfil", seller)

    control(stack, f"/_sandbox/accounts/{account_id}/restrict", {"disable": "payouts"})
    status_when(http, seller, NO_PAYOUTS)
    done = act_then_paid_out(http, order_id, "confirm-receipt", buyer)
    assert (done["status"], done["payment_state"]) == ("completed", "payout_on_hold")
    assert transfers_for(stack, order_id) == []  # nothing was sent
    told = wait_until(
        lambda: [
            n
            for n in http.get("/v1/notifications", headers=seller.headers).json()["items"]
            if n["event_type"] == "payout_on_hold"
        ],
        timeout=10,
    )
    assert "on hold" in told[0]["subject"], told[0]

    control(stack, f"/_sandbox/accounts/{account_id}/onboard")
    status_when(http, seller, READY)
    paid = wait_until(
        lambda: (o := order_of(http, order_id, seller))["payment_state"] == "released" and o, timeout=30
    )
    assert paid["status"] == "completed"
    [transfer] = transfers_for(stack, order_id)
    assert transfer["destination"] == account_id
    assert_balanced(stack, order_id)
