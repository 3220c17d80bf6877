"""The notification outbox's tests (tests/activities/test_notification_sender.py and
tests/bazaar/trust/test_notifications.py) work on a migrated database of their own (the `outbox_url` and `db`
fixtures, tests/conftest.py): users made straight in it."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.models import User

Sessions = async_sessionmaker[AsyncSession]


async def make_users(db: Sessions, count: int, name: str = "Outbox") -> list[User]:
    made = [
        User(
            email=f"{name.lower()}-{uuid.uuid4().hex[:10]}@example.com",
            password_hash="-",
            display_name=name,
            roles=["buyer"],
        )
        for _ in range(count)
    ]
    async with db() as session, session.begin():
        session.add_all(made)
    return made
