"""The worker process: runs every workflow and activity of the task queue."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from temporalio.worker import Worker

from activities.orders import OrderActivities
from activities.payments import PaymentActivities, default_payment_activities
from bazaar.temporal import connect
from workflows.order import OrderWorkflow
from workflows.payout_account import PayoutAccountWorkflow

WORKFLOWS = [OrderWorkflow, PayoutAccountWorkflow]


def activities_for(orders: OrderActivities, payments: PaymentActivities) -> list[Callable[..., Any]]:
    return [
        orders.reserve_stock,
        orders.release_stock,
        orders.record_order_state,
        payments.charge,
        payments.refund,
        payments.release_escrow,
        payments.transfer,
        payments.create_payout_account,
    ]


async def main() -> None:
    from bazaar.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    client = await connect(settings)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities_for(OrderActivities(), default_payment_activities()),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        logging.info("worker polling task queue %s", settings.temporal_task_queue)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
