"""A dead letter on the test stack: an email whose only allowed attempt failed against a closed SMTP port."""

from __future__ import annotations

import socket
import uuid

from sqlalchemy import select

from activities.notifications import Delivery
from bazaar.db import get_engine, get_sessionmaker, transaction
from bazaar.settings import get_settings
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
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    try:
        settings = get_settings()
        broken = Delivery(
            settings.model_copy(update={"smtp_port": closed_port(), "notification_max_attempts": 1})
        )
        async with transaction() as session:
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
            note = await session.scalar(
                select(Notification).where(Notification.id == ids[0]).with_for_update()
            )
            assert note is not None
            outcome = await broken.attempt(session, note)  # connection refused: the mail server is down
            assert outcome.status == "dead", outcome
        return ids[0]
    finally:
        await get_engine().dispose()
        get_engine.cache_clear()
        get_sessionmaker.cache_clear()
