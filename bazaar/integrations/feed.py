"""The events feed (`GET /v1/events?after=<id>`): every event of a scope exactly once, in order, across pages,
while events are being written.

Why not simply `WHERE id > :after ORDER BY id`: ids come from a sequence when a row is inserted, but rows become
visible when their transaction commits, and transactions commit in any order. A reader can see event 11 while
event 10's transaction is still open; it moves its cursor past 10, and 10 then commits unseen. Hiding ids above
the oldest open transaction is not enough either: transaction ids (xids) are assigned at a transaction's first
write, ids at each insert, so a transaction with a smaller xid can insert a larger id.

So each event stores its transaction's id (`xid`, an xid8: `pg_current_xact_id()`), and the feed is ordered by
(xid, id) and only shows events whose xid is below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest
transaction still open when the page is read. Every transaction below it has ended: its events are all visible
(or it rolled back and has none), and every event that commits later belongs to a transaction at or above it,
so it sorts after anything already shown. A cursor is the last event id shown; the next page starts after that
event's (xid, id). Events of one transaction keep their id order; one change made after another committed comes
after it. The cost: an event shows once every transaction that was open when it committed has ended, usually
milliseconds (our write transactions are short; a long one anywhere in the database holds the feed back).
The webhook fan-out (`delivery.py`) walks the events in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bazaar.errors import field_error
from bazaar.integrations.models import Event
from bazaar.integrations.scope import Scope

MAX_PAGE = 500


def horizon() -> Any:
    """The oldest transaction open in this statement's snapshot: events below it are final."""
    return func.pg_snapshot_xmin(func.pg_current_snapshot())


def payload(event: Event) -> dict[str, Any]:
    """An event as the feed shows it and a webhook delivers it (Standard Webhooks' type, timestamp, data)."""
    return {
        "id": event.id,
        "type": event.type,
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }


@dataclass(frozen=True)
class Page:
    events: list[Event]
    more: bool  # further events are there now (read past the page's end)


async def page(session: AsyncSession, scope: Scope, after: int | None, limit: int) -> Page:
    """Events of `scope` after the event `after` (None or 0: from the first), in feed order, at most `limit`,
    and whether more are there now."""
    limit = max(1, min(limit, MAX_PAGE))
    statement = select(Event).where(Event.xid < horizon())
    if scope.seller_id is not None:
        statement = statement.where(Event.seller_id == scope.seller_id)
    if after:
        # Any event's position will do (an id says nothing of whose event it is); an unknown one is the client's
        # error.
        if await session.scalar(select(Event.id).where(Event.id == after)) is None:
            raise field_error(
                "after", "unknown cursor: pass the id of the last event you received", "value_error", "query"
            )
        at = aliased(Event)
        after_xid = select(at.xid).where(at.id == after).scalar_subquery()
        statement = statement.where(tuple_(Event.xid, Event.id) > tuple_(after_xid, literal(after)))
    found = list((await session.scalars(statement.order_by(Event.xid, Event.id).limit(limit + 1))).all())
    return Page(found[:limit], more=len(found) > limit)
