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
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities, OrderSnapshot, ReserveStockInput
    from bazaar.errors import Rejection
    from bazaar.models import OrderStatus, PaymentState
    from bazaar.orders import rules
    from bazaar.orders.types import (
        TERMINAL,
        ActionRequest,
        Actor,
        ChargebackNotice,
        ChargebackStatus,
        OrderAction,
        OrderEvent,
        OrderView,
        Party,
        PaymentReport,
        PlaceOrder,
    )
    from bazaar.trust.models import DisputeResolution, DisputeSource

from workflows.dispute import Resolution
from workflows.legacy_order_steps import (
    CHARGEABLE_BACK,
    DB_TIMEOUT,
    PAYOUT_RETRY_PATCH,
    PLACEMENT_WAIT,
    TRUST_PATCH,
    LegacyOrderSteps,
    _minutes,
)
from workflows.queues import execute_activity
from workflows.retries import DB_RETRY


@workflow.defn(name="OrderWorkflow")
class LegacyOrderWorkflow(LegacyOrderSteps):
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
        self._before_chargeback: tuple[OrderStatus, str | None, PaymentState] | None = None
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
            if self.view.payment_state == PaymentState.TRANSFER_FAILED and workflow.patched(
                PAYOUT_RETRY_PATCH
            ):
                # The seller is owed money: stay open for `retry_transfer` (older workflows ended here).
                await workflow.wait_condition(lambda: self.view.payment_state != PaymentState.TRANSFER_FAILED)
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self.view.status in TERMINAL:  # else a chargeback arrived while ending: carry on
                break
        return self.view

    async def _place(self, req: PlaceOrder) -> bool:
        """Reserve the stock and charge; False if the order was rejected (nothing charged)."""
        view = OrderView(
            order_id=req.order_id,
            status=OrderStatus.PENDING,
            reason=None,
            buyer_id=req.buyer_id,
            listing_id=req.listing_id,
            quantity=req.quantity,
        )
        reservation = await execute_activity(
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
            self._view = replace(view, status=OrderStatus.REJECTED, reason=reservation.reason)
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
        snap: OrderSnapshot = await execute_activity(
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
            dispute_source=DisputeSource.CHARGEBACK if snap.chargeback_id else None,
        )
        self._view = replace(self.view, allowed_actions=rules.allowed_actions(self.view))
        self._publish_search_attributes()
        self._upsert_memo()
        self._payment_settled = True

    async def _run_until_terminal(self, req: PlaceOrder) -> None:
        """Timers: the seller must accept in time; the buyer may dispute only within the window."""
        while self.view.status not in TERMINAL:
            status = self.view.status
            deadline = {
                OrderStatus.PAID: req.acceptance_timeout_seconds,
                OrderStatus.FULFILLED: req.dispute_window_seconds,
            }.get(status)
            if status == OrderStatus.PAID and self._trust and not self._reminded:
                self._reminded = True
                before = deadline - req.acceptance_reminder_seconds if deadline is not None else 0
                if before > 0:
                    try:
                        await workflow.wait_condition(
                            lambda: self.view.status != OrderStatus.PAID, timeout=timedelta(seconds=before)
                        )
                        continue
                    except TimeoutError:
                        deadline_at = workflow.now() + timedelta(seconds=req.acceptance_reminder_seconds)
                        await self._notify(
                            "acceptance_deadline_approaching",
                            "reminder",
                            [Party.SELLER],
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
                        if self.view.status == OrderStatus.PAID:
                            await self._cancel_with_refund("acceptance_timeout", Party.SYSTEM, None)
                        elif self.view.status == OrderStatus.FULFILLED:
                            await self._complete("dispute_window_passed", Party.SYSTEM, None)
                    except ActivityError:
                        # The provider refused (e.g. a chargeback is open on the charge, so no refund):
                        # the chargeback signal moves the order on; the deadline starts over meanwhile.
                        workflow.logger.warning("deadline action refused by the provider", exc_info=True)

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
            party = self._authorize(OrderAction.ACCEPT, req.actor)
            await self._transition(
                OrderStatus.CONFIRMED, None, self.view.payment_state, party, req.actor, OrderEvent.ACCEPTED
            )
        return self.view

    @workflow.update
    async def decline(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize(OrderAction.DECLINE, req.actor)
            await self._cancel_with_refund("seller_declined", party, req.actor)
        return self.view

    @workflow.update
    async def cancel(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize(OrderAction.CANCEL, req.actor)
            await self._cancel_with_refund(f"{party}_cancelled", party, req.actor)
        return self.view

    @workflow.update
    async def fulfil(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize(OrderAction.FULFIL, req.actor)
            self._view = replace(self.view, tracking=req.tracking)
            await self._transition(
                OrderStatus.FULFILLED, None, self.view.payment_state, party, req.actor, OrderEvent.FULFILLED
            )
        return self.view

    @workflow.update
    async def confirm_receipt(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize(OrderAction.CONFIRM_RECEIPT, req.actor)
            await self._complete("buyer_confirmed", party, req.actor)
        return self.view

    @workflow.update
    async def open_dispute(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize(OrderAction.OPEN_DISPUTE, req.actor)
            self._view = replace(self.view, dispute_source=DisputeSource.BUYER)
            self._dispute_message = req.message or ""
            await self._transition(
                OrderStatus.DISPUTED,
                req.reason or "buyer_dispute",
                PaymentState.FROZEN,
                party,
                req.actor,
                OrderEvent.DISPUTED,
            )
        return self.view

    @workflow.update
    async def resolve_dispute(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize(OrderAction.RESOLVE_DISPUTE, req.actor)
            remaining = self._escrow_held()
            if req.resolution == DisputeResolution.RELEASE:
                await self._complete("dispute_released", party, req.actor)
            elif req.resolution == DisputeResolution.REFUND:
                # The item was shipped, so the stock does not come back automatically.
                await self._refund(remaining, "dispute_refund")
                await self._transition(
                    OrderStatus.REFUNDED,
                    "dispute_refunded",
                    PaymentState.REFUNDED,
                    party,
                    req.actor,
                    OrderEvent.REFUNDED,
                )
            elif req.resolution == DisputeResolution.PARTIAL_REFUND:
                if req.refund_amount is None or not 0 < req.refund_amount < remaining:
                    raise ApplicationError(
                        f"partial refund must be between 1 and {remaining - 1}",
                        type=Rejection.INVALID_REQUEST,
                    )
                await self._refund(req.refund_amount, "dispute_partial_refund")
                await self._complete("dispute_partially_refunded", party, req.actor)
            else:
                raise ApplicationError(
                    "resolution must be release, refund or partial_refund", type=Rejection.INVALID_REQUEST
                )
            # One of the three (else raised above): the signal carries the same string as ever.
            await self._close_dispute_case(Resolution(req.resolution, req.refund_amount))  # type: ignore[arg-type]
        return self.view

    @workflow.update
    async def retry_transfer(self, req: ActionRequest) -> OrderView:
        """Support/operators: pay out again after the provider refused the seller's transfer."""
        async with self._lock:
            party = self._authorize(OrderAction.RETRY_TRANSFER, req.actor)
            assert self._released is not None
            gross, fee = self._released
            state = await self._pay_out(gross - fee)
            action = (
                OrderEvent.PAYOUT_RETRIED
                if state == PaymentState.RELEASED
                else OrderEvent.PAYOUT_RETRY_FAILED
            )
            await self._transition(OrderStatus.COMPLETED, self.view.reason, state, party, req.actor, action)
        return self.view

    @accept.validator
    def _validate_accept(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.ACCEPT, req.actor)

    @decline.validator
    def _validate_decline(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.DECLINE, req.actor)

    @cancel.validator
    def _validate_cancel(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.CANCEL, req.actor)

    @fulfil.validator
    def _validate_fulfil(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.FULFIL, req.actor)

    @confirm_receipt.validator
    def _validate_confirm_receipt(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.CONFIRM_RECEIPT, req.actor)

    @open_dispute.validator
    def _validate_open_dispute(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.OPEN_DISPUTE, req.actor)

    @resolve_dispute.validator
    def _validate_resolve_dispute(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.RESOLVE_DISPUTE, req.actor)
        if req.resolution not in (
            DisputeResolution.RELEASE,
            DisputeResolution.REFUND,
            DisputeResolution.PARTIAL_REFUND,
        ):
            raise ApplicationError(
                "resolution must be release, refund or partial_refund", type=Rejection.INVALID_REQUEST
            )

    @retry_transfer.validator
    def _validate_retry_transfer(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.RETRY_TRANSFER, req.actor)

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
            if notice.status in ("won", "lost") and self.view.chargeback_status == ChargebackStatus.WITHDRAWN:
                await self._close_chargeback(notice)

    # ---- rules (shared with the new version: they issue no commands) ----------------------------------
    def _authorize(self, action: OrderAction, actor: Actor) -> Party:
        return rules.authorize(action, actor, self._view)
