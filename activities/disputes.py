"""Dispute side effects: the dispute record and its thread in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from temporalio import activity

from bazaar.db import transaction
from bazaar.orders.types import Party
from bazaar.trust import disputes
from bazaar.trust.models import DisputeMessageKind, DisputeResolution, DisputeSource, DisputeStatus


@dataclass
class OpenDispute:
    order_id: str
    source: DisputeSource
    reason_code: str
    message: str
    author_id: str | None
    provider_dispute_id: str | None = None


@dataclass
class ThreadEntry:
    order_id: str
    author_id: str | None
    author_role: Party
    kind: DisputeMessageKind
    body: str
    dedupe_key: str
    data: dict[str, str] = field(default_factory=dict)


@dataclass
class DisputeStatusChange:
    order_id: str
    status: DisputeStatus
    resolution: DisputeResolution | None = None
    refund_amount: int | None = None


class DisputeActivities:
    @activity.defn
    async def open_dispute_case(self, req: OpenDispute) -> str:
        async with transaction() as session:
            dispute = await disputes.open_case(
                session,
                uuid.UUID(req.order_id),
                req.source,
                req.reason_code,
                req.message,
                uuid.UUID(req.author_id) if req.author_id else None,
                req.provider_dispute_id,
            )
            return str(dispute.id)

    @activity.defn
    async def append_dispute_thread(self, entry: ThreadEntry) -> None:
        async with transaction() as session:
            dispute, _ = await disputes.case_for_order(session, uuid.UUID(entry.order_id))
            await disputes.add_message(
                session,
                dispute.id,
                uuid.UUID(entry.author_id) if entry.author_id else None,
                entry.author_role,
                entry.kind,
                entry.body,
                dict(entry.data),
                dedupe_key=entry.dedupe_key,
            )

    @activity.defn
    async def set_dispute_status(self, change: DisputeStatusChange) -> None:
        async with transaction() as session:
            await disputes.set_status(
                session,
                uuid.UUID(change.order_id),
                change.status,
                change.resolution,
                change.refund_amount,
            )
