"""The order: one durable workflow per order (id `order-<order id>`, type `Order`), read top to bottom like
the state table.

    (new)     -> pending    buyer places it (update-with-start); stock reserved atomically
    pending   -> paid       charge succeeded: funds held on the platform balance (escrow)
    pending   -> cancelled  charge declined (payment_failed) or refused by the provider (payment_rejected):
                            the stock goes back
    paid      -> confirmed  seller accepts
    paid      -> cancelled  seller declines / buyer cancels / acceptance deadline passes: full refund
    confirmed -> fulfilled  seller ships (optional tracking)
    confirmed -> cancelled  seller or support cancels: full refund
    fulfilled -> completed  buyer confirms receipt, or the dispute window passes: escrow released
    fulfilled -> disputed   buyer opens a dispute within the window: escrow frozen
    disputed  -> completed  support resolves `release` (or `partial_refund`: refund part, release the rest)
    disputed  -> refunded   support resolves `refund`
    completed -> completed  support retries a failed payout (`retry_transfer`, only when transfer_failed)

Chargebacks come from the provider (webhook -> Signal `chargeback`), not from an actor:

    paid|confirmed|fulfilled|completed|disputed|cancelled|refunded -> disputed (reason and PaymentState chargeback)
    disputed (chargeback) -> the state before it   dispute won (a completed order is paid out again)
    disputed (chargeback) -> refunded              dispute lost (reason chargeback_lost)

A chargeback after the workflow ended starts a new run of the same id with `reopen=True` (signal-with-start),
which loads the order from the database and never charges.

Failure rule (docs/failure-rules.md): no order fails, or waits forever, holding stock, money or a lock.
Every step's errors are classified. Permanent ones (a refused charge, data the database refuses) take the
compensation path: the stock goes back and the order is cancelled with a reason, or the Update is refused
with nothing changed. Transient ones are retried within a bound (`step_timeout_seconds` for database steps,
`provider_timeout_seconds` for provider calls); past it the order *needs attention*: the search attribute
`NeedsAttention`, the memo, the view and support's queue show it, support is notified, the step is retried
every `attention_retry_seconds` and at once on support's `retry`, and actor actions are refused with
`NeedsAttention` instead of waiting.

The critical path is lean: database steps are local activities (no task dispatch), a transition and all it
implies (projection, timeline, stock, notifications, reputation, review window) is one transaction, and
child workflows (dispute cases) start after the Update has answered. Every money call carries an
idempotency key `<order>:<operation>:<n>` built here, never from the attempt.

`workflows/legacy_order.py` keeps the previous version of this workflow (type `OrderWorkflow`) for orders
started before it, unchanged (docs/workflow-versioning.md).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import (
        OrderActivities,
        OrderSnapshot,
        ReserveStockInput,
        ReserveStockResult,
    )
    from bazaar.errors import Rejection
    from bazaar.models import OrderStatus, PaymentState
    from bazaar.orders import rules
    from bazaar.orders.details import Waiting
    from bazaar.orders.types import (
        TERMINAL,
        ActionRequest,
        ChargebackNotice,
        ChargebackStatus,
        OrderAction,
        OrderEvent,
        OrderView,
        Party,
        PaymentReport,
        Placement,
        PlaceOrder,
    )
    from bazaar.trust.models import DisputeResolution, DisputeSource

from workflows.dispute import DisputeWorkflow, Resolution
from workflows.failures import StepFailed, failure_text
from workflows.order_money import OrderMoney
from workflows.order_payout import PAYOUT_AFTER_ANSWER_PATCH

# Patch (2026-11-26, docs/workflow-versioning.md): the run closes in a workflow task after the last Update's.
CLOSE_APART_PATCH = "close-apart-from-updates"
# An action's Idempotency-Key names one request of the order, whatever the action (it named one per action: the
# same key on accept and then fulfil did both). Decided at the run's start, so runs started before keep theirs.
KEY_PER_ORDER_PATCH = "action-key-per-order"
CLOSE_APART = timedelta(seconds=1)


@workflow.defn(name="Order")
class OrderWorkflow(OrderMoney):
    @workflow.init
    def __init__(self, req: PlaceOrder) -> None:
        self._req = req
        self._view: OrderView | None = None
        self._seq = 0
        self._refunds = 0
        self._refunding = 0  # what refunds accepted and not yet made will take (`_under_way`)
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
        self._reminded = False
        self._dispute_message = ""
        self._shipped = False  # the seller shipped: the stock is the buyer's, whatever happens to the money
        self._attention_count = 0  # how many times a step went past its bound
        self._retry_requested = False
        self._action_keys = {}
        self._key_per_order = False  # KEY_PER_ORDER_PATCH applies to this run
        self._payout_after_answer = False  # PAYOUT_AFTER_ANSWER_PATCH applies to this run
        self._background: list[asyncio.Task[None]] = []
        self._waiting = Waiting()
        self._payouts_enabled = False  # the provider enabled the seller's payouts: a held one goes

    @workflow.run
    async def run(self, req: PlaceOrder) -> OrderView:
        self._key_per_order = workflow.patched(KEY_PER_ORDER_PATCH)
        self._payout_after_answer = workflow.patched(PAYOUT_AFTER_ANSWER_PATCH)
        if req.reopen:
            await self._restore()
        elif not await self._place():
            return self.view
        while True:
            await self._run_until_terminal()
            if self.view.payment_state == PaymentState.PAYOUT_ON_HOLD:
                await self._release_held_payout()
                continue
            if self.view.payment_state == PaymentState.TRANSFER_FAILED:
                # The seller is owed money: stay open for support's `retry_transfer`.
                await workflow.wait_condition(lambda: self.view.payment_state != PaymentState.TRANSFER_FAILED)
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._background_finished()
            if self._payout_after_answer and self.view.payment_state in rules.PAYOUT_NOT_SENT:
                continue  # the transfer after the release did not go: as above
            if self.view.status in TERMINAL and workflow.patched(CLOSE_APART_PATCH):
                # Close the run in a task of its own, not the one that answers the Update that ended the order:
                # an event landing meanwhile (the dispute case completing, a webhook's signal) makes the server
                # refuse a task that closes the run, and the Update answered in it would fail with it.
                await workflow.sleep(CLOSE_APART)
                if not workflow.all_handlers_finished():
                    continue
            if self.view.status in TERMINAL:  # else a chargeback arrived while ending: carry on
                break
        return self.view

    # ---- placement -------------------------------------------------------------------------------------
    async def _place(self) -> bool:
        """Reserve the stock and charge; False if the order was rejected (nothing taken)."""
        req = self._req
        if req.checkout is not None:
            await self._place_paid(req.checkout)  # its checkout reserved and charged
            return True
        self._view = OrderView(
            order_id=req.order_id,
            status=OrderStatus.PENDING,
            reason=None,
            buyer_id=req.buyer_id,
            listing_id=req.listing_id,
            quantity=req.quantity,
            allowed_actions=[OrderAction.CANCEL],
        )
        self._show()
        try:
            reservation = await self._db_step(
                "reserve_stock",
                OrderActivities.reserve_stock,
                ReserveStockInput(
                    order_id=req.order_id,
                    buyer_id=req.buyer_id,
                    listing_id=req.listing_id,
                    quantity=req.quantity,
                    idempotency_key=req.idempotency_key,
                    workflow_id=workflow.info().workflow_id,
                    payment_method=req.payment_method,
                ),
                forever=False,
            )
        except StepFailed as refused:  # the database refused the order's data: nothing was taken
            workflow.logger.error("reservation refused: %s", failure_text(refused))
            reservation = ReserveStockResult(ok=False, reason="invalid_request")
        if not reservation.ok:
            self._view = replace(
                self.view, status=OrderStatus.REJECTED, reason=reservation.reason, allowed_actions=[]
            )
            self._payment_settled = True
            self._publish()
            return False
        self._seq = 1  # reserve_stock wrote state 1 (pending) with the order row
        self._view = replace(
            self.view,
            seller_id=reservation.seller_id,
            listing_title=reservation.listing_title,
            amount=reservation.amount,
            currency=reservation.currency,
        )
        async with self._lock:
            await self._charge()
        self._payment_settled = True
        self._apply_provider_reports()
        return True

    async def _restore(self) -> None:
        """A reopened order: its state, counters and money positions as the database has them."""
        snap: OrderSnapshot = await self._db_step(
            "load_order", OrderActivities.load_order, self._req.order_id
        )
        self._seq = snap.seq
        self._refunds, self._releases = snap.refunds, snap.releases
        self._transfers, self._reversals = snap.transfers, snap.reversals
        self._released = (snap.released_gross, snap.released_fee) if snap.released else None
        self._shipped = (
            snap.status in (OrderStatus.FULFILLED, OrderStatus.COMPLETED) or snap.tracking is not None
        )
        self._payout = (snap.payout_transfer_id, snap.payout_amount) if snap.payout_transfer_id else None
        view = OrderView(
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
            checkout_id=snap.checkout_id,
            lines=snap.lines,
            refunded_units=snap.refunded_units,
        )
        self._view = replace(view, allowed_actions=rules.allowed_actions(view))
        self._publish()
        self._payment_settled = True

    async def _run_until_terminal(self) -> None:
        """Timers: the seller must accept in time; the buyer may dispute only within the window."""
        terms = self._terms
        while self.view.status not in TERMINAL:
            status = self.view.status
            deadline = {
                OrderStatus.PAID: terms.acceptance_timeout_seconds,
                OrderStatus.FULFILLED: terms.dispute_window_seconds,
            }
            seconds = deadline.get(status)
            until = workflow.now() + timedelta(seconds=seconds) if seconds else None
            self._waiting = replace(self._waiting, status=status, until=until)
            self._show()
            if status == OrderStatus.PAID and not self._reminded and seconds is not None:
                self._reminded = True
                before = seconds - terms.acceptance_reminder_seconds
                if before > 0:
                    accept_by = await self._remind_seller(before)
                    if accept_by is None:
                        continue  # the seller acted (or the order moved) before the reminder
                    # Measured from the deadline itself: saving the reminder took a moment.
                    seconds = max(1, math.ceil((accept_by - workflow.now()).total_seconds()))
            try:
                await workflow.wait_condition(
                    lambda current=status: self.view.status != current,  # type: ignore[misc]
                    timeout=timedelta(seconds=seconds) if seconds else None,
                )
            except TimeoutError:
                async with self._lock:
                    try:
                        if self.view.status == OrderStatus.PAID:
                            await self._cancel_with_refund("acceptance_timeout", Party.SYSTEM, None)
                        elif self.view.status == OrderStatus.FULFILLED:
                            await self._complete("dispute_window_passed", Party.SYSTEM, None)
                    except ApplicationError:
                        # The provider refused (e.g. a chargeback is open on the charge, so no refund):
                        # the chargeback signal moves the order on; the deadline starts over meanwhile.
                        workflow.logger.warning("deadline action refused by the provider", exc_info=True)

    # ---- reads -------------------------------------------------------------------------------------
    @workflow.query
    def state(self) -> OrderView | None:
        return self._view

    @workflow.update
    async def placement(self, request: Placement | None = None) -> OrderView | None:
        """Answer the create-order request once the charge has an outcome (the API bounds its wait and
        answers 202 with the pending order when the charge is slow)."""
        await workflow.wait_condition(lambda: self._payment_settled)
        return self._view

    @placement.validator
    def _validate_placement(self, request: Placement | None = None) -> None:
        req = self._req
        if request is not None and (request.listing_id, request.quantity, request.payment_method) != (
            req.listing_id,
            req.quantity,
            req.payment_method,
        ):
            raise ApplicationError(
                "this Idempotency-Key was used for a different order",
                self._view,
                type=Rejection.IDEMPOTENCY_KEY_REUSED,
            )

    # ---- actor actions (Updates) ---------------------------------------------------------------------
    @workflow.update
    async def accept(self, req: ActionRequest) -> OrderView:
        async with self._acting(OrderAction.ACCEPT, req) as party:
            await self._transition(
                OrderStatus.CONFIRMED,
                reason=None,
                payment_state=self.view.payment_state,
                party=party,
                actor=req.actor,
                action=OrderEvent.ACCEPTED,
            )
        return self.view

    @workflow.update
    async def decline(self, req: ActionRequest) -> OrderView:
        async with self._acting(OrderAction.DECLINE, req) as party:
            await self._cancel_with_refund("seller_declined", party, req.actor, note=req.reason)
        return self.view

    @workflow.update
    async def cancel(self, req: ActionRequest) -> OrderView:
        async with self._acting(OrderAction.CANCEL, req) as party:
            await self._cancel_with_refund(f"{party}_cancelled", party, req.actor, note=req.reason)
        return self.view

    @workflow.update
    async def fulfil(self, req: ActionRequest) -> OrderView:
        async with self._acting(OrderAction.FULFIL, req) as party:
            shipped = replace(self.view, tracking=req.tracking)
            await self._transition(
                OrderStatus.FULFILLED,
                reason=None,
                payment_state=shipped.payment_state,
                party=party,
                actor=req.actor,
                action=OrderEvent.FULFILLED,
                base=shipped,
            )
            self._shipped = True
        return self.view

    @workflow.update
    async def confirm_receipt(self, req: ActionRequest) -> OrderView:
        async with self._acting(OrderAction.CONFIRM_RECEIPT, req) as party:
            await self._complete("buyer_confirmed", party, req.actor)
        return self.view

    @workflow.update
    async def open_dispute(self, req: ActionRequest) -> OrderView:
        async with self._acting(OrderAction.OPEN_DISPUTE, req) as party:
            disputed = replace(self.view, dispute_source=DisputeSource.BUYER)
            self._dispute_message = req.message or ""
            await self._transition(
                OrderStatus.DISPUTED,
                reason=req.reason or "buyer_dispute",
                payment_state=PaymentState.FROZEN,
                party=party,
                actor=req.actor,
                action=OrderEvent.DISPUTED,
                base=disputed,
                opens_case=DisputeSource.BUYER,
            )
        return self.view

    @workflow.update
    async def resolve_dispute(self, req: ActionRequest) -> OrderView:
        async with self._acting(OrderAction.RESOLVE_DISPUTE, req) as party:
            self._check_resolution(req)
            resolution = DisputeResolution(str(req.resolution))  # checked by the validator
            remaining = self._escrow_held()
            refunded = {
                DisputeResolution.REFUND: remaining,
                DisputeResolution.PARTIAL_REFUND: req.refund_amount,
            }
            settled = Resolution(resolution, refunded.get(resolution), note=req.reason)
            if resolution == DisputeResolution.RELEASE:
                await self._complete(
                    "dispute_released", party, req.actor, resolution=settled, note=req.reason
                )
            elif resolution == DisputeResolution.REFUND:
                # A shipped item stays with the buyer (the stock does not come back); an unshipped one goes
                # back on sale.
                await self._refund(remaining, "dispute_refund")
                await self._transition(
                    OrderStatus.REFUNDED,
                    reason="dispute_refunded",
                    payment_state=PaymentState.REFUNDED,
                    party=party,
                    actor=req.actor,
                    action=OrderEvent.REFUNDED,
                    release_stock=not self._shipped,
                    resolution=settled,
                    note=req.reason,
                )
            else:
                if req.refund_amount is None or not 0 < req.refund_amount < remaining:
                    raise ApplicationError(
                        f"partial refund must be between 1 and {remaining - 1}",
                        type=Rejection.INVALID_REQUEST,
                    )
                await self._refund(req.refund_amount, "dispute_partial_refund")
                await self._complete(
                    "dispute_partially_refunded", party, req.actor, resolution=settled, note=req.reason
                )
            self._signal_dispute_case(DisputeWorkflow.resolved, settled)
        return self.view

    @workflow.update
    async def refund(self, req: ActionRequest) -> OrderView:
        """The seller or support gives part or all of the escrowed money back to the buyer, or support after the
        release (a completed order's run is reopened for it); the whole of it ends the order as refunded (the
        stock comes back if it was not shipped)."""
        async with self._under_way(req), self._acting(OrderAction.REFUND, req) as party:
            # Again: a reopened run skips the validator.
            rules.check_request(OrderAction.REFUND, {"reason": req.reason})
            await self._refund_asked(req, party)
        return self.view

    @refund.validator
    def _validate_refund(self, req: ActionRequest) -> None:
        if self._view is None and self._req.reopen:
            return  # a reopened run still loading the order (update-with-start): the handler checks it then
        self._authorize(OrderAction.REFUND, req)
        rules.check_request(OrderAction.REFUND, {"reason": req.reason})
        self._check_refund_amount(req, under_way=self._refunding)

    @workflow.update
    async def retry_transfer(self, req: ActionRequest) -> OrderView:
        """Support/operators: pay out again after the provider refused the seller's transfer."""
        async with self._acting(OrderAction.RETRY_TRANSFER, req) as party:
            assert self._released is not None
            gross, fee = self._released
            state = await self._pay_out(gross - fee)
            action = (
                OrderEvent.PAYOUT_RETRIED
                if state == PaymentState.RELEASED
                else OrderEvent.PAYOUT_RETRY_FAILED
            )
            await self._transition(
                OrderStatus.COMPLETED,
                reason=self.view.reason,
                payment_state=state,
                party=party,
                actor=req.actor,
                action=action,
            )
        return self.view

    @workflow.update
    async def retry(self, req: ActionRequest) -> OrderView:
        """Support: run the step this order is stuck on again now (it also retries on its own)."""
        self._authorize(OrderAction.RETRY, req)
        seen = self._attention_count
        self._retry_requested = True
        await workflow.wait_condition(lambda: self.view.attention is None or self._attention_count > seen)
        return self.view

    @asynccontextmanager
    async def _acting(self, action: OrderAction, req: ActionRequest) -> AsyncIterator[Party]:
        """Wait for the charge's outcome, take the order's lock, and check the key and the rules again (a request
        under the same key, or the state, may have moved since the validator ran): yields the acting party."""
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            self._check_action_key(action, req, record=False)  # reused at once: refused before the rules
            party = rules.authorize(action, req.actor, self._view)
            self._check_action_key(action, req)
            yield party

    @accept.validator
    def _validate_accept(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.ACCEPT, req)

    @decline.validator
    def _validate_decline(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.DECLINE, req)
        rules.check_request(OrderAction.DECLINE, {"reason": req.reason})

    @cancel.validator
    def _validate_cancel(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.CANCEL, req)
        rules.check_request(OrderAction.CANCEL, {"reason": req.reason})

    @fulfil.validator
    def _validate_fulfil(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.FULFIL, req)
        tracking = req.tracking or {}
        unknown = set(tracking) - rules.TRACKING_FIELDS
        if unknown:
            raise ApplicationError(
                f"fulfil: unknown tracking fields {sorted(unknown)}", type=Rejection.INVALID_REQUEST
            )
        rules.check_request(OrderAction.FULFIL, dict(tracking))

    @confirm_receipt.validator
    def _validate_confirm_receipt(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.CONFIRM_RECEIPT, req)

    @open_dispute.validator
    def _validate_open_dispute(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.OPEN_DISPUTE, req)
        rules.check_request(OrderAction.OPEN_DISPUTE, {"reason": req.reason, "message": req.message})

    @resolve_dispute.validator
    def _validate_resolve_dispute(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.RESOLVE_DISPUTE, req)
        rules.check_resolution(req.resolution)
        self._check_resolution(req)

    @retry_transfer.validator
    def _validate_retry_transfer(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.RETRY_TRANSFER, req)

    @retry.validator
    def _validate_retry(self, req: ActionRequest) -> None:
        self._authorize(OrderAction.RETRY, req)

    # ---- provider events (Signals: fire-and-forget, sent by the webhook endpoint) ---------------------
    @workflow.signal
    def payouts_enabled(self) -> None:
        """The provider reported the seller's payouts enabled (their account.updated webhook): a held payout goes."""
        self._payouts_enabled = True

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
        after_refund = await self._chargeback_settled()
        async with self._lock:
            if self.view.chargeback_id is None:
                if not self._chargeable_back(after_refund):
                    workflow.logger.warning(
                        "chargeback %s on a %s order ignored", notice.dispute_id, self.view.status
                    )
                    return
                await self._open_chargeback(notice)
            elif notice.dispute_id != self.view.chargeback_id:
                workflow.logger.warning("second dispute %s ignored", notice.dispute_id)
                return
            # The provider's decision (its dispute status) on a chargeback still open here.
            decided = notice.status in ("won", "lost")
            if decided and self.view.chargeback_status == ChargebackStatus.WITHDRAWN:
                if self._before_chargeback is None:
                    # A reopened run that never saw this chargeback open: its decision was applied by the
                    # run that did (a redelivered event); nothing to undo or book twice.
                    workflow.logger.warning("decision on chargeback %s already applied", notice.dispute_id)
                    return
                await self._close_chargeback(notice)
