"""The events feed on real PostgreSQL (a database of this module's own: the `outbox_url` and `db` fixtures):
every event exactly once across pages, in transaction order, also while transactions commit out of order."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.errors import DomainError
from bazaar.integrations import events, feed
from bazaar.integrations.events import EventType
from bazaar.integrations.models import Event
from bazaar.integrations.scope import Scope
from tests.support.outbox import Sessions

pytestmark = pytest.mark.integration

PLATFORM = Scope(seller_id=None, user_id=uuid.uuid4())


async def write(db: Sessions, seller: uuid.UUID | None = None, n: int = 1) -> list[int]:
    """`n` events in one committed transaction; their ids."""
    async with db() as session, session.begin():
        return await _insert(session, seller, n)


async def _insert(session: AsyncSession, seller: uuid.UUID | None, n: int) -> list[int]:
    return [
        int(
            await session.scalar(
                insert(Event)
                .values(type=EventType.LISTING_UPDATED, seller_id=seller, data={"object": "listing"})
                .returning(Event.id)
            )
            or 0
        )
        for _ in range(n)
    ]


async def read_all(db: Sessions, scope: Scope, after: int | None, limit: int) -> tuple[list[int], int | None]:
    """Page through the feed from `after` until a page comes back short; the ids and the last cursor."""
    seen: list[int] = []
    while True:
        async with db() as session:
            page = (await feed.page(session, scope, after, limit)).events
        seen += [e.id for e in page]
        after = page[-1].id if page else after
        if len(page) < limit:
            return seen, after


async def test_a_transaction_committing_out_of_order_is_not_skipped(db: Sessions) -> None:
    """B takes its transaction id first, A inserts an event, B inserts a later id and commits: the reader sees
    B's event first. A's, with the smaller id, commits after, and is still the reader's next event (a feed read
    by `id > cursor` would have skipped it for good)."""
    _, start = await read_all(db, PLATFORM, None, 500)
    async with db() as a, db() as b:
        await b.execute(select(func.pg_current_xact_id()))  # B's xid is the older one
        await a.execute(select(func.pg_current_xact_id()))
        [a_id] = await _insert(a, None, 1)
        [b_id] = await _insert(b, None, 1)
        await b.commit()
        first, cursor = await read_all(db, PLATFORM, start, 10)
        await a.commit()
    second, _ = await read_all(db, PLATFORM, cursor, 10)
    assert a_id < b_id
    assert first == [b_id] and second == [a_id]


async def test_every_event_once_across_pages_under_concurrent_writers(db: Sessions) -> None:
    _, start = await read_all(db, PLATFORM, None, 500)
    written: list[int] = []
    done = asyncio.Event()

    async def writer(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(15):
            async with db() as session, session.begin():
                written.extend(await _insert(session, None, rnd.randint(1, 3)))
                await asyncio.sleep(rnd.random() * 0.02)  # commits interleave with other writers' inserts

    seen: list[int] = []

    async def reader() -> None:
        cursor = start
        while True:
            finished = done.is_set()
            async with db() as session:
                page = (await feed.page(session, PLATFORM, cursor, 7)).events
            seen.extend(e.id for e in page)
            cursor = page[-1].id if page else cursor
            if finished and len(page) < 7:
                return
            await asyncio.sleep(0.005)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(seed) for seed in range(6)))
    done.set()
    await reading
    assert len(seen) == len(set(seen)), "an event was shown twice"
    assert sorted(seen) == sorted(written), "an event was skipped"


async def test_a_seller_sees_only_their_own_events(db: Sessions) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    _, start = await read_all(db, PLATFORM, None, 500)
    own = await write(db, mine, 3)
    other = await write(db, theirs, 2)
    platform_only = await write(db, None, 1)
    seen, _ = await read_all(db, Scope(seller_id=mine, user_id=mine), start, 2)
    assert seen == own
    everything, _ = await read_all(db, PLATFORM, start, 2)
    assert everything == own + other + platform_only


async def test_a_full_page_says_more_only_when_more_is_there(db: Sessions) -> None:
    """`more` looks past the page: a page that happens to hold exactly the last events says there is no more."""
    seller = uuid.uuid4()
    scope = Scope(seller_id=seller, user_id=seller)
    _, start = await read_all(db, PLATFORM, None, 500)
    written = await write(db, seller, 3)
    async with db() as session:
        first = await feed.page(session, scope, start, 2)
        last = await feed.page(session, scope, first.events[-1].id, 1)
        exact = await feed.page(session, scope, start, 3)
    assert [e.id for e in first.events] == written[:2] and first.more
    assert [e.id for e in last.events] == written[2:] and not last.more
    assert [e.id for e in exact.events] == written and not exact.more


async def test_an_unknown_cursor_is_refused(db: Sessions) -> None:
    async with db() as session:
        with pytest.raises(DomainError) as refused:
            await feed.page(session, PLATFORM, 2**62, 10)
    assert refused.value.code == "validation_error"


def test_order_transitions_map_to_the_catalogue() -> None:
    types = events.order_event_types
    assert types("paid", "pending", "held_in_escrow", "order.paid") == [EventType.ORDER_PAID]
    assert types("confirmed", "paid", "held_in_escrow", "order.accepted") == [EventType.ORDER_CONFIRMED]
    assert types("completed", "fulfilled", "released", "order.completed") == [
        EventType.ORDER_COMPLETED,
        EventType.PAYOUT_SENT,
    ]
    assert types("completed", "fulfilled", "payout_on_hold", "order.completed")[1] == EventType.PAYOUT_ON_HOLD
    assert types("completed", "completed", "released", "order.payout_retried") == [
        EventType.ORDER_UPDATED,
        EventType.PAYOUT_SENT,
    ]
    # A release whose transfer follows the answer: completed now, the payout's event when the transfer has an outcome
    # (sent: the order did not change, so no `order.updated`; refused or held: it did).
    assert types("completed", "fulfilled", "released", "order.completed", payout_follows=True) == [
        EventType.ORDER_COMPLETED
    ]
    assert types("completed", "completed", "released", "order.payout_sent") == [EventType.PAYOUT_SENT]
    assert types("completed", "completed", "transfer_failed", "order.payout_failed") == [
        EventType.ORDER_UPDATED,
        EventType.PAYOUT_FAILED,
    ]
    assert types("completed", "completed", "payout_on_hold", "order.payout_on_hold") == [
        EventType.ORDER_UPDATED,
        EventType.PAYOUT_ON_HOLD,
    ]
    assert types("paid", "paid", "held_in_escrow", "order.partially_refunded") == [EventType.ORDER_UPDATED]
    assert types("paid", "paid", "held_in_escrow", "order.reminded") == []
    assert types("cancelled", "pending", "failed", "order.payment_failed") == [EventType.ORDER_CANCELLED]


def test_groups_select_their_types() -> None:
    assert events.matches("order.*", "order.paid")
    assert events.matches("order.paid", "order.paid")
    assert not events.matches("order.*", "payout.sent")
    assert {t.value.split(".")[0] + ".*" for t in EventType} == {g.value for g in events.EventGroup}


async def test_an_event_with_a_dedupe_key_is_written_once(db: Sessions) -> None:
    key = f"test:{uuid.uuid4()}"
    for _ in range(2):  # a retried activity
        async with db() as session, session.begin():
            await events.record(
                session, EventType.DISPUTE_OPENED, None, {"object": "dispute"}, dedupe_key=key
            )
    async with db() as session:
        assert len((await session.scalars(select(Event).where(Event.dedupe_key == key))).all()) == 1
