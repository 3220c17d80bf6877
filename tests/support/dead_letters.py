"""Dead letters on the test stack: emails whose only allowed attempt failed against a closed SMTP port."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.notifications import Delivery
from bazaar.accounts import mail
from bazaar.db import get_engine, get_sessionmaker, transaction
from bazaar.models import User
from bazaar.settings import Settings, get_settings
from bazaar.trust import notifications
from bazaar.trust.models import Notification
from tests.support.http import Actor


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def dead_letter(recipient: Actor, event_key: str, data: dict[str, str]) -> int:
    """An `order_shipped` email to `recipient` whose only allowed attempt failed (the mail server refused the
    connection). Made in this process on the stack's database, in one transaction, so the stack's own sender
    never sees it pending. Returns the notification id."""

    async def queue(session: AsyncSession, settings: Settings) -> int:
        ids = await notifications.prepare(
            session,
            event_key,
            "order_shipped",
            [uuid.UUID(recipient.user_id)],
            [],
            data,
            settings.public_base_url,
        )
        assert len(ids) == 1  # the email; the inbox row is stored delivered
        return ids[0]

    return await _dead(queue)


async def dead_account_mail(recipient: Actor) -> int:
    """A password-reset mail to `recipient` (an account mail, never in an inbox) dead-lettered the same way."""

    async def queue(session: AsyncSession, settings: Settings) -> int:
        user = await session.get(User, uuid.UUID(recipient.user_id))
        assert user is not None
        await mail.send(
            session, user, "password_reset", {"token": "t", "link": "l", "minutes": "30", "api": ""}
        )
        note_id = await session.scalar(
            select(Notification.id)
            .where(Notification.recipient_id == user.id, Notification.event_type == "account_password_reset")
            .order_by(Notification.id.desc())
        )
        assert note_id is not None
        return int(note_id)

    return await _dead(queue)


async def _dead(queue: Callable[[AsyncSession, Settings], Awaitable[int]]) -> int:
    """Queue one email with `queue` and make its only allowed attempt against a closed port, in one transaction."""
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    try:
        settings = get_settings()
        broken = Delivery(
            settings.model_copy(update={"smtp_port": closed_port(), "notification_max_attempts": 1})
        )
        async with transaction() as session:
            note_id = await queue(session, settings)
            note = await session.scalar(
                select(Notification).where(Notification.id == note_id).with_for_update()
            )
            assert note is not None
            outcome = await broken.attempt(session, note)  # connection refused: the mail server is down
            assert outcome.status == "dead", outcome
        return note_id
    finally:
        await get_engine().dispose()
        get_engine.cache_clear()
        get_sessionmaker.cache_clear()
