"""Orders: a buyer places one (idempotent on the Idempotency-Key header); buyer and seller read it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Buyer, Caller, Session, Support, Temporal
from api.errors import update_rejection
from api.schemas import (
    ActionIn,
    FulfilIn,
    OrderDetailOut,
    OrderIn,
    OrderOut,
    OrderPage,
    ResolveIn,
    TimelineEvent,
)
from api.trust_schemas import DisputeIn
from bazaar.auth import Principal, order_party
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import AuditEvent, Listing, ListingStatus, Order, Role
from bazaar.money import Money
from bazaar.settings import get_settings
from workflows.order import ActionRequest, Actor, OrderView, OrderWorkflow, PlaceOrder, order_workflow_id

router = APIRouter(prefix="/v1/orders", tags=["orders"])
# Order ids derive from (buyer, Idempotency-Key): a retried request lands on the same order and workflow.
ORDER_ID_NAMESPACE = uuid.UUID("6f1c3c52-8f0e-4f5e-9a55-0b7a3e1d2c4b")
_REJECTIONS = {
    "sold_out": (ErrorCode.SOLD_OUT, "the listing is sold out"),
    "own_listing": (ErrorCode.OWN_LISTING, "you cannot buy your own listing"),
    "listing_not_available": (ErrorCode.LISTING_NOT_AVAILABLE, "the listing is not for sale"),
}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@router.post("", status_code=201, response_model=OrderOut)
async def place_order(
    body: OrderIn,
    buyer: Buyer,
    session: Session,
    temporal: Temporal,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderOut:
    if not idempotency_key:
        raise DomainError(ErrorCode.IDEMPOTENCY_KEY_REQUIRED, "send an Idempotency-Key header (e.g. a UUID)")
    order_id = uuid.uuid5(ORDER_ID_NAMESPACE, f"{buyer.user_id}:{idempotency_key}")
    existing = await session.get(Order, order_id)
    if existing is None:
        await _check_purchasable(session, body, buyer)
    await session.commit()  # end the read transaction before waiting on the workflow

    request = PlaceOrder(
        order_id=str(order_id),
        buyer_id=str(buyer.user_id),
        listing_id=str(body.listing_id),
        quantity=body.quantity,
        payment_method=body.payment_method,
        idempotency_key=idempotency_key,
        **get_settings().order_terms(),
    )
    view = await _start_or_join(temporal, request)
    if view.listing_id != request.listing_id or view.quantity != request.quantity:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used for a different order",
            {"order_id": view.order_id},
        )
    if view.status == "rejected":
        code, message = _REJECTIONS.get(
            view.reason or "", (ErrorCode.LISTING_NOT_AVAILABLE, "order rejected")
        )
        raise DomainError(code, message)
    if existing is not None:
        response.status_code = 200
    response.headers["Location"] = f"/v1/orders/{order_id}"
    return _from_view(view)


@router.get("", response_model=OrderPage)
async def list_orders(
    caller: Caller,
    session: Session,
    role: Annotated[Literal["buyer", "seller"], Query(description="orders I bought or I sold")] = "buyer",
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")] = None,
) -> OrderPage:
    column = Order.buyer_id if role == "buyer" else Order.seller_id
    stmt = select(Order).where(column == caller.user_id)
    if status:
        stmt = stmt.where(Order.status == status)
    if before is not None:
        anchor = await session.get(Order, before)
        if anchor is not None:
            stmt = stmt.where((Order.created_at, Order.id) < (anchor.created_at, anchor.id))  # type: ignore[operator]
    rows = (
        await session.scalars(stmt.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1))
    ).all()
    items = rows[:limit]
    return OrderPage(
        items=[_from_row(o) for o in items], next_cursor=str(items[-1].id) if len(rows) > limit else None
    )


@router.get("/{order_id}", response_model=OrderDetailOut)
async def get_order(order_id: uuid.UUID, caller: Caller, session: Session) -> OrderDetailOut:
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    _check_party(order, caller)
    events = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject_type == "order", AuditEvent.subject_id == str(order_id))
            .order_by(AuditEvent.id)
        )
    ).all()
    timeline = [
        TimelineEvent(at=e.at, action=e.action, actor_role=e.actor_role, actor_id=e.actor_id, data=e.data)
        for e in events
    ]
    return OrderDetailOut(**_from_row(order).model_dump(), timeline=timeline)


@router.post("/{order_id}/accept", response_model=OrderOut)
async def accept(order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal) -> OrderOut:
    """Seller accepts a paid order."""
    return await _act(
        temporal, session, order_id, caller, OrderWorkflow.accept, ActionRequest(_actor(caller))
    )


@router.post("/{order_id}/decline", response_model=OrderOut)
async def decline(
    order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal, body: ActionIn | None = None
) -> OrderOut:
    """Seller declines a paid order: the buyer is refunded in full and the stock goes back."""
    reason = body.reason if body else None
    return await _act(
        temporal,
        session,
        order_id,
        caller,
        OrderWorkflow.decline,
        ActionRequest(_actor(caller), reason=reason),
    )


@router.post("/{order_id}/cancel", response_model=OrderOut)
async def cancel(
    order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal, body: ActionIn | None = None
) -> OrderOut:
    """Buyer (before acceptance), seller (after acceptance) or support cancels: full refund."""
    reason = body.reason if body else None
    return await _act(
        temporal,
        session,
        order_id,
        caller,
        OrderWorkflow.cancel,
        ActionRequest(_actor(caller), reason=reason),
    )


@router.post("/{order_id}/fulfil", response_model=OrderOut)
async def fulfil(
    order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal, body: FulfilIn | None = None
) -> OrderOut:
    """Seller marks the order shipped/fulfilled, optionally with tracking."""
    tracking = {k: str(v) for k, v in (body.model_dump(exclude_none=True) if body else {}).items()} or None
    return await _act(
        temporal,
        session,
        order_id,
        caller,
        OrderWorkflow.fulfil,
        ActionRequest(_actor(caller), tracking=tracking),
    )


@router.post("/{order_id}/confirm-receipt", response_model=OrderOut)
async def confirm_receipt(
    order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal
) -> OrderOut:
    """Buyer confirms receipt: the order completes and escrow is released to the seller."""
    return await _act(
        temporal, session, order_id, caller, OrderWorkflow.confirm_receipt, ActionRequest(_actor(caller))
    )


@router.post("/{order_id}/dispute", response_model=OrderOut)
async def open_dispute(
    order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal, body: DisputeIn
) -> OrderOut:
    """Buyer opens a dispute on a fulfilled order within the dispute window: escrow is frozen and a dispute
    case opens for support (its thread: `GET /v1/orders/{id}/dispute`)."""
    return await _act(
        temporal,
        session,
        order_id,
        caller,
        OrderWorkflow.open_dispute,
        ActionRequest(_actor(caller), reason=body.reason_code, message=body.message),
    )


@router.post("/{order_id}/resolve", response_model=OrderOut)
async def resolve_dispute(
    order_id: uuid.UUID, support: Support, session: Session, temporal: Temporal, body: ResolveIn
) -> OrderOut:
    """Support resolves a dispute: release to the seller, refund the buyer, or refund part and release the rest."""
    return await _act(
        temporal,
        session,
        order_id,
        support,
        OrderWorkflow.resolve_dispute,
        ActionRequest(
            _actor(support), reason=body.note, resolution=body.resolution, refund_amount=body.refund_amount
        ),
    )


@router.post("/{order_id}/retry-transfer", response_model=OrderOut)
async def retry_transfer(
    order_id: uuid.UUID, support: Support, session: Session, temporal: Temporal
) -> OrderOut:
    """Support pays a completed order's seller again after the provider refused the transfer
    (PaymentState `transfer_failed`, e.g. the connected account was restricted and is fixed now)."""
    return await _act(
        temporal, session, order_id, support, OrderWorkflow.retry_transfer, ActionRequest(_actor(support))
    )


def _actor(caller: Principal) -> Actor:
    return Actor(user_id=str(caller.user_id), is_support=caller.has(Role.SUPPORT))


async def _act(
    temporal: Temporal,
    session: Session,
    order_id: uuid.UUID,
    caller: Principal,
    update: Any,
    request: ActionRequest,
) -> OrderOut:
    """Run one actor action as a workflow Update; map its rejection to 403/409/422 with the current state."""
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    _check_party(order, caller)
    await session.commit()  # do not hold a transaction while the workflow works
    handle = temporal.get_workflow_handle(order.workflow_id)
    try:
        view: OrderView = await handle.execute_update(update, request, result_type=OrderView)
    except WorkflowUpdateFailedError as exc:
        raise update_rejection(exc, {"order": await _current(session, order_id)}) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the workflow has ended: its state is final
            raise DomainError(
                ErrorCode.INVALID_TRANSITION,
                f"the order is {order.status.value}",
                {"order": await _current(session, order_id)},
            ) from exc
        raise DomainError(ErrorCode.SERVICE_UNAVAILABLE, "orders are unavailable, retry shortly") from exc
    return _from_view(view)


async def _current(session: Session, order_id: uuid.UUID) -> dict[str, Any]:
    session.expire_all()
    order = await session.get(Order, order_id)
    assert order is not None
    return _from_row(order).model_dump(mode="json")


async def _check_purchasable(session: Session, body: OrderIn, buyer: Principal) -> None:
    """Fast, friendly refusals; the workflow's reservation re-checks under a row lock."""
    listing = await session.get(Listing, body.listing_id)
    if listing is None or listing.status not in (ListingStatus.ACTIVE, ListingStatus.SOLD):
        raise DomainError(ErrorCode.LISTING_NOT_AVAILABLE, "the listing is not for sale")
    if listing.seller_id == buyer.user_id:
        raise DomainError(ErrorCode.OWN_LISTING, "you cannot buy your own listing")
    if listing.status == ListingStatus.SOLD or listing.quantity < body.quantity:
        raise DomainError(ErrorCode.SOLD_OUT, "the listing is sold out", {"available": listing.quantity})


async def _start_or_join(temporal: Temporal, request: PlaceOrder) -> OrderView:
    workflow_id = order_workflow_id(request.order_id)
    try:
        handle = await temporal.start_workflow(
            OrderWorkflow.run,
            request,
            id=workflow_id,
            task_queue=get_settings().temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        view = await handle.execute_update(OrderWorkflow.placement)
    except (WorkflowAlreadyStartedError, WorkflowUpdateFailedError, RPCError):
        # The workflow has already finished: its result is the order's answer.
        try:
            view = await temporal.get_workflow_handle(workflow_id, result_type=OrderView).result()
        except RPCError as exc:
            raise DomainError(ErrorCode.SERVICE_UNAVAILABLE, "orders are unavailable, retry shortly") from exc
    if view is None:
        raise DomainError(ErrorCode.SERVICE_UNAVAILABLE, "the order is still being placed, retry shortly")
    return view


def _check_party(order: Order, caller: Principal) -> None:
    if order_party(order, caller) is None:
        raise DomainError(ErrorCode.FORBIDDEN, "only the buyer, the seller and support can see this order")


def _from_view(view: OrderView) -> OrderOut:
    return OrderOut(
        id=uuid.UUID(view.order_id),
        status=view.status,
        status_reason=view.reason,
        buyer_id=uuid.UUID(view.buyer_id),
        seller_id=uuid.UUID(view.seller_id) if view.seller_id else None,
        listing_id=uuid.UUID(view.listing_id),
        listing_title=view.listing_title,
        quantity=view.quantity,
        total=Money(amount=view.amount, currency=view.currency) if view.amount else None,
        payment_state=view.payment_state,
        workflow_id=order_workflow_id(view.order_id),
        tracking=view.tracking,
        refunded=Money(amount=view.refunded_amount, currency=view.currency) if view.refunded_amount else None,
        allowed_actions=view.allowed_actions,
    )


def _from_row(order: Order) -> OrderOut:
    return OrderOut(
        id=order.id,
        status=order.status.value,
        status_reason=order.status_reason,
        buyer_id=order.buyer_id,
        seller_id=order.seller_id,
        listing_id=order.listing_id,
        listing_title=order.listing_title,
        quantity=order.quantity,
        total=Money(amount=order.amount, currency=order.currency),
        payment_state=order.payment_state,
        workflow_id=order.workflow_id,
        tracking=order.tracking,
    )
