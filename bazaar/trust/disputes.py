"""Disputes: the record and thread of a disputed order (the money side is in the order workflow)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auth import Principal, order_party
from bazaar.errors import DomainError, ErrorCode
from bazaar.idempotency import request_digest
from bazaar.integrations import events
from bazaar.models import AuditEvent, Order
from bazaar.orders.details import utc
from bazaar.orders.terms import DEFAULT_TERMS
from bazaar.orders.types import Party
from bazaar.payments.money import format_money
from bazaar.trust.models import (
    Dispute,
    DisputeMessage,
    DisputeMessageKind,
    DisputeResolution,
    DisputeSource,
    DisputeStatus,
)

# ---- what crosses the case workflow's boundary (workflows/dispute.py): its input, Update/Signal payloads and
# state. Running cases decode these, so fields are only ever added, with defaults. ------------------------------
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
    notification_max_attempts: int = 6  # legacy cases' notification children
    amount: int = 0  # the order's total, for operators (summary, refund text)
    currency: str = ""
    # The failure rule's bounds, the order's terms (docs/failure-rules.md).
    step_timeout_seconds: int = DEFAULT_TERMS["step_timeout_seconds"]
    attention_retry_seconds: int = DEFAULT_TERMS["attention_retry_seconds"]

    @property
    def key(self) -> str:
        """Prefix of this case's thread and notification keys (an order can have a later chargeback case)."""
        return case_prefix(self.order_id, self.provider_dispute_id)

    def summary(self) -> str:
        """The static summary operators see in the Temporal UI's list (set by whoever starts the case)."""
        return case_summary(
            self.amount, self.currency, self.listing_title, self.source, self.provider_dispute_id
        )


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

    def answer_by(self, now: datetime) -> datetime:
        """When the party asked at `now` must answer (a workflow passes `workflow.now()`)."""
        return now + timedelta(seconds=self.deadline_seconds)

    def told(self, now: datetime) -> str:
        """What the party asked is told: the question and until when (found from outside: no deadline)."""
        return f"support asks the {self.party} (please answer by {self.answer_by(now):%Y-%m-%d %H:%M} UTC): {self.question}"


@dataclass
class Resolution:
    resolution: DisputeResolution
    refund_amount: int | None = None
    note: str | None = None  # support's words to both sides


def resolution_text(resolution: Resolution, currency: str) -> str:
    """What both sides are told of a resolution: the decision in words, the money back, support's note."""
    if resolution.resolution == DisputeResolution.RELEASE:
        decided = "the payment goes to the seller"
    elif resolution.resolution == DisputeResolution.REFUND:
        decided = "the buyer is refunded in full"
    else:
        decided = "the buyer is refunded in part, the rest goes to the seller"
    if resolution.refund_amount and resolution.resolution != DisputeResolution.RELEASE:
        decided += f" ({format_money(resolution.refund_amount, currency)} back)"
    return decided + (f'. Support\'s note: "{resolution.note}"' if resolution.note else "")


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
    attention: str | None = None  # "<step>: <error>" while a step keeps failing past its bound


# ---- the record and its thread ------------------------------------------------------------------------------
async def open_case(
    session: AsyncSession,
    order_id: uuid.UUID,
    source: DisputeSource,
    reason_code: str,
    message: str,
    author_id: uuid.UUID | None,
    provider_dispute_id: str | None = None,
) -> Dispute:
    await session.execute(
        insert(Dispute)
        .values(
            id=uuid.uuid4(),
            order_id=order_id,
            source=source,
            reason_code=reason_code,
            status=DisputeStatus.OPEN,
            provider_dispute_id=provider_dispute_id,
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
    )
    dispute = await session.scalar(select(Dispute).where(Dispute.order_id == order_id).with_for_update())
    assert dispute is not None
    if dispute.status == DisputeStatus.RESOLVED and dispute.provider_dispute_id != provider_dispute_id:
        # A new case on an order whose earlier one was resolved (a chargeback after a buyer dispute): the
        # order has one dispute record, reopened for it, opened now; the thread keeps the earlier case above it,
        # its decision written into it first (found from outside: support's earlier decision and its time were
        # lost from the case).
        await add_message(
            session,
            dispute.id,
            None,
            Party.SYSTEM,
            DisputeMessageKind.MESSAGE,
            await _earlier_decision(session, dispute),
            {
                "resolution": dispute.resolution and str(dispute.resolution),
                "refund_amount": dispute.refund_amount,
                "resolved_at": dispute.resolved_at and dispute.resolved_at.isoformat(),
                "source": str(dispute.source),
            },
            dedupe_key=f"{case_prefix(order_id, dispute.provider_dispute_id)}:decided",
        )
        dispute.source, dispute.reason_code, dispute.status = source, reason_code, DisputeStatus.OPEN
        dispute.provider_dispute_id = provider_dispute_id
        dispute.resolution = dispute.refund_amount = dispute.resolved_at = None
        dispute.created_at = datetime.now(UTC)  # when this case opened (`opened_at`; the queue orders by it)
    await add_message(
        session,
        dispute.id,
        author_id,
        Party.SYSTEM if author_id is None else Party.BUYER,  # only the buyer opens a case themselves
        DisputeMessageKind.OPENED,
        message or reason_code,
        {"reason_code": reason_code, "source": source},
        dedupe_key=f"{case_prefix(order_id, provider_dispute_id)}:opened",
    )
    await events.record(
        session,
        events.EventType.DISPUTE_OPENED,
        events.seller_of(order_id),
        _dispute_data(dispute),
        dedupe_key=f"{case_prefix(order_id, provider_dispute_id)}:opened",
    )
    return dispute


async def _earlier_decision(session: AsyncSession, dispute: Dispute) -> str:
    """The resolved case's decision, for the thread of the case that reopens its record."""
    when = f" on {dispute.resolved_at:%Y-%m-%d %H:%M} UTC" if dispute.resolved_at else ""
    decision = str(dispute.resolution or "resolved")
    if dispute.refund_amount:
        order = await session.get(Order, dispute.order_id)
        currency = order.currency if order is not None else ""
        decision += f" ({format_money(dispute.refund_amount, currency)} refunded)"
    return f"The earlier case ({dispute.source}) was decided{when}: {decision}. A new case follows."


def _dispute_data(dispute: Dispute) -> dict[str, Any]:
    return {
        "object": "dispute",
        "id": str(dispute.id),
        "order_id": str(dispute.order_id),
        "status": str(dispute.status),
        "source": str(dispute.source),
        "reason_code": dispute.reason_code,
        "resolution": dispute.resolution and str(dispute.resolution),
        "refund_amount": dispute.refund_amount,
    }


def case_prefix(order_id: uuid.UUID | str, provider_dispute_id: str | None) -> str:
    """Prefix of one case's thread and notification keys: an order has the buyer's case, and may have a
    later one per card-network dispute (a chargeback)."""
    return f"dispute:{order_id}:{provider_dispute_id or 'buyer'}"


async def add_message(
    session: AsyncSession,
    dispute_id: uuid.UUID,
    author_id: uuid.UUID | None,
    author_role: Party,
    kind: DisputeMessageKind,
    body: str,
    data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Append to the thread; `dedupe_key` makes a retried activity append once."""
    await session.execute(
        insert(DisputeMessage)
        .values(
            dispute_id=dispute_id,
            author_id=author_id,
            author_role=author_role,
            kind=kind,
            body=body,
            data=data or {},
            dedupe_key=dedupe_key,
        )
        .on_conflict_do_nothing(constraint="uq_dispute_message_dedupe")
    )


async def claim_key(
    session: AsyncSession,
    order_id: uuid.UUID,
    step: str,
    author_id: uuid.UUID,
    author_role: str,
    key: str,
    request: Mapping[str, Any],
) -> None:
    """An Idempotency-Key on a step of the case names one request: the first one's digest is kept (an audit row
    doubles as the record), the same key with another request is refused (422 `idempotency_key_reused`) rather
    than answered as the first. In the caller's transaction, which commits it before the step runs (the step's
    own retry under the key is the workflow's Update id); a concurrent request with the key waits on the unique
    index until the first one's commit."""
    scoped = f"{order_id}:{step}:{author_id}:{key}"
    record = f"dispute:key:{hashlib.sha256(scoped.encode()).hexdigest()}"  # keys run to 200 characters
    asked = request_digest(request)
    inserted = await session.execute(
        insert(AuditEvent)
        .values(
            actor_id=author_id,
            actor_role=author_role,
            subject_type="dispute",
            subject_id=str(order_id),
            action="dispute.idempotency_key",
            data={"step": step, "request": asked},
            dedupe_key=record,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(AuditEvent.id)
    )
    if inserted.first() is not None:
        return
    first = await session.scalar(select(AuditEvent.data).where(AuditEvent.dedupe_key == record))
    if (first or {}).get("request") != asked:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used for a different request"
        )


async def case_id(session: AsyncSession, order_id: uuid.UUID) -> uuid.UUID:
    """The order's dispute record (without its thread: a step of the case's workflow needs only the id)."""
    found = await session.scalar(select(Dispute.id).where(Dispute.order_id == order_id))
    if found is None:
        raise LookupError(f"no dispute on order {order_id}")
    return found


async def set_status(
    session: AsyncSession,
    order_id: uuid.UUID,
    status: DisputeStatus,
    resolution: DisputeResolution | None = None,
    refund_amount: int | None = None,
) -> Dispute:
    dispute = await session.scalar(select(Dispute).where(Dispute.order_id == order_id).with_for_update())
    if dispute is None:
        raise LookupError(f"no dispute on order {order_id}")
    if dispute.status != DisputeStatus.RESOLVED:
        dispute.status = status
        if status == DisputeStatus.RESOLVED:
            dispute.resolution = resolution
            dispute.refund_amount = refund_amount
            dispute.resolved_at = datetime.now(UTC)
            await events.record(
                session,
                events.EventType.DISPUTE_RESOLVED,
                events.seller_of(order_id),
                _dispute_data(dispute),
                dedupe_key=f"{case_prefix(order_id, dispute.provider_dispute_id)}:resolved",
            )
    return dispute


async def record_resolution(session: AsyncSession, order_id: uuid.UUID, resolution: Resolution) -> None:
    """The order's own transition that settles its dispute marks the case resolved in the same transaction, so
    the case reads resolved as soon as the order does (the case's workflow then finds it so and only tells
    people). Nothing to mark if the case has not opened yet: its workflow resolves it when it does."""
    try:
        await set_status(
            session, order_id, DisputeStatus.RESOLVED, resolution.resolution, resolution.refund_amount
        )
    except LookupError:
        pass


async def case_for_order(session: AsyncSession, order_id: uuid.UUID) -> tuple[Dispute, list[DisputeMessage]]:
    dispute = await session.scalar(select(Dispute).where(Dispute.order_id == order_id))
    if dispute is None:
        raise DomainError(ErrorCode.NOT_FOUND, "this order has no dispute")
    thread = (
        await session.scalars(
            select(DisputeMessage).where(DisputeMessage.dispute_id == dispute.id).order_by(DisputeMessage.id)
        )
    ).all()
    return dispute, list(thread)


async def visible_case(
    session: AsyncSession, order_id: uuid.UUID, viewer: Principal
) -> tuple[Dispute, list[DisputeMessage]]:
    """The dispute and its thread, for the buyer, the seller and support only."""
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    if order_party(order, viewer) is None:
        raise DomainError(ErrorCode.FORBIDDEN, "only the buyer, the seller and support can see this dispute")
    # The order's dispute move saves the case's record with it: it is here once the move has answered.
    return await case_for_order(session, order_id)


async def queue(session: AsyncSession, statuses: list[DisputeStatus], limit: int) -> list[Dispute]:
    """Support's work queue: escalated cases first, then the oldest first."""
    escalated_first = case((Dispute.status == DisputeStatus.ESCALATED, 0), else_=1)
    rows = await session.scalars(
        select(Dispute)
        .where(Dispute.status.in_(statuses))
        .order_by(escalated_first, Dispute.created_at, Dispute.id)
        .limit(limit)
    )
    return list(rows.all())


# ---- what operators read in the Temporal UI (pure text; the workflow calls these, nothing is a command) ----
TITLE_CHARS = 60  # the summary is one line in the UI's list


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def case_summary(
    amount: int, currency: str, title: str, source: DisputeSource, provider_dispute_id: str | None
) -> str:
    """'Dispute on order 450.00 EUR: Road bike, buyer dispute' (or '..., chargeback dp_1')."""
    price = f" {format_money(amount, currency)}" if currency else ""
    origin = (
        f"chargeback {provider_dispute_id or ''}".rstrip()
        if source == DisputeSource.CHARGEBACK
        else "buyer dispute"
    )
    return f"Dispute on order{price}: {_one_line(title, TITLE_CHARS)}, {origin}"


def case_details(
    status: DisputeStatus,
    *,
    opened: bool = True,
    waiting: Mapping[str, datetime] | None = None,
    escalates_at: datetime | None = None,
    resolution: DisputeResolution | None = None,
    refund: str | None = None,
    attention: str | None = None,
    retry: int = 0,
    next_retry: datetime | None = None,
) -> str:
    """One line saying what the case waits for: 'waiting for the buyer's answer until 2026-11-28 12:00 UTC',
    'escalated to support', 'resolved: refund'; a failing step first ('needs attention: ...')."""
    asked = [f"the {party}'s answer until {utc(until)}" for party, until in sorted((waiting or {}).items())]
    answers = f"waiting for {' and '.join(asked)}" if asked else ""
    if not opened:
        headline = "opening the case"
    elif status == DisputeStatus.RESOLVED:
        headline = f"resolved: {resolution or 'closed'}" + (f" ({refund} refunded)" if refund else "")
    elif status == DisputeStatus.ESCALATED:
        headline = "escalated to support" + (
            f"; {answers}" if answers else ": waiting for support to resolve"
        )
    elif answers:
        headline = answers
    else:
        escalates = f" (escalates to support at {utc(escalates_at)})" if escalates_at else ""
        headline = f"open: waiting for support to resolve{escalates}"
    if attention is None:
        return headline
    when = f", next at {utc(next_retry)}" if next_retry else ""
    return f"needs attention: {attention} (retry {retry or 1}{when}) | {headline}"
