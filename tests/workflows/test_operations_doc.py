"""docs/operations.md's worked examples, run as written against the test stack's Temporal with the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.http import support_user, wait_until
from tests.support.money import (
    AMOUNT,
    FEE,
    act,
    act_then_paid_out,
    assert_balanced,
    fulfilled_order,
    paid_order,
    sql,
    transfers_for,
)

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "operations.md"


def example(name: str) -> str:
    """The bash block right after `<!-- worked-example: name -->`."""
    match = re.search(rf"<!-- worked-example: {name} -->\n```bash\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/operations.md has no worked example {name!r}"
    return match.group(1)


def run_example(stack: Any, name: str, **variables: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the venv's temporal
        "TEMPORAL_ADDRESS": stack.temporal_address,
        "TEMPORAL_NAMESPACE": stack.settings.temporal_namespace,
        **variables,
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example(name)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_support_accepts_for_the_seller_with_the_cli(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = paid_order(http)
    out = run_example(stack, "accept", SELLER_ID=seller.user_id, ORDER_ID=order["id"])
    assert f"order-{order['id']}" in out  # found by the list query
    assert '"status": "paid"' in out  # the query
    assert '"status": "confirmed"' in out  # the update's answer
    seen = http.get(f"/v1/orders/{order['id']}", headers=buyer.headers).json()
    assert seen["status"] == "confirmed"
    assert [(e["action"], e["actor_id"]) for e in seen["timeline"]][-1] == ("order.accepted", seller.user_id)
    # Again: refused by the workflow's validator, nothing changes.
    with pytest.raises(AssertionError, match="cannot accept an order that is confirmed"):
        run_example(stack, "accept", SELLER_ID=seller.user_id, ORDER_ID=order["id"])


def test_support_repairs_a_failed_payout_with_the_cli(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = fulfilled_order(http)
    oid = order["id"]
    # The seller's connected account becomes unusable: the provider refuses the transfer for good.
    [(account,)] = sql(
        stack, "SELECT provider_account_id FROM payout_accounts WHERE user_id = %s", uuid.UUID(seller.user_id)
    )
    sql(
        stack,
        "UPDATE payout_accounts SET provider_account_id = %s WHERE user_id = %s",
        f"acct_closed{uuid.uuid4().hex[:8]}",
        uuid.UUID(seller.user_id),
    )
    done = act_then_paid_out(http, oid, "confirm-receipt", buyer)
    assert (done["status"], done["payment_state"]) == ("completed", "transfer_failed")
    balance = http.get("/v1/payout-account/balance", headers=seller.headers).json()["balances"][0]
    assert (balance["available"], balance["paid_out"]) == (AMOUNT - FEE, 0)
    assert http.post(f"/v1/orders/{oid}/retry-transfer", headers=seller.headers).status_code == 403

    sql(
        stack,
        "UPDATE payout_accounts SET provider_account_id = %s WHERE user_id = %s",
        account,
        uuid.UUID(seller.user_id),
    )  # fixed
    operator = support_user(http, stack)
    out = run_example(stack, "retry_transfer", ORDER_ID=oid, OPERATOR_ID=operator.user_id)
    assert f"order-{oid}" in out
    assert '"payment_state": "released"' in out
    balance = http.get("/v1/payout-account/balance", headers=seller.headers).json()["balances"][0]
    assert (balance["available"], balance["paid_out"]) == (0, AMOUNT - FEE)
    assert [t["amount"] for t in transfers_for(stack, oid)] == [AMOUNT - FEE]
    seen = http.get(f"/v1/orders/{oid}", headers=seller.headers).json()
    assert [(e["action"], e["actor_id"]) for e in seen["timeline"]][-1] == (
        "order.payout_retried",
        operator.user_id,
    )
    assert_balanced(stack, oid)


def test_support_works_a_dispute_with_the_cli(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = fulfilled_order(http)
    oid = order["id"]
    act(http, oid, "dispute", buyer, {"reason_code": "damaged", "message": "the frame is bent"})
    operator = support_user(http, stack)
    wait_until(lambda: http.get(f"/v1/orders/{oid}/dispute", headers=buyer.headers).status_code == 200)

    out = run_example(stack, "dispute", ORDER_ID=oid, OPERATOR_ID=operator.user_id)
    assert f"dispute-{oid}" in out  # the list
    assert '"status": "open"' in out  # the query
    assert '"status": "awaiting_info"' in out and '"seller"' in out  # request_info's answer
    assert '"status": "completed"' in out and '"refunded_amount": 10000' in out  # the order's answer

    def case() -> dict[str, Any]:
        return dict(http.get(f"/v1/orders/{oid}/dispute", headers=seller.headers).json())

    closed = wait_until(lambda: case() if case()["status"] == "resolved" else None)
    assert closed["resolution"] == "partial_refund"
    kinds = [m["kind"] for m in closed["thread"]]
    assert kinds[0] == "opened" and "info_request" in kinds and "message" in kinds
    assert any(m["author_role"] == "support" and "partial refund" in m["body"] for m in closed["thread"])
    refunds = sql(
        stack, "SELECT amount FROM payments WHERE order_id = %s AND kind = 'refund'", uuid.UUID(oid)
    )
    assert refunds == [(10_000,)]
    assert_balanced(stack, oid)
