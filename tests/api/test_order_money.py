"""`GET /v1/orders/{id}/money`: an order's money at the provider, in our payments and in the ledger, side by side,
for its buyer, its seller and support only, judged by reconciliation's own comparison (a refund made at the
provider without us shows as the same discrepancy in both)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.http import register, support_user
from tests.support.money import (
    AMOUNT,
    FEE,
    act_then_paid_out,
    fulfilled_order,
    payment_intents_for,
    provider,
    statement_lines,
)
from tests.support.reconciliation import next_second, reconcile

pytestmark = pytest.mark.integration


def test_an_orders_money_side_by_side_for_its_parties_only(http: httpx.Client, stack: Any) -> None:
    since = next_second()
    seller, buyer, order = fulfilled_order(http)
    oid = order["id"]
    act_then_paid_out(http, oid, "confirm-receipt", buyer)
    seen = http.get(f"/v1/orders/{oid}/money", headers=buyer.headers)
    assert seen.status_code == 200, seen.text
    statement = seen.json()
    assert (statement["order_id"], statement["currency"], statement["agrees"]) == (oid, "EUR", True)
    assert statement_lines(statement) == [
        ("charge", True, AMOUNT, AMOUNT, AMOUNT),
        ("transfer", True, AMOUNT - FEE, AMOUNT - FEE, AMOUNT - FEE),
        ("release", True, None, None, AMOUNT),
        ("fee", True, FEE, None, FEE),
    ]
    assert statement["discrepancies"] == []
    assert http.get(f"/v1/orders/{oid}/money", headers=seller.headers).json()["lines"] == statement["lines"]

    # A refund made at the provider without us (no metadata): the statement and reconciliation both find it.
    [intent] = payment_intents_for(stack, oid)
    refund = provider(stack, "POST", "/v1/refunds", data={"payment_intent": intent["id"], "amount": "2500"})
    until = next_second()
    summary = reconcile(stack, since, until)
    [item] = [d for d in summary.discrepancies if d.order_id == oid]
    staff = support_user(http, stack)
    drifted = http.get(f"/v1/orders/{oid}/money", headers=staff.headers).json()
    assert drifted["agrees"] is False
    [refund_line] = [line for line in drifted["lines"] if line["kind"] == "refund"]
    assert (refund_line["object_id"], refund_line["agrees"], refund_line["category"]) == (
        refund["id"],
        False,
        item.category,
    )
    assert (item.object_type, item.object_id) == ("refund", refund["id"])
    assert refund_line["payment"] is None and refund_line["ledger"] is None
    [fee] = [line for line in drifted["lines"] if line["kind"] == "fee"]
    assert (fee["agrees"], fee["provider"]["amount"], fee["ledger"]["amount"]) == (False, FEE - 2500, FEE)
    assert [(d["category"], d["object_id"]) for d in drifted["discrepancies"]] == [
        ("missing_ours", refund["id"])
    ]

    stranger = register(http, ["buyer"], "Stranger")
    refused = http.get(f"/v1/orders/{oid}/money", headers=stranger.headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
    assert http.get(f"/v1/orders/{uuid.uuid4()}/money", headers=buyer.headers).status_code == 404
    assert http.get(f"/v1/orders/{oid}/money").status_code == 401
