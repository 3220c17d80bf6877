"""FROZEN, with `workflows/legacy_order.py`: the money, trust and notification steps of the previous order
workflow (type `OrderWorkflow`). Do not change what they do (docs/workflow-versioning.md)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities, OrderStateChange
    from activities.payments import (
        ChargebackMovement,
        ChargeRequest,
        PaymentActivities,
        RefundRequest,
        ReleaseRequest,
        ReleaseReversalRequest,
        TransferRequest,
        TransferReversalRequest,
    )
    from activities.trust import OrderOutcome, ReviewWindowRequest, TrustActivities
    from bazaar.models import OrderStatus, PaymentState
    from bazaar.orders import rules
    from bazaar.orders.types import (
        BUYER_ID,
        LISTING_ID,
        ORDER_AMOUNT,
        ORDER_STATUS,
        PAYMENT_STATE,
        SELLER_ID,
        Actor,
        ChargebackNotice,
        ChargebackStatus,
        OrderAction,
        OrderEvent,
        OrderView,
        Party,
        PlaceOrder,
    )
    from bazaar.payments.keys import MoneyOperation, money_key
    from bazaar.payments.money import format_money, platform_fee
    from bazaar.temporal import order_workflow_id
    from bazaar.trust.models import DisputeResolution, DisputeSource
    from bazaar.trust.notifications import NotificationEvent

from workflows.children import start_detached
from workflows.dispute import ChargebackJoined, DisputeCase, DisputeWorkflow, Resolution, dispute_workflow_id
from workflows.notification import notify_in_background
from workflows.queues import execute_activity
from workflows.retries import DB_RETRY, MONEY_RETRY
from workflows.reviews import ReviewRound, ReviewWorkflow, reviews_workflow_id

# Database activities: short, retried until they succeed (the database comes back).
DB_TIMEOUT = timedelta(seconds=30)
# Provider calls: bounded by the SDK timeout; transient errors retried, declines are results not errors.
MONEY_TIMEOUT = timedelta(seconds=30)
# Trust bookkeeping (reputation counters, the review window): a few minutes of retries, then skipped.
TRUST_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10), maximum_attempts=30
)
PLACEMENT_WAIT = timedelta(seconds=10)
# Patch (2026-11-25): a completed order whose payout failed waits for support's retry instead of ending.
PAYOUT_RETRY_PATCH = "wait-for-payout-retry"
# Patch (2026-11-26): notifications, the acceptance reminder, review rounds, dispute cases and reputation
# counters as children and activities of the order. Orders started before it run on without them.
TRUST_PATCH = "trust-and-notifications"
# Cancellations that count against the seller's reputation (not the buyer's change of mind).
SELLER_CANCELLATIONS = frozenset({"seller_declined", "seller_cancelled", "acceptance_timeout"})
# States whose money a chargeback can take: the charge succeeded and was not (fully) refunded.
CHARGEABLE_BACK = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.CONFIRMED,
        OrderStatus.FULFILLED,
        OrderStatus.COMPLETED,
        OrderStatus.DISPUTED,
    }
)


def _minutes(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


class LegacyOrderSteps:
    """State of a legacy order run (set by `LegacyOrderWorkflow.__init__`) and its steps."""

    _view: OrderView | None
    _req: PlaceOrder | None
    _seq: int
    _refunds: int
    _releases: int
    _transfers: int
    _reversals: int
    _released: tuple[int, int] | None
    _payout: tuple[str, int] | None
    _before_chargeback: tuple[OrderStatus, str | None, PaymentState] | None
    _clawed_back_fee: int | None
    _payment_settled: bool
    _provider_reports: dict[str, str]
    _lock: asyncio.Lock
    _trust: bool
    _reminded: bool
    _dispute_message: str

    @property
    def view(self) -> OrderView:
        assert self._view is not None
        return self._view

    def _escrow_held(self) -> int:
        """What this order holds in escrow (before release): charged, minus refunds, minus a chargeback."""
        taken = (
            self.view.chargeback_amount
            if self.view.chargeback_status in (ChargebackStatus.WITHDRAWN, ChargebackStatus.LOST)
            else 0
        )
        return self.view.amount - self.view.refunded_amount - taken

    # ---- steps ----------------------------------------------------------------------------------------
    async def _charge(self) -> None:
        req = self._terms
        charge = await execute_activity(
            PaymentActivities.charge,
            ChargeRequest(
                order_id=req.order_id,
                amount=self.view.amount,
                currency=self.view.currency,
                payment_method=req.payment_method,
                idempotency_key=money_key(req.order_id, MoneyOperation.CHARGE, 1),
                transfer_group=order_workflow_id(req.order_id),
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        self._view = replace(self.view, payment_intent_id=charge.payment_intent_id)
        if charge.succeeded:
            await self._transition(
                OrderStatus.PAID, None, PaymentState.HELD_IN_ESCROW, Party.SYSTEM, None, OrderEvent.PAID
            )
        else:
            await self._release_stock()
            await self._transition(
                OrderStatus.CANCELLED,
                "payment_failed",
                PaymentState.FAILED,
                Party.SYSTEM,
                None,
                OrderEvent.PAYMENT_FAILED,
            )

    def _apply_provider_reports(self) -> None:
        """Compare the provider's reports with the charge we made (after our charge has an outcome)."""
        ours = self.view.payment_intent_id
        for intent, status in self._provider_reports.items():
            if intent == ours:
                self._view = replace(self.view, provider_payment_status=status)
            elif status == "succeeded":
                if intent not in self.view.unexpected_payment_intents:
                    # Money taken that this order did not ask for: never charge or refund on a guess;
                    # it shows in the order state and in reconciliation for an operator.
                    workflow.logger.warning("unexpected PaymentIntent %s for this order", intent)
                    self._view = replace(
                        self.view, unexpected_payment_intents=[*self.view.unexpected_payment_intents, intent]
                    )

    async def _refund(self, amount: int, reason: str) -> None:
        assert self.view.payment_intent_id is not None
        self._refunds += 1
        await execute_activity(
            PaymentActivities.refund,
            RefundRequest(
                order_id=self.view.order_id,
                payment_intent_id=self.view.payment_intent_id,
                amount=amount,
                currency=self.view.currency,
                idempotency_key=money_key(self.view.order_id, MoneyOperation.REFUND, self._refunds),
                reason=reason,
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        self._view = replace(self.view, refunded_amount=self.view.refunded_amount + amount)

    async def _release_stock(self) -> None:
        await execute_activity(
            OrderActivities.release_stock,
            self.view.order_id,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _cancel_with_refund(self, reason: str, party: Party, actor: Actor | None) -> None:
        await self._refund(self.view.amount - self.view.refunded_amount, reason)
        await self._release_stock()
        await self._transition(
            OrderStatus.CANCELLED, reason, PaymentState.REFUNDED, party, actor, OrderEvent.CANCELLED
        )

    async def _complete(self, reason: str, party: Party, actor: Actor | None, fee: int | None = None) -> None:
        """Release what is left in escrow: the fee to the platform, the rest transferred to the seller."""
        req = self._terms
        gross = self._escrow_held()
        if fee is None:
            fee = platform_fee(gross, req.fee_bps, req.fee_fixed)
        self._view = replace(self.view, platform_fee=fee)
        order_id = self.view.order_id
        self._releases += 1
        await execute_activity(
            PaymentActivities.release_escrow,
            ReleaseRequest(
                order_id=order_id,
                gross=gross,
                fee=fee,
                currency=self.view.currency,
                txn=money_key(order_id, MoneyOperation.RELEASE, self._releases),
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._released = (gross, fee)
        payment_state = await self._pay_out(gross - fee) if gross - fee > 0 else PaymentState.RELEASED
        await self._transition(
            OrderStatus.COMPLETED, reason, payment_state, party, actor, OrderEvent.COMPLETED
        )

    async def _pay_out(self, amount: int) -> PaymentState:
        """Transfer the seller's share; the resulting PaymentState (released, or transfer_failed)."""
        order_id = self.view.order_id
        self._transfers += 1
        try:
            result = await execute_activity(
                PaymentActivities.transfer,
                TransferRequest(
                    order_id=order_id,
                    amount=amount,
                    currency=self.view.currency,
                    transfer_group=order_workflow_id(order_id),
                    idempotency_key=money_key(order_id, MoneyOperation.TRANSFER, self._transfers),
                ),
                start_to_close_timeout=MONEY_TIMEOUT,
                retry_policy=MONEY_RETRY,
            )
        except ActivityError:
            # Completed for both sides; the payout needs an operator (PaymentState="transfer_failed",
            # then the `retry_transfer` update: docs/operations.md).
            return PaymentState.TRANSFER_FAILED
        self._payout = (result.transfer_id, amount)
        return PaymentState.RELEASED

    async def _open_chargeback(self, notice: ChargebackNotice) -> None:
        """The network has withdrawn the money: book it against escrow and freeze the order."""
        self._before_chargeback = (self.view.status, self.view.reason, self.view.payment_state)
        if self.view.status == OrderStatus.COMPLETED:
            await self._claw_back()
        await self._book_chargeback(notice, reinstated=False)
        self._view = replace(
            self.view,
            dispute_source=DisputeSource.CHARGEBACK,
            chargeback_id=notice.dispute_id,
            chargeback_status=ChargebackStatus.WITHDRAWN,
            chargeback_amount=notice.amount,
        )
        await self._transition(
            OrderStatus.DISPUTED,
            "chargeback",
            PaymentState.CHARGEBACK,
            Party.SYSTEM,
            None,
            OrderEvent.CHARGEBACK,
        )

    async def _claw_back(self) -> None:
        """Completed order: bring the seller's payout and the fee back into escrow, so the chargeback is
        booked like any other (the platform does not keep a fee on a charged-back order)."""
        if self._payout is not None:
            transfer_id, amount = self._payout
            self._reversals += 1
            try:
                await execute_activity(
                    PaymentActivities.reverse_transfer,
                    TransferReversalRequest(
                        order_id=self.view.order_id,
                        transfer_id=transfer_id,
                        amount=amount,
                        currency=self.view.currency,
                        idempotency_key=money_key(
                            self.view.order_id, MoneyOperation.TRANSFER_REVERSAL, self._reversals
                        ),
                        reason="chargeback",
                    ),
                    start_to_close_timeout=MONEY_TIMEOUT,
                    retry_policy=MONEY_RETRY,
                )
            except ActivityError:
                # The seller's account would not give it back: the release stands (the seller keeps the
                # payout) and the chargeback overdraws this order's escrow: the platform's loss, which
                # an operator recovers from the seller (docs/operations.md).
                workflow.logger.error("transfer reversal refused; chargeback booked as a platform loss")
                return
            self._payout = None
        assert self._released is not None
        gross, fee = self._released
        await execute_activity(
            PaymentActivities.reverse_release,
            ReleaseReversalRequest(
                order_id=self.view.order_id,
                fee=fee,
                seller_share=gross - fee,
                currency=self.view.currency,
                txn=money_key(self.view.order_id, MoneyOperation.RELEASE_REVERSAL, self._releases),
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._released = None
        self._clawed_back_fee = fee
        self._view = replace(self.view, platform_fee=0)

    async def _close_chargeback(self, notice: ChargebackNotice) -> None:
        """The network decided. Won: the money is back and the order resumes where it was. Lost: the buyer
        keeps it; the order is refunded (anything the dispute did not cover stays frozen for support)."""
        assert self._before_chargeback is not None
        status, reason, payment_state = self._before_chargeback
        if notice.status == "won":
            await self._book_chargeback(notice, reinstated=True)
            self._view = replace(self.view, chargeback_status=ChargebackStatus.WON)
            if status == OrderStatus.COMPLETED and self._released is None:
                # Released again on the terms of the first release (a reopened run has no order terms).
                await self._complete("chargeback_won", Party.SYSTEM, None, fee=self._clawed_back_fee)
            else:
                await self._transition(
                    status, reason, payment_state, Party.SYSTEM, None, OrderEvent.CHARGEBACK_WON
                )
            if (
                status != OrderStatus.DISPUTED
            ):  # else the buyer's case it joined goes on, for support to resolve
                await self._close_dispute_case(Resolution(DisputeResolution.RELEASE))
            return
        self._view = replace(self.view, chargeback_status=ChargebackStatus.LOST)
        if self._escrow_held() > 0:
            await self._transition(
                OrderStatus.DISPUTED,
                "chargeback_lost",
                PaymentState.FROZEN,
                Party.SYSTEM,
                None,
                OrderEvent.CHARGEBACK_LOST,
            )
            return
        if status in (OrderStatus.PAID, OrderStatus.CONFIRMED):  # never shipped: the stock can be sold again
            await self._release_stock()
        await self._transition(
            OrderStatus.REFUNDED,
            "chargeback_lost",
            PaymentState.CHARGED_BACK,
            Party.SYSTEM,
            None,
            OrderEvent.CHARGEBACK_LOST,
        )
        await self._close_dispute_case(Resolution(DisputeResolution.REFUND, notice.amount))

    async def _book_chargeback(self, notice: ChargebackNotice, reinstated: bool) -> None:
        operation = MoneyOperation.CHARGEBACK_REVERSAL if reinstated else MoneyOperation.CHARGEBACK
        await execute_activity(
            PaymentActivities.record_chargeback,
            ChargebackMovement(
                order_id=self.view.order_id,
                dispute_id=notice.dispute_id,
                amount=self.view.chargeback_amount if reinstated else notice.amount,
                currency=self.view.currency,
                reinstated=reinstated,
                key=money_key(self.view.order_id, operation, notice.dispute_id),
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _transition(
        self,
        status: OrderStatus,
        reason: str | None,
        payment_state: PaymentState,
        actor_role: Party,
        actor: Actor | None,
        action: OrderEvent,
    ) -> None:
        self._seq += 1
        self._view = replace(
            self.view,
            status=status,
            reason=reason,
            payment_state=payment_state,
            allowed_actions=self._allowed_actions(status, payment_state),
        )
        self._publish_search_attributes()
        await execute_activity(
            OrderActivities.record_order_state,
            OrderStateChange(
                order_id=self.view.order_id,
                seq=self._seq,
                status=status,
                reason=reason,
                payment_state=payment_state,
                actor_id=actor.user_id if actor else None,
                actor_role=actor_role,
                action=action,
                tracking=self.view.tracking,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        await self._tell_others(action)

    # ---- trust and notifications (TRUST_PATCH) ---------------------------------------------------------
    async def _tell_others(self, action: OrderEvent) -> None:
        """What a transition means beyond the order: notifications, the review round, the dispute case and
        the seller's outcome counters. Children outlive the order (ABANDON) and deliver on their own
        retries, so a slow or dead mail server never holds up or fails the order."""
        if not self._trust:
            return
        view = self.view
        if action == OrderEvent.PAID:
            deadline = workflow.now() + timedelta(seconds=self._terms.acceptance_timeout_seconds)
            await self._notify("order_paid", "paid", [Party.SELLER], {"deadline": _minutes(deadline)})
        elif action == OrderEvent.ACCEPTED:
            await self._notify("order_accepted", "accepted", [Party.BUYER])
        elif action == OrderEvent.FULFILLED:
            tracking = ", ".join(f"{k}: {v}" for k, v in sorted((view.tracking or {}).items()))
            await self._notify(
                "order_shipped", "shipped", [Party.BUYER], {"tracking": tracking or "none given"}
            )
        elif action == OrderEvent.CANCELLED:
            if view.reason == "seller_declined":
                await self._notify("order_declined", "cancelled", [Party.BUYER])
            else:
                reason = (view.reason or "cancelled").replace("_", " ")
                await self._notify(
                    "order_cancelled", "cancelled", [Party.BUYER, Party.SELLER], {"reason": reason}
                )
            if view.reason in SELLER_CANCELLATIONS:
                await self._record_outcome("cancelled")
        elif action == OrderEvent.COMPLETED and view.reason == "chargeback_won":
            # Completed again after a won chargeback: the payout went out again; reviews and the
            # completion count happened the first time.
            await self._notify(
                "order_completed", "completed-again", [Party.SELLER], {"payout": self._payout_text()}
            )
        elif action == OrderEvent.COMPLETED:
            if view.payment_state == PaymentState.TRANSFER_FAILED:
                await self._notify(
                    "payout_delayed", "completed", [Party.SELLER], {"payout": self._payout_text()}
                )
            else:
                await self._notify(
                    "order_completed", "completed", [Party.SELLER], {"payout": self._payout_text()}
                )
            await self._record_outcome("completed")
            # The window opens before the update answers, so both sides can review right away; the
            # review round (invitations, blind reveal, closing timer) runs on as a child.
            await self._trust_step(
                TrustActivities.open_review_window,
                ReviewWindowRequest(view.order_id, self._terms.review_window_seconds),
            )
            await start_detached(
                ReviewWorkflow.run,
                ReviewRound(
                    view.order_id,
                    view.buyer_id,
                    view.seller_id,
                    view.listing_title,
                    self._terms.review_window_seconds,
                    self._terms.notification_max_attempts,
                ),
                reviews_workflow_id(view.order_id),
                once=True,
            )
        elif action == OrderEvent.PAYOUT_RETRIED:
            key = f"payout-retried-{self._transfers}"
            await self._notify("order_completed", key, [Party.SELLER], {"payout": self._payout_text()})
        elif (
            action == OrderEvent.CHARGEBACK
            and self._before_chargeback
            and self._before_chargeback[0] == OrderStatus.DISPUTED
        ):
            # The buyer's case is open: the chargeback joins it rather than opening a second one.
            await self._signal_dispute_case(
                DisputeWorkflow.chargeback_joined,
                ChargebackJoined(view.chargeback_id or "", view.chargeback_amount, view.currency),
            )
        elif action in (OrderEvent.DISPUTED, OrderEvent.CHARGEBACK):
            await self._record_outcome("disputed")
            by_buyer = action == OrderEvent.DISPUTED
            await start_detached(
                DisputeWorkflow.run,
                DisputeCase(
                    order_id=view.order_id,
                    buyer_id=view.buyer_id,
                    seller_id=view.seller_id,
                    listing_title=view.listing_title,
                    source=DisputeSource.BUYER if by_buyer else DisputeSource.CHARGEBACK,
                    reason_code=(view.reason or "other") if by_buyer else "chargeback",
                    message=self._dispute_message if by_buyer else "",
                    provider_dispute_id=None if by_buyer else view.chargeback_id,
                    escalate_after_seconds=self._terms.dispute_escalation_seconds,
                    notification_max_attempts=self._terms.notification_max_attempts,
                ),
                dispute_workflow_id(view.order_id),
                # A chargeback after a closed buyer dispute reopens the case.
                once=False,
            )

    @property
    def _terms(self) -> PlaceOrder:
        assert self._req is not None
        return self._req

    async def _notify(
        self, event_type: str, key: str, parties: list[str], data: dict[str, str] | None = None
    ) -> None:
        view = self.view
        event_key = f"order:{view.order_id}:{key}"
        event = NotificationEvent(
            event_key=event_key,
            event_type=event_type,
            recipient_ids=[view.buyer_id if p == Party.BUYER else view.seller_id for p in parties],
            data={
                "order_id": view.order_id,
                "buyer_id": view.buyer_id,
                "listing_title": view.listing_title,
                "amount": format_money(view.amount, view.currency),
                **(data or {}),
            },
        )
        await notify_in_background(event, self._terms.notification_max_attempts)

    def _payout_text(self) -> str:
        gross, fee = self._released or (0, 0)
        return format_money(gross - fee, self.view.currency)

    async def _record_outcome(self, outcome: str) -> None:
        await self._trust_step(
            TrustActivities.record_order_outcome, OrderOutcome(self.view.order_id, outcome)
        )

    async def _trust_step(self, activity: Any, arg: Any) -> None:
        """A trust bookkeeping activity: retried for a few minutes, then logged and skipped, so a broken
        trust table can never wedge an order (the money and the order's own state come first)."""
        try:
            await execute_activity(activity, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=TRUST_RETRY)
        except ActivityError:
            workflow.logger.error(
                "trust step %s failed for order %s", activity, self.view.order_id, exc_info=True
            )

    async def _close_dispute_case(self, resolution: Resolution) -> None:
        if self._trust:
            await self._signal_dispute_case(DisputeWorkflow.resolved, resolution)

    async def _signal_dispute_case(self, signal: Any, arg: Any) -> None:
        case: workflow.ExternalWorkflowHandle[DisputeWorkflow] = workflow.get_external_workflow_handle_for(
            DisputeWorkflow.run, dispute_workflow_id(self.view.order_id)
        )
        try:
            await case.signal(signal, arg)
        except FailureError:  # no open case (e.g. the order was disputed before cases existed)
            workflow.logger.warning("no open dispute case for order %s", self.view.order_id)

    def _upsert_memo(self) -> None:
        workflow.upsert_memo(
            {
                "listing_title": self.view.listing_title,
                "amount": self.view.amount,
                "currency": self.view.currency,
                "quantity": self.view.quantity,
            }
        )

    def _publish_search_attributes(self) -> None:
        view = self.view
        workflow.upsert_search_attributes(
            [
                ORDER_STATUS.value_set(view.status),
                BUYER_ID.value_set(view.buyer_id),
                SELLER_ID.value_set(view.seller_id),
                LISTING_ID.value_set(view.listing_id),
                ORDER_AMOUNT.value_set(view.amount),
                PAYMENT_STATE.value_set(view.payment_state),
            ]
        )

    def _allowed_actions(self, status: OrderStatus, payment_state: PaymentState) -> list[OrderAction]:
        return rules.allowed_actions(replace(self.view, status=status, payment_state=payment_state))
