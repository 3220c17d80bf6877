"""The order's state and how it takes a step: the failure rule (docs/failure-rules.md).

A step is a local activity (database) or an activity (provider). Permanent failures are raised to the caller,
which compensates; transient ones are retried within a bound, past which the order *needs attention* (view,
search attribute, memo, support notified) and is retried every so often or at once on support's `retry`. A
transition is saved in one transaction with all it implies (`save_transition`); what outlives the Update
(dispute cases) runs in the background and the run waits for it before it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.disputes import OpenDispute
    from activities.orders import (
        AttentionReport,
        LedgerPosting,
        OrderActivities,
        OrderTransition,
        RefundLinesClaim,
    )
    from activities.payments import PAYOUTS_DISABLED
    from bazaar.errors import Rejection
    from bazaar.models import OrderStatus, PaymentState
    from bazaar.orders import rules
    from bazaar.orders.details import Waiting, current_details
    from bazaar.orders.notices import Effects, effects_of, notice, outcome_of
    from bazaar.orders.types import (
        BUYER_ID,
        LISTING_ID,
        NEEDS_ATTENTION,
        ORDER_AMOUNT,
        ORDER_STATUS,
        PAYMENT_STATE,
        SELLER_ID,
        ActionRequest,
        Actor,
        OrderAction,
        OrderEvent,
        OrderView,
        Party,
        PlaceOrder,
    )
    from bazaar.trust.models import DisputeSource

from workflows.children import start_detached
from workflows.dispute import DisputeCase, DisputeWorkflow, Resolution, dispute_workflow_id
from workflows.failures import StepFailed
from workflows.failures import cause_of as _reason
from workflows.failures import failure_text as _failure_text
from workflows.failures import is_permanent as _is_permanent
from workflows.queues import execute_activity
from workflows.retries import (
    LOCAL_MONEY_BUDGET,
    LOCAL_RETRY_THRESHOLD,
    MONEY_ATTEMPT,
    MONEY_RETRY,
    local_db_step,
)

T = TypeVar("T")


def _is_refusal(error: BaseException) -> bool:
    """The provider refused the money movement itself: nothing moved, the caller compensates. Any other
    permanent failure of a money step (our bookkeeping refusing its data) is not a refusal: the money may have
    moved, so the order needs a person rather than a compensation (that would, e.g., pay a seller twice)."""
    reason = _reason(error)
    return (
        _is_permanent(error)
        and isinstance(reason, ApplicationError)
        and reason.type in (Rejection.PAYMENT_REJECTED, PAYOUTS_DISABLED)
    )


def _payouts_disabled(error: BaseException) -> bool:
    reason = _reason(error)
    return isinstance(reason, ApplicationError) and reason.type == PAYOUTS_DISABLED


def _never(error: BaseException) -> bool:
    return False


# The transitions that may refund units of lines (their projection writes the lines' refunded units).
_REFUNDS = frozenset({OrderEvent.REFUNDED, OrderEvent.PARTIALLY_REFUNDED})


# Patch (2026-11-28, docs/workflow-versioning.md): a refund by lines claims its units before its money moves.
CLAIM_LINES_PATCH = "refund-lines-claimed"


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
# Refunded in full before a chargeback came (cancelled after payment, or refunded): the provider takes the money
# all the same, so the chargeback is booked (the platform's loss until the network decides) and support gets its
# case. Patch (2026-11-28, docs/workflow-versioning.md): before it, such a chargeback was ignored.
REFUNDED_IN_FULL = frozenset({OrderStatus.CANCELLED, OrderStatus.REFUNDED})
CHARGEBACK_AFTER_REFUND_PATCH = "chargeback-after-refund"


def newly_refunded(units: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """The units (by listing id) a refund by lines takes: what `units` counts above `before`."""
    return {k: n - before.get(k, 0) for k, n in units.items() if n > before.get(k, 0)}


class OrderSteps:
    """State of an order run (set by `OrderWorkflow.__init__`) and its step runner."""

    _req: PlaceOrder
    _view: OrderView | None
    _seq: int  # the order's transitions so far (the projection never moves backwards)
    _refunds: int
    _refunding: int
    _releases: int
    _transfers: int
    _reversals: int
    _released: tuple[int, int] | None  # what the latest release put where: (gross out of escrow, fee)
    _payout: tuple[str, int] | None  # the seller's payout not reversed: (provider transfer id, amount)
    _before_chargeback: tuple[OrderStatus, str | None, PaymentState] | None  # (status, reason, payment state)
    _clawed_back_fee: int | None
    _payment_settled: bool
    _provider_reports: dict[str, str]
    _lock: asyncio.Lock
    _reminded: bool
    _dispute_message: str
    _shipped: bool
    _payouts_enabled: bool
    _attention_count: int
    _retry_requested: bool
    _action_keys: dict[str, str]  # an action's Idempotency-Key -> the digest of its request
    _key_per_order: bool  # a key names one request of the order, whatever its action (KEY_PER_ORDER_PATCH)
    _payout_after_answer: bool  # a release's transfer follows the Update's answer (PAYOUT_AFTER_ANSWER_PATCH)
    _background: list[asyncio.Task[None]]
    _waiting: Waiting  # for operators: the current state's deadline, the failing step's retries

    @property
    def view(self) -> OrderView:
        assert self._view is not None
        return self._view

    @property
    def _terms(self) -> PlaceOrder:
        return self._req

    # ---- transitions ------------------------------------------------------------------------------------
    async def _transition(
        self,
        status: OrderStatus,
        *,
        reason: str | None,
        payment_state: PaymentState,
        party: Party,
        actor: Actor | None,
        action: OrderEvent,
        base: OrderView | None = None,
        release_stock: bool = False,
        ledger: list[LedgerPosting] | None = None,
        resolution: Resolution | None = None,
        note: str | None = None,
        opens_case: DisputeSource | None = None,
        restock: dict[str, int] | None = None,
        payout_follows: bool = False,
    ) -> None:
        """Move to `status`, saved with everything the move implies; the view changes only once saved.
        A move that changed no money (accept, fulfil, dispute) is refused if its data cannot be saved.
        `note`: the actor's own words, for the timeline. `opens_case`: the move opens a dispute case, saved
        with it (a read right after the move finds it), whose workflow then starts. `restock`: units (by listing
        id) back on sale with the move (refunded by line before the order shipped)."""
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
        reversible = action in (OrderEvent.ACCEPTED, OrderEvent.FULFILLED, OrderEvent.DISPUTED)
        case = self._dispute_case(view, opens_case) if opens_case is not None else None
        await self._save(
            view,
            party,
            actor,
            action,
            effects,
            release_stock=release_stock,
            ledger=ledger,
            reversible=reversible,
            resolution=resolution,
            note=note,
            case=case,
            restock=restock,
            payout_follows=payout_follows,
        )
        self._view = view
        self._publish()
        if case is not None:
            self._start_dispute_case(case)

    async def _save(
        self,
        view: OrderView,
        party: Party,
        actor: Actor | None,
        action: OrderEvent,
        effects: Effects,
        *,
        release_stock: bool = False,
        ledger: list[LedgerPosting] | None = None,
        reversible: bool = False,
        resolution: Resolution | None = None,
        note: str | None = None,
        case: DisputeCase | None = None,
        restock: dict[str, int] | None = None,
        payout_follows: bool = False,
    ) -> None:
        seq = self._seq + 1
        # The seller's order counters, derived from the move (a refund after a completion ends nothing new).
        outcome, disputed = outcome_of(action, view, completed_before=self._releases > 0)
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
            outcome=outcome,
            disputed=disputed,
            review_closes_at=workflow.now() + timedelta(seconds=self._terms.review_window_seconds)
            if effects.opens_reviews
            else None,
            refunded_units=view.refunded_units if action in _REFUNDS else {},
            restock_units=restock or {},
            dispute_resolution=resolution,
            note=note,
            opens_case=OpenDispute.of(case) if case is not None else None,
            payout_follows=payout_follows,
        )
        try:
            await self._db_step(
                "save_transition", OrderActivities.save_transition, transition, forever=not reversible
            )
        except StepFailed as refused:
            raise ApplicationError(
                f"{action} could not be saved: {_failure_text(refused)}", type=Rejection.INVALID_REQUEST
            ) from None
        self._seq = seq

    async def _remind_seller(self, after_seconds: int) -> datetime | None:
        """Wait until the reminder is due and send it; the acceptance deadline, or None if the order moved
        on before that."""
        try:
            await workflow.wait_condition(
                lambda: self.view.status != OrderStatus.PAID, timeout=timedelta(seconds=after_seconds)
            )
            return None
        except TimeoutError:
            pass
        accept_by = workflow.now() + timedelta(seconds=self._terms.acceptance_reminder_seconds)
        reminder = notice(
            self.view,
            "reminder",
            "acceptance_deadline_approaching",
            [Party.SELLER],
            {"deadline": accept_by.isoformat(timespec="minutes")},
        )
        async with self._lock:
            if self.view.status != OrderStatus.PAID:
                return None
            await self._save(self.view, Party.SYSTEM, None, OrderEvent.REMINDED, Effects([reminder]))
        return accept_by

    def _authorize(self, action: OrderAction, req: ActionRequest) -> Party:
        """A validator's check: the acting party, if this actor may take `action` now under this key."""
        self._check_action_key(action, req, record=False)
        party = rules.authorize(action, req.actor, self._view)
        if req.return_id is None:  # a return's refund: the return workflow's own ask, not a person's
            view = self.view
            rules.refuse_support_on_own_order(party, req.actor.user_id, view.buyer_id, view.seller_id, view)
        return party

    def _check_action_key(self, action: OrderAction, req: ActionRequest, *, record: bool = True) -> None:
        """An action's Idempotency-Key names one request of the order (its action and body): the API's Update id
        holds both, so the same key with another action or body arrives as a new Update, refused here (`record`:
        the handler keeps the first request's digest; a validator only reads)."""
        if req.idempotency_key is None:
            return
        if self._key_per_order:
            key, digest = f"{req.actor.user_id}:{req.idempotency_key}", f"{action}:{req.request_digest or ''}"
        else:  # runs started before KEY_PER_ORDER_PATCH: one key per action
            key, digest = f"{action}:{req.actor.user_id}:{req.idempotency_key}", req.request_digest or ""
        first = self._action_keys.setdefault(key, digest) if record else self._action_keys.get(key, digest)
        if first != digest:
            raise ApplicationError(
                "this Idempotency-Key was used for a different request",
                self._view,
                type=Rejection.IDEMPOTENCY_KEY_REUSED,
            )

    @asynccontextmanager
    async def _lines_claimed(self, req: ActionRequest, units: dict[str, int] | None) -> AsyncIterator[None]:
        """A refund by lines (not a return's) claims its units in the database before its money moves, under the
        order's row lock that opening a return takes too (a claim refused: the Update is, 422), and gives them
        back when the refund is refused."""
        before = self.view.refunded_units
        claim = units is not None and req.return_id is None and workflow.patched(CLAIM_LINES_PATCH)
        if units is not None and claim:
            await self._claim_lines(
                RefundLinesClaim(self.view.order_id, units, newly_refunded(units, before))
            )
        try:
            yield
        except ApplicationError:
            if units is not None and claim:  # each line it claimed, back to what it was
                await self._claim_lines(
                    RefundLinesClaim(self.view.order_id, {k: before.get(k, 0) for k in units})
                )
            raise

    async def _claim_lines(self, claim: RefundLinesClaim) -> None:
        try:  # a release must happen (`forever`); a claim may be refused
            await self._db_step(
                "claim_refund_lines", OrderActivities.claim_refund_lines, claim, forever=not claim.asked
            )
        except StepFailed as refused:
            raise ApplicationError(
                _failure_text(refused), self._view, type=Rejection.INVALID_REQUEST
            ) from None

    # ---- running steps within the failure rule ---------------------------------------------------------
    async def _db_step(
        self, name: str, activity: Callable[..., Awaitable[T]], arg: Any, *, forever: bool = True
    ) -> T:
        """A database step as a local activity. `forever`: even a permanent failure only flags the order
        (the step must happen: money already moved); else a permanent failure is raised to the caller."""
        return await self._attempt(
            name, lambda: self._local_db(activity, arg), final=_never if forever else _is_permanent
        )

    def _local_db(self, activity: Callable[..., Awaitable[T]], arg: Any) -> Awaitable[T]:
        """One run of a database step as a local activity, within the step bound (one attempt of `_db_step`)."""
        return local_db_step(activity, arg, self._terms.step_timeout_seconds)

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
                if _is_refusal(failure):
                    raise
        return await self._attempt(
            name,
            lambda: execute_activity(
                activity,
                arg,
                start_to_close_timeout=MONEY_ATTEMPT,
                schedule_to_close_timeout=timedelta(seconds=self._terms.provider_timeout_seconds),
                retry_policy=MONEY_RETRY,
            ),
            final=_is_refusal,
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

    async def _attempt(
        self, name: str, call: Callable[[], Awaitable[T]], *, final: Callable[[BaseException], bool]
    ) -> T:
        """Run `call` until it succeeds; a failure `final` accepts is raised to the caller (which compensates),
        any other one flags the order and is retried (`_needs_attention`)."""
        while True:
            try:
                result = await call()
            except StepFailed as failure:
                if final(failure):
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
        next_retry = workflow.now() + timedelta(seconds=self._terms.attention_retry_seconds)
        self._waiting = replace(self._waiting, retry=self._waiting.retry + 1, next_retry=next_retry)
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
        if attention is None:
            self._waiting = replace(self._waiting, retry=0, next_retry=None)
        view = replace(self.view, attention=attention)
        self._view = replace(view, allowed_actions=rules.allowed_actions(view))
        workflow.upsert_memo({"attention": attention})
        self._publish()

    async def _report_attention(self, report: AttentionReport) -> None:
        try:
            await self._local_db(OrderActivities.report_attention, report)
        except StepFailed:  # the database is what fails: the search attribute still shows it
            workflow.logger.error("could not tell support about order %s", report.order_id)

    async def _chargeback_settled(self) -> bool:
        """Wait until the charge has its outcome (a reopened run: until the order is loaded); whether this run books
        a chargeback on an order refunded in full (CHARGEBACK_AFTER_REFUND_PATCH). Decided as the signal arrives, in
        its own workflow task: asked after the load's local activity, the marker fell in a task the replay does
        not match."""
        after_refund = workflow.patched(CHARGEBACK_AFTER_REFUND_PATCH)
        await workflow.wait_condition(lambda: self._payment_settled)
        return after_refund

    def _chargeable_back(self, after_refund: bool) -> bool:
        """Whether a chargeback can take this order's money (else it is logged and ignored)."""
        view = self.view
        return view.status in CHARGEABLE_BACK or (
            after_refund and view.status in REFUNDED_IN_FULL and view.payment_state == PaymentState.REFUNDED
        )

    # ---- what outlives the Update: dispute cases ----------------------------------------------------------
    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Work the Update does not wait for (its commands go out with the Update's answer); the run waits
        for it before the workflow ends."""
        self._background.append(asyncio.create_task(work))

    async def _background_finished(self) -> None:
        while self._background:
            await self._background.pop(0)

    def _dispute_case(self, view: OrderView, source: DisputeSource) -> DisputeCase:
        by_buyer = source == DisputeSource.BUYER
        return DisputeCase(
            order_id=view.order_id,
            buyer_id=view.buyer_id,
            seller_id=view.seller_id,
            listing_title=view.listing_title,
            source=source,
            reason_code=(view.reason or "other") if by_buyer else "chargeback",
            message=self._dispute_message if by_buyer else "",
            provider_dispute_id=None if by_buyer else view.chargeback_id,
            escalate_after_seconds=self._terms.dispute_escalation_seconds,
            notification_max_attempts=self._terms.notification_max_attempts,
            amount=view.amount,
            currency=view.currency,
            step_timeout_seconds=self._terms.step_timeout_seconds,
            attention_retry_seconds=self._terms.attention_retry_seconds,
        )

    def _start_dispute_case(self, case: DisputeCase) -> None:
        # A chargeback after a closed buyer dispute reopens the case (once=False). The summary is user
        # metadata of the start, not compared on replay: orders recorded without it still replay.
        self._in_background(
            start_detached(
                DisputeWorkflow.run,
                case,
                dispute_workflow_id(case.order_id),
                once=False,
                summary=case.summary(),
            )
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
        self._show()

    def _show(self) -> None:
        """The current details operators read in the Temporal UI (workflow metadata: no history event)."""
        workflow.set_current_details(
            current_details(self.view, replace(self._waiting, transfers=self._transfers))
        )
