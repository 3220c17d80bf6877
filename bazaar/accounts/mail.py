"""Account emails (verification, password reset, a registration attempt on an existing address), written to the
notification outbox in the caller's transaction and mailed by the notification sender like every notification.

Email only, never an inbox copy: a verification link in the inbox would let whoever has the password verify an
address they cannot read. Not subject to notification preferences either (they are not notifications one opts
out of); how many go to one account is capped by `RATE_LIMIT_ACCOUNT_MAIL` (the callers ask `may_mail`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.models import User
from bazaar.telemetry import traceparent
from bazaar.trust import notifications
from bazaar.trust.models import Notification, NotificationChannel

TEMPLATES = Path(__file__).resolve().parent / "templates"
KINDS = frozenset(p.stem for p in TEMPLATES.glob("*.txt"))
EVENT_PREFIX = "account_"  # the outbox rows' event_type: account_verify_email, ...
EVENT_TYPES = frozenset(f"{EVENT_PREFIX}{kind}" for kind in KINDS)

# Asked before each account mail to a user: False when that user got too many lately (the rate limit).
MayMail = Callable[[uuid.UUID], Awaitable[bool]]


def render(kind: str, data: dict[str, str]) -> tuple[str, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown account mail {kind!r}")
    return notifications.render_file(TEMPLATES / f"{kind}.txt", data)


async def send(session: AsyncSession, user: User, kind: str, data: dict[str, str]) -> None:
    """Queue the mail `kind` to `user` (pending, due now) and wake the senders on commit."""
    subject, body = render(kind, {**data, "recipient_name": user.display_name})
    session.add(
        Notification(
            event_key=f"account:{kind}:{uuid.uuid4()}",
            event_type=f"{EVENT_PREFIX}{kind}",
            recipient_id=user.id,
            channel=NotificationChannel.EMAIL,
            subject=subject,
            body=body,
            data={},  # never the token: rows are listed to support (dead letters)
            status="pending",
            attempts=0,
            trace_context=traceparent(),  # the sender continues the request's trace (bazaar/telemetry.py)
        )
    )
    await session.flush()
    await notifications.wake_sender(session)
