"""FROZEN: the previous version of the order workflow (type `OrderWorkflow`), kept so that orders started
before the lean order path (`workflows/order.py`, type `Order`) run on and replay unchanged. Do not change
what it does: its commands must match the histories of running orders (docs/workflow-versioning.md).
Its payload types and its rules are shared with the new version (`order_types`, `order_rules`): those
change only compatibly (fields added with defaults; rules issue no commands).

The order: one durable workflow per order (id `order-<order id>`), read top to bottom like the state table.

    (new)     -> pending    buyer places it; stock reserved atomically (activity)
    pending   -> paid       charge succeeded: funds held on the platform balance (escrow)
    pending   -> cancelled  charge declined (reason payment_failed); stock goes back
    paid      -> confirmed  seller accepts
    paid      -> cancelled  seller declines / buyer cancels / acceptance deadline passes: full refund
    confirmed -> fulfilled  seller ships (optional tracking)
    confirmed -> cancelled  seller cancels: full refund
    fulfilled -> completed  buyer confirms receipt, or the dispute window passes: escrow released
    fulfilled -> disputed   buyer opens a dispute within the window: escrow frozen
    disputed  -> completed  support resolves `release` (or `partial_refund`: refund part, release the rest)
    disputed  -> refunded   support resolves `refund`
    completed -> completed  support retries a failed payout (`retry_transfer`, only when transfer_failed)

Chargebacks come from the provider (webhook -> Signal `chargeback`), not from an actor:

    paid|confirmed|fulfilled|completed|disputed -> disputed (reason chargeback, PaymentState chargeback)
        the network has taken the money; a completed order is first clawed back into escrow
        (payout reversed, release undone), so every chargeback is booked against escrow
    disputed (chargeback) -> the state before it   dispute won: the money is back (a completed order is
                                                    released and paid out again)
    disputed (chargeback) -> refunded              dispute lost (reason chargeback_lost)

A chargeback can come months after completion, when the order's workflow has ended: the webhook then starts
a new run of the same workflow id with `reopen=True` (signal-with-start), which loads the order's state from
the database, never charges, and handles the chargeback like above. A completed order whose payout the
provider refused (PaymentState transfer_failed) keeps its workflow open until support retries the payout.

Actor actions are Updates with validators: the caller gets the new state, or a rejection saying whether the
action is not allowed now (InvalidTransition) or not for this actor (Forbidden). Every money call carries an
idempotency key built here from the order and the operation (`<order>:<operation>:<n>`), never from the
attempt, so a retried activity replays at the provider instead of moving money twice.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities, OrderSnapshot, OrderStateChange, ReserveStockInput
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
    from bazaar.orders import rules
    from bazaar.orders.types import (
        BUYER_ID,
        LISTING_ID,
        ORDER_AMOUNT,
        ORDER_STATUS,
        PAYMENT_STATE,
        SELLER_ID,
        TERMINAL,
        ActionRequest,
        Actor,
        ChargebackNotice,
        OrderView,
        PaymentReport,
        PlaceOrder,
        order_workflow_id,
    )
    from bazaar.payments.money import format_money, platform_fee
    from bazaar.trust.notifications import NotificationEvent

from workflows.children import start_detached
from workflows.dispute import ChargebackJoined, DisputeCase, DisputeWorkflow, Resolution, dispute_workflow_id
from workflows.notification import notify_in_background
from workflows.reviews import ReviewRound, ReviewWorkflow, reviews_workflow_id

# Database activities: short, retried until they succeed (the database comes back).
DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
# Provider calls: bounded by the SDK timeout; transient errors retried, declines are results not errors.
MONEY_TIMEOUT = timedelta(seconds=30)
MONEY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["PaymentRejected"],
)
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
CHARGEABLE_BACK = frozenset({"paid", "confirmed", "fulfilled", "completed", "disputed"})


def _minutes(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


@workflow.defn(name="OrderWorkflow")
class LegacyOrderWorkflow:
    def __init__(self) -> None:
        self._view: OrderView | None = None
        self._req: PlaceOrder | None = None
        self._seq = 0
        self._refunds = 0
        self._releases = 0
        self._transfers = 0
        self._reversals = 0
        # What the latest release put where, until undone: (gross out of escrow, platform fee).
        self._released: tuple[int, int] | None = None
        # The payout that went to the seller and was not reversed: (provider transfer id, amount).
        self._payout: tuple[str, int] | None = None
        # The order as it was before a chargeback (status, reason, payment state): a won dispute restores it.
        self._before_chargeback: tuple[str, str | None, str] | None = None
        self._clawed_back_fee: int | None = None  # the fee given back for a chargeback; charged again if won
        self._payment_settled = False
        self._provider_reports: dict[str, str] = {}
        self._lock = asyncio.Lock()  # one transition at a time (updates, signals and timers)
        self._trust = False  # TRUST_PATCH applies to this run
        self._reminded = False
        self._dispute_message = ""

    @workflow.run
    async def run(self, req: PlaceOrder) -> OrderView:
        self._req = req
        self._trust = workflow.patched(TRUST_PATCH)
        if req.reopen:
            await self._restore()
        elif not await self._place(req):
            return self.view
        while True:
            await self._run_until_terminal(req)
            if self.view.payment_state == "transfer_failed" and workflow.patched(PAYOUT_RETRY_PATCH):
                # The seller is owed money: stay open for `retry_transfer` (older workflows ended here).
                await workflow.wait_condition(lambda: self.view.payment_state != "transfer_failed")
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self.view.status in TERMINAL:  # else a chargeback arrived while ending: carry on
                break
        return self.view

    async def _place(self, req: PlaceOrder) -> bool:
        """Reserve the stock and charge; False if the order was rejected (nothing charged)."""
        view = OrderView(
            order_id=req.order_id,
            status="pending",
            reason=None,
            buyer_id=req.buyer_id,
            listing_id=req.listing_id,
            quantity=req.quantity,
        )
        reservation = await workflow.execute_activity_method(
            OrderActivities.reserve_stock,
            ReserveStockInput(
                order_id=req.order_id,
                buyer_id=req.buyer_id,
                listing_id=req.listing_id,
                quantity=req.quantity,
                idempotency_key=req.idempotency_key,
                workflow_id=workflow.info().workflow_id,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if not reservation.ok:
            self._view = replace(view, status="rejected", reason=reservation.reason)
            self._payment_settled = True
            return False
        self._seq = 1  # reserve_stock wrote state 1 (pending) with the order row
        self._view = replace(
            view,
            seller_id=reservation.seller_id,
            listing_title=reservation.listing_title,
            amount=reservation.amount,
            currency=reservation.currency,
        )
        self._publish_search_attributes()
        self._upsert_memo()

        async with self._lock:
            await self._charge()
        self._payment_settled = True
        self._apply_provider_reports()
        return True

    async def _restore(self) -> None:
        """A reopened order: its state, counters and money positions as the database has them."""
        req = self._terms
        snap: OrderSnapshot = await workflow.execute_activity_method(
            OrderActivities.load_order,
            req.order_id,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._seq = snap.seq
        self._refunds, self._releases, self._transfers, self._reversals = (
            snap.refunds,
            snap.releases,
            snap.transfers,
            snap.reversals,
        )
        self._released = (snap.released_gross, snap.released_fee) if snap.released else None
        self._payout = (snap.payout_transfer_id, snap.payout_amount) if snap.payout_transfer_id else None
        self._view = OrderView(
            order_id=snap.order_id,
            status=snap.status,
            reason=snap.reason,
            buyer_id=snap.buyer_id,
            listing_id=snap.listing_id,
            quantity=snap.quantity,
            seller_id=snap.seller_id,
            listing_title=snap.listing_title,
            amount=snap.amount,
            currency=snap.currency,
            payment_state=snap.payment_state,
            payment_intent_id=snap.payment_intent_id,
            refunded_amount=snap.refunded_amount,
            platform_fee=snap.released_fee if snap.released else 0,
            tracking=snap.tracking,
            chargeback_id=snap.chargeback_id,
            chargeback_status=snap.chargeback_status,
            chargeback_amount=snap.chargeback_amount,
            dispute_source="chargeback" if snap.chargeback_id else None,
        )
        self._view = replace(self.view, allowed_actions=rules.allowed_actions(self.view))
        self._publish_search_attributes()
        self._upsert_memo()
        self._payment_settled = True

    async def _run_until_terminal(self, req: PlaceOrder) -> None:
        """Timers: the seller must accept in time; the buyer may dispute only within the window."""
        while self.view.status not in TERMINAL:
            status = self.view.status
            deadline = {"paid": req.acceptance_timeout_seconds, "fulfilled": req.dispute_window_seconds}.get(
                status
            )
            if status == "paid" and self._trust and not self._reminded:
                self._reminded = True
                before = deadline - req.acceptance_reminder_seconds if deadline is not None else 0
                if before > 0:
                    try:
                        await workflow.wait_condition(
                            lambda: self.view.status != "paid", timeout=timedelta(seconds=before)
                        )
                        continue
                    except TimeoutError:
                        deadline_at = workflow.now() + timedelta(seconds=req.acceptance_reminder_seconds)
                        await self._notify(
                            "acceptance_deadline_approaching",
                            "reminder",
                            ["seller"],
                            {"deadline": _minutes(deadline_at)},
                        )
                        # Measured from the deadline itself: starting the reminder took a moment.
                        deadline = max(1, math.ceil((deadline_at - workflow.now()).total_seconds()))
            try:
                await workflow.wait_condition(
                    lambda current=status: self.view.status != current,  # type: ignore[misc]
                    timeout=timedelta(seconds=deadline) if deadline else None,
                )
            except TimeoutError:
                async with self._lock:
                    try:
                        if self.view.status == "paid":
                            await self._cancel_with_refund("acceptance_timeout", "system", None)
                        elif self.view.status == "fulfilled":
                            await self._complete("dispute_window_passed", "system", None)
                    except ActivityError:
                        # The provider refused (e.g. a chargeback is open on the charge, so no refund):
                        # the chargeback signal moves the order on; the deadline starts over meanwhile.
                        workflow.logger.warning("deadline action refused by the provider", exc_info=True)

    @property
    def view(self) -> OrderView:
        assert self._view is not None
        return self._view

    # ---- reads -------------------------------------------------------------------------------------
    @workflow.query
    def state(self) -> OrderView | None:
        return self._view

    @workflow.update
    async def placement(self) -> OrderView | None:
        """Answer the create-order request: wait (briefly) until the charge has an outcome."""
        await workflow.wait_condition(lambda: self._payment_settled, timeout=PLACEMENT_WAIT)
        return self._view

    # ---- actor actions (Updates) ---------------------------------------------------------------------
    @workflow.update
    async def accept(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("accept", req.actor)
            await self._transition(
                "confirmed", None, self.view.payment_state, party, req.actor, "order.accepted"
            )
        return self.view

    @workflow.update
    async def decline(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("decline", req.actor)
            await self._cancel_with_refund("seller_declined", party, req.actor)
        return self.view

    @workflow.update
    async def cancel(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("cancel", req.actor)
            await self._cancel_with_refund(f"{party}_cancelled", party, req.actor)
        return self.view

    @workflow.update
    async def fulfil(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("fulfil", req.actor)
            self._view = replace(self.view, tracking=req.tracking)
            await self._transition(
                "fulfilled", None, self.view.payment_state, party, req.actor, "order.fulfilled"
            )
        return self.view

    @workflow.update
    async def confirm_receipt(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("confirm_receipt", req.actor)
            await self._complete("buyer_confirmed", party, req.actor)
        return self.view

    @workflow.update
    async def open_dispute(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("open_dispute", req.actor)
            self._view = replace(self.view, dispute_source="buyer")
            self._dispute_message = req.message or ""
            await self._transition(
                "disputed", req.reason or "buyer_dispute", "frozen", party, req.actor, "order.disputed"
            )
        return self.view

    @workflow.update
    async def resolve_dispute(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("resolve_dispute", req.actor)
            remaining = self._escrow_held()
            if req.resolution == "release":
                await self._complete("dispute_released", party, req.actor)
            elif req.resolution == "refund":
                # The item was shipped, so the stock does not come back automatically.
                await self._refund(remaining, "dispute_refund")
                await self._transition(
                    "refunded", "dispute_refunded", "refunded", party, req.actor, "order.refunded"
                )
            elif req.resolution == "partial_refund":
                if req.refund_amount is None or not 0 < req.refund_amount < remaining:
                    raise ApplicationError(
                        f"partial refund must be between 1 and {remaining - 1}", type="InvalidRequest"
                    )
                await self._refund(req.refund_amount, "dispute_partial_refund")
                await self._complete("dispute_partially_refunded", party, req.actor)
            else:
                raise ApplicationError(
                    "resolution must be release, refund or partial_refund", type="InvalidRequest"
                )
            await self._close_dispute_case(Resolution(req.resolution, req.refund_amount))
        return self.view

    @workflow.update
    async def retry_transfer(self, req: ActionRequest) -> OrderView:
        """Support/operators: pay out again after the provider refused the seller's transfer."""
        async with self._lock:
            party = self._authorize("retry_transfer", req.actor)
            assert self._released is not None
            gross, fee = self._released
            state = await self._pay_out(gross - fee)
            action = "order.payout_retried" if state == "released" else "order.payout_retry_failed"
            await self._transition("completed", self.view.reason, state, party, req.actor, action)
        return self.view

    @accept.validator
    def _validate_accept(self, req: ActionRequest) -> None:
        self._authorize("accept", req.actor)

    @decline.validator
    def _validate_decline(self, req: ActionRequest) -> None:
        self._authorize("decline", req.actor)

    @cancel.validator
    def _validate_cancel(self, req: ActionRequest) -> None:
        self._authorize("cancel", req.actor)

    @fulfil.validator
    def _validate_fulfil(self, req: ActionRequest) -> None:
        self._authorize("fulfil", req.actor)

    @confirm_receipt.validator
    def _validate_confirm_receipt(self, req: ActionRequest) -> None:
        self._authorize("confirm_receipt", req.actor)

    @open_dispute.validator
    def _validate_open_dispute(self, req: ActionRequest) -> None:
        self._authorize("open_dispute", req.actor)

    @resolve_dispute.validator
    def _validate_resolve_dispute(self, req: ActionRequest) -> None:
        self._authorize("resolve_dispute", req.actor)
        if req.resolution not in ("release", "refund", "partial_refund"):
            raise ApplicationError(
                "resolution must be release, refund or partial_refund", type="InvalidRequest"
            )

    @retry_transfer.validator
    def _validate_retry_transfer(self, req: ActionRequest) -> None:
        self._authorize("retry_transfer", req.actor)

    # ---- provider events (Signals: fire-and-forget, sent by the webhook endpoint) ---------------------
    @workflow.signal
    def payment_reported(self, report: PaymentReport) -> None:
        """Record what the provider says about a PaymentIntent. Never charges: the charge activity (one
        idempotency key per order) is the only way money is taken; a report only confirms or flags."""
        self._provider_reports[report.payment_intent_id] = report.status
        if self._payment_settled:
            self._apply_provider_reports()

    @workflow.signal
    async def chargeback(self, notice: ChargebackNotice) -> None:
        """The card network disputes the charge: take the order into `disputed` (reason chargeback) and
        freeze its money; its decision (won/lost) arrives as a later notice for the same dispute."""
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            if self.view.chargeback_id is None:
                if self.view.status not in CHARGEABLE_BACK:
                    workflow.logger.warning(
                        "chargeback %s on a %s order ignored", notice.dispute_id, self.view.status
                    )
                    return
                await self._open_chargeback(notice)
            elif notice.dispute_id != self.view.chargeback_id:
                workflow.logger.warning("second dispute %s ignored", notice.dispute_id)
                return
            if notice.status in ("won", "lost") and self.view.chargeback_status == "withdrawn":
                await self._close_chargeback(notice)

    # ---- rules (shared with the new version: they issue no commands) ----------------------------------
    def _authorize(self, action: str, actor: Actor) -> str:
        return rules.authorize(action, actor, self._view)

    def _allowed_actions(self, status: str, payment_state: str) -> list[str]:
        return rules.allowed_actions(replace(self.view, status=status, payment_state=payment_state))

    def _escrow_held(self) -> int:
        """What this order holds in escrow (before release): charged, minus refunds, minus a chargeback."""
        taken = self.view.chargeback_amount if self.view.chargeback_status in ("withdrawn", "lost") else 0
        return self.view.amount - self.view.refunded_amount - taken

    # ---- steps ----------------------------------------------------------------------------------------
    async def _charge(self) -> None:
        req = self._terms
        charge = await workflow.execute_activity_method(
            PaymentActivities.charge,
            ChargeRequest(
                order_id=req.order_id,
                amount=self.view.amount,
                currency=self.view.currency,
                payment_method=req.payment_method,
                idempotency_key=f"{req.order_id}:charge:1",
                transfer_group=order_workflow_id(req.order_id),
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        self._view = replace(self.view, payment_intent_id=charge.payment_intent_id)
        if charge.succeeded:
            await self._transition("paid", None, "held_in_escrow", "system", None, "order.paid")
        else:
            await self._release_stock()
            await self._transition(
                "cancelled", "payment_failed", "failed", "system", None, "order.payment_failed"
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
        await workflow.execute_activity_method(
            PaymentActivities.refund,
            RefundRequest(
                order_id=self.view.order_id,
                payment_intent_id=self.view.payment_intent_id,
                amount=amount,
                currency=self.view.currency,
                idempotency_key=f"{self.view.order_id}:refund:{self._refunds}",
                reason=reason,
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        self._view = replace(self.view, refunded_amount=self.view.refunded_amount + amount)

    async def _release_stock(self) -> None:
        await workflow.execute_activity_method(
            OrderActivities.release_stock,
            self.view.order_id,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _cancel_with_refund(self, reason: str, party: str, actor: Actor | None) -> None:
        await self._refund(self.view.amount - self.view.refunded_amount, reason)
        await self._release_stock()
        await self._transition("cancelled", reason, "refunded", party, actor, "order.cancelled")

    async def _complete(self, reason: str, party: str, actor: Actor | None, fee: int | None = None) -> None:
        """Release what is left in escrow: the fee to the platform, the rest transferred to the seller."""
        req = self._terms
        gross = self._escrow_held()
        if fee is None:
            fee = platform_fee(gross, req.fee_bps, req.fee_fixed)
        self._view = replace(self.view, platform_fee=fee)
        order_id = self.view.order_id
        self._releases += 1
        await workflow.execute_activity_method(
            PaymentActivities.release_escrow,
            ReleaseRequest(
                order_id=order_id,
                gross=gross,
                fee=fee,
                currency=self.view.currency,
                txn=f"{order_id}:release:{self._releases}",
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._released = (gross, fee)
        payment_state = await self._pay_out(gross - fee) if gross - fee > 0 else "released"
        await self._transition("completed", reason, payment_state, party, actor, "order.completed")

    async def _pay_out(self, amount: int) -> str:
        """Transfer the seller's share; the resulting PaymentState (released, or transfer_failed)."""
        order_id = self.view.order_id
        self._transfers += 1
        try:
            result = await workflow.execute_activity_method(
                PaymentActivities.transfer,
                TransferRequest(
                    order_id=order_id,
                    amount=amount,
                    currency=self.view.currency,
                    transfer_group=order_workflow_id(order_id),
                    idempotency_key=f"{order_id}:transfer:{self._transfers}",
                ),
                start_to_close_timeout=MONEY_TIMEOUT,
                retry_policy=MONEY_RETRY,
            )
        except ActivityError:
            # Completed for both sides; the payout needs an operator (PaymentState="transfer_failed",
            # then the `retry_transfer` update: docs/operations.md).
            return "transfer_failed"
        self._payout = (result.transfer_id, amount)
        return "released"

    async def _open_chargeback(self, notice: ChargebackNotice) -> None:
        """The network has withdrawn the money: book it against escrow and freeze the order."""
        self._before_chargeback = (self.view.status, self.view.reason, self.view.payment_state)
        if self.view.status == "completed":
            await self._claw_back()
        await self._book_chargeback(notice, reinstated=False)
        self._view = replace(
            self.view,
            dispute_source="chargeback",
            chargeback_id=notice.dispute_id,
            chargeback_status="withdrawn",
            chargeback_amount=notice.amount,
        )
        await self._transition("disputed", "chargeback", "chargeback", "system", None, "order.chargeback")

    async def _claw_back(self) -> None:
        """Completed order: bring the seller's payout and the fee back into escrow, so the chargeback is
        booked like any other (the platform does not keep a fee on a charged-back order)."""
        if self._payout is not None:
            transfer_id, amount = self._payout
            self._reversals += 1
            try:
                await workflow.execute_activity_method(
                    PaymentActivities.reverse_transfer,
                    TransferReversalRequest(
                        order_id=self.view.order_id,
                        transfer_id=transfer_id,
                        amount=amount,
                        currency=self.view.currency,
                        idempotency_key=f"{self.view.order_id}:transfer_reversal:{self._reversals}",
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
        await workflow.execute_activity_method(
            PaymentActivities.reverse_release,
            ReleaseReversalRequest(
                order_id=self.view.order_id,
                fee=fee,
                seller_share=gross - fee,
                currency=self.view.currency,
                txn=f"{self.view.order_id}:release_reversal:{self._releases}",
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
            self._view = replace(self.view, chargeback_status="won")
            if status == "completed" and self._released is None:
                # Released again on the terms of the first release (a reopened run has no order terms).
                await self._complete("chargeback_won", "system", None, fee=self._clawed_back_fee)
            else:
                await self._transition(status, reason, payment_state, "system", None, "order.chargeback_won")
            if status != "disputed":  # else the buyer's case it joined goes on, for support to resolve
                await self._close_dispute_case(Resolution("release"))
            return
        self._view = replace(self.view, chargeback_status="lost")
        if self._escrow_held() > 0:
            await self._transition(
                "disputed", "chargeback_lost", "frozen", "system", None, "order.chargeback_lost"
            )
            return
        if status in ("paid", "confirmed"):  # never shipped: the stock can be sold again
            await self._release_stock()
        await self._transition(
            "refunded", "chargeback_lost", "charged_back", "system", None, "order.chargeback_lost"
        )
        await self._close_dispute_case(Resolution("refund", notice.amount))

    async def _book_chargeback(self, notice: ChargebackNotice, reinstated: bool) -> None:
        operation = "chargeback_reversal" if reinstated else "chargeback"
        await workflow.execute_activity_method(
            PaymentActivities.record_chargeback,
            ChargebackMovement(
                order_id=self.view.order_id,
                dispute_id=notice.dispute_id,
                amount=self.view.chargeback_amount if reinstated else notice.amount,
                currency=self.view.currency,
                reinstated=reinstated,
                key=f"{self.view.order_id}:{operation}:{notice.dispute_id}",
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _transition(
        self,
        status: str,
        reason: str | None,
        payment_state: str,
        actor_role: str,
        actor: Actor | None,
        action: str,
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
        await workflow.execute_activity_method(
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
    async def _tell_others(self, action: str) -> None:
        """What a transition means beyond the order: notifications, the review round, the dispute case and
        the seller's outcome counters. Children outlive the order (ABANDON) and deliver on their own
        retries, so a slow or dead mail server never holds up or fails the order."""
        if not self._trust:
            return
        view = self.view
        if action == "order.paid":
            deadline = workflow.now() + timedelta(seconds=self._terms.acceptance_timeout_seconds)
            await self._notify("order_paid", "paid", ["seller"], {"deadline": _minutes(deadline)})
        elif action == "order.accepted":
            await self._notify("order_accepted", "accepted", ["buyer"])
        elif action == "order.fulfilled":
            tracking = ", ".join(f"{k}: {v}" for k, v in sorted((view.tracking or {}).items()))
            await self._notify("order_shipped", "shipped", ["buyer"], {"tracking": tracking or "none given"})
        elif action == "order.cancelled":
            if view.reason == "seller_declined":
                await self._notify("order_declined", "cancelled", ["buyer"])
            else:
                reason = (view.reason or "cancelled").replace("_", " ")
                await self._notify("order_cancelled", "cancelled", ["buyer", "seller"], {"reason": reason})
            if view.reason in SELLER_CANCELLATIONS:
                await self._record_outcome("cancelled")
        elif action == "order.completed" and view.reason == "chargeback_won":
            # Completed again after a won chargeback: the payout went out again; reviews and the
            # completion count happened the first time.
            await self._notify(
                "order_completed", "completed-again", ["seller"], {"payout": self._payout_text()}
            )
        elif action == "order.completed":
            if view.payment_state == "transfer_failed":
                await self._notify("payout_delayed", "completed", ["seller"], {"payout": self._payout_text()})
            else:
                await self._notify(
                    "order_completed", "completed", ["seller"], {"payout": self._payout_text()}
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
        elif action == "order.payout_retried":
            key = f"payout-retried-{self._transfers}"
            await self._notify("order_completed", key, ["seller"], {"payout": self._payout_text()})
        elif (
            action == "order.chargeback"
            and self._before_chargeback
            and self._before_chargeback[0] == "disputed"
        ):
            # The buyer's case is open: the chargeback joins it rather than opening a second one.
            await self._signal_dispute_case(
                DisputeWorkflow.chargeback_joined,
                ChargebackJoined(view.chargeback_id or "", view.chargeback_amount, view.currency),
            )
        elif action in ("order.disputed", "order.chargeback"):
            await self._record_outcome("disputed")
            by_buyer = action == "order.disputed"
            await start_detached(
                DisputeWorkflow.run,
                DisputeCase(
                    order_id=view.order_id,
                    buyer_id=view.buyer_id,
                    seller_id=view.seller_id,
                    listing_title=view.listing_title,
                    source="buyer" if by_buyer else "chargeback",
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
            recipient_ids=[view.buyer_id if p == "buyer" else view.seller_id for p in parties],
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
            await workflow.execute_activity_method(
                activity, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=TRUST_RETRY
            )
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
