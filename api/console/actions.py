"""The console's actions (POST): each validates its form with the REST route's own body model and calls that
route's handler (so the same workflow Update, domain function and rules run, with the support user as the actor),
then records an audit event with the acting support user and the outcome, and answers with a redirect to the page
(POST-redirect-GET; htmx follows it) carrying a one-line result. Refusals (403/409/422 of the REST route) are shown,
not raised. CSRF: checked for every POST by `api.console.session.console_staff`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from api.console import render
from api.console.session import PREFIX, Staff
from api.deps import Session, Temporal
from api.errors import located
from api.routes.disputes import add_dispute_message, request_dispute_info
from api.routes.notifications import RowId, replay_dead_letter
from api.routes.order_actions import Action, cancel_order, resolve_dispute, retry_order
from api.routes.trust import hide_review
from api.schemas import ActionIn, OrderOut, ResolveIn
from api.trust_schemas import DisputeMessageBody, HideReviewIn, InfoRequestBody
from bazaar.auth import Principal
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import AuditEvent, Order, OrderStatus
from bazaar.payments.money import CURRENCY_EXPONENTS, format_money

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# Console actions are audited under this subject type (an order's own timeline keeps its transitions).
AUDIT_SUBJECT = "console"

# Forms take any text (the body limit bounds it): each action validates it with the REST route's body model, so
# a refusal is shown on the page with the REST route's message, never answered as the API's JSON 422.
Text = Annotated[str, Form()]
# What support types as an amount: ASCII digits, and a decimal part after a point or a comma ("12.50", "12,5") of
# at most the currency's minor digits, so "1,000" is never read as 1.00 EUR (found from outside).
AMOUNT = re.compile(r"(?P<whole>[0-9]{1,12})(?:[.,](?P<minor>[0-9]+))?", re.ASCII)
# How much of each field typed into a form the audit keeps, and of a refusal the page is told.
AUDITED_CHARACTERS = 500
FLASHED_CHARACTERS = 300


def audited_value(value: Any) -> Any:
    """A form field as the audit keeps it: its start, and a NUL (which jsonb cannot hold) as U+FFFD, so that a
    refused input is recorded like any other."""
    return value[:AUDITED_CHARACTERS].replace("\x00", "\ufffd") if isinstance(value, str) else value


def audit(
    db: Session, staff: Principal, action: str, subject: str, outcome: str, data: dict[str, Any]
) -> None:
    db.add(
        AuditEvent(
            actor_id=staff.user_id,
            actor_role="support",
            subject_type=AUDIT_SUBJECT,
            subject_id=subject[:64],
            action=f"console.{action}",
            data={"outcome": outcome, **{name: audited_value(value) for name, value in data.items()}},
        )
    )


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = located(exc.errors()[0])
        field = ".".join(str(p) for p in first["loc"])
        return f"{field}: {first['msg']}" if field else str(first["msg"])
    if isinstance(exc, DomainError):
        return exc.message
    return str(exc)


async def perform(
    db: Session,
    staff: Principal,
    back: str,
    action: str,
    subject: str,
    data: dict[str, Any],
    run: Callable[[], Awaitable[str]],
) -> RedirectResponse:
    """Run one action, audit it (done or refused, with why), and go back to `back` with the result."""
    try:
        done = await run()
    except (DomainError, ValidationError, ValueError) as exc:
        problem = _problem(exc)[:FLASHED_CHARACTERS]  # it travels in the redirect's URL
        code = exc.code.value if isinstance(exc, DomainError) else "validation_error"
        audit(db, staff, action, subject, "refused", {**data, "code": code, "message": problem})
        return RedirectResponse(f"{back}?{urlencode({'error': problem})}", status_code=303)
    audit(db, staff, action, subject, "done", {**data, "result": done})
    return RedirectResponse(f"{back}?{urlencode({'ok': done})}", status_code=303)


def act(order_id: uuid.UUID, staff: Principal, db: Session, temporal: Temporal) -> Action:
    """The REST order actions' Update sender, acting as `staff` (support)."""
    return Action(order_id, staff, db, temporal, Response())


def outcome(order: OrderOut) -> str:
    running = " (still running)" if order.status == "pending" else ""
    return f"order is {order.status}{running}, money {order.payment_state}"


def minor_units(text: str, currency: str) -> int:
    """'15.00' EUR -> 1500: what support types, exactly in the order's minor units."""
    typed = text.strip()
    shown = typed if len(typed) <= 20 else f"{typed[:20]}..."
    digits = CURRENCY_EXPONENTS.get(currency, 2)
    amount = AMOUNT.fullmatch(typed)
    if amount is None:
        raise ValueError(f"refund amount {shown!r} is not an amount such as 12.50")
    minor = amount.group("minor") or ""
    if len(minor) > digits:
        raise ValueError(f"refund amount {shown!r} has more than {digits} decimals, the most {currency} has")
    return int(amount.group("whole") + minor.ljust(digits, "0"))  # "12" + "50": 1250 minor units


def as_typed(refusal: str, currency: str) -> str:
    """A refusal of the REST body's `refund_amount` (in minor units) as support typed it on the page: the field
    `refund`, its amounts in the order's currency (found from outside: "between 1 and 4999" read as 4999.00).
    A refusal about anything else is left as it is (found from outside: a note's "found U+0000 at index 1"
    read "U+0.00 EUR at index 0.01 EUR")."""
    if "refund_amount" not in refusal:
        return refusal
    named = refusal.replace("refund_amount", "refund")
    return re.sub(r"(?<![\w.+-])\d+(?![\w.-])", lambda n: format_money(int(n.group()), currency), named)


def whole_number(text: str, what: str) -> int:
    """A form's number field (forms send text; the API's JSON bodies take numbers only): '48' -> 48."""
    if not text.strip().isdecimal():
        raise ValueError(f"{what} {text!r} is not a whole number")
    return int(text.strip())


# ---- disputes ---------------------------------------------------------------------------------------------


@router.post("/disputes/{order_id}/messages", response_class=RedirectResponse)
async def reply(
    order_id: uuid.UUID, staff: Staff, db: Session, temporal: Temporal, body: Text = ""
) -> RedirectResponse:
    async def run() -> str:
        message = DisputeMessageBody(body=body, kind="message")
        answer = Response()
        await add_dispute_message(order_id, message, staff, db, temporal, answer)
        return (
            "reply added to the thread" if answer.status_code != 202 else "reply being saved: reload shortly"
        )

    back = f"{PREFIX}/disputes/{order_id}"
    return await perform(db, staff, back, "dispute_replied", f"order:{order_id}", {"body": body}, run)


@router.post("/disputes/{order_id}/info-requests", response_class=RedirectResponse)
async def ask_for_information(
    order_id: uuid.UUID,
    staff: Staff,
    db: Session,
    temporal: Temporal,
    party: Text = "",
    question: Text = "",
    deadline_hours: Text = "48",
) -> RedirectResponse:
    data = {"party": party, "question": question, "deadline_hours": deadline_hours}

    async def run() -> str:
        ask = InfoRequestBody.model_validate(
            {"party": party, "question": question, "deadline_hours": whole_number(deadline_hours, "deadline")}
        )
        answer = Response()
        await request_dispute_info(order_id, ask, staff, db, temporal, answer)
        asked = f"asked the {ask.party} (answer within {ask.deadline_hours} h)"
        return asked if answer.status_code != 202 else f"{asked}; being saved: reload shortly"

    back = f"{PREFIX}/disputes/{order_id}"
    return await perform(db, staff, back, "dispute_info_requested", f"order:{order_id}", data, run)


@router.post("/disputes/{order_id}/resolve", response_class=RedirectResponse)
async def resolve(
    order_id: uuid.UUID,
    staff: Staff,
    db: Session,
    temporal: Temporal,
    resolution: Text = "",
    refund: Text = "",
    note: Text = "",
) -> RedirectResponse:
    data = {"resolution": resolution, "refund": refund, "note": note}

    async def run() -> str:
        order = await db.get(Order, order_id)
        if order is None:
            raise DomainError(ErrorCode.NOT_FOUND, "order not found")
        # An amount typed with a release or a full refund is refused (by ResolveIn, as the REST route refuses
        # it), never dropped: support meant something the decision does not do.
        amount = minor_units(refund, order.currency) if refund.strip() else None
        try:
            body = ResolveIn.model_validate(
                {"resolution": resolution, "refund_amount": amount, "note": note or None}
            )
            resolved = await resolve_dispute(act(order_id, staff, db, temporal), staff, body)
        except (DomainError, ValidationError) as refused:
            raise ValueError(as_typed(_problem(refused), order.currency)) from None
        return f"resolved ({body.resolution}): {outcome(resolved)}"

    back = f"{PREFIX}/disputes/{order_id}"
    return await perform(db, staff, back, "dispute_resolved", f"order:{order_id}", data, run)


# ---- orders that need a person ----------------------------------------------------------------------------


@router.post("/orders/{order_id}/retry", response_class=RedirectResponse)
async def retry(order_id: uuid.UUID, staff: Staff, db: Session, temporal: Temporal) -> RedirectResponse:
    async def run() -> str:
        return f"retried: {outcome(await retry_order(act(order_id, staff, db, temporal), staff))}"

    return await perform(db, staff, f"{PREFIX}/stuck-orders", "order_retried", f"order:{order_id}", {}, run)


@router.post("/orders/{order_id}/cancel", response_class=RedirectResponse)
async def cancel(
    order_id: uuid.UUID, staff: Staff, db: Session, temporal: Temporal, reason: Text = ""
) -> RedirectResponse:
    async def run() -> str:
        body = ActionIn.model_validate({"reason": reason or None})
        cancelled = await cancel_order(act(order_id, staff, db, temporal), body)
        if (
            cancelled.status == OrderStatus.PENDING
        ):  # its charge has no outcome yet: cancelled once it has (202)
            return f"cancel under way, once the charge has an outcome: {outcome(cancelled)}"
        return f"cancelled and refunded: {outcome(cancelled)}"

    data = {"reason": reason}
    back = f"{PREFIX}/stuck-orders"
    return await perform(db, staff, back, "order_cancelled", f"order:{order_id}", data, run)


# ---- dead letters -----------------------------------------------------------------------------------------


@router.post("/dead-letters/{dead_letter_id}/replay", response_class=HTMLResponse)
async def replay(request: Request, dead_letter_id: RowId, staff: Staff, db: Session) -> Response:
    """Replay; from the page's htmx button (`?fragment=row`) the answer is the letter's row, replaced in place."""
    result: dict[str, str] = {}

    async def run() -> str:
        # The REST route's handler: the replay is audited there (`dead_letter.replayed`), `perform` adds ours.
        replayed = await replay_dead_letter(dead_letter_id, staff, db)
        result["status"] = replayed.status
        return f"notification {replayed.notification_id} replayed: {replayed.status}"

    back = f"{PREFIX}/dead-letters"
    answer = await perform(db, staff, back, "dead_letter_replayed", f"dead_letter:{dead_letter_id}", {}, run)
    if request.headers.get("HX-Request") and request.query_params.get("fragment") == "row":
        return render(
            request,
            "dead_letter_replayed.html",
            dead_letter_id=dead_letter_id,
            status=result.get("status"),
            error=None if result else "could not replay it (see the audit log)",
        )
    return answer


# ---- trust ------------------------------------------------------------------------------------------------


@router.post("/reviews/{review_id}/hide", response_class=RedirectResponse)
async def hide(review_id: uuid.UUID, staff: Staff, db: Session, reason: Text = "") -> RedirectResponse:
    async def run() -> str:
        body = HideReviewIn.model_validate({"reason": reason})
        hidden = await hide_review(review_id, body, staff, db)
        return f"review {hidden.id} hidden"

    data = {"reason": reason}
    back = f"{PREFIX}/trust-flags"
    return await perform(db, staff, back, "review_hidden", f"review:{review_id}", data, run)
