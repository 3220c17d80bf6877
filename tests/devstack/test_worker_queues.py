"""Each context's worker started alone, as a process of its own (`python worker.py --queues <context>`), on the
test stack: together they serve the system (a payout account, an order charged, accepted, shipped, disputed and
resolved by support, its money statement), each workflow and activity on its owner's queue; and a payments-only
worker polls the payments queue and no other, at the provider's rate limit.

Each test runs its workers and API on a queue family of its own (`TEMPORAL_TASK_QUEUE=<stem>-orders`), so the
stack's own worker (serving `bazaar-*`) takes none of their tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

import worker
from bazaar.settings import get_settings
from bazaar.temporal import (
    CONTEXTS,
    PAYMENTS,
    RECONCILIATION,
    dispute_workflow_id,
    money_workflow_id,
    order_workflow_id,
    payout_account_workflow_id,
    task_queue,
)
from devstack import services
from devstack.process import Supervisor
from tests.support.accounts import second_api
from tests.support.http import support_user
from tests.support.money import (
    AMOUNT,
    FEE,
    act,
    act_then_paid_out,
    assert_balanced,
    paid_order,
    transfers_for,
)

pytestmark = pytest.mark.integration

WORKFLOW, ACTIVITY = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY


@contextlib.contextmanager
def workers(stack: Any, log_dir: Path, stem: str, contexts: list[str], **env: str) -> Iterator[None]:
    """One `worker.py --queues <context>` process per context, on the family `<stem>-*` (no metrics endpoint:
    they would share a port)."""
    sup = Supervisor(log_dir=log_dir)
    settings = {
        **stack.process_env("worker"),
        "TEMPORAL_TASK_QUEUE": f"{stem}-orders",
        "WORKER_METRICS_BIND_ADDRESS": "",
        **env,
    }
    started = []
    try:
        for context in contexts:
            started.append(services.start_worker(sup, settings, [context]))
        yield
    except BaseException:
        for service in started:
            print(f"--- {service.name}\n{service.proc.tail()}")
        raise
    finally:
        sup.stop_all()


async def pollers(client: Client, queue: str, kind: TaskQueueType.ValueType) -> list[PollerInfo]:
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
        )
    )
    return list(described.pollers)


async def wait_for_pollers(client: Client, wanted: list[tuple[str, TaskQueueType.ValueType]]) -> None:
    """Until every (queue, kind) has a poller: the workers have started (imports take a few seconds each)."""
    deadline = time.monotonic() + 120
    while True:
        missing = [(q, k) for q, k in wanted if not await pollers(client, q, k)]
        if not missing:
            return
        assert time.monotonic() < deadline, f"no pollers on {missing}"
        await asyncio.sleep(0.5)


def queues(stem: str) -> dict[str, str]:
    return {context: task_queue(context, f"{stem}-orders") for context in CONTEXTS}


async def test_each_queues_worker_alone_and_all_together_serve_an_order(stack: Any, tmp_path: Path) -> None:
    stem = f"split{uuid.uuid4().hex[:8]}"
    family = queues(stem)
    client = await Client.connect(stack.temporal_address)
    try:
        with workers(stack, tmp_path / "logs", stem, list(CONTEXTS)):
            await wait_for_pollers(
                client,
                [(q, WORKFLOW) for q in family.values()]
                + [
                    (q, ACTIVITY) for c, q in family.items() if c != RECONCILIATION
                ],  # no activities of its own
            )
            with second_api(stack, tmp_path / "api", {"TEMPORAL_TASK_QUEUE": f"{stem}-orders"}) as url:
                oid, seller_id = await asyncio.to_thread(order_through_a_dispute, stack, url)
            ran_on = {
                workflow_id: (await client.get_workflow_handle(workflow_id).describe()).task_queue
                for workflow_id in (
                    order_workflow_id(oid),
                    dispute_workflow_id(oid),
                    payout_account_workflow_id(seller_id),
                    money_workflow_id(oid),
                )
            }
            assert ran_on == {
                order_workflow_id(oid): family["orders"],
                dispute_workflow_id(oid): family["trust"],
                payout_account_workflow_id(seller_id): family["payments"],
                money_workflow_id(oid): family["reconciliation"],
            }
            # The charge (a normal activity: rate-limited) and the payout after the resolution's answer went to the
            # payments queue; the refund on the resolution's Update ran locally in the orders worker (a marker).
            history = await client.get_workflow_handle(order_workflow_id(oid)).fetch_history()
            scheduled = {
                e.activity_task_scheduled_event_attributes.activity_type.name: (
                    e.activity_task_scheduled_event_attributes.task_queue.name
                )
                for e in history.events
                if e.HasField("activity_task_scheduled_event_attributes")
            }
            assert scheduled == {"charge": family["payments"], "transfer": family["payments"]}
    finally:
        # The trust and reconciliation workers above took over the stack's schedules (one per namespace): give
        # them back to the stack's queues.
        await worker.ensure_schedules(client, get_settings())


def order_through_a_dispute(stack: Any, url: str) -> tuple[str, str]:
    """Over the API of the split family: a seller's payout account, a paid order, accepted, shipped, disputed and
    resolved by support with a partial refund (completed, the rest paid out), and its money statement."""
    with httpx.Client(base_url=url, timeout=60) as http:
        seller, buyer, order = paid_order(http)
        oid = order["id"]
        act(http, oid, "accept", seller)
        act(http, oid, "fulfil", seller)
        disputed = act(
            http, oid, "dispute", buyer, {"reason_code": "damaged", "message": "arrived scratched"}
        )
        assert disputed["status"] == "disputed"
        staff = support_user(http, stack)
        done = act_then_paid_out(
            http, oid, "resolve", staff, {"resolution": "partial_refund", "refund_amount": 10_000}
        )
        assert (done["status"], done["payment_state"]) == ("completed", "released"), done
        money = http.get(f"/v1/orders/{oid}/money", headers=buyer.headers)
        assert money.status_code == 200, money.text
    [transfer] = transfers_for(stack, oid)
    assert transfer["amount"] > 0 and transfer["amount"] < AMOUNT - FEE
    assert_balanced(stack, oid)
    return oid, seller.user_id


async def test_a_payments_only_worker_polls_only_the_payments_queue_at_the_rate_limit(
    stack: Any, tmp_path: Path
) -> None:
    stem = f"pay{uuid.uuid4().hex[:8]}"
    family = queues(stem)
    client = await Client.connect(stack.temporal_address)
    with workers(
        stack,
        tmp_path / "logs",
        stem,
        [PAYMENTS],
        PAYMENT_REQUESTS_PER_SECOND="7",
        PAYMENT_LOCAL_REQUESTS_PER_SECOND="1",
    ):
        await wait_for_pollers(client, [(family[PAYMENTS], WORKFLOW), (family[PAYMENTS], ACTIVITY)])
        await asyncio.sleep(2)  # time for a stray poller on another queue to show
        for context, queue in family.items():
            for kind in (WORKFLOW, ACTIVITY):
                found = await pollers(client, queue, kind)
                assert bool(found) == (context == PAYMENTS), (queue, kind, found)
        # The rate limit each activity poller asks the server for: the platform's limit less what the local-first
        # calls may take in a second (7 - 2 x 1), not the SDK's unlimited default.
        [poller] = await pollers(client, family[PAYMENTS], ACTIVITY)
        assert poller.rate_per_second == 5
