"""A dispute (id `dispute-<order id>`): started by the order workflow when a buyer disputes or a chargeback
arrives. It keeps the thread, asks either side for information with a deadline, and escalates to support
when unresolved for too long. The money outcome is decided in the order workflow (support's
`resolve_dispute` Update there), which then signals `resolved` here.

Operators: Update `add_message` / `request_info`, Signal `resolved`, Query `status` (docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.retries import DB_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.disputes import DisputeActivities, DisputeStatusChange, OpenDispute, ThreadEntry
    from bazaar.errors import Rejection
    from bazaar.orders.types import Party
    from bazaar.payments.money import format_money
    from bazaar.temporal import dispute_workflow_id as dispute_workflow_id
    from bazaar.trust.disputes import case_prefix
    from bazaar.trust.models import DisputeMessageKind, DisputeResolution, DisputeSource, DisputeStatus
    from bazaar.trust.notifications import NotificationEvent
    from workflows.notification import notify_in_background

DB_TIMEOUT = timedelta(seconds=30)
# Who may write in a case's thread, and whom support may ask; what a party may post.
AUTHORS = frozenset({Party.BUYER, Party.SELLER, Party.SUPPORT})
ASKED = frozenset({Party.BUYER, Party.SELLER})
POSTED = frozenset({DisputeMessageKind.MESSAGE, DisputeMessageKind.EVIDENCE})


@dataclass
class DisputeCase:
    order_id: str
    buyer_id: str
    seller_id: str
    listing_title: str
    source: DisputeSource
    reason_code: str
    message: str = ""
    provider_dispute_id: str | None = None
    escalate_after_seconds: int = 5 * 24 * 3600
    notification_max_attempts: int = 6

    @property
    def key(self) -> str:
        """Prefix of this case's thread and notification keys (an order can have a later chargeback case)."""
        return case_prefix(self.order_id, self.provider_dispute_id)


@dataclass
class DisputeMessageIn:
    """A message for the thread. Its role and kind are strings as the caller sent them: the validator checks
    them (one of `AUTHORS`, the API vouches for it; one of `POSTED`), so a bad one is an InvalidRequest."""

    author_id: str
    author_role: str
    body: str
    kind: str = DisputeMessageKind.MESSAGE


@dataclass
class InfoRequest:
    staff_id: str
    party: str  # one of `ASKED`, checked by the validator
    question: str
    deadline_seconds: int


@dataclass
class Resolution:
    resolution: DisputeResolution
    refund_amount: int | None = None


@dataclass
class ChargebackJoined:
    """The card network disputes the charge while this (buyer's) case is open: the order froze the money
    for the network's decision; the case records it and goes on."""

    provider_dispute_id: str
    amount: int
    currency: str


@dataclass
class DisputeState:
    status: DisputeStatus = DisputeStatus.OPEN
    messages: int = 0
    waiting_for: list[Party] = field(default_factory=list)
    resolution: DisputeResolution | None = None


@workflow.defn
class DisputeWorkflow:
    @workflow.init
    def __init__(self, case: DisputeCase) -> None:
        # Set from the input before any handler runs (an Update may arrive with the start).
        self._case: DisputeCase | None = case
        self._opened = False
        self._state = DisputeState()
        self._resolution: Resolution | None = None
        # party -> workflow time (seconds) by which they must answer
        self._deadlines: dict[Party, float] = {}
        self._answered: set[Party] = set()
        self._changed = False  # an update arrived: recompute the next deadline
        self._chargebacks: list[ChargebackJoined] = []  # joined, not yet written to the thread

    @workflow.run
    async def run(self, case: DisputeCase) -> DisputeState:
        await workflow.execute_activity_method(
            DisputeActivities.open_dispute_case,
            OpenDispute(
                case.order_id,
                case.source,
                case.reason_code,
                case.message,
                case.buyer_id if case.source == DisputeSource.BUYER else None,
                case.provider_dispute_id,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._opened = True
        await self._notify("dispute_opened", "opened", {"reason": case.reason_code})
        escalate_at = workflow.time() + case.escalate_after_seconds
        while self._resolution is None:
            now = workflow.time()
            due = [escalate_at] if self._state.status != DisputeStatus.ESCALATED else []
            due += [t for p, t in self._deadlines.items() if p not in self._answered]
            timeout = max(0.0, min(due) - now) if due else None
            try:
                await workflow.wait_condition(
                    lambda: self._resolution is not None or self._changed,
                    timeout=timedelta(seconds=timeout) if timeout is not None else None,
                )
            except TimeoutError:
                pass
            self._changed = False
            await self._record_chargebacks()
            await self._handle_deadlines(escalate_at)
        await self._record_chargebacks()
        await self._set_status(DisputeStatus.RESOLVED, self._resolution)
        await self._notify("dispute_resolved", "resolved", {"resolution": self._resolution.resolution})
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _handle_deadlines(self, escalate_at: float) -> None:
        now = workflow.time()
        if self._state.status != DisputeStatus.ESCALATED and self._resolution is None and now >= escalate_at:
            await self._append(
                Party.SYSTEM,
                None,
                DisputeMessageKind.ESCALATION,
                "unresolved past the escalation deadline",
                "escalated",
            )
            await self._set_status(DisputeStatus.ESCALATED)
            await self._notify(
                "dispute_escalated", "escalated", {"opened_at": self._opened_at()}, support_only=True
            )
        for party, deadline in list(self._deadlines.items()):
            if party not in self._answered and now >= deadline:
                self._answered.add(party)  # handled: the deadline passed without an answer
                self._state.waiting_for = [p for p in self._state.waiting_for if p != party]
                await self._append(
                    Party.SYSTEM,
                    None,
                    DisputeMessageKind.NO_RESPONSE,
                    f"no answer from the {party} in time",
                    f"no-response-{party}-{int(deadline)}",
                )
                await self._notify(
                    "dispute_updated",
                    f"no-response-{party}-{int(deadline)}",
                    {"message": f"the {party} did not answer in time"},
                    support_only=True,
                )

    # ---- Updates / Signals / Query ----------------------------------------------------------------------
    @workflow.update
    async def add_message(self, message: DisputeMessageIn) -> DisputeState:
        await workflow.wait_condition(lambda: self._opened)  # the thread exists once the case is opened
        self._state.messages += 1
        key = f"message-{self._state.messages}"
        author, kind = (
            Party(message.author_role),
            DisputeMessageKind(message.kind),
        )  # checked by the validator
        await self._append(author, message.author_id, kind, message.body, key)
        if author in self._deadlines and author not in self._answered:
            self._answered.add(author)
            self._state.waiting_for = [p for p in self._state.waiting_for if p != author]
            if not self._state.waiting_for and self._state.status == DisputeStatus.AWAITING_INFO:
                await self._set_status(DisputeStatus.OPEN)
        await self._notify(
            "dispute_updated", key, {"message": f"new {message.kind} from the {message.author_role}"}
        )
        self._changed = True
        return self._state

    @add_message.validator
    def _validate_message(self, message: DisputeMessageIn) -> None:
        if self._resolution is not None:
            raise ApplicationError("the dispute is resolved", type=Rejection.INVALID_TRANSITION)
        if message.author_role not in AUTHORS or not message.body.strip():
            raise ApplicationError(
                "a message needs a body and a buyer, seller or support author", type=Rejection.INVALID_REQUEST
            )
        if message.kind not in POSTED:
            raise ApplicationError("a message is a message or evidence", type=Rejection.INVALID_REQUEST)

    @workflow.update
    async def request_info(self, request: InfoRequest) -> DisputeState:
        await workflow.wait_condition(lambda: self._opened)
        self._state.messages += 1
        key = f"info-request-{self._state.messages}"
        party = Party(request.party)  # checked by the validator
        self._deadlines[party] = workflow.time() + request.deadline_seconds
        self._answered.discard(party)
        self._state.waiting_for = sorted({*self._state.waiting_for, party})
        await self._append(
            Party.SUPPORT,
            request.staff_id,
            DisputeMessageKind.INFO_REQUEST,
            request.question,
            key,
            {"party": request.party, "deadline_seconds": str(request.deadline_seconds)},
        )
        await self._set_status(DisputeStatus.AWAITING_INFO)
        await self._notify(
            "dispute_updated", key, {"message": f"support asks the {request.party}: {request.question}"}
        )
        self._changed = True
        return self._state

    @request_info.validator
    def _validate_info(self, request: InfoRequest) -> None:
        if self._resolution is not None:
            raise ApplicationError("the dispute is resolved", type=Rejection.INVALID_TRANSITION)
        if request.party not in ASKED or request.deadline_seconds <= 0:
            raise ApplicationError(
                "ask the buyer or the seller, with a positive deadline", type=Rejection.INVALID_REQUEST
            )

    @workflow.signal
    def resolved(self, resolution: Resolution) -> None:
        self._resolution = self._resolution or resolution

    @workflow.signal
    def chargeback_joined(self, notice: ChargebackJoined) -> None:
        self._chargebacks.append(notice)
        self._changed = True

    @workflow.query
    def status(self) -> DisputeState:
        return self._state

    # ---- steps -------------------------------------------------------------------------------------------
    async def _record_chargebacks(self) -> None:
        while self._chargebacks:
            notice = self._chargebacks.pop(0)
            key = f"chargeback-{notice.provider_dispute_id}"
            body = (
                f"The buyer's bank opened a chargeback ({notice.provider_dispute_id}, "
                f"{format_money(notice.amount, notice.currency)}); the card network decides that money."
            )
            await self._append(
                Party.SYSTEM,
                None,
                DisputeMessageKind.CHARGEBACK,
                body,
                key,
                {"provider_dispute_id": notice.provider_dispute_id},
            )
            await self._notify("dispute_updated", key, {"message": body})

    def _opened_at(self) -> str:
        return workflow.info().start_time.isoformat(timespec="minutes")

    async def _append(
        self,
        role: Party,
        author_id: str | None,
        kind: DisputeMessageKind,
        body: str,
        key: str,
        data: dict[str, str] | None = None,
    ) -> None:
        assert self._case is not None
        await workflow.execute_activity_method(
            DisputeActivities.append_dispute_thread,
            ThreadEntry(
                self._case.order_id,
                author_id,
                role,
                kind,
                body,
                f"{self._case.key}:{key}",
                data or {},
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _set_status(self, status: DisputeStatus, resolution: Resolution | None = None) -> None:
        assert self._case is not None
        self._state.status = status
        if resolution is not None:
            self._state.resolution = resolution.resolution
        await workflow.execute_activity_method(
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

    async def _notify(
        self, event_type: str, key: str, data: dict[str, str], support_only: bool = False
    ) -> None:
        """Fire and forget: a child that outlives this workflow, so mail never holds up the dispute."""
        case = self._case
        assert case is not None
        event_key = f"{case.key}:{key}"
        await notify_in_background(
            NotificationEvent(
                event_key=event_key,
                event_type=event_type,
                recipient_ids=[] if support_only else [case.buyer_id, case.seller_id],
                recipient_roles=["support"],
                data={"listing_title": case.listing_title, "order_id": case.order_id, **data},
            ),
            case.notification_max_attempts,
        )
