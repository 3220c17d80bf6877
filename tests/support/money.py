"""Helpers for money tests on the real stack: the provider's records (sandbox), faults, the ledger (SQL)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from temporalio.client import Client, WorkflowHandle

from bazaar.orders.types import PlaceOrder
from bazaar.settings import get_settings
from bazaar.temporal import order_workflow_id
from stripe_sandbox.webhooks import sign
from tests.support.http import Actor, published_listing, register, seller_with_payout, wait_until
from workflows.order import OrderWorkflow

ROOT = Path(__file__).resolve().parent.parent.parent
AMOUNT = 45_000  # the default test listing's price (EUR cents)
FEE = 4_530  # 10 % + 0.30


def provider(stack: Any, method: str, path: str, **kwargs: Any) -> Any:
    """Call the provider (the sandbox's Stripe API) as the platform."""
    response = httpx.request(
        method,
        f"{stack.stripe_api_base}{path}",
        headers={"Authorization": f"Bearer {stack.stripe_secret_key}"},
        timeout=30,
        **kwargs,
    )
    response.raise_for_status()
    return response.json()


def provider_list(stack: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = provider(stack, "GET", path, params={"limit": 100, **params})["data"]
    return items


def payment_intents_for(stack: Any, order_id: str) -> list[dict[str, Any]]:
    return [
        pi for pi in provider_list(stack, "/v1/payment_intents") if pi["metadata"].get("order_id") == order_id
    ]


def transfers_for(stack: Any, order_id: str) -> list[dict[str, Any]]:
    return provider_list(stack, "/v1/transfers", transfer_group=f"order-{order_id}")


def refunds_for(stack: Any, payment_intent: str) -> list[dict[str, Any]]:
    return provider_list(stack, "/v1/refunds", payment_intent=payment_intent)


def add_fault(stack: Any, mode: str, path_prefix: str, method: str = "POST", count: int = 1) -> None:
    """The next `count` matching calls fail at the provider: `drop_response` commits, then loses the reply."""
    response = httpx.post(
        f"{stack.stripe_api_base}/_sandbox/faults",
        json={"mode": mode, "path_prefix": path_prefix, "method": method, "count": count},
        timeout=10,
    )
    response.raise_for_status()


async def start_stuck_charge(
    stack: Any, client: Client, buyer_id: str, listing_id: str, provider_timeout_seconds: int
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """Start an order on the stack's worker (without waiting for it, as the API does when it gives up waiting)
    whose charge keeps failing at the provider past `provider_timeout_seconds`: it comes to need attention. The
    caller clears the provider's faults (clear_faults) when it is done with it."""
    await asyncio.to_thread(add_fault, stack, "error", "/v1/payment_intents", "POST", 1000)
    order_id = str(uuid.uuid4())
    handle = await client.start_workflow(
        OrderWorkflow.run,
        PlaceOrder(
            order_id=order_id,
            buyer_id=buyer_id,
            listing_id=listing_id,
            quantity=1,
            payment_method="pm_card_visa",
            idempotency_key=str(uuid.uuid4()),
            provider_timeout_seconds=provider_timeout_seconds,
            attention_retry_seconds=3600,
        ),
        id=order_workflow_id(order_id),
        task_queue=get_settings().temporal_task_queue,
    )
    return order_id, handle


def pending_faults(stack: Any) -> list[dict[str, Any]]:
    faults: list[dict[str, Any]] = httpx.get(f"{stack.stripe_api_base}/_sandbox/faults", timeout=10).json()[
        "faults"
    ]
    return faults


def clear_faults(stack: Any) -> None:
    httpx.delete(f"{stack.stripe_api_base}/_sandbox/faults", timeout=10).raise_for_status()


def sql(stack: Any, query: str, *params: Any) -> list[tuple[Any, ...]]:
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


def ledger_sums(stack: Any, order_ids: Iterable[str]) -> dict[str, int]:
    """Per order: the sum of all its ledger entries (double entry: must be 0)."""
    ids = [uuid.UUID(o) for o in order_ids]
    rows = sql(
        stack,
        "SELECT order_id, sum(amount) FROM ledger_entries WHERE order_id = ANY(%s) GROUP BY order_id",
        ids,
    )
    return {str(order_id): int(total) for order_id, total in rows}


def ledger_accounts(stack: Any, order_id: str) -> dict[str, int]:
    rows = sql(
        stack,
        "SELECT account::text, sum(amount) FROM ledger_entries WHERE order_id = %s GROUP BY account",
        uuid.UUID(order_id),
    )
    return {account: int(total) for account, total in rows if total}


def ledger_movements(stack: Any, order_id: str) -> list[str]:
    """The order's movements in the order they were booked, by kind (`<order>:release:1` -> `release`)."""
    rows = sql(stack, "SELECT txn FROM ledger_entries WHERE order_id = %s ORDER BY id", uuid.UUID(order_id))
    return list(dict.fromkeys(txn.split(":")[1] for (txn,) in rows))


def assert_balanced(stack: Any, *order_ids: str) -> None:
    sums = ledger_sums(stack, order_ids)
    assert set(sums) == set(order_ids), f"orders without ledger entries: {set(order_ids) - set(sums)}"
    assert all(total == 0 for total in sums.values()), sums


def place(
    http: httpx.Client, buyer: Actor, listing_id: str, key: str | None = None, pm: str = "pm_card_visa"
) -> httpx.Response:
    return http.post(
        "/v1/orders",
        json={"listing_id": listing_id, "payment_method": pm},
        headers={**buyer.headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


def units_order(
    http: httpx.Client, seller: Actor, buyer: Actor, listing_id: str, units: int, *, to: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The buyer's paid order for `units` of the listing (one line), then moved by its seller through `to`
    (e.g. ("accept", "fulfil"))."""
    placed = http.post(
        "/v1/orders",
        json={"listing_id": listing_id, "payment_method": "pm_card_visa", "quantity": units},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    order = paid(http, buyer, placed)
    for action in to:
        act(http, order["id"], action, seller)
    return order


def paid(http: httpx.Client, buyer: Actor, placed: httpx.Response) -> dict[str, Any]:
    """A placement's paid order: its 201, or after a 202 (the charge outlasted ORDER_WAIT_SECONDS on a loaded
    machine, which the API answers so) the order once it reads as paid at its Location."""
    assert placed.status_code in (201, 202), placed.text
    if placed.status_code == 201:
        assert placed.json()["status"] == "paid", placed.text
        return dict(placed.json())

    def read() -> dict[str, Any] | None:
        seen = http.get(placed.headers["Location"], headers=buyer.headers).json()
        return dict(seen) if seen["status"] == "paid" else None

    found: dict[str, Any] = wait_until(read, timeout=60, interval=0.2)
    return found


def paid_order(http: httpx.Client, **listing: Any) -> tuple[Actor, Actor, dict[str, Any]]:
    """A seller with a payout account, a buyer, and the buyer's paid order for the seller's new listing."""
    seller = seller_with_payout(http)
    item = published_listing(http, seller, **listing)
    buyer = register(http, ["buyer"], "Buyer")
    return seller, buyer, paid(http, buyer, place(http, buyer, item["id"]))


def act(http: httpx.Client, order_id: str, action: str, actor: Actor, body: Any = None) -> dict[str, Any]:
    response = http.post(f"/v1/orders/{order_id}/{action}", headers=actor.headers, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


# The timeline's entry that tells how the transfer after a release went (it follows the action's answer).
PAYOUT_OUTCOMES = ("order.payout_sent", "order.payout_failed", "order.payout_on_hold")


def paid_out(
    http: httpx.Client, order_id: str, actor: Actor, completions: int = 1, timeout: float = 15
) -> dict[str, Any]:
    """The order once the transfer after its `completions`-th release has an outcome (sent, refused or held): the
    release answers its action, the seller's transfer follows."""

    def outcome() -> dict[str, Any] | None:
        seen = http.get(f"/v1/orders/{order_id}", headers=actor.headers).json()
        told = [e for e in seen["timeline"] if e["action"] in PAYOUT_OUTCOMES]
        return dict(seen) if len(told) >= completions else None

    return dict(wait_until(outcome, timeout))


def act_then_paid_out(
    http: httpx.Client, order_id: str, action: str, actor: Actor, body: Any = None, completions: int = 1
) -> dict[str, Any]:
    """`act`, for an action that releases the order's escrow; the order once the seller's transfer has an
    outcome."""
    act(http, order_id, action, actor, body)
    return paid_out(http, order_id, actor, completions)


def fulfilled_order(http: httpx.Client, **listing: Any) -> tuple[Actor, Actor, dict[str, Any]]:
    """Like `paid_order`, then accepted and shipped by the seller (the order is `fulfilled`)."""
    seller, buyer, order = paid_order(http, **listing)
    act(http, order["id"], "accept", seller)
    act(http, order["id"], "fulfil", seller)
    return seller, buyer, order


def refused(http: httpx.Client, order_id: str, action: str, actor: Actor, body: Any = None) -> httpx.Response:
    response = http.post(f"/v1/orders/{order_id}/{action}", headers=actor.headers, json=body)
    assert response.status_code in (403, 409, 422), response.text
    return response


def post_event(
    http: httpx.Client, stack: Any, event_type: str, obj: dict[str, Any], event_id: str
) -> httpx.Response:
    """Deliver a webhook event signed with the stack's webhook secret, as the provider does."""
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    )
    return post_signed(http, stack, payload)


def post_signed(http: httpx.Client, stack: Any, payload: str) -> httpx.Response:
    """POST this exact payload to the webhook route, signed with the stack's webhook secret."""
    return http.post(
        "/v1/webhooks/stripe",
        content=payload.encode(),
        headers={
            "Stripe-Signature": sign(payload, stack.stripe_webhook_secret),
            "Content-Type": "application/json",
        },
    )


def order_until(
    http: httpx.Client, order_id: str, actor: Actor, status: str, timeout: float = 15
) -> dict[str, Any]:
    """Poll GET /v1/orders/{id} until it has `status` (provider events arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = http.get(f"/v1/orders/{order_id}", headers=actor.headers).json()
        if seen["status"] == status or time.monotonic() > deadline:
            assert seen["status"] == status, seen
            return dict(seen)
        time.sleep(0.1)


def statement_lines(statement: dict[str, Any]) -> list[tuple[str, bool, int | None, int | None, int | None]]:
    """An order's money statement (`GET /v1/orders/{id}/money`) line by line: kind, whether it agrees, and the
    amounts at the provider, in our payment row and in the ledger."""
    return [
        (
            line["kind"],
            line["agrees"],
            line["provider"] and line["provider"]["amount"],
            line["payment"] and line["payment"]["amount"],
            line["ledger"] and line["ledger"]["amount"],
        )
        for line in statement["lines"]
    ]
