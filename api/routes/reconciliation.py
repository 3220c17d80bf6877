"""Reconciliation for people: support's list of discrepancies (and their lifecycle), and an order's money
statement for its buyer, its seller and support.

The statement needs the provider, which only the worker may call: the API runs `OrderMoneyWorkflow`
(`money-<order id>`; concurrent requests join one run) and waits for it at most `ORDER_WAIT_SECONDS`, then
answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from api.deps import Caller, Session, Support, Temporal
from api.openapi import errors
from api.reconciliation_schemas import (
    MAX_ITEMS_PER_PAGE,
    MoneyStatementOut,
    ReconciliationItemIn,
    ReconciliationItemOut,
    ReconciliationPage,
)
from api.routes.order_actions import visible_order
from api.schemas import INT64_MAX
from bazaar.errors import DomainError, ErrorCode
from bazaar.payments import discrepancies
from bazaar.payments.discrepancies import DiscrepancyStatus
from bazaar.payments.reconcile import DiscrepancyCategory, ObjectType
from bazaar.settings import get_settings
from bazaar.temporal import RECONCILIATION, money_workflow_id, task_queue
from bazaar.text import single_line
from workflows.reconciliation import OrderMoneyWorkflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])
support_router = APIRouter(prefix="/v1/support", tags=["support"])
ItemId = Annotated[int, Path(ge=1, le=INT64_MAX)]


@router.get("/{order_id}/money", response_model=MoneyStatementOut, responses=errors(ErrorCode.FORBIDDEN))
async def get_order_money(
    order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal
) -> MoneyStatementOut:
    """Who may call: the order's buyer and seller, and support (anyone else: 403).

    Every charge, refund, transfer, transfer reversal, chargeback and its reversal of the order at the provider,
    in our payments and in the ledger, side by side, each with whether they agree (the comparison
    reconciliation uses), the release movements and the fee; and reconciliation's unsettled items on the order.
    Read live from the provider by the worker: 503 with Retry-After if it does not answer in time."""
    await visible_order(session, order_id, caller)
    unsettled = (DiscrepancyStatus.OPEN, DiscrepancyStatus.ACKNOWLEDGED)
    items = await discrepancies.list_items(session, statuses=unsettled, order_id=order_id, limit=100)
    await session.commit()  # end the read transaction before waiting on the worker
    try:
        handle = await temporal.start_workflow(
            OrderMoneyWorkflow.run,
            str(order_id),
            id=money_workflow_id(str(order_id)),
            task_queue=task_queue(RECONCILIATION, get_settings().temporal_task_queue),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        statement = await asyncio.wait_for(handle.result(), get_settings().order_wait_seconds)
    except (TimeoutError, WorkflowFailureError) as exc:
        raise DomainError(
            ErrorCode.SERVICE_UNAVAILABLE, "the payment provider could not be read in time: retry"
        ) from exc
    return MoneyStatementOut.of(statement, items)


@support_router.get("/reconciliation", response_model=ReconciliationPage)
async def list_reconciliation_items(
    staff: Support,
    session: Session,
    status: Annotated[
        list[DiscrepancyStatus] | None,
        Query(max_length=3, description="several = any of them; default: open"),
    ] = None,
    category: DiscrepancyCategory | None = None,
    object_type: Annotated[ObjectType | None, Query()] = None,
    order_id: uuid.UUID | None = None,
    window_id: Annotated[Annotated[str, single_line(max_length=64)] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS_PER_PAGE)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=INT64_MAX, description="next_cursor of the previous page")
    ] = None,
) -> ReconciliationPage:
    """Reconciliation's discrepancies, newest first; by default the open ones, which are exactly what the
    gauge `bazaar_reconciliation_open_discrepancies` counts (by category and object type)."""
    rows = await discrepancies.list_items(
        session,
        statuses=status or (DiscrepancyStatus.OPEN,),
        category=category.value if category else None,
        object_type=object_type,
        order_id=order_id,
        window_id=window_id,
        limit=limit + 1,
        before=before,
    )
    page = rows[:limit]
    return ReconciliationPage(
        items=[ReconciliationItemOut.of(i) for i in page],
        next_cursor=page[-1].id if len(rows) > limit else None,
    )


@support_router.post("/reconciliation/{item_id}", response_model=ReconciliationItemOut)
async def update_reconciliation_item(
    item_id: ItemId, body: ReconciliationItemIn, staff: Support, session: Session
) -> ReconciliationItemOut:
    """Acknowledge a discrepancy (someone is on it: it leaves the open gauge), resolve it with a note (a later
    run leaves support's decision alone), or reopen it. The note and who set the status stay on the item."""
    item = await discrepancies.set_status(
        session, item_id, DiscrepancyStatus(body.status), body.note, staff.user_id
    )
    if item is None:
        raise DomainError(ErrorCode.NOT_FOUND, "no such reconciliation item")
    return ReconciliationItemOut.of(item)
