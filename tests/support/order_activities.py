"""The order model's Temporal activities (tests/support/order_model.py): fake activities with the real names
and payloads, each running against the `World` of its order, for one worker serving many examples.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.disputes import DisputeStatusChange, OpenDispute, ThreadEntry
from activities.notifications import DeadLetterRequest
from activities.orders import (
    AttentionReport,
    OrderSnapshot,
    OrderStateChange,
    OrderTransition,
    ReserveStockInput,
    ReserveStockResult,
)
from activities.payments import (
    ChargebackMovement,
    ChargeRequest,
    ChargeResult,
    RefundRequest,
    RefundResult,
    ReleaseRequest,
    ReleaseReversalRequest,
    TransferRequest,
    TransferResult,
    TransferReversalRequest,
    TransferReversalResult,
)
from activities.trust import OrderOutcome, ReviewWindowRequest
from bazaar.trust.notifications import NotificationEvent
from tests.support.order_model import World
from tests.support.order_world import SLOW_SECONDS, ProviderSlow, ProviderUnreachable


class Router:
    """The world of each order id (activities carry it), for one worker serving many examples."""

    def __init__(self) -> None:
        self.worlds: dict[str, World] = {}
        self.strays: list[str] = []  # activities for orders no live world knows (an earlier example's)

    def register(self, order_id: str, world: World) -> None:
        self.worlds[order_id] = world

    def forget(self, world: World) -> None:
        for order_id in [o for o, w in self.worlds.items() if w is world]:
            del self.worlds[order_id]

    def world(self, order_id: str, name: str) -> World:
        found = self.worlds.get(order_id)
        if found is None:
            self.strays.append(f"{name} {order_id}")
            raise ApplicationError(f"no world for order {order_id}", type="StrayActivity", non_retryable=True)
        return found

    def activities(self) -> list[Callable[..., Any]]:
        """Fake activities with the real names and payloads, each running its order's world."""
        router = self

        async def call(name: str, order_id: str, work: Callable[[World], Any]) -> Any:
            world = router.world(order_id, name)
            with world.running(name):
                try:
                    return work(world)
                except ProviderSlow as slow:
                    await asyncio.sleep(SLOW_SECONDS)
                    raise ProviderUnreachable(str(slow)) from None

        @activity.defn(name="reserve_stock")
        async def reserve_stock(req: ReserveStockInput) -> ReserveStockResult:
            result: ReserveStockResult = await call(
                "reserve_stock", req.order_id, lambda w: w.reserve_stock(req)
            )
            return result

        @activity.defn(name="release_stock")
        async def release_stock(order_id: str) -> bool:
            result: bool = await call("release_stock", order_id, lambda w: w.release_stock(order_id))
            return result

        @activity.defn(name="record_order_state")
        async def record_order_state(change: OrderStateChange) -> None:
            await call("record_order_state", change.order_id, lambda w: w.project(change))

        @activity.defn(name="save_transition")
        async def save_transition(change: OrderTransition) -> bool:
            result: bool = await call("save_transition", change.order_id, lambda w: w.save_transition(change))
            return result

        @activity.defn(name="report_attention")
        async def report_attention(report: AttentionReport) -> None:
            await call("report_attention", report.order_id, lambda w: w.attention.append(report))

        @activity.defn(name="load_order")
        async def load_order(order_id: str) -> OrderSnapshot:
            result: OrderSnapshot = await call("load_order", order_id, lambda w: w.load_order(order_id))
            return result

        @activity.defn(name="charge")
        async def charge(req: ChargeRequest) -> ChargeResult:
            result: ChargeResult = await call("charge", req.order_id, lambda w: w.charge(req))
            return result

        @activity.defn(name="refund")
        async def refund(req: RefundRequest) -> RefundResult:
            result: RefundResult = await call("refund", req.order_id, lambda w: w.refund(req))
            return result

        @activity.defn(name="release_escrow")
        async def release_escrow(req: ReleaseRequest) -> None:
            await call("release_escrow", req.order_id, lambda w: w.release_escrow(req))

        @activity.defn(name="transfer")
        async def transfer(req: TransferRequest) -> TransferResult:
            result: TransferResult = await call("transfer", req.order_id, lambda w: w.transfer(req))
            return result

        @activity.defn(name="reverse_transfer")
        async def reverse_transfer(req: TransferReversalRequest) -> TransferReversalResult:
            result: TransferReversalResult = await call(
                "reverse_transfer", req.order_id, lambda w: w.reverse_transfer(req)
            )
            return result

        @activity.defn(name="reverse_release")
        async def reverse_release(req: ReleaseReversalRequest) -> None:
            await call("reverse_release", req.order_id, lambda w: w.reverse_release(req))

        @activity.defn(name="record_chargeback")
        async def record_chargeback(req: ChargebackMovement) -> None:
            await call("record_chargeback", req.order_id, lambda w: w.record_chargeback(req))

        # The dispute case and its notifications: recorded, never failing.
        @activity.defn(name="open_dispute_case")
        async def open_dispute_case(req: OpenDispute) -> str:
            await call("open_dispute_case", req.order_id, lambda w: w.cases.append(req))
            return f"case-{req.order_id}"

        @activity.defn(name="append_dispute_thread")
        async def append_dispute_thread(entry: ThreadEntry) -> None:
            await call("append_dispute_thread", entry.order_id, lambda w: w.thread.append(entry))

        @activity.defn(name="set_dispute_status")
        async def set_dispute_status(change: DisputeStatusChange) -> None:
            await call("set_dispute_status", change.order_id, lambda w: w.case_statuses.append(change))

        @activity.defn(name="prepare_notifications")
        async def prepare_notifications(req: NotificationEvent) -> list[int]:
            return []  # the outbox is written by save_transition; nothing to deliver here

        @activity.defn(name="deliver_notification")
        async def deliver_notification(notification_id: int) -> str:
            return "sent"

        @activity.defn(name="dead_letter_notification")
        async def dead_letter_notification(req: DeadLetterRequest) -> None:
            return None

        @activity.defn(name="record_order_outcome")
        async def record_order_outcome(req: OrderOutcome) -> None:
            return None

        @activity.defn(name="open_review_window")
        async def open_review_window(req: ReviewWindowRequest) -> str:
            return "2030-01-01T00:00+00:00"

        @activity.defn(name="reveal_reviews")
        async def reveal_reviews(order_id: str) -> int:
            return 0

        @activity.defn(name="reveal_due_reviews")
        async def reveal_due_reviews() -> int:
            return 0

        return [
            reserve_stock,
            release_stock,
            record_order_state,
            save_transition,
            report_attention,
            load_order,
            charge,
            refund,
            release_escrow,
            transfer,
            reverse_transfer,
            reverse_release,
            record_chargeback,
            open_dispute_case,
            append_dispute_thread,
            set_dispute_status,
            prepare_notifications,
            deliver_notification,
            dead_letter_notification,
            record_order_outcome,
            open_review_window,
            reveal_reviews,
            reveal_due_reviews,
        ]
