"""The return's steps: its database steps (bazaar/returns/returns.py, local activities of the `Return` workflow in
the orders worker) and its refund, which asks the order's own workflow for it (its `refund` Update), so the order's
money rules, idempotency keys and ledger apply to a return like to any refund."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.database import activity_transaction
from bazaar.models import Order
from bazaar.orders.reopen import reopen_operation
from bazaar.orders.types import ActionRequest, OrderView, still_held
from bazaar.returns import returns
from bazaar.returns.types import ReturnOpened, ReturnRefund, ReturnTransition, StartReturn
from bazaar.settings import Settings
from bazaar.temporal import order_workflow_id

# The order refused the refund (not in a state that refunds, more than it holds, the provider said no): the return
# needs support, not a retry.
REFUND_REFUSED = "RefundRefused"


class ReturnActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn
    async def open_return(self, req: StartReturn) -> ReturnOpened:
        async with activity_transaction() as session:
            return await returns.open_return(session, req, self.settings.public_base_url)

    @activity.defn
    async def save_return(self, move: ReturnTransition) -> bool:
        async with activity_transaction() as session:
            return await returns.save(session, move, self.settings.public_base_url)

    @activity.defn
    async def refundable(self, order_id: str) -> int:
        """What the order still holds for refunds now, from its workflow's state (a Query answers for a run that has
        ended too): a return refunds at most that."""
        handle = activity.client().get_workflow_handle(order_workflow_id(order_id))
        try:
            view = await handle.query("state", result_type=OrderView)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise  # Temporal out of reach, the order's worker busy: retried
            # The order's history is gone (its run ended past the namespace's retention, which a return window can
            # outlast): its stored amount and refunds say what it holds (the refund's reopened run checks again).
            async with activity_transaction() as session:
                return await returns.unrefunded(session, uuid.UUID(order_id))
        return still_held(view) if view is not None else 0

    @activity.defn
    async def refund_return(self, req: ReturnRefund) -> int:
        """The order's `refund` Update for the return's amount (Update id `return:<id>:<attempt>[.<ask>]`: one ask, whatever
        the retries); a completed order whose run has ended gets a reopened run for it. Returns what the order has
        refunded in all."""
        client = activity.client()
        request = ActionRequest(
            req.actor,
            reason=req.reason,
            refund_amount=req.amount,
            refund_lines=req.lines or None,
            return_id=req.return_id,
        )
        update_id = f"return:{req.return_id}:{req.attempt}" + (f".{req.ask}" if req.ask else "")
        workflow_id = order_workflow_id(req.order_id)
        try:
            try:
                view = await client.get_workflow_handle(workflow_id).execute_update(
                    "refund", request, id=update_id, result_type=OrderView
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                view = await client.execute_update_with_start_workflow(
                    "refund",
                    request,
                    id=update_id,
                    result_type=OrderView,
                    start_workflow_operation=await _reopen(req.order_id),
                )
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            detail = str(cause.message if isinstance(cause, ApplicationError) else cause or exc)
            raise ApplicationError(
                f"the order refused the refund: {detail}", type=REFUND_REFUSED, non_retryable=True
            ) from exc
        refunded: int = view.refunded_amount
        return refunded


async def _reopen(order_id: str) -> WithStartWorkflowOperation[Any, OrderView]:
    async with activity_transaction() as session:
        order = await session.scalar(select(Order).where(Order.id == uuid.UUID(order_id)))
        if order is None:
            raise ApplicationError(f"order {order_id} not found", type=REFUND_REFUSED, non_retryable=True)
        return reopen_operation(order)
