"""Reconciliation's results as stored: each window's run, its discrepancies and their lifecycle, and the
queries of support's list (`GET /v1/support/reconciliation`, `bazaar reconciliation list`) and of the gauge
`bazaar_reconciliation_open_discrepancies` (both read the same rows, so they always show the same items).

Lifecycle of an item (one row per object and category, in the window that found it first):

- `open`: a run found it;
- `resolved` by reconciliation itself (`changed_by` NULL) when a later run of its window, or the re-check of
  open items during the settle period after the window, no longer finds it; found again later, it reopens;
- `acknowledged` by support (someone is on it; it leaves the gauge), or `resolved` by support with a note (a
  run finding it again leaves support's decision alone: the note says why it stands).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.models import ReconciliationItem, ReconciliationRun
from bazaar.payments.reconcile import CATEGORIES, Discrepancy


class DiscrepancyStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


# Not settled yet: re-checked by later runs during the settle period.
UNSETTLED = (DiscrepancyStatus.OPEN.value, DiscrepancyStatus.ACKNOWLEDGED.value)


async def store_run(
    session: AsyncSession,
    *,
    window_id: str,
    since: datetime,
    until: datetime,
    workflow_id: str,
    matched: int,
    found: Sequence[Discrepancy],
) -> tuple[int, int]:
    """Record one run of a window: its counts, its items (new ones open, ones reconciliation had resolved
    reopen), and resolve the window's unsettled items it no longer finds. Returns (opened, resolved)."""
    counts = {c: sum(1 for d in found if d.category == c) for c in CATEGORIES}
    run = insert(ReconciliationRun).values(
        window_id=window_id,
        since=since,
        until=until,
        workflow_id=workflow_id,
        runs=1,
        matched=matched,
        **counts,
    )
    # The upsert locks the run's row: two runs of one window store one after the other.
    await session.execute(
        run.on_conflict_do_update(
            index_elements=["window_id"],
            set_={
                "runs": ReconciliationRun.runs + 1,
                "matched": run.excluded.matched,
                "last_run_at": func.now(),
                **{c: run.excluded[c] for c in CATEGORIES},
            },
        )
    )
    now = (await session.execute(select(func.now()))).scalar_one()
    current = {_key(d) for d in found}
    # One drift, one item: a drift another window (an overlapping one run on demand) has already stored stays
    # that window's item, reopened if reconciliation had resolved it, support's decision left alone (found from
    # outside: each overlapping run opened a new item for a drift support had resolved, counted twice).
    rows = (
        await session.scalars(
            select(ReconciliationItem).where(
                or_(
                    ReconciliationItem.window_id == window_id,
                    ReconciliationItem.object_id.in_({d.object_id for d in found}),
                )
            )
        )
    ).all()
    stored = {_key(i): i for i in rows if i.window_id == window_id}
    elsewhere = {_key(i): i for i in rows if i.window_id != window_id and _key(i) in current}
    opened = resolved = 0
    for key, item in stored.items():
        if key not in current and item.status in UNSETTLED:
            item.status, item.status_changed_at, item.changed_by = DiscrepancyStatus.RESOLVED.value, now, None
            item.note = f"matched by the reconciliation run of {now:%Y-%m-%d %H:%M:%S} UTC"
            resolved += 1
    for d in found:
        row = stored.get(_key(d)) or elsewhere.get(_key(d))
        if row is None:
            row = ReconciliationItem(
                window_id=window_id, category=d.category, object_type=d.object_type, object_id=d.object_id
            )
            row.status, row.first_seen_at = DiscrepancyStatus.OPEN.value, now
            session.add(row)
            opened += 1
        elif row.status == DiscrepancyStatus.RESOLVED and row.changed_by is None:
            row.status, row.status_changed_at, row.note = DiscrepancyStatus.OPEN.value, now, None
            opened += 1
        item = row
        item.order_id = uuid.UUID(d.order_id) if d.order_id else None
        item.ours_amount, item.ours_currency, item.ours_status = d.ours_amount, d.ours_currency, d.ours_status
        item.provider_amount, item.provider_currency = d.provider_amount, d.provider_currency
        item.provider_status, item.detail = d.provider_status, d.detail
        item.ledger_amount, item.ledger_currency = d.ledger_amount, d.ledger_currency
        item.last_seen_at = now
    await session.flush()
    return opened, resolved


def _key(item: ReconciliationItem | Discrepancy) -> tuple[str, str, str]:
    """What one drift is, whichever window found it: its object and category."""
    return (item.object_type, item.object_id, item.category)


async def windows_to_recheck(
    session: AsyncSession, before: datetime, settle: timedelta
) -> list[ReconciliationRun]:
    """Earlier windows (ending at or before `before`, at most `settle` earlier) that still have unsettled items."""
    unsettled = exists().where(
        ReconciliationItem.window_id == ReconciliationRun.window_id, ReconciliationItem.status.in_(UNSETTLED)
    )
    rows = await session.scalars(
        select(ReconciliationRun)
        .where(ReconciliationRun.until <= before, ReconciliationRun.until >= before - settle, unsettled)
        .order_by(ReconciliationRun.since)
    )
    return list(rows.all())


async def list_items(
    session: AsyncSession,
    *,
    statuses: Sequence[DiscrepancyStatus] = (DiscrepancyStatus.OPEN,),
    category: str | None = None,
    object_type: str | None = None,
    order_id: uuid.UUID | None = None,
    window_id: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[ReconciliationItem]:
    """Items, newest first (`before`: the id of the last item of the previous page)."""
    stmt = select(ReconciliationItem).where(ReconciliationItem.status.in_([s.value for s in statuses]))
    if category is not None:
        stmt = stmt.where(ReconciliationItem.category == category)
    if object_type is not None:
        stmt = stmt.where(ReconciliationItem.object_type == object_type)
    if order_id is not None:
        stmt = stmt.where(ReconciliationItem.order_id == order_id)
    if window_id is not None:
        stmt = stmt.where(ReconciliationItem.window_id == window_id)
    if before is not None:
        stmt = stmt.where(ReconciliationItem.id < before)
    return list((await session.scalars(stmt.order_by(ReconciliationItem.id.desc()).limit(limit))).all())


async def set_status(
    session: AsyncSession, item_id: int, status: DiscrepancyStatus, note: str, staff_id: uuid.UUID
) -> ReconciliationItem | None:
    """Support acknowledges or resolves an item (or reopens it), with a note; None if there is no such item."""
    item = await session.get(ReconciliationItem, item_id, with_for_update=True)
    if item is None:
        return None
    item.status, item.note, item.changed_by = status.value, note, staff_id
    item.status_changed_at = (await session.execute(select(func.now()))).scalar_one()
    await session.flush()
    return item


async def open_counts(session: AsyncSession) -> list[tuple[str, str, int]]:
    """Open items per (category, object type) ever found: the gauge (a series drops to 0 once its items are
    resolved or acknowledged, so an alarm visibly clears)."""
    rows = await session.execute(
        select(
            ReconciliationItem.category,
            ReconciliationItem.object_type,
            func.count().filter(ReconciliationItem.status == DiscrepancyStatus.OPEN.value),
        ).group_by(ReconciliationItem.category, ReconciliationItem.object_type)
    )
    return [(category, object_type, int(count)) for category, object_type, count in rows.all()]
