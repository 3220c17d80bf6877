"""Order actions: buyer, seller and support move an order forward, each action one Update of its workflow.

The workflow checks who may act (its validators, `bazaar.orders.rules`), so the happy path reads nothing from
the database. Every wait is bounded (`ORDER_WAIT_SECONDS`): an action still running after it answers 202 with
the order as it stands.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Response
from temporalio.client import (
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError

from api.deps import Caller, Session, Support, Temporal
from api.errors import update_rejection, workflow_gone
from api.openapi import LOCATION, errors, merge
from api.schemas import ActionIn, FulfilIn, OrderOut, RefundIn, ResolveIn
from api.trust_schemas import DisputeIn
from bazaar.auth import Principal, actor_of, order_party, seen_by_seller
from bazaar.errors import DomainError, ErrorCode, field_error
from bazaar.idempotency import request_digest
from bazaar.models import Order, OrderStatus, Role
from bazaar.orders import rules
from bazaar.orders.reopen import reopen_operation
from bazaar.orders.rules import OWN_ORDER_AS_SUPPORT
from bazaar.orders.types import ActionRequest, OrderAction, OrderView, Party, RefundLine
from bazaar.payments import ledger
from bazaar.returns import returns
from bazaar.settings import get_settings
from bazaar.temporal import order_workflow_id
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/v1/orders", tags=["orders"])
# Our bounded wait ran out (asyncio.wait_for cancels the SDK's poll, which reports it as its own error).
STILL_RUNNING = (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError)


def wait_budget() -> Callable[[], float]:
    """The API's one bound on a request's waits for a workflow (`ORDER_WAIT_SECONDS` from now): each call says
    how many seconds are left of it, for every `asyncio.wait_for` the request makes in turn."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + get_settings().order_wait_seconds
    return lambda: max(0.0, deadline - loop.time())


async def stored_order(session: Session, order: Order, caller: Principal) -> OrderOut:
    """The order as stored, with what was refunded of it, as `caller` sees it: what GET answers, and what a
    202's or a refusal's body carries."""
    refunded = await ledger.refunded_by_order(session, [order.id])
    return OrderOut.of_row(order, refunded.get(order.id, 0), caller=caller)


ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": OrderOut,
        "description": "the workflow is still working on it: the order as it stands; poll Location",
        "headers": LOCATION,
    }
}
# What any action answers: the new state, 202 while it runs, and the workflow's refusals (403: this actor may
# never do it; 409 with the current `order` in details: not now).
ACTION = merge(
    {200: {"description": "the order after the action"}},
    ACCEPTED,
    errors(
        ErrorCode.FORBIDDEN,
        ErrorCode.INVALID_TRANSITION,
        ErrorCode.ORDER_NEEDS_ATTENTION,
        ErrorCode.PAYMENT_REJECTED,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
    ),
)
ActionKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="optional: a retried action with the same key and request joins the first one instead of "
        "acting twice; the same key with another request is refused (422 `idempotency_key_reused`)",
    ),
]


def action_digest(request: ActionRequest) -> str:
    """What an action asked for (its fields, not who asked; `return_id` is set by returns only, never here)."""
    unasked = ("actor", "idempotency_key", "request_digest", "return_id")
    return request_digest({k: v for k, v in asdict(request).items() if k not in unasked})


def check_party(order: Order, caller: Principal) -> Order:
    """The order, if the caller is its buyer, its seller or support (403 otherwise; 404 for its seller until it
    is paid: `seen_by_seller`)."""
    party = order_party(order, caller)
    if party is None:
        raise DomainError(ErrorCode.FORBIDDEN, "only the buyer, the seller and support can see this order")
    if party == Party.SELLER and not seen_by_seller(order):
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    return order


async def visible_order(session: Session, order_id: uuid.UUID, caller: Principal) -> Order:
    """The stored order as the caller may see it: 404 if there is none, 403 if it is not theirs."""
    session.expire_all()
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    return check_party(order, caller)


class Action:
    """One actor action on the order of the path, as a workflow Update: 200 with the new state; 403/409/422
    with the current state when the workflow refuses it; 202 with the current state when it is accepted but
    still running."""

    def __init__(
        self,
        order_id: uuid.UUID,
        caller: Caller,
        session: Session,
        temporal: Temporal,
        response: Response,
        key: ActionKey = None,
    ) -> None:
        self.order_id, self.caller, self.session = order_id, caller, session
        self.temporal, self.response, self.key = temporal, response, key

    async def __call__(
        self, update: Any, *, reopen: bool = False, about: str | None = None, **fields: Any
    ) -> OrderOut:
        """`reopen`: support acting on a completed order whose run has ended starts a reopened run for it (the
        order's state loaded from the database, never a new charge) with the Update. `about`: the body field a
        422 from the workflow is about (its `details.errors` names it, as the API's own 422s do)."""
        request = ActionRequest(actor_of(self.caller), **fields)
        handle = self.temporal.get_workflow_handle(order_workflow_id(str(self.order_id)))
        left = wait_budget()  # one bound for the Update's acceptance and its result
        update_id = None
        if self.key:
            # The same key and request join the first action (one Update id); the same key with another request
            # is a new Update that the workflow refuses (`idempotency_key_reused`), never answered as the first.
            asked = action_digest(request)
            request = replace(request, idempotency_key=self.key, request_digest=asked)
            update_id = f"{update.__name__}:{self.caller.user_id}:{self.key}:{asked[:16]}"
        try:
            try:
                started = await asyncio.wait_for(
                    handle.start_update(
                        update, request, wait_for_stage=WorkflowUpdateStage.ACCEPTED, id=update_id
                    ),
                    left(),
                )
            except RPCError as exc:
                order = await self.session.get(Order, self.order_id)
                ended = order is not None and order.status == OrderStatus.COMPLETED
                if not (reopen and workflow_gone(exc) and ended and self.caller.has(Role.SUPPORT)):
                    raise
                assert order is not None
                if self.caller.user_id in (order.buyer_id, order.seller_id):
                    # The reopened run skips its validator while it loads the order (found from outside: a seller
                    # with the support role refunded their own completed order): the rule is asked here.
                    raise DomainError(
                        ErrorCode.FORBIDDEN,
                        OWN_ORDER_AS_SUPPORT,
                        {
                            "order": (await stored_order(self.session, order, self.caller)).model_dump(
                                mode="json"
                            )
                        },
                    ) from exc
                await self.session.commit()  # nothing more to read: no transaction held while the run works
                started = await asyncio.wait_for(
                    self.temporal.start_update_with_start_workflow(
                        update,
                        request,
                        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                        id=update_id or f"{update.__name__}:{uuid.uuid4()}",
                        start_workflow_operation=reopen_operation(order),
                    ),
                    left(),
                )
            view: OrderView = await asyncio.wait_for(started.result(), left())
        except WorkflowUpdateFailedError as exc:
            order = await visible_order(self.session, self.order_id, self.caller)
            current = (await stored_order(self.session, order, self.caller)).model_dump(mode="json")
            refused = update_rejection(exc, {"order": current})
            if refused.code == ErrorCode.VALIDATION_ERROR and about is not None:
                raise field_error(about, refused.message, "value_error", order=current) from exc
            raise refused from exc
        except STILL_RUNNING:
            self.response.status_code = 202
            self.response.headers["Location"] = f"/v1/orders/{self.order_id}"
            return await stored_order(
                self.session, await visible_order(self.session, self.order_id, self.caller), self.caller
            )
        except RPCError as exc:
            if not workflow_gone(exc):
                raise
            # No such order, or its workflow has ended: its state is final. An actor who may never do this is
            # told so (403) whatever the state, as a running order's workflow tells them.
            order = await visible_order(self.session, self.order_id, self.caller)
            action = OrderAction(update.__name__)
            acting_as = rules.parties(request.actor, str(order.buyer_id), str(order.seller_id))
            if not rules.may_ever(action, acting_as):
                raise DomainError(
                    ErrorCode.FORBIDDEN,
                    f"you may not {action} this order",
                    {"order": (await stored_order(self.session, order, self.caller)).model_dump(mode="json")},
                ) from exc
            raise DomainError(
                ErrorCode.INVALID_TRANSITION,
                f"the order is {order.status.value}",
                {"order": (await stored_order(self.session, order, self.caller)).model_dump(mode="json")},
            ) from exc
        return OrderOut.of_view(view, caller=self.caller)


Act = Annotated[Action, Depends()]
# Optional bodies: sent without one, the action takes the defaults (never "a model or null" in the document).
Reason = Annotated[ActionIn, Body(description="optional: why (shown to the other side)")]
Tracking = Annotated[FulfilIn, Body(description="optional: how the order travels")]


@router.post("/{order_id}/accept", response_model=OrderOut, responses=ACTION)
async def accept_order(act: Act) -> OrderOut:
    """Seller accepts a paid order."""
    return await act(OrderWorkflow.accept)


@router.post("/{order_id}/decline", response_model=OrderOut, responses=ACTION)
async def decline_order(act: Act, body: Reason = ActionIn()) -> OrderOut:
    """Seller declines a paid order: the buyer is refunded in full and the stock goes back."""
    return await act(OrderWorkflow.decline, reason=body.reason)


@router.post("/{order_id}/cancel", response_model=OrderOut, responses=ACTION)
async def cancel_order(act: Act, body: Reason = ActionIn()) -> OrderOut:
    """Buyer (before acceptance), seller (after acceptance) or support cancels: full refund. A pending order
    is cancelled once its charge has an outcome (202 until then)."""
    return await act(OrderWorkflow.cancel, reason=body.reason)


@router.post("/{order_id}/fulfil", response_model=OrderOut, responses=ACTION)
async def fulfil_order(act: Act, body: Tracking = FulfilIn()) -> OrderOut:
    """Seller marks the order shipped/fulfilled, optionally with tracking."""
    tracking = {k: str(v) for k, v in body.model_dump(exclude_none=True).items()} or None
    return await act(OrderWorkflow.fulfil, tracking=tracking)


@router.post("/{order_id}/confirm-receipt", response_model=OrderOut, responses=ACTION)
async def confirm_receipt(act: Act) -> OrderOut:
    """Buyer confirms receipt: the order completes and escrow is released to the seller."""
    return await act(OrderWorkflow.confirm_receipt)


@router.post("/{order_id}/dispute", response_model=OrderOut, responses=ACTION)
async def open_dispute(act: Act, body: DisputeIn) -> OrderOut:
    """Buyer opens a dispute on a fulfilled order within the dispute window: escrow is frozen and a dispute
    case opens for support (its thread: `GET /v1/orders/{id}/dispute`)."""
    return await act(OrderWorkflow.open_dispute, reason=body.reason_code, message=body.message)


@router.post("/{order_id}/resolve", response_model=OrderOut, responses=ACTION)
async def resolve_dispute(act: Act, _: Support, body: ResolveIn) -> OrderOut:
    """Support resolves a dispute: release to the seller, refund the buyer, or refund part and release the rest."""
    return await act(
        OrderWorkflow.resolve_dispute,
        about="refund_amount",
        reason=body.note,
        resolution=body.resolution,
        refund_amount=body.refund_amount,
    )


@router.post("/{order_id}/refund", response_model=OrderOut, responses=ACTION)
async def refund_order(act: Act, body: RefundIn) -> OrderOut:
    """Seller or support gives part or all of the money back to the buyer while it is held in escrow (paid,
    confirmed or fulfilled), and support also after the release (completed): at most what the order still holds
    (422 above that). A partial refund keeps the order going and its release pays the seller what is left, less
    the fee (`PLATFORM_FEE_REFUNDED_PRO_RATA`); after the release, the refund's share is taken back from the
    seller's transfer (and the fee's, pro rata). Refunding all of it ends the order as `refunded`, with the stock
    back if it was not shipped. By `amount`, or by `lines`: each line's unit price (as placed) times the quantity
    (422 for a listing the order did not buy, or more of it than is left to refund: units refunded before, by
    lines or by a return, count, and units in an open return are left to it)."""
    # By lines, the workflow prices them and keeps count of the units refunded, so no unit is refunded twice.
    lines = [RefundLine(str(line.listing_id), line.quantity) for line in body.lines] if body.lines else None
    if body.lines:
        order = await visible_order(act.session, act.order_id, act.caller)
        asked = {line.listing_id: line.quantity for line in body.lines}
        if (problem := await returns.units_held_by_returns(act.session, order, asked)) is not None:
            raise problem
    return await act(
        OrderWorkflow.refund,
        reopen=True,
        about="lines" if lines else "amount",
        refund_amount=body.amount,
        refund_lines=lines,
        reason=body.reason,
    )


@router.post("/{order_id}/retry-transfer", response_model=OrderOut, responses=ACTION)
async def retry_transfer(act: Act, _: Support) -> OrderOut:
    """Support pays a completed order's seller again after the provider refused the transfer
    (PaymentState `transfer_failed`, e.g. the connected account was restricted and is fixed now)."""
    return await act(OrderWorkflow.retry_transfer)


@router.post("/{order_id}/retry", response_model=OrderOut, responses=ACTION)
async def retry_order(act: Act, _: Support) -> OrderOut:
    """Support re-runs the step an order is stuck on (see `GET /v1/support/stuck-orders`) now, instead of
    waiting for its next automatic retry. 409 when no step of the order is failing."""
    return await act(OrderWorkflow.retry)
