"""Money moves exactly once: provider replies lost after the provider committed, and a worker that dies in
the middle of a provider call, never give a second charge, refund or transfer (idempotency keys built from
order + operation), and every order's ledger still sums to zero.

Faults come from the sandbox (`/_sandbox/faults`): `drop_response` commits the call and then drops the
connection; `hang` holds the call until the client goes away. The worker-death tests run their own
in-process workers on their own task queue (the stack's worker never sees those orders) and drive the
order through the real API, which reaches the workflow by id whatever queue it runs on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from bazaar.orders.types import OrderView, PlaceOrder
from bazaar.temporal import order_workflow_id
from tests.support.http import Actor, published_listing, register, seller_with_payout, wait_until
from tests.support.money import (
    AMOUNT,
    FEE,
    act,
    act_then_paid_out,
    add_fault,
    assert_balanced,
    clear_faults,
    paid_order,
    paid_out,
    payment_intents_for,
    pending_faults,
    refunds_for,
    sql,
    transfers_for,
)
from tests.support.workers import order_worker, stack_client
from workflows.order import OrderWorkflow

pytestmark = [
    pytest.mark.integration,
    # The stripe SDK's httpx client posts form bodies with `data=` (its business, not a test failure).
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def no_faults_left(stack: Any) -> Iterator[None]:
    yield
    clear_faults(stack)  # a failed test must not break the next one's provider calls


def charge_rows(stack: Any, order_id: str) -> list[tuple[Any, ...]]:
    return sql(
        stack,
        "SELECT kind::text, outcome::text, provider_id FROM payments WHERE order_id = %s ORDER BY created_at",
        uuid.UUID(order_id),
    )


def test_charge_reply_lost_after_commit_gives_one_charge(http: httpx.Client, stack: Any) -> None:
    seller = seller_with_payout(http)
    item = published_listing(http, seller)
    buyer = register(http, ["buyer"], "Buyer")
    add_fault(stack, "drop_response", "/v1/payment_intents")
    placed = http.post(
        "/v1/orders",
        json={"listing_id": item["id"], "payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "paid"  # the retry got the provider's stored answer
    assert pending_faults(stack) == []  # the fault did fire
    oid = placed.json()["id"]
    [intent] = payment_intents_for(stack, oid)
    assert charge_rows(stack, oid) == [("charge", "succeeded", intent["id"])]
    assert_balanced(stack, oid)


def test_refund_reply_lost_after_commit_gives_one_refund(http: httpx.Client, stack: Any) -> None:
    _, buyer, order = paid_order(http)
    add_fault(stack, "drop_response", "/v1/refunds")
    assert act(http, order["id"], "cancel", buyer)["status"] == "cancelled"
    assert pending_faults(stack) == []
    [intent] = payment_intents_for(stack, order["id"])
    assert [r["amount"] for r in refunds_for(stack, intent["id"])] == [AMOUNT]
    assert_balanced(stack, order["id"])


def test_transfer_reply_lost_after_commit_gives_one_transfer(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = paid_order(http)
    act(http, order["id"], "accept", seller)
    act(http, order["id"], "fulfil", seller)
    add_fault(stack, "drop_response", "/v1/transfers")
    assert act_then_paid_out(http, order["id"], "confirm-receipt", buyer)["payment_state"] == "released"
    assert pending_faults(stack) == []
    assert [t["amount"] for t in transfers_for(stack, order["id"])] == [AMOUNT - FEE]
    assert_balanced(stack, order["id"])


# ---- a worker dies in the middle of a provider call ------------------------------------------------------


@pytest.fixture(scope="module")
def parties(http: httpx.Client) -> tuple[Actor, Actor, str]:
    """A seller with a listing of 5 and a buyer (made over HTTP, outside the async tests)."""
    seller = seller_with_payout(http)
    item = published_listing(http, seller, quantity=5)
    return seller, register(http, ["buyer"], "Buyer"), str(item["id"])


@pytest.fixture
async def temporal(stack: Any) -> AsyncIterator[Client]:
    # This process runs the order's activities: its database engine and settings must be the stack's.
    async with stack_client(stack) as client:
        yield client


async def fault_taken(stack: Any) -> None:
    """Wait until the provider call carrying the fault has arrived (and now hangs there)."""
    deadline = time.monotonic() + 15
    while await asyncio.to_thread(pending_faults, stack):
        assert time.monotonic() < deadline, "the provider call never came"
        await asyncio.sleep(0.05)


async def state(client: Client, order_id: str, status: str) -> OrderView:
    handle = client.get_workflow_handle(order_workflow_id(order_id))
    deadline = time.monotonic() + 20
    while True:
        view = await handle.query(OrderWorkflow.state)
        if (view is not None and view.status == status) or time.monotonic() > deadline:
            assert view is not None and view.status == status, view
            return view
        await asyncio.sleep(0.1)


async def start_order(client: Client, queue: str, buyer: Actor, listing_id: str) -> str:
    order_id = str(uuid.uuid4())
    await client.start_workflow(
        OrderWorkflow.run,
        PlaceOrder(
            order_id=order_id,
            buyer_id=buyer.user_id,
            listing_id=listing_id,
            quantity=1,
            payment_method="pm_card_visa",
            idempotency_key=str(uuid.uuid4()),
        ),
        id=order_workflow_id(order_id),
        task_queue=queue,
    )
    return order_id


async def test_worker_dies_during_the_charge_gives_one_charge(
    stack: Any, temporal: Client, parties: tuple[Actor, Actor, str]
) -> None:
    _, buyer, listing_id = parties
    queue = f"money-test-{uuid.uuid4()}"
    await asyncio.to_thread(add_fault, stack, "hang", "/v1/payment_intents")
    async with order_worker(temporal, queue) as first:
        order_id = await start_order(temporal, queue, buyer, listing_id)
        await fault_taken(stack)
        await first.shutdown()  # mid-call: the activity is abandoned with the provider request in flight
    async with order_worker(temporal, queue):
        view = await state(temporal, order_id, "paid")
    intents = await asyncio.to_thread(payment_intents_for, stack, order_id)
    assert [pi["id"] for pi in intents] == [view.payment_intent_id]
    assert await asyncio.to_thread(charge_rows, stack, order_id) == [
        ("charge", "succeeded", view.payment_intent_id)
    ]
    await asyncio.to_thread(assert_balanced, stack, order_id)


@pytest.mark.parametrize(
    ("steps", "action", "provider_path", "expected"),
    [
        (["accept", "fulfil"], "confirm-receipt", "/v1/transfers", ("completed", "released")),
        ([], "cancel", "/v1/refunds", ("cancelled", "refunded")),
    ],
    ids=["transfer", "refund"],
)
async def test_worker_dies_during_a_payout_or_refund_moves_the_money_once(
    stack: Any,
    temporal: Client,
    parties: tuple[Actor, Actor, str],
    http: httpx.Client,
    steps: list[str],
    action: str,
    provider_path: str,
    expected: tuple[str, str],
) -> None:
    seller, buyer, listing_id = parties
    queue = f"money-test-{uuid.uuid4()}"
    async with order_worker(temporal, queue):
        order_id = await start_order(temporal, queue, buyer, listing_id)
        view = await state(temporal, order_id, "paid")
        for step in steps:
            await asyncio.to_thread(act, http, order_id, step, seller)
    await asyncio.to_thread(add_fault, stack, "hang", provider_path)
    async with order_worker(temporal, queue) as second:
        # The buyer's request waits on the workflow (at most ORDER_WAIT_SECONDS) while its worker dies and
        # another takes over: it answers 200 if the takeover was quick enough, else 202 with the order as it
        # stood; either way the order finishes the action once, which the buyer sees by polling.
        request = asyncio.create_task(
            asyncio.to_thread(http.post, f"/v1/orders/{order_id}/{action}", headers=buyer.headers)
        )
        await fault_taken(stack)
        await second.shutdown()
    async with order_worker(temporal, queue):
        answered = await request
        assert answered.status_code in (200, 202), answered.text
        done = await asyncio.to_thread(
            wait_until,
            lambda: (
                (r := http.get(f"/v1/orders/{order_id}", headers=buyer.headers).json())["status"]
                == expected[0]
                and r
            ),
            60,
            0.5,
        )
        if provider_path == "/v1/transfers":
            # The transfer follows confirm-receipt's answer: this worker retries it once the dead one's attempt
            # has timed out.
            await asyncio.to_thread(paid_out, http, order_id, buyer, 1, 90)
    assert (done["status"], done["payment_state"]) == expected
    if provider_path == "/v1/transfers":
        moved = await asyncio.to_thread(transfers_for, stack, order_id)
        assert [t["amount"] for t in moved] == [AMOUNT - FEE]
    else:
        moved = await asyncio.to_thread(refunds_for, stack, str(view.payment_intent_id))
        assert [r["amount"] for r in moved] == [AMOUNT]
    await asyncio.to_thread(assert_balanced, stack, order_id)
