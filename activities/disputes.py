"""Dispute side effects: the dispute record and its thread in PostgreSQL, and the notifications each step implies.

Each step is one transaction: the thread entry (or the case's record), the status change it brings and the
notification rows (the outbox, drained by the notification sender), so a step's news is written exactly when
the step is. Data the database refuses is a non-retryable `DataError` (activities/database.py): the case's
workflow refuses the Update with nothing changed instead of retrying it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.database import activity_transaction
from bazaar.orders.types import Party
from bazaar.settings import Settings, get_settings
from bazaar.trust import disputes, notifications
from bazaar.trust.disputes import DisputeCase
from bazaar.trust.models import DisputeMessageKind, DisputeResolution, DisputeSource, DisputeStatus
from bazaar.trust.notifications import NotificationEvent


@dataclass
class OpenDispute:
    order_id: str
    source: DisputeSource
    reason_code: str
    message: str
    author_id: str | None
    provider_dispute_id: str | None = None
    notices: list[NotificationEvent] = field(default_factory=list)  # written with the case

    @classmethod
    def of(cls, case: DisputeCase) -> OpenDispute:
        """The record `case` opens (the buyer writes the first message of their own case)."""
        author = case.buyer_id if case.source == DisputeSource.BUYER else None
        return cls(
            case.order_id, case.source, case.reason_code, case.message, author, case.provider_dispute_id
        )


async def open_case(session: AsyncSession, req: OpenDispute) -> uuid.UUID:
    """Open (or reopen) the case's record and its first entry; saying it again changes nothing."""
    dispute = await disputes.open_case(
        session,
        uuid.UUID(req.order_id),
        req.source,
        req.reason_code,
        req.message,
        uuid.UUID(req.author_id) if req.author_id else None,
        req.provider_dispute_id,
    )
    return dispute.id


@dataclass
class ThreadEntry:
    order_id: str
    author_id: str | None
    author_role: Party
    kind: DisputeMessageKind
    body: str
    dedupe_key: str
    data: dict[str, str] = field(default_factory=dict)
    status: DisputeStatus | None = None  # the case's status changes with this entry (same transaction)
    notices: list[NotificationEvent] = field(default_factory=list)  # written with the entry


@dataclass
class DisputeStatusChange:
    order_id: str
    status: DisputeStatus
    resolution: DisputeResolution | None = None
    refund_amount: int | None = None
    notices: list[NotificationEvent] = field(default_factory=list)  # written with the change


class DisputeActivities:
    """Database work for the dispute workflow. Each activity is idempotent (dedupe keys on the thread and on
    the notifications): Temporal may run it again."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @property
    def _base_url(self) -> str:
        return (self._settings or get_settings()).public_base_url

    async def _notify(self, session: AsyncSession, notices: list[NotificationEvent]) -> None:
        await notifications.write(session, notices, self._base_url)

    @activity.defn
    async def open_dispute_case(self, req: OpenDispute) -> str:
        async with activity_transaction() as session:
            dispute_id = await open_case(session, req)
            await self._notify(session, req.notices)
            return str(dispute_id)

    @activity.defn
    async def append_dispute_thread(self, entry: ThreadEntry) -> None:
        order_id = uuid.UUID(entry.order_id)
        async with activity_transaction() as session:
            await disputes.add_message(
                session,
                await disputes.case_id(session, order_id),
                uuid.UUID(entry.author_id) if entry.author_id else None,
                entry.author_role,
                entry.kind,
                entry.body,
                dict(entry.data),
                dedupe_key=entry.dedupe_key,
            )
            if entry.status is not None:
                await disputes.set_status(session, order_id, entry.status)
            await self._notify(session, entry.notices)

    @activity.defn
    async def set_dispute_status(self, change: DisputeStatusChange) -> None:
        async with activity_transaction() as session:
            await disputes.set_status(
                session,
                uuid.UUID(change.order_id),
                change.status,
                change.resolution,
                change.refund_amount,
            )
            await self._notify(session, change.notices)
