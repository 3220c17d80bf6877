"""Support staff who buy or sell act on those orders as their buyer or seller only, found from outside: a support
user who bought an order could open a dispute on it and resolve it in their own favour."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from bazaar.temporal import order_workflow_id
from tests.support.console import disputed_order
from tests.support.http import PASSWORD, Actor, run_cli, wait_until
from tests.support.money import act_then_paid_out, fulfilled_order

OWN = "support staff act on an order they bought or sold as its buyer or seller only, not as support"


def with_support_role(http: httpx.Client, stack: Any, user: Actor) -> Actor:
    """The same account made support staff, with a fresh token (tokens carry the roles they were issued with)."""
    run_cli(stack, "grant-role", user.email, "support")
    token = http.post("/v1/auth/token", data={"username": user.email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return Actor(user.user_id, user.email, {"Authorization": f"Bearer {token.json()['access_token']}"})


@pytest.mark.integration
def test_support_cannot_decide_a_dispute_on_their_own_order(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = disputed_order(http, "Own case")
    staff_buyer = with_support_role(http, stack, buyer)
    case = f"/v1/orders/{order['id']}/dispute"
    wait_until(lambda: http.get(case, headers=staff_buyer.headers).status_code == 200, timeout=20)
    resolve = http.post(
        f"/v1/orders/{order['id']}/resolve", headers=staff_buyer.headers, json={"resolution": "refund"}
    )
    assert resolve.status_code == 403, resolve.text
    assert resolve.json()["error"]["message"] == OWN
    assert resolve.json()["error"]["details"]["order"]["status"] == "disputed"
    ask = http.post(
        f"{case}/info-requests",
        headers=staff_buyer.headers,
        json={"party": "seller", "question": "Where is the receipt?", "deadline_hours": 24},
    )
    assert ask.status_code == 403 and ask.json()["error"]["message"] == OWN, ask.text
    # As the buyer they still write in their own case.
    reply = http.post(f"{case}/messages", headers=staff_buyer.headers, json={"body": "Photos attached"})
    assert reply.status_code in (200, 202), reply.text
    # The seller made support staff cannot decide it either.
    staff_seller = with_support_role(http, stack, seller)
    release = http.post(
        f"/v1/orders/{order['id']}/resolve", headers=staff_seller.headers, json={"resolution": "release"}
    )
    assert release.status_code == 403 and release.json()["error"]["message"] == OWN, release.text
    after = http.get(f"/v1/orders/{order['id']}", headers=staff_buyer.headers).json()
    assert (after["status"], after["payment_state"], after["refunded"]) == ("disputed", "frozen", None), after


@pytest.mark.integration
def test_support_cannot_hide_a_review_about_themselves(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = fulfilled_order(http, title="Own review")
    act_then_paid_out(http, order["id"], "confirm-receipt", buyer)
    review = http.post(
        f"/v1/orders/{order['id']}/reviews", headers=buyer.headers, json={"rating": 1, "text": "Slow to ship"}
    )
    assert review.status_code == 201, review.text
    staff_seller = with_support_role(http, stack, seller)
    hidden = http.post(
        f"/v1/support/reviews/{review.json()['id']}/hide",
        headers=staff_seller.headers,
        json={"reason": "I do not like it"},
    )
    assert hidden.status_code == 403, hidden.text
    assert "a review they wrote or that is about them" in hidden.json()["error"]["message"]


@pytest.mark.integration
def test_support_cannot_refund_their_own_order_after_its_run_ended(http: httpx.Client, stack: Any) -> None:
    """Found from outside: a completed order's ended run is reopened for support's refund, and the reopened run
    skips its validator while it loads: a seller with the support role refunded their own order."""
    seller, buyer, order = fulfilled_order(http, title="Own refund")
    act_then_paid_out(http, order["id"], "confirm-receipt", buyer)
    staff_seller = with_support_role(http, stack, seller)

    async def ended() -> bool:
        client = await Client.connect(stack.temporal_address)
        described = await client.get_workflow_handle(order_workflow_id(order["id"])).describe()
        return described.status != WorkflowExecutionStatus.RUNNING

    wait_until(lambda: asyncio.run(ended()), timeout=30)
    refund = http.post(f"/v1/orders/{order['id']}/refund", headers=staff_seller.headers, json={"amount": 500})
    assert refund.status_code == 403 and refund.json()["error"]["message"] == OWN, refund.text
    assert refund.json()["error"]["details"]["order"]["refunded"] is None
    assert http.get(f"/v1/orders/{order['id']}", headers=buyer.headers).json()["refunded"] is None
