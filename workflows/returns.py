"""A return: one durable workflow per return (id `return-<return id>`, type `Return`), read like its state table.

    (new)      -> requested   the buyer asks for some lines of a fulfilled or completed order, within the return
                              window, with a reason and photos (stored with the seller told, or refused: nothing)
    requested  -> approved    the seller (or support) approves
    requested  -> rejected    the seller (or support) rejects, with a reason
    requested  -> escalated   the seller did not answer in time (`response_seconds`): support decides
    escalated  -> approved | rejected        support resolves
    requested | approved -> cancelled        the buyer withdraws it
    approved   -> shipped     the buyer sends it back (tracking)
    approved   -> cancelled   not sent back in time (`ship_seconds`)
    shipped    -> refunded    the seller confirms it arrived (restocking the lines or not), or the receipt deadline
                              passes (`receipt_seconds`; nothing restocked): the order refunds the return's amount
    shipped    -> refunded    (`order_refunded_in_full`) the order was refunded in full meanwhile: nothing more
                              is asked of it; the lines restocked if the seller asked
    shipped    -> escalated   the order refused the refund (e.g. disputed meanwhile): support resolves
                              (approve: the refund is asked again, and refused again is their answer's 409;
                              reject: the return ends rejected)

The refund is the order's own (`activities/returns.py`: its `refund` Update, so its money rules, keys, ledger and
the take-back from a released payout apply). Every move is saved with its timeline event and notifications in one
local database step, retried until the database answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.returns import REFUND_REFUSED, ReturnActivities
    from bazaar.errors import Rejection
    from bazaar.orders import rules as order_rules
    from bazaar.orders.types import Actor, RefundLine
    from bazaar.returns import rules
    from bazaar.returns.models import RETURN_ENDED, ReturnStatus
    from bazaar.returns.types import (
        ReturnAction,
        ReturnOpened,
        ReturnRefund,
        ReturnRequest,
        ReturnTransition,
        ReturnView,
        StartReturn,
    )

from workflows.failures import StepFailed, failure_text, is_permanent
from workflows.queues import execute_activity
from workflows.retries import db_step_until_answered

# New runs ask the order what it still holds before asking for a return's refund, and refund at most that (a
# return was refused for good when other refunds had taken part of its amount since): docs/workflow-versioning.md.
REFUND_UP_TO_HELD_PATCH = "return-refund-up-to-held"
# New runs settle a return whose order was refunded in full meanwhile, ask again for what is left when another
# refund took part of it between the read and the ask, and answer support's refused approval with the refusal:
# docs/workflow-versioning.md.
RETURN_SETTLES_PATCH = "return-settles-with-the-order"
REASKS = 3  # asks again at most this many times: each follows another refund of the same order
# The order's refund Update: retried while Temporal or the order is busy; its refusal is final.
REFUND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[REFUND_REFUSED],
)


@workflow.defn(name="Return")
class ReturnWorkflow:
    @workflow.init
    def __init__(self, req: StartReturn) -> None:
        self._req = req
        self._view = ReturnView(req.return_id, req.order_id, req.buyer_id)
        self._opened = False
        self._seq = 1
        self._received = False  # the seller has the lines back (or the receipt deadline passed)
        # The seller put the lines back on sale when they arrived: kept if the refund then went to support.
        self._restock_asked = False
        self._lock = asyncio.Lock()

    @workflow.run
    async def run(self, req: StartReturn) -> ReturnView:
        try:
            opened = await db_step_until_answered(ReturnActivities.open_return, req)
        except StepFailed as refused:  # the database refused the return's data: nothing was stored
            workflow.logger.error("return refused by the database: %s", failure_text(refused))
            opened = ReturnOpened(
                ok=False, refusal="invalid_request", detail="the return could not be stored"
            )
        if not opened.ok:
            self._view = replace(self._view, status_reason=opened.refusal, refusal_detail=opened.detail)
            self._opened = True
            return self._view
        self._seq = opened.seq
        self._view = replace(
            self._view,
            seller_id=opened.seller_id,
            status=ReturnStatus.REQUESTED,
            amount=opened.amount,
            currency=opened.currency,
            lines=opened.lines,
            allowed_actions=rules.allowed_actions(ReturnStatus.REQUESTED),
        )
        self._opened = True
        terms = req.terms
        deadlines = {
            ReturnStatus.REQUESTED: terms.response_seconds,
            ReturnStatus.APPROVED: terms.ship_seconds,
            ReturnStatus.SHIPPED: terms.receipt_seconds,
        }
        while self._status not in RETURN_ENDED:
            status = self._status
            assert status is not None
            seconds = deadlines.get(status)
            try:
                await workflow.wait_condition(
                    lambda current=status: self._status != current,  # type: ignore[misc]
                    timeout=timedelta(seconds=seconds) if seconds else None,
                )
            except TimeoutError:
                async with self._lock:
                    if self._status == status:
                        await self._deadline_passed(status)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view

    @property
    def _status(self) -> ReturnStatus | None:
        return self._view.status

    async def _deadline_passed(self, status: ReturnStatus) -> None:
        if status == ReturnStatus.REQUESTED:
            await self._escalate("seller_did_not_answer")
        elif status == ReturnStatus.APPROVED:
            await self._move(
                ReturnStatus.CANCELLED,
                "not_sent_back",
                None,
                "system",
                ["buyer", "seller"],
            )
        elif status == ReturnStatus.SHIPPED:
            self._received = True
            await self._refund(Actor(self._view.seller_id, is_support=True), "system", restock=False)

    # ---- reads ---------------------------------------------------------------------------------------
    @workflow.query
    def state(self) -> ReturnView:
        return self._view

    @workflow.update
    async def opened(self, request: StartReturn | None = None) -> ReturnView:
        """Answer the create-return request once the return is stored (or refused)."""
        await workflow.wait_condition(lambda: self._opened)
        return self._view

    @opened.validator
    def _validate_opened(self, request: StartReturn | None = None) -> None:
        """The same Idempotency-Key with another return (other lines, reason, message or photos) is refused, not
        answered."""
        if request is not None and not rules.same_request(request, self._req):
            raise ApplicationError(
                "this Idempotency-Key was used for a different return",
                self._view,
                type=Rejection.IDEMPOTENCY_KEY_REUSED,
            )

    # ---- actors' moves (Updates) ------------------------------------------------------------------------
    @workflow.update
    async def approve(self, req: ReturnRequest) -> ReturnView:
        async with self._acting(ReturnAction.APPROVE, req) as party:
            await self._approve(party, req.actor)
        return self._view

    @workflow.update
    async def reject(self, req: ReturnRequest) -> ReturnView:
        async with self._acting(ReturnAction.REJECT, req) as party:
            await self._reject(party, req)
        return self._view

    @workflow.update
    async def cancel(self, req: ReturnRequest) -> ReturnView:
        async with self._acting(ReturnAction.CANCEL, req) as party:
            await self._move(
                ReturnStatus.CANCELLED,
                "buyer_cancelled",
                req.actor.user_id,
                party,
                ["seller"],
            )
        return self._view

    @workflow.update
    async def ship(self, req: ReturnRequest) -> ReturnView:
        async with self._acting(ReturnAction.SHIP, req) as party:
            await self._move(
                ReturnStatus.SHIPPED,
                None,
                req.actor.user_id,
                party,
                ["seller"],
                tracking=req.tracking or {},
            )
        return self._view

    @workflow.update
    async def receive(self, req: ReturnRequest) -> ReturnView:
        async with self._acting(ReturnAction.RECEIVE, req) as party:
            self._received, self._restock_asked = True, req.restock
            await self._refund(Actor(req.actor.user_id, is_support=True), party, restock=req.restock)
        return self._view

    @workflow.update
    async def resolve(self, req: ReturnRequest) -> ReturnView:
        """Support decides an escalated return: approve (before receipt: the buyer sends it back; after: the
        refund is asked again) or reject."""
        async with self._acting(ReturnAction.RESOLVE, req) as party:
            if not req.approve:
                await self._reject(party, req)
            elif self._received:
                # Found from outside: the seller's restock at receipt was dropped when support approved later.
                restock = req.restock or self._restock_asked
                await self._refund(Actor(req.actor.user_id, is_support=True), party, restock=restock)
            else:
                await self._approve(party, req.actor)
        return self._view

    def _check(self, action: ReturnAction, req: ReturnRequest) -> str:
        return rules.authorize(action, req, self._view)

    def _validate(self, action: ReturnAction, req: ReturnRequest) -> None:
        """A validator's check: the move's rules, and support never acting as support on a return of their own."""
        party = self._check(action, req)
        view = self._view
        order_rules.refuse_support_on_own_order(party, req.actor.user_id, view.buyer_id, view.seller_id)

    @asynccontextmanager
    async def _acting(self, action: ReturnAction, req: ReturnRequest) -> AsyncIterator[str]:
        """Take the return's lock and check the move again (the state may have moved since the validator): yields
        the acting party."""
        async with self._lock:
            yield self._check(action, req)

    @approve.validator
    def _validate_approve(self, req: ReturnRequest) -> None:
        self._validate(ReturnAction.APPROVE, req)

    @reject.validator
    def _validate_reject(self, req: ReturnRequest) -> None:
        self._validate(ReturnAction.REJECT, req)

    @cancel.validator
    def _validate_cancel(self, req: ReturnRequest) -> None:
        self._validate(ReturnAction.CANCEL, req)

    @ship.validator
    def _validate_ship(self, req: ReturnRequest) -> None:
        self._validate(ReturnAction.SHIP, req)

    @receive.validator
    def _validate_receive(self, req: ReturnRequest) -> None:
        self._validate(ReturnAction.RECEIVE, req)

    @resolve.validator
    def _validate_resolve(self, req: ReturnRequest) -> None:
        self._validate(ReturnAction.RESOLVE, req)

    # ---- moves -----------------------------------------------------------------------------------------
    async def _approve(self, party: str, actor: Actor) -> None:
        await self._move(ReturnStatus.APPROVED, None, actor.user_id, party, ["buyer"])

    async def _reject(self, party: str, req: ReturnRequest) -> None:
        await self._move(
            ReturnStatus.REJECTED,
            req.reason,
            req.actor.user_id,
            party,
            ["buyer"],
        )

    async def _refund(self, actor: Actor, party: str, *, restock: bool) -> None:
        """The order refunds the return's amount, or what it still holds when other refunds took part of it since
        the return was asked for (read, then asked for: a retry asks the same); then the return is refunded (the
        lines restocked if asked). With RETURN_SETTLES_PATCH: an order that holds nothing more (refunded in full
        meanwhile) settles the return with nothing to add, restocked as asked; an ask the order refuses because
        another refund took part of it meanwhile is asked again for what is left. Any other refusal takes it to
        support, or, on support's own approval, is their answer."""
        view = self._view
        amount = view.amount
        settles = False
        try:
            if workflow.patched(REFUND_UP_TO_HELD_PATCH):
                settles = workflow.patched(RETURN_SETTLES_PATCH)
                amount = min(amount, await self._held())
                if amount <= 0 and settles:
                    await self._settled_by_the_order(actor, party, restock)
                    return
                if amount <= 0:
                    workflow.logger.warning("return refund refused: the order holds nothing more")
                    await self._escalate(rules.REFUND_REFUSED_AT_RECEIPT)
                    return
            ask = 0
            while True:
                refund = ReturnRefund(
                    view.return_id,
                    view.order_id,
                    amount,
                    actor,
                    f"return {view.return_id}",
                    attempt=self._seq,
                    ask=ask,
                    lines=[RefundLine(line.listing_id, line.quantity) for line in view.lines],
                )
                try:
                    await execute_activity(
                        ReturnActivities.refund_return,
                        refund,
                        start_to_close_timeout=timedelta(seconds=60),
                        retry_policy=REFUND_RETRY,
                    )
                    break
                except StepFailed as failure:
                    if not (settles and is_permanent(failure) and ask < REASKS):
                        raise
                    held = await self._held()
                    if held >= amount:
                        raise  # refused for another reason (the order disputed, say): as below
                    ask, amount = ask + 1, held
                    if amount <= 0:
                        await self._settled_by_the_order(actor, party, restock)
                        return
        except StepFailed as failure:
            if not is_permanent(failure):
                raise
            workflow.logger.warning("return refund refused: %s", failure_text(failure))
            if settles and self._status == ReturnStatus.ESCALATED:
                # Support's approval, refused again: their answer says why, and nothing moves or is told twice
                # (found from outside: a 200 with the return unchanged, and a second escalation sent).
                raise ApplicationError(
                    f"the order refused the refund again: {failure_text(failure)}",
                    self._view,
                    type=Rejection.INVALID_TRANSITION,
                ) from failure
            await self._escalate(rules.REFUND_REFUSED_AT_RECEIPT)
            return
        actor_id = None if party == "system" else actor.user_id
        await self._move(
            ReturnStatus.REFUNDED,
            None,
            actor_id,
            party,
            ["buyer", "seller"],
            restocked=restock,
            refunded_amount=amount if amount != view.amount else None,
        )

    async def _held(self) -> int:
        """What the order still holds for refunds now (a Query of it, through the `refundable` activity)."""
        held: int = await execute_activity(
            ReturnActivities.refundable,
            self._view.order_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=REFUND_RETRY,
        )
        return held

    async def _settled_by_the_order(self, actor: Actor, party: str, restock: bool) -> None:
        """The order was refunded in full before this return's refund (found from outside: the return escalated,
        support could only reject it, and the lines the seller had back never went on sale): it ends refunded,
        by that refund (nothing more is asked of the order), the lines restocked if the seller asked."""
        await self._move(
            ReturnStatus.REFUNDED,
            "order_refunded_in_full",
            None if party == "system" else actor.user_id,
            party,
            ["buyer", "seller"],
            restocked=restock,
        )

    async def _escalate(self, reason: str) -> None:
        """To support, telling both sides: the seller did not answer in time, or the order refused the refund."""
        await self._move(ReturnStatus.ESCALATED, reason, None, "system", ["support", "buyer", "seller"])

    async def _move(
        self,
        status: ReturnStatus,
        reason: str | None,
        actor_id: str | None,
        party: str,
        notify: list[str],
        *,
        tracking: dict[str, str] | None = None,
        restocked: bool | None = None,
        refunded_amount: int | None = None,
    ) -> None:
        seq = self._seq + 1
        move = ReturnTransition(
            return_id=self._view.return_id,
            seq=seq,
            status=status,
            status_reason=reason,
            actor_id=actor_id,
            actor_role=party,
            action=f"return.{status}",  # the timeline's action; the notification's template is named alike
            tracking=tracking,
            restocked=restocked,
            notify=notify,
            event_type=f"return_{status}",
            refunded_amount=refunded_amount,
        )
        await db_step_until_answered(ReturnActivities.save_return, move)
        self._seq = seq
        self._view = replace(
            self._view,
            status=status,
            status_reason=reason,
            tracking=tracking if tracking is not None else self._view.tracking,
            restocked=restocked if restocked is not None else self._view.restocked,
            amount=refunded_amount if refunded_amount is not None else self._view.amount,
            allowed_actions=rules.allowed_actions(status),
        )
