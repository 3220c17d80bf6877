"""Stripe webhooks: verify the signature on the raw body, process each event id once, feed the order workflow.

A webhook never creates an order and never calls the provider: it finds the existing order (PaymentIntent
`metadata.order_id` or `transfer_group` `order-<id>`; a dispute through our record of its PaymentIntent) and
signals that order's workflow, the same workflow the API's actions go to. The workflow decides what the
event means (a payment report is only recorded and compared; a chargeback freezes the order), and handles a
repeated signal as a no-op, so at-least-once delivery is safe. A dispute on a checkout's one charge goes to
each of its orders with that order's share (in proportion to what it still holds), so each is frozen, booked and
decided as an order's own chargeback. A chargeback on an ended order that was charged (completed, or cancelled
or refunded after payment), whose workflow has usually ended, reopens it: signal-with-start of a new run of the
same workflow id that loads the order from the database (it never charges); the provider took the money
whatever the order's state, so the order books it and support gets the case.

An `account.updated` (a seller's payout account at the provider) goes to the account's stored status instead
(bazaar/payments/onboarding.py: no workflow, a report older than the stored one changes nothing).

The event id is stored in the same transaction as the signal is sent: if Temporal cannot be reached we
answer 503 and roll back, and the provider delivers the event again later. A signed event we cannot read (no
id or type, `data.object` not an object, a NUL or a number JSON cannot hold (NaN, Infinity, 1e999) anywhere)
is a 400 `invalid_event`: nothing is stored.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import replace
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, Header, Request
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.deps import Session, Temporal
from api.errors import workflow_gone
from api.openapi import SCHEMAS, errors
from api.webhook_schemas import StripeEventIn, WebhookOut
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Order, Payment, PaymentKind, PaymentOutcome, PaymentState, StripeEvent
from bazaar.orders.reopen import reopened_order
from bazaar.orders.types import PAYMENT_STATE, SELLER_ID, TERMINAL, ChargebackNotice, PaymentReport
from bazaar.payments import ledger, onboarding
from bazaar.payments.money import shares_of
from bazaar.payments.provider import order_id_of
from bazaar.settings import get_settings
from bazaar.temporal import order_workflow_id
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger("api.webhooks")

PAYMENT_EVENTS = {"payment_intent.succeeded": "succeeded", "payment_intent.payment_failed": "failed"}
DISPUTE_PREFIX = "charge.dispute."


@router.post(
    "/stripe",
    response_model=WebhookOut,
    response_model_exclude_none=True,
    responses=errors(ErrorCode.INVALID_SIGNATURE, ErrorCode.INVALID_EVENT),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "a provider event, as signed (read as raw bytes: the signature covers them)",
            # its models go to components (api.openapi hoists `$defs`): a `#/$defs/...` ref inside the
            # document would point at its root, where generated clients find nothing
            "content": {
                "application/json": {
                    "schema": StripeEventIn.model_json_schema(ref_template=SCHEMAS + "{model}")
                }
            },
        }
    },
)
async def stripe_webhook(
    request: Request,
    session: Session,
    temporal: Temporal,
    stripe_signature: Annotated[str | None, Header(description="t=<unix time>,v1=<HMAC-SHA256>")] = None,
) -> WebhookOut:
    """Who may call: whoever holds the webhook secret (the signature is the authentication)."""
    payload = await request.body()
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8", "replace"),
            stripe_signature or "",
            get_settings().require("stripe_webhook_secret"),
            stripe.Webhook.DEFAULT_TOLERANCE,
        )
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise DomainError(ErrorCode.INVALID_SIGNATURE, "invalid Stripe-Signature") from exc
    event, body = _read_event(payload)
    inserted = await session.execute(
        insert(StripeEvent)
        .values(id=event.id, type=event.type, payload=body)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(StripeEvent.id)
    )
    if inserted.first() is None:
        return WebhookOut(duplicate=True)
    obj: dict[str, Any] = body["data"]["object"]
    if event.type == onboarding.ACCOUNT_UPDATED:
        created = body.get("created")
        if not isinstance(created, int) or isinstance(created, bool):
            raise DomainError(ErrorCode.INVALID_EVENT, "an account.updated event needs its created time")
        account = await onboarding.record_report(session, obj, created)
        if account is not None and account.payouts_enabled:
            await session.commit()  # the held payouts read the account: commit before waking them
            await _release_held_payouts(temporal, account.user_id)
        return WebhookOut(handled=account is not None)
    if event.type in PAYMENT_EVENTS:
        order = await _order_of_intent(session, obj)
        if order is None:
            # Not one of our orders (or not known yet): the event stays stored, reconciliation reports it.
            log.warning("webhook %s %s: no matching order", event.id, event.type)
            return WebhookOut(handled=False)
        if await _charge_recorded(session, order, obj, PAYMENT_EVENTS[event.type]):
            # Our charge activity stored this outcome already: the workflow knows; no signal, no task.
            return WebhookOut(handled=True, order_id=order.id)
        report = PaymentReport(
            event_id=event.id,
            payment_intent_id=str(obj.get("id")),
            status=PAYMENT_EVENTS[event.type],
            amount=_amount(obj),
            currency=str(obj.get("currency") or "").upper(),
        )
        told = await _tell(temporal, event, order, OrderWorkflow.payment_reported, report)
        return WebhookOut(handled=told, order_id=order.id)
    if event.type.startswith(DISPUTE_PREFIX):
        notice = ChargebackNotice(
            dispute_id=str(obj.get("id")),
            status=str(obj.get("status")),
            amount=_amount(obj),
            currency=str(obj.get("currency") or "").upper(),
            reason=str(obj["reason"]) if obj.get("reason") is not None else None,
        )
        shares = await _dispute_shares(session, obj, notice.amount)
        if not shares:
            log.warning("webhook %s %s: no matching order", event.id, event.type)
            return WebhookOut(handled=False)
        told_any = False
        for order, share in shares:  # each order of a checkout's charge bears its share
            told_any |= await _tell(
                temporal, event, order, OrderWorkflow.chargeback, replace(notice, amount=share)
            )
        return WebhookOut(handled=told_any, order_id=shares[0][0].id if len(shares) == 1 else None)
    return WebhookOut(handled=False)


async def _tell(temporal: Temporal, event: StripeEventIn, order: Order, signal: Any, argument: Any) -> bool:
    """Signal the order's workflow (a chargeback on an ended order reopens it: a dispute names a charge, so the
    order was charged); False if it has ended."""
    try:
        if isinstance(argument, ChargebackNotice) and order.status in TERMINAL:
            await _reopen_with_chargeback(temporal, order, argument)
        else:
            await temporal.get_workflow_handle(order.workflow_id).signal(signal, argument)
    except RPCError as exc:
        if not workflow_gone(exc):
            raise  # Temporal unreachable: 503 (api.errors); the provider delivers the event again
        # The order's workflow has ended (e.g. a cancelled order): nothing left to tell it.
        log.warning("webhook %s %s: order %s is closed", event.id, event.type, order.id)
        return False
    return True


def _read_event(payload: bytes) -> tuple[StripeEventIn, dict[str, Any]]:
    """The signed event, checked for what we read of it and what PostgreSQL can store (`_unstorable`)."""
    try:
        event = StripeEventIn.model_validate_json(payload)
    except ValidationError as exc:
        problems = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise DomainError(
            ErrorCode.INVALID_EVENT, "the event needs an id, a type and a data object", {"errors": problems}
        ) from exc
    body: dict[str, Any] = json.loads(payload)
    if (problem := _unstorable(body)) is not None:
        raise DomainError(ErrorCode.INVALID_EVENT, f"the event contains {problem}")
    return event, body


def _unstorable(value: Any) -> str | None:
    """What JSONB cannot store, anywhere in the event: a NUL in a string, or a number that is not finite (Python's
    json reads `NaN`, `Infinity` and an overflowing `1e999` as floats PostgreSQL refuses: that was a 500)."""
    if isinstance(value, str):
        return "a NUL character" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number that is not finite"
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        return next((problem for v in value if (problem := _unstorable(v)) is not None), None)
    return None


def _amount(obj: dict[str, Any]) -> int:
    """The object's amount in minor units; 0 when it has none we can read."""
    amount = obj.get("amount")
    return amount if isinstance(amount, int) and not isinstance(amount, bool) else 0


async def _release_held_payouts(temporal: Temporal, seller_id: uuid.UUID) -> None:
    """Wake the seller's orders whose payout is on hold (found in Temporal's visibility; one missed here is
    re-checked by its order within a day)."""
    held = (
        f"{SELLER_ID.name} = '{seller_id}' AND {PAYMENT_STATE.name} = '{PaymentState.PAYOUT_ON_HOLD}' "
        "AND ExecutionStatus = 'Running'"
    )
    async for execution in temporal.list_workflows(held):
        try:
            await temporal.get_workflow_handle(execution.id).signal(OrderWorkflow.payouts_enabled)
        except RPCError:
            log.warning("could not wake the held payout of %s", execution.id, exc_info=True)


async def _reopen_with_chargeback(temporal: Temporal, order: Order, notice: ChargebackNotice) -> None:
    """Signal the order's workflow, starting a reopened run if it has ended (signal-with-start is atomic: a
    running workflow just gets the signal, so concurrent deliveries never start two runs; a late repeat
    starts a run that finds the dispute already booked and ends)."""
    await temporal.start_workflow(
        OrderWorkflow.run,
        reopened_order(order),
        id=order.workflow_id,
        task_queue=get_settings().temporal_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="chargeback",
        start_signal_args=[notice],
    )


async def _order_of_intent(session: Session, intent: dict[str, Any]) -> Order | None:
    try:
        order_id = uuid.UUID(str(order_id_of(intent)))
    except ValueError:
        return None
    order = await session.get(Order, order_id)
    # Both must agree: metadata alone is free text anyone with the key can set on any PaymentIntent.
    group = str(intent.get("transfer_group") or "")
    if order is None or (group and group != order_workflow_id(str(order.id))):
        return None
    return order


async def _charge_recorded(session: Session, order: Order, intent: dict[str, Any], status: str) -> bool:
    """Whether this PaymentIntent is our own charge of this order and its outcome is, or will be, stored by the
    charge activity (it names its idempotency key in `metadata.charge_key`, so this holds even while the call
    is still in flight). Only a PaymentIntent we did not make, or an outcome that contradicts ours, needs the
    workflow's attention."""
    charge_key = (intent.get("metadata") or {}).get("charge_key")
    ours = await session.scalar(
        select(Payment).where(
            Payment.order_id == order.id,
            Payment.kind == PaymentKind.CHARGE,
            or_(Payment.provider_id == str(intent.get("id")), Payment.idempotency_key == str(charge_key)),
        )
    )
    if ours is None or (ours.provider_id is not None and ours.provider_id != str(intent.get("id"))):
        return False  # not ours, or a second PaymentIntent carrying our key: the workflow flags it
    reported = PaymentOutcome.SUCCEEDED if status == "succeeded" else PaymentOutcome.FAILED
    return ours.outcome in (PaymentOutcome.PENDING, reported)


async def _dispute_shares(session: Session, dispute: dict[str, Any], amount: int) -> list[tuple[Order, int]]:
    """The orders a dispute takes money from, with each one's share of `amount`. A dispute names the
    PaymentIntent; our charge record of it names the order, or the checkout whose one charge paid its orders:
    then each order bears the part in proportion to what it still holds (its amount less its refunds), so the
    shares sum to the dispute's amount and every order is frozen, booked and decided like an order of its own."""
    intent = dispute.get("payment_intent")
    if not intent:
        return []
    charge = await session.scalar(
        select(Payment).where(Payment.kind == PaymentKind.CHARGE, Payment.provider_id == str(intent))
    )
    if charge is None:
        return []
    if charge.order_id is not None:
        order = await session.get(Order, charge.order_id)
        return [] if order is None else [(order, amount)]
    orders = list(
        (
            await session.scalars(
                select(Order).where(Order.checkout_id == charge.checkout_id).order_by(Order.id)
            )
        ).all()
    )
    refunded = await ledger.refunded_by_order(session, [o.id for o in orders])
    held = shares_of(amount, [o.amount - refunded.get(o.id, 0) for o in orders])
    return [(order, share) for order, share in zip(orders, held, strict=True) if share > 0]
