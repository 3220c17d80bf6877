"""The order bench's bare-Temporal baseline: `BareOrder`, the order path to `paid` with nothing around it, and
`BareUpdate`, a workflow whose `ping` Update returns at once; and the worker that runs them
(`bench/orders.py --bare-worker <address> <task queue>`, a process of its own so its CPU is measured apart).

Workflow classes live here, in a module of their own that the bare worker passes through Temporal's sandbox
(it is the bench, not workflow code: re-importing it per workflow would charge the baseline for it). Needs
the repository root on sys.path (bench/orders.py puts it there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import signal
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.database import activity_transaction
from activities.orders import OrderActivities, OrderStateChange, ReserveStockInput
from activities.payments import ChargeRequest, PaymentActivities, make_stripe_client
from bazaar.models import AuditEvent, OrderStatus, PaymentState
from bazaar.orders.types import OrderEvent, Party
from bazaar.settings import Settings, get_settings

# The order workflow's activity options (workflows/order.py), copied so the baseline does not move when the
# order workflow is rewritten: database activities retried until they succeed, provider calls bounded.
DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
MONEY_TIMEOUT = timedelta(seconds=30)
MONEY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["PaymentRejected"],
)


@dataclass
class BareInput:
    order_id: str
    buyer_id: str
    listing_id: str
    quantity: int
    payment_method: str
    idempotency_key: str


def reserve_stock_input(**values: Any) -> ReserveStockInput:
    """The reservation's input from the fields this version of it has (the order code is being
    reworked: e.g. `payment_method` is new); anything it lacks is left out."""
    names = {f.name for f in dataclasses.fields(ReserveStockInput)}
    return ReserveStockInput(**{k: v for k, v in values.items() if k in names})


def order_activities(settings: Settings) -> OrderActivities:
    """`OrderActivities()`, or `OrderActivities(settings)` where its constructor takes the settings."""
    ctor: Any = OrderActivities
    made: OrderActivities = ctor(settings) if inspect.signature(OrderActivities).parameters else ctor()
    return made


@workflow.defn
class BareOrder:
    """The order path to `paid` with nothing around it: reserve, charge, record the new state."""

    @workflow.run
    async def run(self, req: BareInput) -> str:
        reservation = await workflow.execute_activity_method(
            OrderActivities.reserve_stock,
            reserve_stock_input(
                order_id=req.order_id,
                buyer_id=req.buyer_id,
                listing_id=req.listing_id,
                quantity=req.quantity,
                idempotency_key=req.idempotency_key,
                workflow_id=workflow.info().workflow_id,
                payment_method=req.payment_method,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if not reservation.ok:
            return f"rejected:{reservation.reason}"
        charge = await workflow.execute_activity_method(
            PaymentActivities.charge,
            ChargeRequest(
                order_id=req.order_id,
                amount=reservation.amount,
                currency=reservation.currency,
                payment_method=req.payment_method,
                idempotency_key=f"{req.order_id}:charge:1",
                transfer_group=f"order-{req.order_id}",  # as the order workflow sets it
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        paid = charge.succeeded
        status = OrderStatus.PAID if paid else OrderStatus.CANCELLED
        await workflow.execute_activity_method(
            OrderActivities.record_order_state,
            OrderStateChange(
                order_id=req.order_id,
                seq=2,
                status=status,
                reason=None if paid else "payment_failed",
                payment_state=PaymentState.HELD_IN_ESCROW if paid else PaymentState.FAILED,
                actor_id=None,
                actor_role=Party.SYSTEM,
                action=OrderEvent.PAID if paid else OrderEvent.PAYMENT_FAILED,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return status.value

    @workflow.signal
    def payment_reported(self, report: Any) -> None:
        """The sandbox's webhook reaches the order's workflow id (here this one) as on the real path."""


@activity.defn
async def bare_local_step() -> int:
    """Nothing: the floor of handing a local activity over and back inside an Update."""
    return 0


@activity.defn
async def bare_saved_step(subject: str) -> int:
    """One row written in one transaction, the order's way (`activity_transaction`): the floor of an Update that
    saves what it did before it answers."""
    async with activity_transaction() as session:
        session.add(
            AuditEvent(actor_role=Party.SYSTEM, subject_type="bench", subject_id=subject, action="ping")
        )
    return 0


LOCAL_STEP_TIMEOUT = timedelta(seconds=10)


@workflow.defn
class BareUpdate:
    """A workflow that only answers Updates: `ping` returns at once (the floor of any actor action's round trip);
    `ping_local` runs one no-op local activity first, `ping_saved` one that writes a row (the floors of a
    transition that is saved before it answers, as the order's are)."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    def ping(self) -> int:
        return 0

    @workflow.update
    async def ping_local(self) -> int:
        return await workflow.execute_local_activity(
            bare_local_step, start_to_close_timeout=LOCAL_STEP_TIMEOUT
        )

    @workflow.update
    async def ping_saved(self) -> int:
        return await workflow.execute_local_activity(
            bare_saved_step, workflow.info().workflow_id, start_to_close_timeout=LOCAL_STEP_TIMEOUT
        )

    @workflow.signal
    def finish(self) -> None:
        self._done = True


async def bare_worker_main(address: str, task_queue: str) -> None:
    """`--bare-worker`: a worker for the baseline workflows, in a process of its own."""
    from bazaar.db import get_engine

    settings = get_settings()
    client = await Client.connect(address, namespace=settings.temporal_namespace)
    orders = order_activities(settings)
    payments = PaymentActivities(make_stripe_client(settings), settings.payment_local_requests_per_second)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareOrder, BareUpdate],
        activities=[
            orders.reserve_stock,
            payments.charge,
            orders.record_order_state,
            bare_local_step,
            bare_saved_step,
        ],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(__name__)
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print(f"bare worker polling {task_queue}", flush=True)
        await stop.wait()
    await get_engine().dispose()
