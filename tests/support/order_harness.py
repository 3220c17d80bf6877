"""What the order property test (tests/workflows/test_order_properties.py) runs on: an event loop of its own
in a thread with a client of the session's dev server and a worker on a fresh task queue (`Harness`), and what
its machine (tests/support/order_machine.py) keeps of each order (`Placed`) and of each Update in flight
(`Sent`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from bazaar.orders.types import ChargebackNotice, OrderView
from tests.support.order_activities import Router
from worker import WORKFLOWS

T = TypeVar("T")


class Harness:
    """An event loop of our own in a thread (Hypothesis's steps are sync; pytest-asyncio's loop is not
    running during a sync test), a client of the session's dev server and a worker on a fresh task queue."""

    def __init__(self, target: str, namespace: str) -> None:
        self.router = Router()
        self.queue = f"order-properties-{uuid.uuid4()}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="order-properties", daemon=True)
        self.thread.start()
        self.client: Client = self.run(Client.connect(target, namespace=namespace))
        self.worker: Worker = self.run(self._worker())
        self.serving = self.submit(self.worker.run())

    async def _worker(self) -> Worker:
        return Worker(
            self.client,
            task_queue=self.queue,
            workflows=WORKFLOWS,
            activities=self.router.activities(),
        )

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        try:
            self.run(self.worker.shutdown())
            self.serving.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@dataclass
class Placed:
    order_id: str
    buyer: str
    quantity: int
    terms: str
    handle: WorkflowHandle[Any, Any]
    last_notice: ChargebackNotice | None = None
    final: OrderView | None = None  # the result of its closed run (until a chargeback reopens it)


@dataclass
class Sent:
    """An Update (or placement) in flight: settled by the invariant, which holds it to UPDATE_BOUND."""

    label: str
    future: concurrent.futures.Future[tuple[str, str, float]]
    sent_at: float = field(default_factory=time.monotonic)
