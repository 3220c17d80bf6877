"""The in-app inbox, notification preferences, one-click unsubscribe, and the dead-letter tools."""

from __future__ import annotations

import html
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from api.deps import Caller, Session, Support
from api.openapi import errors
from api.trust_schemas import (
    DeadLetterOut,
    InboxOut,
    MarkedOut,
    NotificationOut,
    PreferenceIn,
    PreferencesOut,
    ReplayOut,
    UnsubscribedOut,
)
from bazaar.errors import DomainError, ErrorCode
from bazaar.settings import get_settings
from bazaar.text import single_line
from bazaar.trust import notifications
from bazaar.trust.models import DeadLetter, Notification, NotificationChannel

router = APIRouter(prefix="/v1", tags=["notifications"])
support_router = APIRouter(prefix="/v1/support", tags=["support"])
# Text like any other (a NUL or another control character is a 422 naming it, before the signature is read).
UnsubscribeToken = Annotated[
    str, single_line(max_length=500, strip=False), Query(description="from the link in the email")
]
# Ids are BIGINT: a larger number is a 422, never a database overflow (500).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
RowId = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX)]


@router.get("/notifications", response_model=InboxOut)
async def list_notifications(
    caller: Caller,
    session: Session,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=INT64_MIN, le=INT64_MAX)] = None,
) -> InboxOut:
    """Your inbox, newest first (`unread=true` for unread only), with the unread count; pass `next_cursor` as
    `before` for the next page."""
    items, unread_count = await notifications.inbox(session, caller.user_id, unread, limit, before)
    return InboxOut(
        items=[NotificationOut.of(n) for n in items],
        unread_count=unread_count,
        next_cursor=items[-1].id if len(items) == limit else None,
    )


@router.post("/notifications/{notification_id}/read", response_model=MarkedOut)
async def mark_notification_read(notification_id: RowId, caller: Caller, session: Session) -> MarkedOut:
    """Idempotent: marking an already-read item answers `{"marked": 0}`."""
    marked = await notifications.mark_read(session, caller.user_id, notification_id)
    if marked == 0:
        note = await session.get(Notification, notification_id)
        if note is None or note.recipient_id != caller.user_id or note.channel != NotificationChannel.INBOX:
            raise DomainError(ErrorCode.NOT_FOUND, "notification not found in your inbox")
    return MarkedOut(marked=marked)


@router.post("/notifications/read-all", response_model=MarkedOut)
async def mark_all_notifications_read(caller: Caller, session: Session) -> MarkedOut:
    """Mark every unread item of your inbox read; answers how many were marked."""
    return MarkedOut(marked=await notifications.mark_read(session, caller.user_id, None))


@router.get("/notifications/preferences", response_model=PreferencesOut)
async def get_notification_preferences(caller: Caller, session: Session) -> PreferencesOut:
    """Per event type, per channel (inbox, email): whether it is sent."""
    return PreferencesOut(await notifications.preferences(session, caller.user_id))


@router.put("/notifications/preferences", response_model=PreferencesOut)
async def set_notification_preference(body: PreferenceIn, caller: Caller, session: Session) -> PreferencesOut:
    """Turn one event type on or off on one channel (inbox, email); answers all your preferences."""
    await notifications.set_preference(session, caller.user_id, body.event_type, body.channel, body.enabled)
    return PreferencesOut(await notifications.preferences(session, caller.user_id))


BAD_LINK = errors(ErrorCode.INVALID_SIGNATURE)


@router.post("/notifications/unsubscribe", response_model=UnsubscribedOut, responses=BAD_LINK)
async def unsubscribe(token: UnsubscribeToken, session: Session) -> UnsubscribedOut:
    """One click (RFC 8058: mail clients POST the List-Unsubscribe URL); the signed token says who and what."""
    user_id, event_type, channel = _read(token)
    await notifications.set_preference(session, user_id, event_type, channel, False)
    return UnsubscribedOut(event_type=event_type, channel=channel)


@router.get("/notifications/unsubscribe", response_class=HTMLResponse, responses=BAD_LINK)
async def unsubscribe_page(token: UnsubscribeToken) -> HTMLResponse:
    """The link in the mail body: a page with one button that POSTs the same URL. A GET changes nothing,
    because mail scanners and link previews fetch every link in a message."""
    _, event_type, channel = _read(token)
    what = html.escape(f"{event_type.replace('_', ' ')} ({channel.value})")
    action = html.escape(f"?token={token}", quote=True)
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
        f"<p>Stop sending you these notifications: {what}?</p>"
        f'<form method=post action="{action}"><button type=submit>Unsubscribe</button></form>'
    )


def _read(token: str) -> tuple[uuid.UUID, str, NotificationChannel]:
    return notifications.read_unsubscribe_token(get_settings().link_secret(), token)


@support_router.get("/dead-letters", response_model=list[DeadLetterOut])
async def list_dead_letters(
    staff: Support, session: Session, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[DeadLetterOut]:
    """Support only: notifications that could not be delivered after every attempt, newest first (replay one
    with `POST /v1/support/dead-letters/{id}/replay`)."""
    rows = (
        await session.execute(
            select(DeadLetter, Notification)
            .join(Notification, Notification.id == DeadLetter.notification_id)
            .where(DeadLetter.replayed_at.is_(None), Notification.status != "sent")
            .order_by(DeadLetter.id.desc())
            .limit(limit)
        )
    ).all()
    return [DeadLetterOut.of(d, n) for d, n in rows]


@support_router.post("/dead-letters/{dead_letter_id}/replay", status_code=202, response_model=ReplayOut)
async def replay_dead_letter(dead_letter_id: RowId, staff: Support, session: Session) -> ReplayOut:
    """Send a dead-lettered notification again: it goes back to the outbox (pending, fresh attempts, due now)
    and a worker's sender delivers it. Answers at once with `{"notification_id", "status"}`: `pending`
    (queued; a repeated click changes nothing), or `sent` if it was delivered meanwhile. Audited with the support
    user (`dead_letter.replayed`)."""
    notification_id, status = await notifications.replay_audited(session, dead_letter_id, staff)
    return ReplayOut(notification_id=notification_id, status=status)
