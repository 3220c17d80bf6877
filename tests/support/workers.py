"""An in-process Temporal client and worker on the test stack, for tests that run the order's activities in this
process on a task queue of their own (so stopping the worker is "the worker is down" for that order only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.notifications import NotificationActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities, make_stripe_client
from bazaar.db import get_engine, get_sessionmaker
from bazaar.settings import get_settings
from worker import WORKFLOWS, activities_for, trust_activities


@asynccontextmanager
async def stack_client(stack: Any) -> AsyncIterator[Client]:
    """A client of the stack's Temporal; this process's settings and database engine become the stack's."""
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    try:
        yield await Client.connect(stack.temporal_address)
    finally:
        await get_engine().dispose()


@asynccontextmanager
async def order_worker(client: Client, queue: str) -> AsyncIterator[Worker]:
    """A worker like worker.py's (order workflows, their activities), on `queue`; shut down on exit."""
    running = Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=[
            *activities_for(
                OrderActivities(get_settings()),
                PaymentActivities(
                    make_stripe_client(get_settings()), get_settings().payment_local_requests_per_second
                ),
            ),
            *trust_activities(NotificationActivities(get_settings())),
        ],
    )
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        if not running.is_shutdown:
            await running.shutdown()
        await task
