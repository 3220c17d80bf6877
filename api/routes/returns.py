"""Returns: the buyer asks to send some of an order's lines back; the seller approves or rejects (else support
decides); the buyer ships them back; the seller confirms receipt (or the deadline passes) and the order refunds the
return's amount. Each return is a `Return` workflow (workflows/returns.py); its moves are its Updates, every wait
bounded (`ORDER_WAIT_SECONDS`: 202 with the return as it stands when it runs longer)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from sqlalchemy import select
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.deps import Caller, Session, Support, Temporal
from api.errors import update_rejection, workflow_gone
from api.openapi import LOCATION, errors, merge
from api.placement import start_and_wait
from api.return_schemas import (
    ReturnDecisionIn,
    ReturnIn,
    ReturnOut,
    ReturnPage,
    ReturnReceiveIn,
    ReturnRejectIn,
    ReturnResolveIn,
    ReturnShipIn,
)
from api.routes.order_actions import STILL_RUNNING, visible_order
from api.schemas import OrderLineOut
from bazaar.auth import Principal, actor_of
from bazaar.errors import DomainError, ErrorCode, field_error
from bazaar.models import Role
from bazaar.orders.types import order_line_views
from bazaar.payments.money import Money
from bazaar.returns import returns, rules
from bazaar.returns.models import Return, ReturnStatus
from bazaar.returns.types import ReturnedLine, ReturnRequest, ReturnTerms, ReturnView, StartReturn
from bazaar.settings import get_settings
from bazaar.temporal import return_workflow_id
from workflows.returns import ReturnWorkflow

router = APIRouter(tags=["returns"])
RETURN_ID_NAMESPACE = uuid.UUID("9a3e2f1c-4b5d-4e6f-8a7b-1c2d3e4f5a6b")
_REFUSALS = {
    "order_not_returnable": (
        ErrorCode.RETURN_NOT_ALLOWED,
        "only a shipped or completed order can be returned",
    ),
    "return_window_closed": (ErrorCode.RETURN_NOT_ALLOWED, "the return window has closed"),
    "nothing_to_refund": (
        ErrorCode.RETURN_NOT_ALLOWED,
        "nothing is left to refund on the order (its refunds and open returns count)",
    ),
    "already_returned": (
        ErrorCode.RETURN_NOT_ALLOWED,
        "those units were refunded or are in another open return",
    ),
    "invalid_lines": (ErrorCode.VALIDATION_ERROR, "those lines cannot be returned"),
    "invalid_request": (ErrorCode.VALIDATION_ERROR, "the return could not be stored"),
}
ReturnKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="optional: a retry with the same key returns the same return instead of asking twice",
    ),
]
# What a move answers: the new state, 202 while it runs, and the workflow's refusals.
MOVE = merge(
    {
        200: {"description": "the return after the move"},
        202: {
            "model": ReturnOut,
            "description": "still running: the return as it stands",
            "headers": LOCATION,
        },
    },
    errors(ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.INVALID_TRANSITION),
)


@router.post(
    "/v1/orders/{order_id}/returns",
    status_code=201,
    response_model=ReturnOut,
    responses=merge(
        {
            201: {"description": "the return, requested: the seller is told", "headers": LOCATION},
            200: {"model": ReturnOut, "description": "a replay (same Idempotency-Key)", "headers": LOCATION},
            202: {
                "model": ReturnOut,
                "description": "still being stored: poll Location",
                "headers": LOCATION,
            },
        },
        errors(
            ErrorCode.FORBIDDEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.RETURN_NOT_ALLOWED,
            ErrorCode.VALIDATION_ERROR,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ),
    ),
)
async def request_return(
    order_id: uuid.UUID,
    body: ReturnIn,
    caller: Caller,
    session: Session,
    temporal: Temporal,
    response: Response,
    idempotency_key: ReturnKey = None,
) -> ReturnOut:
    """The order's buyer asks to return some of its lines (a shipped or completed order, within the return window:
    `RETURN_WINDOW_SECONDS` from shipping), with a reason, a message and photo links. The refund is the lines at
    their prices (never more than the order still holds); the seller approves or rejects it within
    `RETURN_RESPONSE_SECONDS`, else support decides."""
    order = await visible_order(session, order_id, caller)
    if order.buyer_id != caller.user_id:
        raise DomainError(ErrorCode.FORBIDDEN, "only the order's buyer can return it")
    return_id = (
        uuid.uuid5(RETURN_ID_NAMESPACE, f"{order_id}:{idempotency_key}") if idempotency_key else uuid.uuid4()
    )
    response.headers["Location"] = f"/v1/returns/{return_id}"
    existing = await session.get(Return, return_id)
    if existing is not None:
        asked = rules.ask(
            ((line.listing_id, line.quantity) for line in body.lines), body.reason, body.message, body.photos
        )
        first = ((x.listing_id, x.quantity) for x in existing.lines)
        if asked != rules.ask(first, existing.reason, existing.message, existing.photos or []):
            raise DomainError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used for a different return",
                {"return_id": str(return_id)},
            )
        response.status_code = 200
        return await _out(session, existing, caller)
    await session.commit()
    settings = get_settings()
    request = StartReturn(
        return_id=str(return_id),
        order_id=str(order_id),
        buyer_id=str(caller.user_id),
        lines=[ReturnedLine(str(line.listing_id), line.quantity) for line in body.lines],
        reason=body.reason,
        message=body.message,
        photos=[str(url) for url in body.photos],
        idempotency_key=idempotency_key,
        window_seconds=settings.return_window_seconds,
        terms=ReturnTerms(
            settings.return_response_seconds, settings.return_ship_seconds, settings.return_receipt_seconds
        ),
    )
    workflow_id = return_workflow_id(str(return_id))
    start = WithStartWorkflowOperation(
        ReturnWorkflow.run,
        request,
        id=workflow_id,
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"return of order {order_id}",
    )
    view = await start_and_wait(temporal, ReturnWorkflow.opened, [request], start, workflow_id, ReturnView)
    if view is not None and view.status is None and view.status_reason:
        code, message = _REFUSALS.get(view.status_reason, _REFUSALS["order_not_returnable"])
        if view.status_reason == "invalid_lines":  # about the body's lines, named as the API's own 422s do
            raise field_error(
                "lines", view.refusal_detail or message, "invalid_lines", reason="invalid_lines"
            )
        raise DomainError(code, view.refusal_detail or message, {"reason": view.status_reason})
    session.expire_all()
    stored = await session.get(Return, return_id)
    if stored is not None:
        return await _out(session, stored, caller)
    # Still being stored after the wait: what was asked for, as the order has it (poll Location).
    response.status_code = 202
    order = await visible_order(session, order_id, caller)
    bought = {line.listing_id: line for line in order_line_views(order)}
    lines = [
        OrderLineOut.of(replace(bought[str(x.listing_id)], quantity=x.quantity), order.currency)
        for x in body.lines
        if str(x.listing_id) in bought
    ]
    return ReturnOut(
        id=return_id,
        order_id=order_id,
        buyer_id=caller.user_id,
        seller_id=order.seller_id,
        status=ReturnStatus.REQUESTED,
        status_reason=None,
        reason=body.reason,
        message=body.message,
        photos=request.photos,
        lines=lines,
        refund=Money(amount=sum(x.unit_price.amount * x.quantity for x in lines), currency=order.currency),
        restocked=None,
        allowed_actions=[],
        workflow_id=return_workflow_id(str(return_id)),
    )


@router.get("/v1/orders/{order_id}/returns", response_model=ReturnPage, responses=errors(ErrorCode.FORBIDDEN))
async def list_order_returns(order_id: uuid.UUID, caller: Caller, session: Session) -> ReturnPage:
    """The order's returns, for its buyer, its seller and support."""
    await visible_order(session, order_id, caller)
    rows = await session.scalars(
        select(Return).where(Return.order_id == order_id).order_by(Return.created_at)
    )
    return await _page(session, rows.all(), caller)


@router.get("/v1/support/returns", response_model=ReturnPage)
async def list_returns_for_support(
    staff: Support,
    session: Session,
    status: ReturnStatus = ReturnStatus.ESCALATED,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> ReturnPage:
    """Returns in a state (by default `escalated`: waiting for support's decision), oldest first."""
    rows = await session.scalars(
        select(Return).where(Return.status == status).order_by(Return.created_at).limit(limit)
    )
    return await _page(session, rows.all(), staff)


@router.get("/v1/returns/{return_id}", response_model=ReturnOut, responses=errors(ErrorCode.NOT_FOUND))
async def get_return(return_id: uuid.UUID, caller: Caller, session: Session) -> ReturnOut:
    """A return, for the order's buyer and seller and support (404 for anyone else)."""
    return await _out(session, await _visible(session, return_id, caller), caller)


async def _page(session: Session, rows: Sequence[Return], caller: Principal) -> ReturnPage:
    unapprovable = await returns.unapprovable(session, rows)
    return ReturnPage(
        items=[ReturnOut.of_row(row, caller=caller, approvable=row.id not in unapprovable) for row in rows]
    )


async def _out(session: Session, row: Return, caller: Principal) -> ReturnOut:
    """The return as `caller` sees it, offering `approve` only when it would be taken."""
    return (await _page(session, [row], caller)).items[0]


async def _visible(session: Session, return_id: uuid.UUID, caller: Principal) -> Return:
    row = await session.get(Return, return_id)
    if row is None or not (caller.user_id in (row.buyer_id, row.seller_id) or caller.has(Role.SUPPORT)):
        raise DomainError(ErrorCode.NOT_FOUND, "return not found")
    return row


class Move:
    """One move on the return of the path, as a workflow Update: 200 with the new state, 202 while it runs,
    403/409/422 when the workflow refuses it."""

    def __init__(
        self, return_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal, response: Response
    ) -> None:
        self.return_id, self.caller, self.session = return_id, caller, session
        self.temporal, self.response = temporal, response

    async def __call__(self, update: Any, **fields: Any) -> ReturnOut:
        await _visible(self.session, self.return_id, self.caller)
        await self.session.commit()
        request = ReturnRequest(actor_of(self.caller), **fields)
        handle = self.temporal.get_workflow_handle(return_workflow_id(str(self.return_id)))
        try:
            await asyncio.wait_for(handle.execute_update(update, request), get_settings().order_wait_seconds)
        except WorkflowUpdateFailedError as exc:
            raise update_rejection(exc) from exc
        except STILL_RUNNING:
            self.response.status_code = 202
            self.response.headers["Location"] = f"/v1/returns/{self.return_id}"
        except RPCError as exc:
            if not workflow_gone(exc):
                raise
            row = await _visible(self.session, self.return_id, self.caller)
            raise DomainError(ErrorCode.INVALID_TRANSITION, f"the return is {row.status.value}") from exc
        self.session.expire_all()
        return await _out(
            self.session, await _visible(self.session, self.return_id, self.caller), self.caller
        )


Act = Annotated[Move, Depends()]


@router.post(
    "/v1/returns/{return_id}/approve",
    response_model=ReturnOut,
    responses=merge(MOVE, errors(ErrorCode.RETURN_NOT_ALLOWED)),
)
async def approve_return(
    act: Act,
    return_id: uuid.UUID,
    session: Session,
    body: Annotated[ReturnDecisionIn, Body()] = ReturnDecisionIn(),
) -> ReturnOut:
    """The seller (or support) approves a requested return: the buyer sends the lines back. It refunds the return's
    amount, or what the order still holds when refunds made since took part of it. 409 `return_not_allowed`
    (`nothing_to_refund`) when the order holds nothing more (refunded in full since)."""
    await _visible(session, return_id, act.caller)  # who may not see it learns nothing more of it
    await _holds_something(session, return_id, "reject it, or the buyer cancels")
    return await act(ReturnWorkflow.approve, reason=body.reason)


async def _holds_something(session: Session, return_id: uuid.UUID, instead: str) -> None:
    """An approval that would only send a parcel to a refusal: 409 when the order holds nothing more to refund."""
    if await returns.short_of_refund(session, return_id):
        raise DomainError(
            ErrorCode.RETURN_NOT_ALLOWED,
            f"the order holds nothing more to refund (it was refunded in full since): {instead}",
            {"reason": "nothing_to_refund"},
        )


@router.post("/v1/returns/{return_id}/reject", response_model=ReturnOut, responses=MOVE)
async def reject_return(act: Act, body: ReturnRejectIn) -> ReturnOut:
    """The seller (or support) rejects a requested return, saying why (422 without a reason)."""
    return await act(ReturnWorkflow.reject, reason=body.reason)


@router.post("/v1/returns/{return_id}/cancel", response_model=ReturnOut, responses=MOVE)
async def cancel_return(act: Act) -> ReturnOut:
    """The buyer withdraws the return before sending it back."""
    return await act(ReturnWorkflow.cancel)


@router.post("/v1/returns/{return_id}/ship", response_model=ReturnOut, responses=MOVE)
async def ship_return(act: Act, body: Annotated[ReturnShipIn, Body()] = ReturnShipIn()) -> ReturnOut:
    """The buyer sent the approved return back (optional tracking); the seller has `RETURN_RECEIPT_SECONDS` to
    confirm receipt, after which the refund goes out anyway."""
    tracking = {k: str(v) for k, v in body.model_dump(exclude_none=True).items()}
    return await act(ReturnWorkflow.ship, tracking=tracking)


@router.post("/v1/returns/{return_id}/receive", response_model=ReturnOut, responses=MOVE)
async def receive_return(act: Act, body: Annotated[ReturnReceiveIn, Body()] = ReturnReceiveIn()) -> ReturnOut:
    """The seller has the lines back: the order refunds the return's amount to the buyer (taken back from the
    seller's payout if it was paid out), and the lines go back on sale if `restock`."""
    return await act(ReturnWorkflow.receive, restock=body.restock)


@router.post(
    "/v1/returns/{return_id}/resolve",
    response_model=ReturnOut,
    responses=merge(MOVE, errors(ErrorCode.RETURN_NOT_ALLOWED)),
)
async def resolve_return(
    act: Act, _: Support, return_id: uuid.UUID, session: Session, body: ReturnResolveIn
) -> ReturnOut:
    """Support decides an escalated return: approve (before receipt the buyer sends it back; after, the refund is
    asked again: refused again, a 409 `invalid_transition` saying why, nothing moved; an order refunded in full
    meanwhile settles it) or reject with a reason. 409 `return_not_allowed` (`nothing_to_refund`) for an approval
    before receipt when the order holds nothing more to refund: reject it."""
    if body.approve and not returns.received(await _visible(session, return_id, act.caller)):
        await _holds_something(session, return_id, "reject it")
    return await act(ReturnWorkflow.resolve, approve=body.approve, reason=body.reason, restock=body.restock)
