"""Disputes: the buyer, the seller and support read the thread and add to it; support asks for information.

Resolution (money) is the order's `POST /v1/orders/{id}/resolve`; this router is the conversation.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Response
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.service import RPCError

from api.deps import Caller, Session, Support, Temporal
from api.errors import update_rejection, workflow_gone
from api.openapi import LOCATION, errors, merge
from api.routes.order_actions import STILL_RUNNING, ActionKey
from api.trust_schemas import DisputeMessageBody, DisputeOut, InfoRequestBody
from bazaar.auth import Principal, order_party
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Order
from bazaar.settings import get_settings
from bazaar.trust import disputes
from workflows.dispute import DisputeMessageIn, DisputeWorkflow, InfoRequest, dispute_workflow_id

router = APIRouter(prefix="/v1/orders/{order_id}/dispute", tags=["disputes"])
# The case workflow is still saving the step when the API's wait (`ORDER_WAIT_SECONDS`) runs out: the case as
# it stands; the step lands (or is refused) on its own, and a retry with the same Idempotency-Key joins it.
STILL_SAVING: dict[int | str, dict[str, Any]] = {
    202: {
        "model": DisputeOut,
        "description": "the dispute is still saving it: the case as it stands; poll Location",
        "headers": LOCATION,
    }
}


@router.get("", response_model=DisputeOut, responses=errors(ErrorCode.FORBIDDEN))
async def get_dispute(order_id: uuid.UUID, caller: Caller, session: Session) -> DisputeOut:
    """The order's dispute and its message thread, for the buyer, the seller and support (404 when the order has
    none)."""
    dispute, thread = await disputes.visible_case(session, order_id, caller)
    return DisputeOut.of(dispute, thread)


@router.post(
    "/messages",
    response_model=DisputeOut,
    responses=merge(
        STILL_SAVING,
        errors(ErrorCode.FORBIDDEN, ErrorCode.INVALID_TRANSITION, ErrorCode.IDEMPOTENCY_KEY_REUSED),
    ),
)
async def add_dispute_message(
    order_id: uuid.UUID,
    body: DisputeMessageBody,
    caller: Caller,
    session: Session,
    temporal: Temporal,
    response: Response,
    key: ActionKey = None,
) -> DisputeOut:
    """A message or evidence from the buyer, the seller or support."""
    role = await _role_in(session, order_id, caller)
    if key:  # the key names this request: the same key with another one is refused, not answered as the first
        asked = body.model_dump(mode="json")
        await disputes.claim_key(session, order_id, "add_message", caller.user_id, role, key, asked)
        # The key is this request's from now on; no transaction is held while the case works.
        await session.commit()
    await _update(
        temporal,
        response,
        order_id,
        DisputeWorkflow.add_message,
        DisputeMessageIn(str(caller.user_id), role, body.body, body.kind),
        f"{caller.user_id}:{key}" if key else None,
        session,
        caller,
    )
    dispute, thread = await disputes.visible_case(session, order_id, caller)
    return DisputeOut.of(dispute, thread)


@router.post(
    "/info-requests",
    response_model=DisputeOut,
    responses=merge(STILL_SAVING, errors(ErrorCode.INVALID_TRANSITION, ErrorCode.IDEMPOTENCY_KEY_REUSED)),
)
async def request_dispute_info(
    order_id: uuid.UUID,
    body: InfoRequestBody,
    staff: Support,
    session: Session,
    temporal: Temporal,
    response: Response,
    key: ActionKey = None,
) -> DisputeOut:
    """Support asks the buyer or the seller for information, with a deadline."""
    if key:
        asked = body.model_dump(mode="json")
        await disputes.claim_key(session, order_id, "request_info", staff.user_id, "support", key, asked)
        # The key is this request's from now on; no transaction is held while the case works.
        await session.commit()
    await _update(
        temporal,
        response,
        order_id,
        DisputeWorkflow.request_info,
        InfoRequest(str(staff.user_id), body.party, body.question, body.deadline_hours * 3600),
        f"{staff.user_id}:{key}" if key else None,
        session,
        staff,
    )
    dispute, thread = await disputes.visible_case(session, order_id, staff)
    return DisputeOut.of(dispute, thread)


async def _role_in(session: Session, order_id: uuid.UUID, caller: Principal) -> str:
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    party = order_party(order, caller)
    if party is None:
        raise DomainError(
            ErrorCode.FORBIDDEN, "only the buyer, the seller and support can write in this dispute"
        )
    return party


async def _current(session: Session, order_id: uuid.UUID, viewer: Principal) -> dict[str, Any]:
    """A refusal's details: the case as it stands, as `viewer` sees it (as an order action's 409 carries the
    order; found from outside: a message to a closed case had none), or nothing if there is no case."""
    try:
        dispute, thread = await disputes.visible_case(session, order_id, viewer)
    except DomainError:
        return {}
    return {"dispute": DisputeOut.of(dispute, thread).model_dump(mode="json")}


async def _update(
    temporal: Temporal,
    response: Response,
    order_id: uuid.UUID,
    update: Any,
    arg: object,
    key: str | None,
    session: Session,
    viewer: Principal,
) -> None:
    """Run one step of the case, waiting for it at most `ORDER_WAIT_SECONDS` (then 202, see `STILL_SAVING`);
    a refusal carries the case as it stands."""
    handle = temporal.get_workflow_handle(dispute_workflow_id(str(order_id)))
    wait = get_settings().order_wait_seconds
    try:
        started = await asyncio.wait_for(
            handle.start_update(
                update,
                arg,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                id=f"{update.__name__}:{key}" if key else None,
            ),
            wait,
        )
        await asyncio.wait_for(started.result(), wait)
    except WorkflowUpdateFailedError as exc:
        raise update_rejection(exc, await _current(session, order_id, viewer)) from exc
    except STILL_RUNNING:
        response.status_code = 202
        response.headers["Location"] = f"/v1/orders/{order_id}/dispute"
    except RPCError as exc:
        if not workflow_gone(exc):
            raise  # e.g. Temporal unreachable: a 503 (api.errors), not "no open dispute"
        raise DomainError(
            ErrorCode.INVALID_TRANSITION,
            "this order has no open dispute",
            await _current(session, order_id, viewer),
        ) from exc
