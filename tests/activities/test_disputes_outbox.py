"""The dispute case's database steps on real PostgreSQL: each writes its thread entry, the status change it
brings and its notifications (outbox rows) in one transaction, so a step that fails leaves none of them, and
data the database refuses is a non-retryable DataError (the workflow refuses the Update with nothing changed).

A migrated database of this module's own (the `outbox_url` and `db` fixtures, tests/conftest.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError

from activities.database import DATA_ERROR
from activities.disputes import DisputeActivities, DisputeStatusChange, OpenDispute, ThreadEntry
from bazaar.db import get_engine, get_sessionmaker
from bazaar.models import OrderStatus, PaymentState, User
from bazaar.orders.types import Party
from bazaar.settings import Settings, get_settings
from bazaar.trust.models import (
    Dispute,
    DisputeMessage,
    DisputeMessageKind,
    DisputeResolution,
    DisputeSource,
    DisputeStatus,
    Notification,
)
from bazaar.trust.notifications import NotificationEvent
from tests.support.outbox import Sessions, stored_order

pytestmark = pytest.mark.integration


@dataclass
class Parties:
    order_id: str
    buyer: str
    seller: str


@asynccontextmanager
async def on_database(url: str) -> AsyncIterator[DisputeActivities]:
    """The real activities, with bazaar.db pointed at `url` for the block."""
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    try:
        yield DisputeActivities(Settings(_env_file=None).model_copy(update={"database_url": url}))
    finally:
        await get_engine().dispose()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
        get_settings.cache_clear()
        get_engine.cache_clear()
        get_sessionmaker.cache_clear()


async def an_order(db: Sessions) -> Parties:
    tag = uuid.uuid4().hex[:10]
    people = [
        User(email=f"{role}-{tag}@example.com", password_hash="-", display_name=role, roles=[role])
        for role in ("buyer", "seller", "support")
    ]
    async with db() as session, session.begin():
        session.add_all(people)
    buyer, seller, _ = people
    order = await stored_order(
        db,
        buyer,
        seller,
        title="Road bike",
        amount=45_000,
        status=OrderStatus.DISPUTED,
        payment_state=PaymentState.FROZEN,
    )
    return Parties(str(order.id), str(buyer.id), str(seller.id))


def news(parties: Parties, key: str, event_type: str = "dispute_updated") -> NotificationEvent:
    return NotificationEvent(
        f"dispute:{parties.order_id}:buyer:{key}",
        event_type,
        [parties.buyer, parties.seller],
        ["support"],
        {"listing_title": "Road bike", "order_id": parties.order_id, "message": key, "reason": "damaged"},
    )


async def rows(db: Sessions, parties: Parties) -> tuple[str, list[str], dict[str, int]]:
    """The case's status, its thread's keys and its notification rows per event key."""
    async with db() as session:
        dispute = await session.scalar(select(Dispute).where(Dispute.order_id == uuid.UUID(parties.order_id)))
        assert dispute is not None
        keys = await session.scalars(
            select(DisputeMessage.dedupe_key)
            .where(DisputeMessage.dispute_id == dispute.id)
            .order_by(DisputeMessage.id)
        )
        counted = await session.execute(
            select(Notification.event_key, func.count())
            .where(Notification.event_key.startswith(f"dispute:{parties.order_id}:"))
            .group_by(Notification.event_key)
        )
        return (
            str(dispute.status),
            [str(k).rsplit(":", 1)[1] for k in keys],
            {str(key): int(n) for key, n in counted.all()},
        )


async def test_each_step_writes_its_entry_status_and_notifications_together(
    outbox_url: str, db: Sessions
) -> None:
    parties = await an_order(db)
    async with on_database(outbox_url) as steps:
        opened = news(parties, "opened", "dispute_opened")
        await steps.open_dispute_case(
            OpenDispute(
                parties.order_id, DisputeSource.BUYER, "damaged", "bent", parties.buyer, notices=[opened]
            )
        )
        asked = ThreadEntry(
            parties.order_id,
            None,
            Party.SUPPORT,
            DisputeMessageKind.INFO_REQUEST,
            "Receipt?",
            f"dispute:{parties.order_id}:buyer:info-request-1",
            status=DisputeStatus.AWAITING_INFO,
            notices=[news(parties, "info-request-1")],
        )
        await steps.append_dispute_thread(asked)
        await steps.append_dispute_thread(asked)  # a retried step writes nothing twice
        status, thread, notified = await rows(db, parties)
        # Three recipients (buyer, seller, the support user), inbox and email each.
        assert (status, thread) == ("awaiting_info", ["opened", "info-request-1"])
        assert notified == {opened.event_key: 6, asked.notices[0].event_key: 6}
        resolved = news(parties, "resolved", "dispute_resolved")
        await steps.set_dispute_status(
            DisputeStatusChange(
                parties.order_id, DisputeStatus.RESOLVED, DisputeResolution.REFUND, notices=[resolved]
            )
        )
        status, _, notified = await rows(db, parties)
        assert status == "resolved" and notified[resolved.event_key] == 6


async def test_a_step_that_fails_leaves_no_entry_no_status_and_no_notification(
    outbox_url: str, db: Sessions
) -> None:
    parties = await an_order(db)
    async with on_database(outbox_url) as steps:
        await steps.open_dispute_case(
            OpenDispute(parties.order_id, DisputeSource.BUYER, "damaged", "bent", parties.buyer)
        )

        def entry(key: str, body: str, notice: NotificationEvent) -> ThreadEntry:
            return ThreadEntry(
                parties.order_id,
                parties.seller,
                Party.SELLER,
                DisputeMessageKind.MESSAGE,
                body,
                f"dispute:{parties.order_id}:buyer:{key}",
                status=DisputeStatus.ESCALATED,
                notices=[notice],
            )

        # Data PostgreSQL refuses: a permanent, non-retryable DataError, and nothing of the step is kept.
        with pytest.raises(ApplicationError) as refused:
            await steps.append_dispute_thread(entry("message-1", "bad \x00 byte", news(parties, "message-1")))
        assert (refused.value.type, refused.value.non_retryable) == (DATA_ERROR, True)
        # The entry is fine but its notification cannot be written: the entry is not kept either.
        broken = news(parties, "message-2", "no_such_event")
        with pytest.raises(ValueError):
            await steps.append_dispute_thread(entry("message-2", "fine", broken))
        assert await rows(db, parties) == ("open", ["opened"], {})
