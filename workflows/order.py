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

    paid|confirmed|fulfilled|completed|disputed -> disputed (reason chargeback, PaymentState chargeback)
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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.database import DATA_ERROR
    from activities.orders import (
        AttentionReport,
        LedgerPosting,
        OrderActivities,
        OrderSnapshot,
        OrderTransition,
        ReserveStockInput,
        ReserveStockResult,
    )
    from activities.payments import (
        ChargebackMovement,
        ChargeRequest,
        PaymentActivities,
        RefundRequest,
        ReleaseReversalRequest,
        TransferRequest,
        TransferReversalRequest,
    )
    from bazaar.orders import rules
    from bazaar.orders.notices import Effects, effects_of, notice
    from bazaar.orders.types import (
        BUYER_ID,
        LISTING_ID,
        NEEDS_ATTENTION,
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
        Placement,
        PlaceOrder,
        order_workflow_id,
    )
    from bazaar.payments.money import platform_fee

from workflows.children import start_detached
from workflows.dispute import ChargebackJoined, DisputeCase, DisputeWorkflow, Resolution, dispute_workflow_id

T = TypeVar("T")

# Database steps: short transactions, retried quickly; data the database refuses is final.
DB_ATTEMPT = timedelta(seconds=10)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=[DATA_ERROR],
)
# Provider calls: bounded by the SDK timeout; transient errors retried, refusals are final.
MONEY_ATTEMPT = timedelta(seconds=30)
MONEY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["PaymentRejected"],
)
# A local activity waits for a retry inside its workflow task only up to this backoff; longer ones become timers.
# Kept short because sdk-core drops a local activity's schedule-to-close bound when it fires during an
# in-task backoff (seen with temporalio 1.35): a step failing fast would otherwise retry forever, unflagged.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)
# Ledger accounts (bazaar.models.LedgerAccount values) of the release booked with a completion.
ESCROW, PLATFORM_FEES, SELLER_PAYABLE = "escrow", "platform_fees", "seller_payable"
# A provider call on an Update's path first runs locally, for at most this long (a couple of attempts); a
# slower or failing provider then gets a normal activity (retried by the server, visible as pending).
LOCAL_MONEY_BUDGET = timedelta(seconds=15)
# States whose money a chargeback can take: the charge succeeded and was not (fully) refunded.
CHARGEABLE_BACK = frozenset({"paid", "confirmed", "fulfilled", "completed", "disputed"})


# How a step fails: a normal activity raises ActivityError (its cause says why); a local activity raises the
# failure itself (an ApplicationError, or a TimeoutError past its schedule-to-close bound).
StepFailed = (ActivityError, ApplicationError, TemporalTimeoutError)


def _reason(error: BaseException) -> BaseException:
    return (error.cause or error) if isinstance(error, ActivityError) else error


def _is_permanent(error: BaseException) -> bool:
    reason = _reason(error)
    return isinstance(reason, ApplicationError) and reason.non_retryable


def _failure_text(error: BaseException) -> str:
    """The most telling message in the failure chain (the activity's own error, or the timeout)."""
    cause = _reason(error)
    while not str(cause) and cause.__cause__ is not None:
        cause = cause.__cause__
    return (str(cause) or type(cause).__name__)[:300]


@workflow.defn(name="Order")
class OrderWorkflow:
    @workflow.init
    def __init__(self, req: PlaceOrder) -> None:
        self._req = req
        self._view: OrderView | None = None
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
        self._reminded = False
        self._dispute_message = ""
        self._shipped = False  # the seller shipped: the stock is the buyer's, whatever happens to the money
        self._attention_count = 0  # how many times a step went past its bound
        self._retry_requested = False
        self._background: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, req: PlaceOrder) -> OrderView:
        if req.reopen:
            await self._restore()
        elif not await self._place():
            return self.view
        while True:
            await self._run_until_terminal()
            if self.view.payment_state == "transfer_failed":
                # The seller is owed money: stay open for support's `retry_transfer`.
                await workflow.wait_condition(lambda: self.view.payment_state != "transfer_failed")
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._background_finished()
            if self.view.status in TERMINAL:  # else a chargeback arrived while ending: carry on
                break
        return self.view

    @property
    def view(self) -> OrderView:
        assert self._view is not None
        return self._view

    @property
    def _terms(self) -> PlaceOrder:
        return self._req

    # ---- placement -------------------------------------------------------------------------------------
    async def _place(self) -> bool:
        """Reserve the stock and charge; False if the order was rejected (nothing taken)."""
        req = self._req
        self._view = OrderView(
            order_id=req.order_id,
            status="pending",
            reason=None,
            buyer_id=req.buyer_id,
            listing_id=req.listing_id,
            quantity=req.quantity,
            allowed_actions=["cancel"],
        )
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
            workflow.logger.error("reservation refused: %s", _failure_text(refused))
            reservation = ReserveStockResult(ok=False, reason="invalid_request")
        if not reservation.ok:
            self._view = replace(self.view, status="rejected", reason=reservation.reason, allowed_actions=[])
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
        self._shipped = snap.status in ("fulfilled", "completed") or snap.tracking is not None
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
            dispute_source="chargeback" if snap.chargeback_id else None,
        )
        self._view = replace(view, allowed_actions=rules.allowed_actions(view))
        self._publish()
        self._payment_settled = True

    async def _run_until_terminal(self) -> None:
        """Timers: the seller must accept in time; the buyer may dispute only within the window."""
        terms = self._terms
        while self.view.status not in TERMINAL:
            status = self.view.status
            deadline = {"paid": terms.acceptance_timeout_seconds, "fulfilled": terms.dispute_window_seconds}
            seconds = deadline.get(status)
            if status == "paid" and not self._reminded and seconds is not None:
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
                        if self.view.status == "paid":
                            await self._cancel_with_refund("acceptance_timeout", "system", None)
                        elif self.view.status == "fulfilled":
                            await self._complete("dispute_window_passed", "system", None)
                    except ApplicationError:
                        # The provider refused (e.g. a chargeback is open on the charge, so no refund):
                        # the chargeback signal moves the order on; the deadline starts over meanwhile.
                        workflow.logger.warning("deadline action refused by the provider", exc_info=True)

    async def _remind_seller(self, after_seconds: int) -> datetime | None:
        """Wait until the reminder is due and send it; the acceptance deadline, or None if the order moved
        on before that."""
        try:
            await workflow.wait_condition(
                lambda: self.view.status != "paid", timeout=timedelta(seconds=after_seconds)
            )
            return None
        except TimeoutError:
            pass
        accept_by = workflow.now() + timedelta(seconds=self._terms.acceptance_reminder_seconds)
        reminder = notice(
            self.view,
            "reminder",
            "acceptance_deadline_approaching",
            ["seller"],
            {"deadline": accept_by.isoformat(timespec="minutes")},
        )
        async with self._lock:
            if self.view.status != "paid":
                return None
            await self._save(self.view, "system", None, "order.reminded", Effects([reminder]))
        return accept_by

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
                "this Idempotency-Key was used for a different order", self._view, type="IdempotencyKeyReused"
            )

    # ---- actor actions (Updates) ---------------------------------------------------------------------
    @workflow.update
    async def accept(self, req: ActionRequest) -> OrderView:
        async with self._acting("accept", req) as party:
            await self._transition(
                "confirmed", None, self.view.payment_state, party, req.actor, "order.accepted"
            )
        return self.view

    @workflow.update
    async def decline(self, req: ActionRequest) -> OrderView:
        async with self._acting("decline", req) as party:
            await self._cancel_with_refund("seller_declined", party, req.actor)
        return self.view

    @workflow.update
    async def cancel(self, req: ActionRequest) -> OrderView:
        async with self._acting("cancel", req) as party:
            await self._cancel_with_refund(f"{party}_cancelled", party, req.actor)
        return self.view

    @workflow.update
    async def fulfil(self, req: ActionRequest) -> OrderView:
        async with self._acting("fulfil", req) as party:
            shipped = replace(self.view, tracking=req.tracking)
            await self._transition(
                "fulfilled", None, shipped.payment_state, party, req.actor, "order.fulfilled", base=shipped
            )
            self._shipped = True
        return self.view

    @workflow.update
    async def confirm_receipt(self, req: ActionRequest) -> OrderView:
        async with self._acting("confirm_receipt", req) as party:
            await self._complete("buyer_confirmed", party, req.actor)
        return self.view

    @workflow.update
    async def open_dispute(self, req: ActionRequest) -> OrderView:
        async with self._acting("open_dispute", req) as party:
            disputed = replace(self.view, dispute_source="buyer")
            await self._transition(
                "disputed",
                req.reason or "buyer_dispute",
                "frozen",
                party,
                req.actor,
                "order.disputed",
                base=disputed,
            )
            self._dispute_message = req.message or ""
            self._open_dispute_case(by_buyer=True)
        return self.view

    @workflow.update
    async def resolve_dispute(self, req: ActionRequest) -> OrderView:
        async with self._acting("resolve_dispute", req) as party:
            self._check_resolution(req)
            remaining = self._escrow_held()
            if req.resolution == "release":
                await self._complete("dispute_released", party, req.actor)
            elif req.resolution == "refund":
                # A shipped item stays with the buyer (the stock does not come back); an unshipped one goes
                # back on sale.
                await self._refund(remaining, "dispute_refund")
                await self._transition(
                    "refunded",
                    "dispute_refunded",
                    "refunded",
                    party,
                    req.actor,
                    "order.refunded",
                    release_stock=not self._shipped,
                )
            else:
                if req.refund_amount is None or not 0 < req.refund_amount < remaining:
                    raise ApplicationError(
                        f"partial refund must be between 1 and {remaining - 1}", type="InvalidRequest"
                    )
                await self._refund(req.refund_amount, "dispute_partial_refund")
                await self._complete("dispute_partially_refunded", party, req.actor)
            self._signal_dispute_case(
                DisputeWorkflow.resolved, Resolution(str(req.resolution), req.refund_amount)
            )
        return self.view

    @workflow.update
    async def retry_transfer(self, req: ActionRequest) -> OrderView:
        """Support/operators: pay out again after the provider refused the seller's transfer."""
        async with self._acting("retry_transfer", req) as party:
            assert self._released is not None
            gross, fee = self._released
            state = await self._pay_out(gross - fee)
            action = "order.payout_retried" if state == "released" else "order.payout_retry_failed"
            await self._transition("completed", self.view.reason, state, party, req.actor, action)
        return self.view

    @workflow.update
    async def retry(self, req: ActionRequest) -> OrderView:
        """Support: run the step this order is stuck on again now (it also retries on its own)."""
        rules.authorize("retry", req.actor, self._view)
        occurrence = self._attention_count
        self._retry_requested = True
        await workflow.wait_condition(
            lambda: self.view.attention is None or self._attention_count > occurrence
        )
        return self.view

    @asynccontextmanager
    async def _acting(self, action: str, req: ActionRequest) -> AsyncIterator[str]:
        """Wait for the charge's outcome, take the order's lock, and check the rules again (the state may
        have moved since the validator ran): yields the acting party."""
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            yield rules.authorize(action, req.actor, self._view)

    @accept.validator
    def _validate_accept(self, req: ActionRequest) -> None:
        rules.authorize("accept", req.actor, self._view)

    @decline.validator
    def _validate_decline(self, req: ActionRequest) -> None:
        rules.authorize("decline", req.actor, self._view)
        rules.check_request("decline", {"reason": req.reason})

    @cancel.validator
    def _validate_cancel(self, req: ActionRequest) -> None:
        rules.authorize("cancel", req.actor, self._view)
        rules.check_request("cancel", {"reason": req.reason})

    @fulfil.validator
    def _validate_fulfil(self, req: ActionRequest) -> None:
        rules.authorize("fulfil", req.actor, self._view)
        tracking = req.tracking or {}
        unknown = set(tracking) - rules.TRACKING_FIELDS
        if unknown:
            raise ApplicationError(
                f"fulfil: unknown tracking fields {sorted(unknown)}", type="InvalidRequest"
            )
        rules.check_request("fulfil", dict(tracking))

    @confirm_receipt.validator
    def _validate_confirm_receipt(self, req: ActionRequest) -> None:
        rules.authorize("confirm_receipt", req.actor, self._view)

    @open_dispute.validator
    def _validate_open_dispute(self, req: ActionRequest) -> None:
        rules.authorize("open_dispute", req.actor, self._view)
        rules.check_request("open_dispute", {"reason": req.reason, "message": req.message})

    @resolve_dispute.validator
    def _validate_resolve_dispute(self, req: ActionRequest) -> None:
        rules.authorize("resolve_dispute", req.actor, self._view)
        rules.check_resolution(req.resolution)
        self._check_resolution(req)

    def _check_resolution(self, req: ActionRequest) -> None:
        """Paying the seller (all or part) needs an item that was shipped."""
        if req.resolution != "refund" and not self._shipped:
            raise ApplicationError(
                "the order was never shipped: only a refund resolves it (its stock goes back on sale)",
                self._view,
                type="InvalidRequest",
            )

    @retry_transfer.validator
    def _validate_retry_transfer(self, req: ActionRequest) -> None:
        rules.authorize("retry_transfer", req.actor, self._view)

    @retry.validator
    def _validate_retry(self, req: ActionRequest) -> None:
        rules.authorize("retry", req.actor, self._view)

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
                if self._before_chargeback is None:
                    # A reopened run that never saw this chargeback open: its decision was applied by the
                    # run that did (a redelivered event); nothing to undo or book twice.
                    workflow.logger.warning("decision on chargeback %s already applied", notice.dispute_id)
                    return
                await self._close_chargeback(notice)

    # ---- steps ----------------------------------------------------------------------------------------
    async def _charge(self) -> None:
        req = self._req
        try:
            charge = await self._provider_step(
                "charge",
                PaymentActivities.charge,
                ChargeRequest(
                    order_id=req.order_id,
                    amount=self.view.amount,
                    currency=self.view.currency,
                    payment_method=req.payment_method,
                    idempotency_key=f"{req.order_id}:charge:1",
                    transfer_group=order_workflow_id(req.order_id),
                ),
            )
        except StepFailed as refused:
            # The provider refused the request itself (unknown payment method, an amount it cannot
            # charge): nothing was taken; the stock goes back.
            workflow.logger.warning("charge refused: %s", _failure_text(refused))
            await self._transition(
                "cancelled",
                "payment_rejected",
                "failed",
                "system",
                None,
                "order.payment_rejected",
                release_stock=True,
            )
            return
        self._view = replace(self.view, payment_intent_id=charge.payment_intent_id)
        if charge.succeeded:
            await self._transition("paid", None, "held_in_escrow", "system", None, "order.paid")
        else:
            await self._transition(
                "cancelled",
                "payment_failed",
                "failed",
                "system",
                None,
                "order.payment_failed",
                release_stock=True,
            )

    def _apply_provider_reports(self) -> None:
        """Compare the provider's reports with the charge we made (after our charge has an outcome)."""
        ours = self.view.payment_intent_id
        for intent, status in self._provider_reports.items():
            if intent == ours:
                self._view = replace(self.view, provider_payment_status=status)
            elif status == "succeeded" and intent not in self.view.unexpected_payment_intents:
                # Money taken that this order did not ask for: never charge or refund on a guess; it shows
                # in the order state and in reconciliation for an operator.
                workflow.logger.warning("unexpected PaymentIntent %s for this order", intent)
                self._view = replace(
                    self.view, unexpected_payment_intents=[*self.view.unexpected_payment_intents, intent]
                )

    async def _refund(self, amount: int, reason: str) -> None:
        """Give `amount` back to the buyer; a refusal is raised as `PaymentRejected` (nothing changed)."""
        assert self.view.payment_intent_id is not None
        self._refunds += 1
        try:
            await self._provider_step(
                "refund",
                PaymentActivities.refund,
                RefundRequest(
                    order_id=self.view.order_id,
                    payment_intent_id=self.view.payment_intent_id,
                    amount=amount,
                    currency=self.view.currency,
                    idempotency_key=f"{self.view.order_id}:refund:{self._refunds}",
                    reason=reason,
                ),
                local_first=True,
            )
        except StepFailed as refused:
            raise ApplicationError(
                f"the payment provider refused the refund: {_failure_text(refused)}",
                self.view,
                type="PaymentRejected",
            ) from None
        self._view = replace(self.view, refunded_amount=self.view.refunded_amount + amount)

    async def _cancel_with_refund(self, reason: str, party: str, actor: Actor | None) -> None:
        if self.view.payment_state == "held_in_escrow":
            await self._refund(self.view.amount - self.view.refunded_amount, reason)
        await self._transition(
            "cancelled", reason, "refunded", party, actor, "order.cancelled", release_stock=True
        )

    async def _complete(self, reason: str, party: str, actor: Actor | None, fee: int | None = None) -> None:
        """Release what is left in escrow: the fee to the platform, the rest transferred to the seller."""
        gross = self._escrow_held()
        if fee is None:
            fee = platform_fee(gross, self._terms.fee_bps, self._terms.fee_fixed)
        self._view = replace(self.view, platform_fee=fee)
        self._releases += 1
        # Booked with the completion itself (one transaction): escrow to the fee and the seller's payable.
        release = LedgerPosting(
            f"{self.view.order_id}:release:{self._releases}",
            {ESCROW: -gross, PLATFORM_FEES: fee, SELLER_PAYABLE: gross - fee},
        )
        self._released = (gross, fee)
        payment_state = await self._pay_out(gross - fee) if gross - fee > 0 else "released"
        await self._transition(
            "completed", reason, payment_state, party, actor, "order.completed", ledger=[release]
        )

    async def _pay_out(self, amount: int) -> str:
        """Transfer the seller's share; the resulting PaymentState (released, or transfer_failed)."""
        order_id = self.view.order_id
        self._transfers += 1
        transfer = TransferRequest(
            order_id=order_id,
            amount=amount,
            currency=self.view.currency,
            transfer_group=order_workflow_id(order_id),
            idempotency_key=f"{order_id}:transfer:{self._transfers}",
        )
        try:
            # A provider that is slow or down is retried under this same key (past the bound the order
            # needs attention): its outcome may be unknown, so a new key could pay the seller twice.
            result = await self._provider_step(
                "transfer", PaymentActivities.transfer, transfer, local_first=True
            )
        except StepFailed:
            # Refused for good (no usable connected account, balance): completed for both sides; the
            # payout needs support (PaymentState transfer_failed, then `retry_transfer` with a new key,
            # which is safe because the refused attempt moved nothing). The order stays open until then.
            workflow.logger.error("payout refused; waiting for support", exc_info=True)
            return "transfer_failed"
        self._payout = (result.transfer_id, amount)
        return "released"

    def _escrow_held(self) -> int:
        """What this order holds in escrow (before release): charged, minus refunds, minus a chargeback."""
        taken = self.view.chargeback_amount if self.view.chargeback_status in ("withdrawn", "lost") else 0
        return self.view.amount - self.view.refunded_amount - taken

    # ---- chargebacks --------------------------------------------------------------------------------
    async def _open_chargeback(self, notice: ChargebackNotice) -> None:
        """The network has withdrawn the money: book it against escrow and freeze the order."""
        self._before_chargeback = (self.view.status, self.view.reason, self.view.payment_state)
        if self.view.status == "completed":
            await self._claw_back()
        await self._book_chargeback(notice, reinstated=False)
        charged_back = replace(
            self.view,
            dispute_source="chargeback",
            chargeback_id=notice.dispute_id,
            chargeback_status="withdrawn",
            chargeback_amount=notice.amount,
        )
        await self._transition(
            "disputed", "chargeback", "chargeback", "system", None, "order.chargeback", base=charged_back
        )
        if self._before_chargeback[0] == "disputed":
            # The buyer's case is open: the chargeback joins it rather than opening a second one.
            joined = ChargebackJoined(notice.dispute_id, notice.amount, self.view.currency)
            self._signal_dispute_case(DisputeWorkflow.chargeback_joined, joined)
        else:
            self._open_dispute_case(by_buyer=False)

    async def _claw_back(self) -> None:
        """Completed order: bring the seller's payout and the fee back into escrow, so the chargeback is
        booked like any other (the platform does not keep a fee on a charged-back order)."""
        if self._payout is not None:
            transfer_id, amount = self._payout
            self._reversals += 1
            try:
                await self._provider_step(
                    "reverse_transfer",
                    PaymentActivities.reverse_transfer,
                    TransferReversalRequest(
                        order_id=self.view.order_id,
                        transfer_id=transfer_id,
                        amount=amount,
                        currency=self.view.currency,
                        idempotency_key=f"{self.view.order_id}:transfer_reversal:{self._reversals}",
                        reason="chargeback",
                    ),
                    local_first=True,
                )
            except StepFailed:
                # The seller's account would not give it back: the release stands and the chargeback
                # overdraws this order's escrow, the platform's loss (docs/operations.md).
                workflow.logger.error("transfer reversal refused; chargeback booked as a platform loss")
                return
            self._payout = None
        assert self._released is not None
        gross, fee = self._released
        await self._db_step(
            "reverse_release",
            PaymentActivities.reverse_release,
            ReleaseReversalRequest(
                self.view.order_id,
                fee,
                gross - fee,
                self.view.currency,
                f"{self.view.order_id}:release_reversal:{self._releases}",
            ),
            forever=True,
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
                self._signal_dispute_case(DisputeWorkflow.resolved, Resolution("release"))
            return
        self._view = replace(self.view, chargeback_status="lost")
        if self._escrow_held() > 0:
            await self._transition(
                "disputed", "chargeback_lost", "frozen", "system", None, "order.chargeback_lost"
            )
            return
        await self._transition(
            "refunded",
            "chargeback_lost",
            "charged_back",
            "system",
            None,
            "order.chargeback_lost",
            release_stock=not self._shipped,  # never shipped: the stock can be sold again
        )
        self._signal_dispute_case(DisputeWorkflow.resolved, Resolution("refund", notice.amount))

    async def _book_chargeback(self, notice: ChargebackNotice, reinstated: bool) -> None:
        operation = "chargeback_reversal" if reinstated else "chargeback"
        await self._db_step(
            "record_chargeback",
            PaymentActivities.record_chargeback,
            ChargebackMovement(
                order_id=self.view.order_id,
                dispute_id=notice.dispute_id,
                amount=self.view.chargeback_amount if reinstated else notice.amount,
                currency=self.view.currency,
                reinstated=reinstated,
                key=f"{self.view.order_id}:{operation}:{notice.dispute_id}",
            ),
            forever=True,
        )

    # ---- transitions ------------------------------------------------------------------------------------
    async def _transition(
        self,
        status: str,
        reason: str | None,
        payment_state: str,
        party: str,
        actor: Actor | None,
        action: str,
        *,
        base: OrderView | None = None,
        release_stock: bool = False,
        ledger: list[LedgerPosting] | None = None,
    ) -> None:
        """Move to `status`, saved with everything the move implies; the view changes only once saved.
        A move that changed no money (accept, fulfil, dispute) is refused if its data cannot be saved."""
        view = replace(base or self.view, status=status, reason=reason, payment_state=payment_state)
        view = replace(view, allowed_actions=rules.allowed_actions(view))
        now = workflow.now()
        effects = effects_of(
            action,
            view,
            payout=(self._released[0] - self._released[1]) if self._released else 0,
            transfers=self._transfers,
            accept_by=now + timedelta(seconds=self._terms.acceptance_timeout_seconds),
            reviews_close_at=now + timedelta(seconds=self._terms.review_window_seconds),
        )
        reversible = action in ("order.accepted", "order.fulfilled", "order.disputed")
        await self._save(
            view,
            party,
            actor,
            action,
            effects,
            release_stock=release_stock,
            ledger=ledger,
            reversible=reversible,
        )
        self._view = view
        self._publish()

    async def _save(
        self,
        view: OrderView,
        party: str,
        actor: Actor | None,
        action: str,
        effects: Effects,
        *,
        release_stock: bool = False,
        ledger: list[LedgerPosting] | None = None,
        reversible: bool = False,
    ) -> None:
        seq = self._seq + 1
        transition = OrderTransition(
            order_id=view.order_id,
            seq=seq,
            status=view.status,
            reason=view.reason,
            payment_state=view.payment_state,
            actor_id=actor.user_id if actor else None,
            actor_role=party,
            action=action,
            tracking=view.tracking,
            release_stock=release_stock,
            ledger=ledger or [],
            notices=effects.notices,
            outcome=effects.outcome,
            review_closes_at=workflow.now() + timedelta(seconds=self._terms.review_window_seconds)
            if effects.opens_reviews
            else None,
        )
        try:
            await self._db_step(
                "save_transition", OrderActivities.save_transition, transition, forever=not reversible
            )
        except StepFailed as refused:
            raise ApplicationError(
                f"{action} could not be saved: {_failure_text(refused)}", type="InvalidRequest"
            ) from None
        self._seq = seq

    # ---- running steps within the failure rule ---------------------------------------------------------
    async def _db_step(
        self, name: str, activity: Callable[..., Awaitable[T]], arg: Any, *, forever: bool = True
    ) -> T:
        """A database step as a local activity. `forever`: even a permanent failure only flags the order
        (the step must happen: money already moved); else a permanent failure is raised to the caller."""
        return await self._attempt(
            name,
            lambda: workflow.execute_local_activity_method(
                activity,
                arg,
                start_to_close_timeout=DB_ATTEMPT,
                schedule_to_close_timeout=timedelta(seconds=self._terms.step_timeout_seconds),
                retry_policy=DB_RETRY,
                local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            ),
            permanent_raises=not forever,
        )

    async def _provider_step(
        self, name: str, activity: Callable[..., Awaitable[T]], arg: Any, *, local_first: bool = False
    ) -> T:
        """A provider call; a refusal (non-retryable) is raised to the caller, which compensates.
        `local_first`: try it as a local activity for a few seconds first (no task dispatch: this is the
        critical path of an Update someone waits for), then, if the provider is slow or failing, as a normal
        activity that the server retries and operators see pending."""
        if local_first:
            try:
                return await self._local_first(activity, arg)
            except StepFailed as failure:
                if _is_permanent(failure):
                    raise
        return await self._attempt(
            name,
            lambda: workflow.execute_activity_method(
                activity,
                arg,
                start_to_close_timeout=MONEY_ATTEMPT,
                schedule_to_close_timeout=timedelta(seconds=self._terms.provider_timeout_seconds),
                retry_policy=MONEY_RETRY,
            ),
            permanent_raises=True,
        )

    async def _local_first(self, activity: Callable[..., Awaitable[T]], arg: Any) -> T:
        return await workflow.execute_local_activity_method(
            activity,
            arg,
            start_to_close_timeout=MONEY_ATTEMPT,
            schedule_to_close_timeout=min(
                LOCAL_MONEY_BUDGET, timedelta(seconds=self._terms.provider_timeout_seconds)
            ),
            retry_policy=MONEY_RETRY,
            local_retry_threshold=LOCAL_RETRY_THRESHOLD,
        )

    async def _attempt(self, name: str, call: Callable[[], Awaitable[T]], *, permanent_raises: bool) -> T:
        while True:
            try:
                result = await call()
            except StepFailed as failure:
                if permanent_raises and _is_permanent(failure):
                    if self._view is not None and self.view.attention is not None:
                        self._set_attention(None)  # final: the caller compensates; nothing to retry
                    raise
                await self._needs_attention(name, failure)
                continue
            if self._view is not None and self.view.attention is not None:
                self._set_attention(None)
            return result

    async def _needs_attention(self, step: str, failure: BaseException) -> None:
        """Flag the order for support, then wait for support's `retry` or the next automatic retry."""
        error = _failure_text(failure)
        workflow.logger.error("order step %s keeps failing: %s", step, error)
        self._attention_count += 1
        if self._view is not None:
            first = self.view.attention is None
            self._set_attention(f"{step}: {error}")
            if first:
                report = AttentionReport(self._req.order_id, step, error, self._attention_count)
                self._in_background(self._report_attention(report))
        try:
            await workflow.wait_condition(
                lambda: self._retry_requested, timeout=timedelta(seconds=self._terms.attention_retry_seconds)
            )
        except TimeoutError:
            pass
        self._retry_requested = False

    def _set_attention(self, attention: str | None) -> None:
        view = replace(self.view, attention=attention)
        self._view = replace(view, allowed_actions=rules.allowed_actions(view))
        workflow.upsert_memo({"attention": attention})
        self._publish()

    async def _report_attention(self, report: AttentionReport) -> None:
        try:
            await workflow.execute_local_activity_method(
                OrderActivities.report_attention,
                report,
                start_to_close_timeout=DB_ATTEMPT,
                schedule_to_close_timeout=timedelta(seconds=self._terms.step_timeout_seconds),
                retry_policy=DB_RETRY,
                local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            )
        except StepFailed:  # the database is what fails: the search attribute still shows it
            workflow.logger.error("could not tell support about order %s", report.order_id)

    # ---- what outlives the Update: dispute cases ----------------------------------------------------------
    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Work the Update does not wait for (its commands go out with the Update's answer); the run waits
        for it before the workflow ends."""
        self._background.append(asyncio.create_task(work))

    async def _background_finished(self) -> None:
        while self._background:
            await self._background.pop(0)

    def _open_dispute_case(self, *, by_buyer: bool) -> None:
        view = self.view
        case = DisputeCase(
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
        )
        # A chargeback after a closed buyer dispute reopens the case (once=False).
        self._in_background(
            start_detached(DisputeWorkflow.run, case, dispute_workflow_id(view.order_id), once=False)
        )

    def _signal_dispute_case(self, signal: Any, arg: Any) -> None:
        self._in_background(self._signal_case(signal, arg))

    async def _signal_case(self, signal: Any, arg: Any) -> None:
        await self._background_finished_except_current()
        case: workflow.ExternalWorkflowHandle[DisputeWorkflow] = workflow.get_external_workflow_handle_for(
            DisputeWorkflow.run, dispute_workflow_id(self.view.order_id)
        )
        try:
            await case.signal(signal, arg)
        except FailureError:  # no open case (e.g. the order was disputed before cases existed)
            workflow.logger.warning("no open dispute case for order %s", self.view.order_id)

    async def _background_finished_except_current(self) -> None:
        """Let earlier background work (the case's start) finish before signalling the case."""
        current = asyncio.current_task()
        for task in list(self._background):
            if task is current:
                break
            await task

    def _publish(self) -> None:
        """Search attributes for operators (Temporal UI, `temporal workflow list --query`)."""
        view = self.view
        workflow.upsert_search_attributes(
            [
                ORDER_STATUS.value_set(view.status),
                BUYER_ID.value_set(view.buyer_id),
                SELLER_ID.value_set(view.seller_id),
                LISTING_ID.value_set(view.listing_id),
                ORDER_AMOUNT.value_set(view.amount),
                PAYMENT_STATE.value_set(view.payment_state),
                NEEDS_ATTENTION.value_set(view.attention is not None),
            ]
        )
