"""Orders: a buyer places one (idempotent on the Idempotency-Key header); buyer, seller and support read it
from its projection (its actions: `api/routes/order_actions.py`); support sees the orders that need a person.

Every wait on the workflow is bounded (`ORDER_WAIT_SECONDS`): when the charge or a step is slow, the answer is
202 with the order as it stands (poll `Location`), never a hanging request.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy import and_, select
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.deps import Caller, Session, Support, Temporal, log
from api.errors import database_unreachable
from api.openapi import LOCATION, errors, merge
from api.placement import start_and_wait
from api.ratelimits import ordering_buyer
from api.routes.order_actions import ACCEPTED, check_party, stored_order
from api.schemas import (
    OrderDetailOut,
    OrderIn,
    OrderOut,
    OrderPage,
    OrderSide,
    StuckOrderOut,
    StuckOrderPage,
    TimelineEvent,
)
from bazaar.auth import NEVER_PAID, Principal
from bazaar.checkout import cart
from bazaar.db import newest_first
from bazaar.errors import DomainError, ErrorCode
from bazaar.listings import stock
from bazaar.models import (
    AuditEvent,
    Listing,
    Order,
    OrderStatus,
    PaymentState,
    Role,
    User,
)
from bazaar.orders import details
from bazaar.orders.types import (
    ORDER_STATUS,
    PAYMENT_STATE,
    STUCK_ORDERS_QUERY,
    OrderAction,
    OrderView,
    Placement,
    PlaceOrder,
    initial_search_attributes,
)
from bazaar.payments import ledger
from bazaar.payments.money import Money
from bazaar.settings import get_settings
from bazaar.temporal import order_workflow_id
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])
support_router = APIRouter(prefix="/v1/support", tags=["support"])
# Order ids derive from (buyer, Idempotency-Key): a retried request lands on the same order and workflow.
ORDER_ID_NAMESPACE = uuid.UUID("6f1c3c52-8f0e-4f5e-9a55-0b7a3e1d2c4b")


def order_id_for(buyer: Principal, idempotency_key: str) -> uuid.UUID:
    """The order a buyer's Idempotency-Key places (a retry lands on the same order)."""
    return uuid.uuid5(ORDER_ID_NAMESPACE, f"{buyer.user_id}:{idempotency_key}")


OrderingBuyer = Annotated[Principal, Depends(ordering_buyer(Order, order_id_for))]
_REJECTIONS = {
    "sold_out": (ErrorCode.SOLD_OUT, "the listing is sold out"),
    "own_listing": (ErrorCode.OWN_LISTING, "you cannot buy your own listing"),
    "listing_not_available": (ErrorCode.LISTING_NOT_AVAILABLE, "the listing is not for sale"),
    "amount_not_chargeable": (
        ErrorCode.AMOUNT_NOT_CHARGEABLE,
        "the payment provider cannot charge this total",
    ),
    "invalid_request": (ErrorCode.VALIDATION_ERROR, "the order could not be stored"),
}
# Required (400 `idempotency_key_required` without it: api/errors.py): a retry must be able to find its order.
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="your id of this purchase, e.g. a UUID: a retry with the same key and request returns the "
        "same order (200) instead of buying twice; the same key with another request is refused (422)",
        examples=["5f0c2a9e-3b1d-4c55-9a43-2f7f1e0f8b21"],
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=OrderOut,
    responses=merge(
        {
            201: {
                "description": "the order: paid, or cancelled when the card was declined",
                "headers": LOCATION,
            },
            200: {
                "model": OrderOut,
                "description": "a replay of the same request (same Idempotency-Key): the order as it stands",
                "headers": LOCATION,
            },
        },
        ACCEPTED,
        errors(
            ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
            ErrorCode.LISTING_NOT_AVAILABLE,
            ErrorCode.SOLD_OUT,
            ErrorCode.INVALID_TRANSITION,
            ErrorCode.OWN_LISTING,
            ErrorCode.AMOUNT_NOT_CHARGEABLE,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ),
    ),
)
async def place_order(
    body: OrderIn,
    buyer: OrderingBuyer,
    session: Session,
    temporal: Temporal,
    response: Response,
    idempotency_key: IdempotencyKey,
) -> OrderOut:
    """Buy a listing: the stock is reserved and the buyer charged into escrow. 201 paid (or cancelled when
    the card was declined), 200 for a replay of the same request, 202 while the charge is still running."""
    if not idempotency_key:
        raise DomainError(ErrorCode.IDEMPOTENCY_KEY_REQUIRED, "send an Idempotency-Key header (e.g. a UUID)")
    order_id = order_id_for(buyer, idempotency_key)
    placement = Placement(str(body.listing_id), body.quantity, body.payment_method)
    response.headers["Location"] = f"/v1/orders/{order_id}"
    existing = await session.get(Order, order_id)
    listing = None
    if existing is not None:
        _check_same_request(existing, placement)
        if existing.status != OrderStatus.PENDING:
            response.status_code = 200
            return OrderOut.of_row(existing, caller=buyer)
    else:
        listing = await _check_purchasable(session, body, buyer)
    described = await _described(session, order_id, body.quantity, listing, buyer) if listing else None
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
    view = await _start_or_join(temporal, request, placement, listing, described)
    if view is None or view.status == OrderStatus.PENDING:
        response.status_code = 202
        return (
            OrderOut.of_view(view, caller=buyer)
            if view is not None
            else await _pending(session, order_id, request, listing, buyer)
        )
    if view.status == OrderStatus.REJECTED:
        raise await _rejection(session, view.reason, body)
    if existing is not None:
        response.status_code = 200
    return OrderOut.of_view(view, caller=buyer)


async def _rejection(session: Session, reason: str | None, body: OrderIn) -> DomainError:
    """The API error for a placement the workflow's reservation refused. Sold out (the reservation lost a race):
    what the listing has left now, read again (`details.available`), as the check before the reservation says."""
    if reason == "sold_out":
        listing = await session.get(Listing, body.listing_id, populate_existing=True)
        left = stock.available(listing)
        if left < body.quantity:
            return cart.sold_out(left)
        # Units another order held came back since: worth trying again.
        message = f"the units were taken when this order was tried; {left} are left now"
        return DomainError(ErrorCode.SOLD_OUT, message, {"available": left})
    code, message = _REJECTIONS.get(reason or "", (ErrorCode.LISTING_NOT_AVAILABLE, "order rejected"))
    return DomainError(code, message)


@router.get("", response_model=OrderPage)
async def list_orders(
    caller: Caller,
    session: Session,
    role: Annotated[
        OrderSide,
        Query(description="orders I bought (buyer) or I sold (seller: once paid, never a declined one)"),
    ] = OrderSide.BUYER,
    status: OrderStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")] = None,
) -> OrderPage:
    """Your orders, newest first: those you bought (`role=buyer`) or sold (`role=seller`); pass a page's
    `next_cursor` as `before` for the next one."""
    if status == OrderStatus.REJECTED:  # a refused placement is never stored
        return OrderPage(items=[], next_cursor=None)
    if role == "buyer":
        owned = Order.buyer_id == caller.user_id
    else:  # a seller's orders once paid (bazaar.auth.seen_by_seller)
        owned = and_(Order.seller_id == caller.user_id, Order.payment_state.not_in(NEVER_PAID))
    filters = [Order.status == status] if status else []
    items, next_cursor = await newest_first(session, Order, owned, before, limit, *filters)
    refunded = await ledger.refunded_by_order(session, (o.id for o in items))
    return OrderPage(
        items=[OrderOut.of_row(o, refunded.get(o.id, 0), caller=caller) for o in items],
        next_cursor=next_cursor,
    )


@router.get("/{order_id}", response_model=OrderDetailOut, responses=errors(ErrorCode.FORBIDDEN))
async def get_order(
    order_id: uuid.UUID, caller: Caller, session: Session, temporal: Temporal
) -> OrderDetailOut:
    """One order with its timeline, for its buyer, its seller and support (403 for anyone else)."""
    order = await session.get(Order, order_id)
    if order is None:
        # Accepted (202) but not stored yet: the workflow knows it.
        view = await _query(temporal, order_workflow_id(str(order_id)))
        if view is None or not (caller.user_id == uuid.UUID(view.buyer_id) or caller.has(Role.SUPPORT)):
            raise DomainError(ErrorCode.NOT_FOUND, "order not found")
        return OrderDetailOut(**OrderOut.of_view(view, caller=caller).model_dump(), timeline=[])
    check_party(order, caller)
    events = (
        await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.subject_type == "order", AuditEvent.subject_id == str(order_id))
            .order_by(AuditEvent.id)
        )
    ).all()
    return OrderDetailOut(
        **(await stored_order(session, order, caller)).model_dump(),
        timeline=[TimelineEvent.of(e) for e in events],
    )


@support_router.get("/stuck-orders", response_model=StuckOrderPage)
async def list_stuck_orders(
    support: Support, temporal: Temporal, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> StuckOrderPage:
    """Orders that need a person: a step failing past its bound (`NeedsAttention`) or a refused payout
    (`transfer_failed`). Read from Temporal's visibility, so it works while PostgreSQL is down."""
    items: list[StuckOrderOut] = []
    async for execution in temporal.list_workflows(STUCK_ORDERS_QUERY, limit=limit):
        memo = await execution.memo()
        attributes = execution.typed_search_attributes
        payment_state = PaymentState(attributes.get(PAYMENT_STATE) or PaymentState.NONE)
        refused = payment_state == PaymentState.TRANSFER_FAILED
        items.append(
            StuckOrderOut(
                order_id=execution.id.removeprefix("order-"),
                workflow_id=execution.id,
                status=OrderStatus(attributes.get(ORDER_STATUS) or OrderStatus.PENDING),
                payment_state=payment_state,
                attention=memo.get("attention") or ("payout refused: retry-transfer" if refused else None),
                started_at=execution.start_time,
                temporal_ui=f"{get_settings().temporal_ui_url}/namespaces/"
                f"{get_settings().temporal_namespace}/workflows/{execution.id}",
            )
        )
    return StuckOrderPage(items=items)


def _check_same_request(order: Order, placement: Placement) -> None:
    """A retried create-order request must ask for what the first asked for (the whole request)."""
    same = (str(order.listing_id), order.quantity) == (placement.listing_id, placement.quantity) and (
        order.payment_method is None or order.payment_method == placement.payment_method
    )
    if not same:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used for a different order",
            {"order_id": str(order.id)},
        )


async def _check_purchasable(session: Session, body: OrderIn, buyer: Principal) -> Listing:
    """Fast, friendly refusals before any stock is taken; the workflow's reservation re-checks under a
    row lock."""
    listing = await session.get(Listing, body.listing_id)
    refusal = cart.purchase_problem(listing, buyer.user_id, body.quantity)
    if refusal is not None:
        raise refusal
    assert listing is not None
    return listing


async def _described(
    session: Session, order_id: uuid.UUID, quantity: int, listing: Listing, buyer: Principal
) -> tuple[str, str]:
    """The workflow's static summary and details for operators (Temporal UI): what, how much, who."""
    rows = await session.execute(
        select(User.id, User.display_name).where(User.id.in_([listing.seller_id, buyer.user_id]))
    )
    names: dict[uuid.UUID, str] = {user_id: name for user_id, name in rows}
    return (
        details.summary(
            listing.price_amount * quantity,
            listing.currency,
            listing.title,
            names.get(listing.seller_id, "seller"),
            names.get(buyer.user_id, "buyer"),
        ),
        details.static_details(
            str(order_id), str(listing.id), quantity, str(listing.seller_id), str(buyer.user_id)
        ),
    )


async def _start_or_join(
    temporal: Client,
    request: PlaceOrder,
    placement: Placement,
    listing: Listing | None,
    described: tuple[str, str] | None = None,
) -> OrderView | None:
    """Start the order's workflow and wait (bounded) for the charge's outcome in one round trip
    (update-with-start); a retry joins the running workflow. None: still working after the wait."""
    workflow_id = order_workflow_id(request.order_id)
    start = WithStartWorkflowOperation(
        OrderWorkflow.run,
        request,
        id=workflow_id,
        task_queue=get_settings().temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=initial_search_attributes(
            request,
            seller_id=str(listing.seller_id) if listing else "",
            amount=listing.price_amount * request.quantity if listing else 0,
        ),
        # For operators (UI list, `temporal workflow describe`); set at start, so it costs no event.
        memo=details.memo(
            listing.title, listing.price_amount * request.quantity, listing.currency, request.quantity
        )
        if listing
        else None,
        # The UI's summary line and the workflow page's details (user metadata of the start, never replayed).
        static_summary=described[0] if described else None,
        static_details=described[1] if described else None,
    )
    return await start_and_wait(temporal, OrderWorkflow.placement, [placement], start, workflow_id, OrderView)


async def _query(temporal: Client, workflow_id: str) -> OrderView | None:
    try:
        view: OrderView | None = await asyncio.wait_for(
            temporal.get_workflow_handle(workflow_id).query(OrderWorkflow.state),
            get_settings().order_wait_seconds,
        )
        return view
    except (RPCError, TimeoutError):
        return None


async def _pending(
    session: Session, order_id: uuid.UUID, request: PlaceOrder, listing: Listing | None, buyer: Principal
) -> OrderOut:
    """The order while its workflow is still placing it: the stored row, or what the request asked for."""
    # What the answer needs of the listing, read before expiring it (expired, it would be lazy-loaded: an error
    # in async code, and the 202 a client waits for would be a 500).
    seller_id, title, total = (
        (
            listing.seller_id,
            listing.title,
            Money(amount=listing.price_amount * request.quantity, currency=listing.currency),
        )
        if listing
        else (None, "", None)
    )
    session.expire_all()
    try:
        order = await session.get(Order, order_id)
    except SQLAlchemyError as exc:
        # The workflow is placing the order: a 503 ("nothing was done") would be untrue, and a client that believed
        # it would never learn of an order it is charged for. What was asked for, and where to poll, is the answer.
        if not database_unreachable(exc):
            raise
        log.warning("order %s is being placed; its row could not be read (%s)", order_id, exc)
        await session.rollback()
        order = None
    if order is not None:
        return OrderOut.of_row(order, caller=buyer)
    return OrderOut(
        id=order_id,
        status=OrderStatus.PENDING,
        status_reason=None,
        buyer_id=uuid.UUID(request.buyer_id),
        seller_id=seller_id,
        listing_id=uuid.UUID(request.listing_id),
        listing_title=title,
        quantity=request.quantity,
        total=total,
        payment_state=PaymentState.NONE,
        workflow_id=order_workflow_id(str(order_id)),
        allowed_actions=[OrderAction.CANCEL],
    )
