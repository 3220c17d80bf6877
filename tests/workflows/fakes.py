"""Fake activities for workflow tests: same names and payloads as the real ones, no I/O."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.disputes import DisputeStatusChange, OpenDispute, ThreadEntry
from activities.notifications import DeadLetterRequest, PrepareNotifications
from activities.orders import OrderSnapshot, OrderStateChange, ReserveStockInput, ReserveStockResult
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


@dataclass
class FakeWorld:
    """What the fake activities saw and will answer."""

    stock: int = 1
    decline: bool = False
    reject_transfers: int = 0  # how many transfers the "provider" refuses (PaymentRejected)
    reject_reversals: bool = False
    charges: list[ChargeRequest] = field(default_factory=list)
    states: list[OrderStateChange] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    refunds: list[RefundRequest] = field(default_factory=list)
    escrow_releases: list[ReleaseRequest] = field(default_factory=list)
    transfers: list[TransferRequest] = field(default_factory=list)
    reversals: list[TransferReversalRequest] = field(default_factory=list)
    release_reversals: list[ReleaseReversalRequest] = field(default_factory=list)
    chargebacks: list[ChargebackMovement] = field(default_factory=list)
    payouts: list[tuple[str, int]] = field(default_factory=list)  # transfers the "provider" accepted
    reversed_payouts: int = 0
    loads: int = 0
    # Trust and notifications: what the order's children and activities did.
    mail_down: bool = False  # every delivery fails (after a short wait, like a refused SMTP connection)
    events: list[PrepareNotifications] = field(default_factory=list)
    deliveries: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (event type, recipient)
    delivered: list[int] = field(default_factory=list)
    dead: dict[int, float] = field(default_factory=dict)  # id -> when it was dead-lettered (monotonic)
    outcomes: list[OrderOutcome] = field(default_factory=list)
    review_windows: list[ReviewWindowRequest] = field(default_factory=list)
    reviews_written: int = 2  # what reveal_reviews finds to reveal
    revealed: list[str] = field(default_factory=list)  # orders whose reviews were revealed
    dispute_cases: list[OpenDispute] = field(default_factory=list)
    dispute_thread: list[ThreadEntry] = field(default_factory=list)
    dispute_statuses: list[DisputeStatusChange] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def notified(self, event_type: str) -> list[PrepareNotifications]:
        return [e for e in self.events if e.event_type == event_type]

    async def eventually(self, check: Callable[[], bool], seconds: float = 15) -> None:
        """Children run on their own: poll until `check` holds."""
        deadline = time.monotonic() + seconds
        while not check():
            assert time.monotonic() < deadline, "timed out waiting for the order's children"
            await asyncio.sleep(0.05)

    def snapshot(self, order_id: str) -> OrderSnapshot:
        """What the database would hold after what these activities saw (for a reopened run)."""
        self.loads += 1
        last = self.states[-1]
        release = self.escrow_releases[-1] if self.escrow_releases else None
        payout = self.payouts[-1] if len(self.payouts) > self.reversed_payouts else None
        chargeback = next((c for c in reversed(self.chargebacks) if not c.reinstated), None)
        won = any(c.reinstated for c in self.chargebacks)
        return OrderSnapshot(
            order_id=order_id,
            buyer_id="buyer-1",
            seller_id="seller-1",
            listing_id="listing-1",
            listing_title="Road bike",
            quantity=1,
            amount=45_000,
            currency="EUR",
            status=last.status,
            reason=last.reason,
            payment_state=last.payment_state,
            tracking=last.tracking,
            seq=last.seq,
            payment_intent_id="pi_fake",
            refunded_amount=sum(r.amount for r in self.refunds),
            refunds=len(self.refunds),
            releases=len(self.escrow_releases),
            transfers=len(self.transfers),
            reversals=len(self.reversals),
            released=len(self.release_reversals) < len(self.escrow_releases),
            released_gross=release.gross if release else 0,
            released_fee=release.fee if release else 0,
            payout_transfer_id=payout[0] if payout else None,
            payout_amount=payout[1] if payout else 0,
            chargeback_id=chargeback.dispute_id if chargeback else None,
            chargeback_status=None if chargeback is None else "won" if won else "lost",
            chargeback_amount=chargeback.amount if chargeback else 0,
        )

    def activities(self) -> list[Callable[..., Any]]:
        world = self

        @activity.defn(name="reserve_stock")
        async def reserve_stock(req: ReserveStockInput) -> ReserveStockResult:
            if world.stock < req.quantity:
                return ReserveStockResult(ok=False, reason="sold_out")
            world.stock -= req.quantity
            return ReserveStockResult(
                ok=True,
                seller_id="seller-1",
                listing_title="Road bike",
                unit_amount=45_000,
                amount=45_000 * req.quantity,
                currency="EUR",
            )

        @activity.defn(name="release_stock")
        async def release_stock(order_id: str) -> bool:
            world.released.append(order_id)
            return True

        @activity.defn(name="record_order_state")
        async def record_order_state(change: OrderStateChange) -> None:
            world.states.append(change)

        @activity.defn(name="charge")
        async def charge(req: ChargeRequest) -> ChargeResult:
            world.charges.append(req)
            if world.decline:
                return ChargeResult(succeeded=False, failure_code="card_declined")
            return ChargeResult(succeeded=True, payment_intent_id="pi_fake")

        @activity.defn(name="refund")
        async def refund(req: RefundRequest) -> RefundResult:
            world.refunds.append(req)
            return RefundResult(refund_id=f"re_{len(world.refunds)}", amount=req.amount)

        @activity.defn(name="release_escrow")
        async def release_escrow(req: ReleaseRequest) -> None:
            world.escrow_releases.append(req)

        @activity.defn(name="transfer")
        async def transfer(req: TransferRequest) -> TransferResult:
            world.transfers.append(req)
            if world.reject_transfers > 0:
                world.reject_transfers -= 1
                raise ApplicationError("No such destination", type="PaymentRejected", non_retryable=True)
            world.payouts.append((f"tr_fake_{len(world.transfers)}", req.amount))
            return TransferResult(transfer_id=f"tr_fake_{len(world.transfers)}", destination="acct_fake")

        @activity.defn(name="reverse_transfer")
        async def reverse_transfer(req: TransferReversalRequest) -> TransferReversalResult:
            world.reversals.append(req)
            if world.reject_reversals:
                raise ApplicationError("insufficient funds", type="PaymentRejected", non_retryable=True)
            world.reversed_payouts += 1
            return TransferReversalResult(reversal_id=f"trr_{len(world.reversals)}", amount=req.amount)

        @activity.defn(name="reverse_release")
        async def reverse_release(req: ReleaseReversalRequest) -> None:
            world.release_reversals.append(req)

        @activity.defn(name="record_chargeback")
        async def record_chargeback(req: ChargebackMovement) -> None:
            world.chargebacks.append(req)

        @activity.defn(name="load_order")
        async def load_order(order_id: str) -> OrderSnapshot:
            return world.snapshot(order_id)

        @activity.defn(name="prepare_notifications")
        async def prepare_notifications(req: PrepareNotifications) -> list[int]:
            if any(e.event_key == req.event_key for e in world.events):
                return []  # the real activity returns only rows not yet sent
            world.events.append(req)
            ids = []
            for recipient in [*req.recipient_ids, *req.recipient_roles]:
                ids.append(next(world._ids))
                world.deliveries[ids[-1]] = (req.event_type, recipient)
            return ids

        @activity.defn(name="deliver_notification")
        async def deliver_notification(notification_id: int) -> str:
            if world.mail_down:
                await asyncio.sleep(0.2)
                raise ConnectionRefusedError("SMTP server is down")
            world.delivered.append(notification_id)
            return "sent"

        @activity.defn(name="dead_letter_notification")
        async def dead_letter_notification(req: DeadLetterRequest) -> None:
            world.dead[req.notification_id] = time.monotonic()

        @activity.defn(name="record_order_outcome")
        async def record_order_outcome(req: OrderOutcome) -> None:
            world.outcomes.append(req)

        @activity.defn(name="open_review_window")
        async def open_review_window(req: ReviewWindowRequest) -> str:
            world.review_windows.append(req)
            return "2026-12-10T12:00+00:00"

        @activity.defn(name="reveal_reviews")
        async def reveal_reviews(order_id: str) -> int:
            world.revealed.append(order_id)
            return world.reviews_written

        @activity.defn(name="open_dispute_case")
        async def open_dispute_case(req: OpenDispute) -> str:
            world.dispute_cases.append(req)
            return "case-1"

        @activity.defn(name="append_dispute_thread")
        async def append_dispute_thread(entry: ThreadEntry) -> None:
            world.dispute_thread.append(entry)

        @activity.defn(name="set_dispute_status")
        async def set_dispute_status(change: DisputeStatusChange) -> None:
            world.dispute_statuses.append(change)

        return [
            prepare_notifications,
            deliver_notification,
            dead_letter_notification,
            record_order_outcome,
            open_review_window,
            reveal_reviews,
            open_dispute_case,
            append_dispute_thread,
            set_dispute_status,
            load_order,
            reserve_stock,
            release_stock,
            record_order_state,
            charge,
            refund,
            release_escrow,
            transfer,
            reverse_transfer,
            reverse_release,
            record_chargeback,
        ]


async def children_finished(client: Client, parent: WorkflowHandle[Any, Any]) -> None:
    """Wait for every child the parent started. Call before a test's worker stops: a child's activity left
    scheduled on a queue nobody polls keeps the time-skipping server from ever skipping time again."""
    history = await parent.fetch_history()
    for event in history.events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            child = event.child_workflow_execution_started_event_attributes.workflow_execution
            await client.get_workflow_handle(child.workflow_id, run_id=child.run_id).result()
