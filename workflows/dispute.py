"""A dispute (id `dispute-<order id>`): started by the order workflow when a buyer disputes or a chargeback
arrives. It keeps the thread, asks either side for information with a deadline, and escalates to support
when unresolved for too long. The money outcome is decided in the order workflow (support's
`resolve_dispute` Update there), which then signals `resolved` here.

Failure rule (docs/failure-rules.md): each database step is a local activity bounded by `step_timeout_seconds`
that writes the notifications it implies in its transaction (the outbox). Data the database refuses refuses the
Update with nothing changed; past the bound the case is flagged (`attention` in the status, memo and current
details; support notified) and Updates are refused at once (`NeedsAttention`) until a retry succeeds (every
`attention_retry_seconds`, or on the `retry` Signal). Cases started before `BOUNDED_PATCH` keep their commands.

Operators: Update `add_message` / `request_info`, Signals `resolved` / `retry`, Query `status`
(docs/operations.md); the current details say what the case waits for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from workflows.failures import StepFailed
from workflows.failures import cause_of as _reason
from workflows.failures import failure_text as _failure_text
from workflows.failures import is_permanent as _is_permanent
from workflows.queues import execute_activity
from workflows.retries import DB_RETRY, local_db_step

with workflow.unsafe.imports_passed_through():
    from activities.disputes import DisputeActivities, DisputeStatusChange, OpenDispute, ThreadEntry
    from bazaar.errors import Rejection
    from bazaar.orders import rules as order_rules
    from bazaar.orders.types import Party
    from bazaar.payments.money import format_money
    from bazaar.temporal import dispute_workflow_id as dispute_workflow_id
    from bazaar.trust.disputes import ASKED, AUTHORS, POSTED, case_details, resolution_text
    from bazaar.trust.disputes import ChargebackJoined as ChargebackJoined
    from bazaar.trust.disputes import DisputeCase as DisputeCase
    from bazaar.trust.disputes import DisputeMessageIn as DisputeMessageIn
    from bazaar.trust.disputes import DisputeState as DisputeState
    from bazaar.trust.disputes import InfoRequest as InfoRequest
    from bazaar.trust.disputes import Resolution as Resolution
    from bazaar.trust.models import DisputeMessageKind, DisputeStatus
    from bazaar.trust.notifications import NotificationEvent
    from workflows.notification import notify_in_background

T = TypeVar("T")
DB_TIMEOUT = timedelta(seconds=30)  # legacy cases' activities
# 2026-11-27: bounded local database steps, notifications in each step's transaction, the case flagged past
# the bound. Decided once per run, at its start; runs without the marker keep the `_legacy_*` commands.
BOUNDED_PATCH = "dispute-bounded-steps"
ESCALATION = "unresolved past the escalation deadline"


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@workflow.defn
class DisputeWorkflow:
    @workflow.init
    def __init__(self, case: DisputeCase) -> None:
        # Set from the input before any handler runs (an Update may arrive with the start).
        self._case = case
        self._opened = False
        self._state = DisputeState()
        self._resolution: Resolution | None = None
        # party -> workflow time (seconds) by which they must answer
        self._deadlines: dict[Party, float] = {}
        self._answered: set[Party] = set()
        self._changed = False  # an update arrived: recompute the next deadline
        self._chargebacks: list[ChargebackJoined] = []  # joined, not yet written to the thread
        self._escalate_at: float | None = None
        self._bounded = False  # BOUNDED_PATCH, decided at the run's start
        self._busy = False  # a database step runs: one at a time, so each sees the state the last one left
        self._keys = 0  # thread keys handed out, refused attempts included (a key is never reused)
        self._retry = 0  # failing rounds of the flagged step
        self._retry_at = 0.0
        self._retry_requested = False
        self._occurrence = 0  # times the case was flagged (the key of support's notification)
        self._failing_step = ""
        self._recheck = False  # an Update's step failed past its bound: check the database every so often

    @workflow.run
    async def run(self, case: DisputeCase) -> DisputeState:
        self._bounded = workflow.patched(BOUNDED_PATCH)
        self._show()
        if not self._bounded:
            return await self._legacy_run(case)
        opening = OpenDispute.of(self._case)
        opening.notices = [self._notice("dispute_opened", "opened", {"reason": case.reason_code})]
        await self._must("open_dispute_case", DisputeActivities.open_dispute_case, opening)
        self._opened = True
        self._escalate_at = escalate_at = workflow.time() + case.escalate_after_seconds
        self._show()
        while self._resolution is None:
            due = self._due(escalate_at) + ([self._retry_at] if self._recheck else [])
            try:
                await workflow.wait_condition(
                    lambda: self._resolution is not None or self._changed or self._retry_requested,
                    timeout=timedelta(seconds=max(0.0, min(due) - workflow.time())) if due else None,
                )
            except TimeoutError:
                pass
            self._changed = False
            await self._record_chargebacks()
            await self._handle_deadlines(escalate_at)
            await self._check_database()
        await self._record_chargebacks()
        resolution = self._resolution
        resolved = {"resolution": resolution_text(resolution, case.currency)}
        await self._must(
            "set_dispute_status",
            DisputeActivities.set_dispute_status,
            DisputeStatusChange(
                case.order_id,
                DisputeStatus.RESOLVED,
                resolution.resolution,
                resolution.refund_amount,
                notices=[self._notice("dispute_resolved", "resolved", resolved)],
            ),
        )
        self._state.status, self._state.resolution = DisputeStatus.RESOLVED, resolution.resolution
        self._state.waiting_for = []  # resolved: nobody's answer is awaited any more
        self._show()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    def _due(self, escalate_at: float) -> list[float]:
        due = [escalate_at] if self._state.status != DisputeStatus.ESCALATED else []
        return due + [t for p, t in self._deadlines.items() if p not in self._answered]

    async def _handle_deadlines(self, escalate_at: float) -> None:
        now = workflow.time()
        if self._state.status != DisputeStatus.ESCALATED and self._resolution is None and now >= escalate_at:
            entry = self._entry(
                DisputeMessageKind.ESCALATION, ESCALATION, "escalated", status=DisputeStatus.ESCALATED
            )
            entry.notices = [self._escalated_notice()]
            await self._must("append_dispute_thread", DisputeActivities.append_dispute_thread, entry)
            self._state.status = DisputeStatus.ESCALATED
            self._show()
        for party, deadline in list(self._deadlines.items()):
            if party not in self._answered and now >= deadline:
                entry, told = self._no_response(party, deadline)
                entry.notices = [told]
                await self._must("append_dispute_thread", DisputeActivities.append_dispute_thread, entry)
                self._answered.add(party)  # handled: the deadline passed without an answer
                self._state.waiting_for = [p for p in self._state.waiting_for if p != party]
                self._show()

    async def _record_chargebacks(self) -> None:
        while self._chargebacks:
            entry, told = self._chargeback_entry(self._chargebacks[0])
            entry.notices = [told]
            await self._must("append_dispute_thread", DisputeActivities.append_dispute_thread, entry)
            self._chargebacks.pop(0)  # only once written: a failing step keeps it

    # ---- Updates / Signals / Query ----------------------------------------------------------------------
    @workflow.update
    async def add_message(self, message: DisputeMessageIn) -> DisputeState:
        # The thread exists once the case is opened; a case that cannot open answers at once instead.
        await workflow.wait_condition(lambda: self._opened or self._state.attention is not None)
        if not self._bounded:
            return await self._legacy_add_message(message)
        author, kind = Party(message.author_role), DisputeMessageKind(message.kind)  # validated
        async with self._turn(for_update=True):
            self._keys += 1
            key = f"message-{self._keys}"
            answers = author in self._deadlines and author not in self._answered
            waiting = [p for p in self._state.waiting_for if p != author]
            reopens = answers and not waiting and self._state.status == DisputeStatus.AWAITING_INFO
            told = self._notice(
                "dispute_updated",
                key,
                {"message": f"new {message.kind} from the {message.author_role}"},
                author=(author, message.author_id),
            )
            status = DisputeStatus.OPEN if reopens else None
            entry = self._entry(kind, message.body, key, role=author, author=message.author_id, status=status)
            entry.notices = [told]
            await self._save_for_update("add_message", entry)
            self._state.messages += 1  # saved: only now does the case change
            if answers:
                self._answered.add(author)
                self._state.waiting_for = waiting
            if reopens:
                self._state.status = DisputeStatus.OPEN
            self._changed = True
            self._show()
        return self._state

    @add_message.validator
    def _validate_message(self, message: DisputeMessageIn) -> None:
        self._check_open()
        if message.author_role not in AUTHORS or not message.body.strip():
            raise ApplicationError(
                "a message needs a body and a buyer, seller or support author", type=Rejection.INVALID_REQUEST
            )
        if message.kind not in POSTED:
            raise ApplicationError("a message is a message or evidence", type=Rejection.INVALID_REQUEST)

    @workflow.update
    async def request_info(self, request: InfoRequest) -> DisputeState:
        await workflow.wait_condition(lambda: self._opened or self._state.attention is not None)
        if not self._bounded:
            return await self._legacy_request_info(request)
        party = Party(request.party)  # checked by the validator
        async with self._turn(for_update=True):
            self._keys += 1
            key = f"info-request-{self._keys}"
            deadline = workflow.time() + request.deadline_seconds
            told = self._notice("dispute_updated", key, {"message": request.told(workflow.now())})
            entry = self._info_request(request, key, status=DisputeStatus.AWAITING_INFO)
            entry.notices = [told]
            await self._save_for_update("request_info", entry)
            self._state.messages += 1
            self._deadlines[party] = deadline
            self._answered.discard(party)
            self._state.waiting_for = sorted({*self._state.waiting_for, party})
            self._state.status = DisputeStatus.AWAITING_INFO
            self._changed = True
            self._show()
        return self._state

    @request_info.validator
    def _validate_info(self, request: InfoRequest) -> None:
        self._check_open()
        if request.party not in ASKED or request.deadline_seconds <= 0:
            raise ApplicationError(
                "ask the buyer or the seller, with a positive deadline", type=Rejection.INVALID_REQUEST
            )
        case = self._case
        order_rules.refuse_support_on_own_order(
            Party.SUPPORT, request.staff_id, case.buyer_id, case.seller_id
        )

    def _check_open(self) -> None:
        """Refuse at once what the case cannot take now (validators and handlers both ask)."""
        if self._resolution is not None:
            raise ApplicationError("the dispute is resolved", type=Rejection.INVALID_TRANSITION)
        if self._state.attention is not None:
            raise ApplicationError(
                f"the dispute case needs attention ({self._state.attention}); nothing was changed, try again "
                "later",
                type=Rejection.NEEDS_ATTENTION,
            )

    @workflow.signal
    def resolved(self, resolution: Resolution) -> None:
        self._resolution = self._resolution or resolution

    @workflow.signal
    def chargeback_joined(self, notice: ChargebackJoined) -> None:
        self._chargebacks.append(notice)
        self._changed = True

    @workflow.signal
    def retry(self) -> None:
        """Support: retry the failing step now (it also retries every `attention_retry_seconds`)."""
        self._retry_requested = True

    @workflow.query
    def status(self) -> DisputeState:
        return self._state

    # ---- steps within the failure rule -------------------------------------------------------------------
    @asynccontextmanager
    async def _turn(self, *, for_update: bool = False) -> AsyncIterator[None]:
        """One database step at a time. An Update waits at most one step's bound: if that step gets flagged,
        the Update is refused rather than queued behind its retries."""
        await workflow.wait_condition(
            lambda: not self._busy or (for_update and self._state.attention is not None)
        )
        if for_update:
            self._check_open()  # the case may have been resolved or flagged meanwhile
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    def _local_db(self, activity: Callable[..., Awaitable[T]], arg: Any) -> Awaitable[T]:
        """One run of a database step, retried within the step bound (`step_timeout_seconds`)."""
        return local_db_step(activity, arg, self._case.step_timeout_seconds)

    def _entry(
        self,
        kind: DisputeMessageKind,
        body: str,
        key: str,
        data: dict[str, str] | None = None,
        *,
        role: Party = Party.SYSTEM,
        author: str | None = None,
        status: DisputeStatus | None = None,
    ) -> ThreadEntry:
        """An entry of this case's thread (a system entry unless `role` says otherwise)."""
        case = self._case
        return ThreadEntry(case.order_id, author, role, kind, body, f"{case.key}:{key}", data or {}, status)

    def _info_request(
        self, request: InfoRequest, key: str, status: DisputeStatus | None = None
    ) -> ThreadEntry:
        answer_by = request.answer_by(workflow.now()).isoformat(timespec="seconds")
        data = {
            "party": request.party,
            "deadline_seconds": str(request.deadline_seconds),
            "answer_by": answer_by,
        }
        kind = DisputeMessageKind.INFO_REQUEST
        return self._entry(
            kind, request.question, key, data, role=Party.SUPPORT, author=request.staff_id, status=status
        )

    def _escalated_notice(self) -> NotificationEvent:
        opened_at = workflow.info().start_time.isoformat(timespec="minutes")
        return self._notice("dispute_escalated", "escalated", {"opened_at": opened_at}, support_only=True)

    def _no_response(self, party: Party, deadline: float) -> tuple[ThreadEntry, NotificationEvent]:
        key = f"no-response-{party}-{int(deadline)}"
        entry = self._entry(DisputeMessageKind.NO_RESPONSE, f"no answer from the {party} in time", key)
        told = {"message": f"the {party} did not answer in time"}
        return entry, self._notice("dispute_updated", key, told, support_only=True)

    def _chargeback_entry(self, notice: ChargebackJoined) -> tuple[ThreadEntry, NotificationEvent]:
        key = f"chargeback-{notice.provider_dispute_id}"
        body = (
            f"The buyer's bank opened a chargeback ({notice.provider_dispute_id}, "
            f"{format_money(notice.amount, notice.currency)}); the card network decides that money."
        )
        data = {"provider_dispute_id": notice.provider_dispute_id}
        entry = self._entry(DisputeMessageKind.CHARGEBACK, body, key, data)
        return entry, self._notice("dispute_updated", key, {"message": body})

    async def _must(self, step: str, activity: Callable[..., Awaitable[T]], arg: Any) -> T:
        """A step the case cannot do without: retried until it succeeds, flagged while it fails past its
        bound (even a permanent failure: the case must go on, support looks at it)."""
        while True:
            async with self._turn():
                try:
                    result = await self._local_db(activity, arg)
                except StepFailed as failure:
                    failed: BaseException = failure
                else:
                    self._clear_attention()
                    return result
            first = self._state.attention is None
            self._flag(step, failed)
            if first and self._opened:  # before that there is no record to write support's notice with
                await self._tell_support()
            try:
                await workflow.wait_condition(
                    lambda: self._retry_requested,
                    timeout=timedelta(seconds=self._case.attention_retry_seconds),
                )
            except TimeoutError:
                pass
            self._retry_requested = False

    async def _save_for_update(self, step: str, entry: ThreadEntry) -> None:
        """An Update's step: saved within the bound, or the Update is refused with nothing changed."""
        try:
            await self._local_db(DisputeActivities.append_dispute_thread, entry)
        except StepFailed as failure:
            text = _failure_text(failure)
            if _is_permanent(failure):
                raise ApplicationError(
                    f"{step} could not be saved: {text}; nothing was changed", type=Rejection.INVALID_REQUEST
                ) from None
            self._flag(step, failure)
            self._recheck = self._retry_requested = True  # the run tells support now, then checks again
            raise ApplicationError(
                f"{step} could not be saved within {self._case.step_timeout_seconds} s ({text}); nothing was "
                "changed: the case needs attention, try again later",
                type=Rejection.NEEDS_ATTENTION,
            ) from None
        self._clear_attention()

    async def _check_database(self) -> None:
        """After an Update's step failed past its bound: tell support (and re-save the case's status) at once
        and every `attention_retry_seconds` until the database takes it, which clears the flag."""
        requested, self._retry_requested = self._retry_requested, False  # consumed even if nothing is flagged
        if not self._recheck or (workflow.time() < self._retry_at and not requested):
            return
        failure = await self._tell_support()
        if failure is None:
            self._clear_attention()
        else:
            self._flag(self._failing_step, failure)

    async def _tell_support(self) -> BaseException | None:
        """A notification to support about the flagged case (once per occurrence: its key), written with a
        re-save of the case's status; one bounded try. Returns its failure, if the database failed it too."""
        told = self._notice(
            "dispute_updated",
            f"attention-{self._occurrence}",
            {
                "message": f"a step of the case keeps failing ({self._state.attention}); the case retries on "
                "its own (or on the `retry` signal) and refuses new messages meanwhile"
            },
            support_only=True,
        )
        change = DisputeStatusChange(self._case.order_id, self._state.status, notices=[told])
        async with self._turn():
            try:
                await self._local_db(DisputeActivities.set_dispute_status, change)
            except StepFailed as failure:
                workflow.logger.error(
                    "could not tell support about %s: %s", self._case.key, _failure_text(failure)
                )
                return failure
        return None

    def _flag(self, step: str, failure: BaseException) -> None:
        """Past its bound: visible in the status Query, the memo and the current details; logged."""
        error = _failure_text(failure)
        if isinstance(_reason(failure), TemporalTimeoutError):  # its last attempt's error is not kept
            error = f"still failing after {self._case.step_timeout_seconds} s ({error})"
        workflow.logger.error("dispute case %s: step %s keeps failing: %s", self._case.key, step, error)
        if self._state.attention is None:
            self._occurrence += 1
        self._failing_step = step
        self._state.attention = f"{step}: {error}"
        self._retry += 1
        self._retry_at = workflow.time() + self._case.attention_retry_seconds
        workflow.upsert_memo({"attention": self._state.attention})
        self._show()

    def _clear_attention(self) -> None:
        self._recheck = False
        if self._state.attention is None:
            return
        self._state.attention, self._retry = None, 0
        workflow.upsert_memo({"attention": None})
        self._show()

    def _notice(
        self,
        event_type: str,
        key: str,
        data: dict[str, str],
        support_only: bool = False,
        author: tuple[Party, str | None] | None = None,
    ) -> NotificationEvent:
        """One of the case's notifications (`dispute:<order>:<case>:<key>`, sent once per recipient). `author`
        (role, user id): who wrote what it tells of, who is not told of their own message."""
        case = self._case
        parties = [] if support_only else [case.buyer_id, case.seller_id]
        return NotificationEvent(
            event_key=f"{case.key}:{key}",
            event_type=event_type,
            recipient_ids=[p for p in parties if author is None or p != author[1]],
            recipient_roles=[] if author is not None and author[0] == Party.SUPPORT else ["support"],
            data={"listing_title": case.listing_title, "order_id": case.order_id, **data},
        )

    def _show(self) -> None:
        """The current details operators read in the Temporal UI (workflow metadata: no history event)."""
        state, case = self._state, self._case
        refund = None
        if self._resolution is not None and self._resolution.refund_amount is not None:
            amount = self._resolution.refund_amount
            refund = format_money(amount, case.currency) if case.currency else str(amount)
        workflow.set_current_details(
            case_details(
                state.status,
                opened=self._opened,
                waiting={str(p): _at(self._deadlines[p]) for p in state.waiting_for if p in self._deadlines},
                escalates_at=_at(self._escalate_at) if self._escalate_at is not None else None,
                resolution=state.resolution,
                refund=refund if state.status == DisputeStatus.RESOLVED else None,
                attention=state.attention,
                retry=self._retry,
                next_retry=_at(self._retry_at) if state.attention is not None else None,
            )
        )

    # ---- cases started before BOUNDED_PATCH: their commands, frozen (docs/workflow-versioning.md) ----------
    async def _legacy_run(self, case: DisputeCase) -> DisputeState:
        await execute_activity(
            DisputeActivities.open_dispute_case,
            OpenDispute.of(self._case),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._opened = True
        await self._legacy_notify(self._notice("dispute_opened", "opened", {"reason": case.reason_code}))
        self._escalate_at = escalate_at = workflow.time() + case.escalate_after_seconds
        self._show()
        while self._resolution is None:
            due = self._due(escalate_at)
            timeout = max(0.0, min(due) - workflow.time()) if due else None
            try:
                await workflow.wait_condition(
                    lambda: self._resolution is not None or self._changed,
                    timeout=timedelta(seconds=timeout) if timeout is not None else None,
                )
            except TimeoutError:
                pass
            self._changed = False
            await self._legacy_record_chargebacks()
            await self._legacy_handle_deadlines(escalate_at)
        await self._legacy_record_chargebacks()
        await self._legacy_set_status(DisputeStatus.RESOLVED, self._resolution)
        resolved: dict[str, str] = {"resolution": self._resolution.resolution}
        await self._legacy_notify(self._notice("dispute_resolved", "resolved", resolved))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _legacy_handle_deadlines(self, escalate_at: float) -> None:
        now = workflow.time()
        if self._state.status != DisputeStatus.ESCALATED and self._resolution is None and now >= escalate_at:
            await self._legacy_append(self._entry(DisputeMessageKind.ESCALATION, ESCALATION, "escalated"))
            await self._legacy_set_status(DisputeStatus.ESCALATED)
            await self._legacy_notify(self._escalated_notice())
        for party, deadline in list(self._deadlines.items()):
            if party not in self._answered and now >= deadline:
                self._answered.add(party)
                self._state.waiting_for = [p for p in self._state.waiting_for if p != party]
                entry, told = self._no_response(party, deadline)
                await self._legacy_append(entry)
                await self._legacy_notify(told)

    async def _legacy_add_message(self, message: DisputeMessageIn) -> DisputeState:
        self._state.messages += 1
        key = f"message-{self._state.messages}"
        author, kind = Party(message.author_role), DisputeMessageKind(message.kind)
        await self._legacy_append(self._entry(kind, message.body, key, role=author, author=message.author_id))
        if author in self._deadlines and author not in self._answered:
            self._answered.add(author)
            self._state.waiting_for = [p for p in self._state.waiting_for if p != author]
            if not self._state.waiting_for and self._state.status == DisputeStatus.AWAITING_INFO:
                await self._legacy_set_status(DisputeStatus.OPEN)
        told = {"message": f"new {message.kind} from the {message.author_role}"}
        await self._legacy_notify(self._notice("dispute_updated", key, told))
        self._changed = True
        return self._state

    async def _legacy_request_info(self, request: InfoRequest) -> DisputeState:
        self._state.messages += 1
        key = f"info-request-{self._state.messages}"
        party = Party(request.party)
        self._deadlines[party] = workflow.time() + request.deadline_seconds
        self._answered.discard(party)
        self._state.waiting_for = sorted({*self._state.waiting_for, party})
        await self._legacy_append(self._info_request(request, key))
        await self._legacy_set_status(DisputeStatus.AWAITING_INFO)
        told = {"message": f"support asks the {request.party}: {request.question}"}
        await self._legacy_notify(self._notice("dispute_updated", key, told))
        self._changed = True
        return self._state

    async def _legacy_record_chargebacks(self) -> None:
        while self._chargebacks:
            entry, told = self._chargeback_entry(self._chargebacks.pop(0))
            await self._legacy_append(entry)
            await self._legacy_notify(told)

    async def _legacy_append(self, entry: ThreadEntry) -> None:
        await execute_activity(
            DisputeActivities.append_dispute_thread,
            entry,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _legacy_set_status(self, status: DisputeStatus, resolution: Resolution | None = None) -> None:
        self._state.status = status
        if resolution is not None:
            self._state.resolution = resolution.resolution
        self._show()
        await execute_activity(
            DisputeActivities.set_dispute_status,
            DisputeStatusChange(
                self._case.order_id,
                status,
                resolution.resolution if resolution else None,
                resolution.refund_amount if resolution else None,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _legacy_notify(self, notice: NotificationEvent) -> None:
        """Fire and forget: a child that outlives this workflow (what cases started before the outbox do)."""
        await notify_in_background(notice, self._case.notification_max_attempts)
