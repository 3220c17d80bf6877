"""Checkouts: the buyer pays for the whole cart once (idempotent on the Idempotency-Key header) and gets one order
per seller. The `Checkout` workflow reserves every line's stock (all or nothing), charges once and starts the
orders; the answer waits for the payment's outcome within `ORDER_WAIT_SECONDS` (else 202 with the checkout as it
stands: poll `Location`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Response
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from api.checkout_schemas import CheckoutIn, CheckoutOut, CheckoutPage
from api.deps import Buyer, Caller, Session, Temporal
from api.openapi import LOCATION, errors, merge
from api.placement import start_and_wait
from api.ratelimits import ordering_buyer
from api.routes.orders import IdempotencyKey
from bazaar.auth import Principal
from bazaar.checkout import cart, checkouts
from bazaar.checkout.types import CheckoutLine, CheckoutPlacement, CheckoutView, StartCheckout
from bazaar.db import newest_first
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Checkout, CheckoutStatus, OrderStatus, Role
from bazaar.orders.types import BUYER_ID
from bazaar.payments import ledger
from bazaar.payments.money import Money
from bazaar.settings import get_settings
from bazaar.temporal import checkout_workflow_id
from workflows.checkout import CheckoutWorkflow

router = APIRouter(prefix="/v1/checkouts", tags=["checkouts"])
# Checkout ids derive from (buyer, Idempotency-Key): a retried request lands on the same checkout and workflow.
CHECKOUT_ID_NAMESPACE = uuid.UUID("3d6f0c1a-7b2e-4c8d-9f1a-5e4b3c2d1a0f")


def checkout_id_for(buyer: Principal, idempotency_key: str) -> uuid.UUID:
    """The checkout a buyer's Idempotency-Key places (a retry lands on the same checkout)."""
    return uuid.uuid5(CHECKOUT_ID_NAMESPACE, f"{buyer.user_id}:{idempotency_key}")


OrderingBuyer = Annotated[Principal, Depends(ordering_buyer(Checkout, checkout_id_for))]
_REFUSALS = {
    "lines_unavailable": (
        ErrorCode.CART_CHANGED,
        "some lines cannot be bought as they are: see details.lines",
    ),
    "currency_mismatch": (ErrorCode.CURRENCY_MISMATCH, "the cart's lines are in more than one currency"),
    "amount_not_chargeable": (
        ErrorCode.AMOUNT_NOT_CHARGEABLE,
        "the payment provider cannot charge this total",
    ),
    "invalid_request": (ErrorCode.VALIDATION_ERROR, "the checkout could not be stored"),
    "cart_empty": (ErrorCode.CART_EMPTY, "the cart is empty: its lines were checked out meanwhile"),
    "checkout_in_progress": (
        ErrorCode.CHECKOUT_IN_PROGRESS,
        "another checkout of yours is still being paid (details.checkout_id): wait for its outcome, then check "
        "out again with a new Idempotency-Key",
    ),
}


@router.post(
    "",
    status_code=201,
    response_model=CheckoutOut,
    responses=merge(
        {
            201: {"description": "paid (one order per seller), or payment_failed", "headers": LOCATION},
            200: {
                "model": CheckoutOut,
                "description": "a replay of the same request (same Idempotency-Key): the checkout as it stands",
                "headers": LOCATION,
            },
            202: {
                "model": CheckoutOut,
                "description": "the payment is still running: the checkout as it stands; poll Location",
                "headers": LOCATION,
            },
        },
        errors(
            ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
            ErrorCode.CART_EMPTY,
            ErrorCode.CART_CHANGED,
            ErrorCode.CHECKOUT_IN_PROGRESS,
            ErrorCode.CURRENCY_MISMATCH,
            ErrorCode.AMOUNT_NOT_CHARGEABLE,
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ),
    ),
)
async def create_checkout(
    body: CheckoutIn,
    buyer: OrderingBuyer,
    session: Session,
    temporal: Temporal,
    response: Response,
    idempotency_key: IdempotencyKey,
) -> CheckoutOut:
    """Pay for every line of the cart at once: the stock of every line is reserved (or none: 409 `cart_changed`
    names each line that sold out, left sale or changed price), the buyer is charged once, and each seller gets an
    order of its own lines (`orders`), which then runs like any order (accept, ship, confirm; a seller declining
    refunds only that order). One checkout of a buyer's is paid at a time: while another is still being paid the
    answer is 409 `checkout_in_progress` (`details.checkout_id`), nothing taken; a line no longer in the cart as it
    was read is `cart_changed` (`not_in_cart`, `quantity_changed`), and a cart emptied meanwhile `cart_empty`.
    201 paid or payment_failed, 200 for a replay, 202 while the payment runs."""
    if not idempotency_key:
        raise DomainError(ErrorCode.IDEMPOTENCY_KEY_REQUIRED, "send an Idempotency-Key header (e.g. a UUID)")
    checkout_id = checkout_id_for(buyer, idempotency_key)
    response.headers["Location"] = f"/v1/checkouts/{checkout_id}"
    existing = await session.get(Checkout, checkout_id)
    if existing is not None:
        if existing.payment_method != body.payment_method:
            raise DomainError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used for a different checkout",
                {"checkout_id": str(checkout_id)},
            )
        # A replay: 200 with the checkout as it stands, or 202 while its payment still runs (the orders leave
        # `pending` once it is paid), as the first answer would have been (Location to poll).
        response.status_code = 202 if _still_paying(existing) else 200
        return await _out(session, existing, buyer)
    current = await cart.read(session, buyer.user_id)
    if not current.lines:
        raise DomainError(
            ErrorCode.CART_EMPTY, "the cart is empty: add lines with PUT /v1/cart/lines/{listing_id}"
        )
    await session.commit()  # end the read transaction before waiting on the workflow
    request = StartCheckout(
        checkout_id=str(checkout_id),
        buyer_id=str(buyer.user_id),
        payment_method=body.payment_method,
        idempotency_key=idempotency_key,
        lines=[
            CheckoutLine(str(line.listing.id), line.quantity, line.seen_amount, line.seen_currency)
            for line in current.lines
        ],
        terms=cast(dict[str, bool | int], dict(get_settings().order_terms())),
    )
    view = await _start_or_join(temporal, request, CheckoutPlacement(body.payment_method))
    if view is not None and view.status is None:
        raise await _refusal(session, view)
    stored = await _settled(
        session, checkout_id, paid=view is not None and view.status == CheckoutStatus.PAID
    )
    if stored is None:  # the workflow has not stored it yet (reserving, or the wait ran out)
        response.status_code = 202
        return _pending(request)
    if view is None or _orders_pending(stored):
        response.status_code = 202
    return await _out(session, stored, buyer)


def _orders_pending(checkout: Checkout) -> bool:
    """Whether an order of the checkout is still `pending` (each leaves it a moment after the charge is paid)."""
    return any(o.status == OrderStatus.PENDING for o in checkout.orders)


def _still_paying(checkout: Checkout) -> bool:
    """Whether the checkout's payment still runs, as its answer tells (202): not settled, or orders pending."""
    return checkout.status == CheckoutStatus.PENDING or _orders_pending(checkout)


async def _refusal(session: Session, view: CheckoutView) -> DomainError:
    """The API error for a checkout its reservation refused (nothing was stored or taken)."""
    code, message = _REFUSALS.get(view.reason or "", _REFUSALS["invalid_request"])
    details: dict[str, Any] | None = None
    if view.refusals:
        details = {
            "lines": [
                {"listing_id": r.listing_id, "problem": r.problem, "available_quantity": r.available_quantity}
                for r in view.refusals
            ]
        }
    elif code == ErrorCode.CHECKOUT_IN_PROGRESS:
        # The one to wait for (a client polls it); gone already if it settled since the refusal.
        pending = await checkouts.pending_checkout(session, uuid.UUID(view.buyer_id))
        details = {"checkout_id": str(pending)} if pending is not None else None
    return DomainError(code, message, details)


async def _outs(session: Session, found: Sequence[Checkout], caller: Principal) -> list[CheckoutOut]:
    """The checkouts as the API shows them: each order with what was refunded of it, as the order's own read
    says (one query for them all)."""
    refunded = await ledger.refunded_by_order(session, (o.id for c in found for o in c.orders))
    return [CheckoutOut.of_row(checkout, refunded, caller=caller) for checkout in found]


async def _out(session: Session, checkout: Checkout, caller: Principal) -> CheckoutOut:
    [out] = await _outs(session, [checkout], caller)
    return out


async def _settled(session: Session, checkout_id: uuid.UUID, paid: bool) -> Checkout | None:
    """The stored checkout; once paid, after its orders have left `pending` (each seller's order workflow moves
    its own to `paid` a moment after the checkout's charge), within the bounded wait: a 201 means every order can
    be acted on at once."""
    deadline = asyncio.get_running_loop().time() + get_settings().order_wait_seconds
    while True:
        session.expire_all()
        stored = await session.get(Checkout, checkout_id)
        ready = stored is not None and not _orders_pending(stored)
        if not paid or ready or asyncio.get_running_loop().time() > deadline:
            await session.commit()
            return stored
        await session.commit()
        await asyncio.sleep(0.02)


@router.get("", response_model=CheckoutPage)
async def list_checkouts(
    buyer: Buyer,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")] = None,
) -> CheckoutPage:
    """The buyer's checkouts, newest first (refused ones are never stored)."""
    items, next_cursor = await newest_first(
        session, Checkout, Checkout.buyer_id == buyer.user_id, before, limit
    )
    return CheckoutPage(items=await _outs(session, items, buyer), next_cursor=next_cursor)


@router.get("/{checkout_id}", response_model=CheckoutOut, responses=errors(ErrorCode.NOT_FOUND))
async def get_checkout(checkout_id: uuid.UUID, caller: Caller, session: Session) -> CheckoutOut:
    """A checkout and its orders, for its buyer and support (404 for anyone else: a checkout is the buyer's)."""
    checkout = await session.get(Checkout, checkout_id)
    if checkout is None or not (checkout.buyer_id == caller.user_id or caller.has(Role.SUPPORT)):
        raise DomainError(ErrorCode.NOT_FOUND, "checkout not found")
    return await _out(session, checkout, caller)


async def _start_or_join(
    temporal: Client, request: StartCheckout, placement: CheckoutPlacement
) -> CheckoutView | None:
    """Start the checkout's workflow and wait (bounded) for the payment's outcome (update-with-start); a retry
    joins the running workflow. None: still working after the wait."""
    workflow_id = checkout_workflow_id(request.checkout_id)
    start = WithStartWorkflowOperation(
        CheckoutWorkflow.run,
        request,
        id=workflow_id,
        task_queue=get_settings().temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(BUYER_ID, request.buyer_id)]),
        static_summary=f"checkout of {len(request.lines)} lines",
    )
    return await start_and_wait(
        temporal, CheckoutWorkflow.placement, [placement], start, workflow_id, CheckoutView
    )


def _pending(request: StartCheckout) -> CheckoutOut:
    """The checkout before its reservation is stored: what the request asked for."""
    total = sum(line.seen_amount * line.quantity for line in request.lines)
    return CheckoutOut(
        id=uuid.UUID(request.checkout_id),
        status=CheckoutStatus.PENDING,
        status_reason=None,
        buyer_id=uuid.UUID(request.buyer_id),
        total=Money(amount=total, currency=request.lines[0].seen_currency),
        orders=[],
        workflow_id=checkout_workflow_id(request.checkout_id),
    )
