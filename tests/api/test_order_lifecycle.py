"""The order lifecycle over HTTP on the real stack: every state, refusals with the current state, money at
the provider and in the ledger (each order's entries sum to zero)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from bazaar.temporal import order_workflow_id
from tests.support.http import register, support_user, wait_until
from tests.support.money import (
    AMOUNT,
    FEE,
    act,
    act_then_paid_out,
    assert_balanced,
    fulfilled_order,
    ledger_accounts,
    ledger_movements,
    paid_order,
    payment_intents_for,
    refunds_for,
    refused,
    transfers_for,
)

pytestmark = pytest.mark.integration


def balance(http: httpx.Client, seller: Any) -> dict[str, Any]:
    response = http.get("/v1/payout-account/balance", headers=seller.headers)
    assert response.status_code == 200, response.text
    [eur] = response.json()["balances"]
    return dict(eur)


def test_happy_path_completes_and_pays_the_seller(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = paid_order(http)
    oid = order["id"]
    # What each caller may do now (found from outside: the buyer was offered the seller's accept and decline).
    assert order["allowed_actions"] == ["cancel"]
    as_seller = http.get(f"/v1/orders/{oid}", headers=seller.headers).json()
    assert as_seller["allowed_actions"] == ["accept", "decline", "refund"]
    assert balance(http, seller) == {"currency": "EUR", "held": AMOUNT, "available": 0, "paid_out": 0}
    accepted = act(http, oid, "accept", seller)
    assert accepted["status"] == "confirmed"
    # A read names what its caller may do next as the action's answer did (and the list): the buyer nothing now.
    read = http.get(f"/v1/orders/{oid}", headers=seller.headers).json()
    assert read["allowed_actions"] == accepted["allowed_actions"] == ["cancel", "fulfil", "refund"], read
    assert http.get(f"/v1/orders/{oid}", headers=buyer.headers).json()["allowed_actions"] == []
    listed = http.get("/v1/orders", params={"role": "seller"}, headers=seller.headers).json()["items"]
    assert [o["allowed_actions"] for o in listed if o["id"] == oid] == [["cancel", "fulfil", "refund"]]
    shipped = act(http, oid, "fulfil", seller, {"carrier": "DHL", "tracking_number": "JD0142"})
    assert (shipped["status"], shipped["tracking"]) == (
        "fulfilled",
        {"carrier": "DHL", "tracking_number": "JD0142"},
    )
    done = act_then_paid_out(http, oid, "confirm-receipt", buyer)
    assert (done["status"], done["status_reason"], done["payment_state"]) == (
        "completed",
        "buyer_confirmed",
        "released",
    )

    assert balance(http, seller) == {"currency": "EUR", "held": 0, "available": 0, "paid_out": AMOUNT - FEE}
    [transfer] = transfers_for(stack, oid)
    assert transfer["amount"] == AMOUNT - FEE
    assert (
        transfer["destination"]
        == http.get("/v1/payout-account", headers=seller.headers).json()["provider_account_id"]
    )
    assert len(payment_intents_for(stack, oid)) == 1
    assert ledger_accounts(stack, oid) == {
        "buyer_payments": -AMOUNT,
        "platform_fees": FEE,
        "seller_payouts": AMOUNT - FEE,
    }
    assert_balanced(stack, oid)
    # The release is booked before the payout it pays (found from outside: between the two, the seller's balance
    # showed the payout while the money was still held, and a negative `available`).
    assert ledger_movements(stack, oid) == ["charge", "release", "transfer"]
    timeline = http.get(f"/v1/orders/{oid}", headers=buyer.headers).json()["timeline"]
    assert [e["action"] for e in timeline] == [
        "order.placed",
        "order.paid",
        "order.accepted",
        "order.fulfilled",
        "order.completed",
        "order.payout_sent",  # the transfer follows the completion's answer
    ]
    # Once the order's run has ended, an actor who may never accept is still told 403, not that the order is
    # completed; the seller, who may accept a paid order, gets the 409 with the order as it stands.
    asyncio.run(run_closed(stack, oid))
    never = refused(http, oid, "accept", buyer)
    assert (never.status_code, never.json()["error"]["code"]) == (403, "forbidden"), never.text
    assert never.json()["error"]["details"]["order"]["status"] == "completed"
    late = refused(http, oid, "accept", seller)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "invalid_transition"), late.text


async def run_closed(stack: Any, order_id: str) -> None:
    handle = (await Client.connect(stack.temporal_address)).get_workflow_handle(order_workflow_id(order_id))
    for _ in range(200):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run of order {order_id} is still open")


def test_refusals_say_why_and_show_the_current_state(http: httpx.Client) -> None:
    seller, buyer, order = paid_order(http)
    oid = order["id"]
    early = refused(http, oid, "fulfil", seller)
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "invalid_transition"
    assert early.json()["error"]["details"]["order"]["status"] == "paid"
    for action, actor in (("accept", buyer), ("confirm-receipt", seller), ("decline", buyer)):
        wrong = refused(http, oid, action, actor)
        assert wrong.status_code == 403, (action, wrong.text)
        assert wrong.json()["error"]["code"] == "forbidden"
        assert wrong.json()["error"]["details"]["order"]["status"] == "paid"
    outsider = register(http, ["buyer", "seller"], "Outsider")
    assert refused(http, oid, "cancel", outsider).status_code == 403
    act(http, oid, "accept", seller)
    again = refused(http, oid, "accept", seller)
    assert (again.status_code, again.json()["error"]["details"]["order"]["status"]) == (409, "confirmed")
    # After acceptance only the seller (or support) cancels: the buyer's cancel lost the race, so it is a
    # conflict with the order as it now stands, not a permission problem.
    late = refused(http, oid, "cancel", buyer)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "invalid_transition"
    assert late.json()["error"]["details"]["order"]["status"] == "confirmed"
    assert (
        refused(http, oid, "dispute", buyer, {"reason_code": "other", "message": "too early"}).status_code
        == 409
    )
    assert (
        http.post(
            f"/v1/orders/{oid}/resolve", headers=buyer.headers, json={"resolution": "refund"}
        ).status_code
        == 403
    )


def test_cancel_after_payment_refunds_at_the_provider(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = paid_order(http)
    oid = order["id"]
    cancelled = act(http, oid, "cancel", buyer, {"reason": "changed my mind"})
    assert (cancelled["status"], cancelled["status_reason"], cancelled["payment_state"]) == (
        "cancelled",
        "buyer_cancelled",
        "refunded",
    )
    assert cancelled["refunded"] == {"amount": AMOUNT, "currency": "EUR"}
    [intent] = payment_intents_for(stack, oid)
    [refund] = refunds_for(stack, intent["id"])
    assert (refund["amount"], refund["status"], refund["metadata"]["order_id"]) == (AMOUNT, "succeeded", oid)
    assert http.get(f"/v1/listings/{order['listing_id']}").json()["quantity"] == 1  # stock is back
    assert balance(http, seller)["held"] == 0
    final = refused(http, oid, "accept", seller)  # the workflow may still be ending: either way 409
    assert final.json()["error"]["details"]["order"]["status"] == "cancelled"
    assert_balanced(stack, oid)


def test_dispute_resolved_by_support_with_a_partial_refund(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = fulfilled_order(http)
    oid = order["id"]
    disputed = act(http, oid, "dispute", buyer, {"reason_code": "damaged", "message": "arrived scratched"})
    assert (disputed["status"], disputed["payment_state"]) == ("disputed", "frozen")
    assert refused(http, oid, "confirm-receipt", buyer).status_code == 409

    staff = support_user(http, stack)
    too_much = http.post(
        f"/v1/orders/{oid}/resolve",
        headers=staff.headers,
        json={"resolution": "partial_refund", "refund_amount": AMOUNT},
    )
    assert too_much.status_code == 422, too_much.text
    resolved = act_then_paid_out(
        http, oid, "resolve", staff, {"resolution": "partial_refund", "refund_amount": 10_000}
    )
    assert (resolved["status"], resolved["status_reason"]) == ("completed", "dispute_partially_refunded")
    assert resolved["refunded"] == {"amount": 10_000, "currency": "EUR"}

    # The remainder minus the fee (on the remainder) goes to the seller.
    remainder = AMOUNT - 10_000
    fee = (remainder * 1000 + 5_000) // 10_000 + 30
    assert balance(http, seller) == {
        "currency": "EUR",
        "held": 0,
        "available": 0,
        "paid_out": remainder - fee,
    }
    [intent] = payment_intents_for(stack, oid)
    assert [r["amount"] for r in refunds_for(stack, intent["id"])] == [10_000]
    assert [t["amount"] for t in transfers_for(stack, oid)] == [remainder - fee]
    assert_balanced(stack, oid)


def test_dispute_refunded_in_full_by_support(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = fulfilled_order(http)
    oid = order["id"]
    act(http, oid, "dispute", buyer, {"reason_code": "not_received", "message": "never arrived"})
    staff = support_user(http, stack)
    # An amount only goes with a partial refund: a release (or full refund) with one contradicts itself.
    for resolution in ("release", "refund"):
        mixed = http.post(
            f"/v1/orders/{oid}/resolve",
            json={"resolution": resolution, "refund_amount": 500},
            headers=staff.headers,
        )
        assert (mixed.status_code, mixed.json()["error"]["code"]) == (422, "validation_error"), mixed.text
    case = f"/v1/orders/{oid}/dispute"
    wait_until(
        lambda: http.get(case, headers=buyer.headers).status_code == 200, timeout=20
    )  # the case opened
    refunded = act(http, oid, "resolve", staff, {"resolution": "refund", "note": "carrier lost it"})
    assert (refunded["status"], refunded["payment_state"]) == ("refunded", "refunded")
    # The case reads resolved as soon as the order does, with what the refund gave back.
    resolved = http.get(case, headers=buyer.headers).json()
    assert (resolved["status"], resolved["resolution"], resolved["refund_amount"]) == (
        "resolved",
        "refund",
        order["total"]["amount"],
    ), resolved
    # Support's note is in the order's timeline, with who acted.
    last = http.get(f"/v1/orders/{oid}", headers=staff.headers).json()["timeline"][-1]
    assert (last["action"], last["actor_role"], last["data"]["note"]) == (
        "order.refunded",
        "support",
        "carrier lost it",
    ), last
    assert transfers_for(stack, oid) == []
    assert balance(http, seller) == {"currency": "EUR", "held": 0, "available": 0, "paid_out": 0}
    assert_balanced(stack, oid)
