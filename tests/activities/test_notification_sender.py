"""The notification outbox's sender on real PostgreSQL and the test stack's real SMTP sink.

Each test module gets a database of its own (migrated to head), so no other sender, like the stack's worker,
drains its rows. Senders run in this process, except the one that is killed (a subprocess).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from activities.notifications import Delivery, NotificationActivities, NotificationSender
from bazaar.db import get_engine, get_sessionmaker
from bazaar.errors import DomainError
from bazaar.models import User
from bazaar.settings import Settings, get_settings
from bazaar.trust import notifications
from bazaar.trust.models import DeadLetter, Notification
from devstack.stack import Stack
from tests.support.outbox import Sessions, eventually, make_users

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
T = TypeVar("T")


# ---- helpers (the `outbox_url` and `db` fixtures are in tests/conftest.py) ---------------------------------


def settings_for(url: str, **changes: Any) -> Settings:
    """The test stack's settings (from the environment, not `.env`) on this database."""
    return Settings(_env_file=None).model_copy(update={"database_url": url, **changes})


async def shipped(db: Sessions, recipients: list[User], title: str) -> list[int]:
    """Prepare an `order_shipped` event for `recipients`; returns the pending (email) rows."""
    async with db() as session, session.begin():
        return await notifications.prepare(
            session,
            f"test:outbox:{uuid.uuid4()}",
            "order_shipped",
            [u.id for u in recipients],
            [],
            {"listing_title": title, "tracking": "JD0142"},
            "http://bazaar.test",
        )


async def rows(db: Sessions, ids: list[int]) -> dict[int, Notification]:
    async with db() as session:
        found = await session.scalars(select(Notification).where(Notification.id.in_(ids)))
        return {n.id: n for n in found}


async def all_status(db: Sessions, ids: list[int], status: str) -> bool:
    return all(n.status == status for n in (await rows(db, ids)).values())


def mails(mail_dir: Path, recipients: list[User]) -> Counter[str]:
    """How many messages each Message-ID has in the sink, among those to `recipients`."""
    addresses = {u.email for u in recipients}
    found: Counter[str] = Counter()
    for path in mail_dir.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"] in addresses:
            found[str(message["Message-ID"])] += 1
    return found


def message_ids(ids: list[int]) -> set[str]:
    return {f"<notification-{i}@bazaar.local>" for i in ids}


@contextlib.asynccontextmanager
async def running(*senders: NotificationSender) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in senders]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def legacy_database(url: str) -> AsyncIterator[None]:
    """Point bazaar.db (what the legacy activities use) at `url` for the block."""
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    try:
        yield
    finally:
        await get_engine().dispose()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
        get_settings.cache_clear()
        get_engine.cache_clear()
        get_sessionmaker.cache_clear()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HangingMailServer:
    """Accepts connections and never says a word (a mail server that hangs)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.port = int(self.server.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            with contextlib.suppress(TimeoutError):
                self.accepted.append(self.server.accept()[0])

    def close(self) -> None:
        self.closing.set()
        self.thread.join()
        for conn in [*self.accepted, self.server]:
            conn.close()


# ---- tests -----------------------------------------------------------------------------------------------


def test_retries_wait_the_first_delay_then_double_up_to_an_hour() -> None:
    delivery = Delivery(Settings(_env_file=None, notification_first_retry_seconds=1.5))
    assert [delivery.retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [1.5, 3.0, 6.0, 12.0]
    assert delivery.retry_delay(30).total_seconds() == 3600.0
    assert delivery.retry_delay(10_000).total_seconds() == 3600.0


async def test_two_senders_and_a_legacy_workflow_send_each_email_once(
    db: Sessions, outbox_url: str, infra: Stack
) -> None:
    people = await make_users(db, 12, "Twice")
    ids = await shipped(db, people, "Twice told lamp")
    assert len(ids) == 12  # one email each; the inbox rows are stored delivered
    legacy = NotificationActivities(settings_for(outbox_url))
    async with (
        legacy_database(outbox_url),
        running(
            NotificationSender(settings_for(outbox_url), concurrency=3, poll_seconds=0.05),
            NotificationSender(settings_for(outbox_url), concurrency=3, poll_seconds=0.05),
        ),
    ):
        # NotificationWorkflows started before the outbox still deliver their rows: here, the same rows.
        outcomes = await asyncio.gather(*(legacy.deliver_notification(i) for i in ids))
        await eventually(lambda: all_status(db, ids, "sent"))
    assert set(outcomes) <= {"sent", "pending"}  # pending: a sender held it at that moment, and sent it
    assert mails(infra.mail_dir, people) == Counter(dict.fromkeys(message_ids(ids), 1))
    assert all(n.attempts == 0 and n.sent_at is not None for n in (await rows(db, ids)).values())


async def test_a_refused_mail_server_is_retried_with_backoff_then_dead_lettered(
    db: Sessions, outbox_url: str, infra: Stack
) -> None:
    [person] = await make_users(db, 1, "Refused")
    [email_id] = await shipped(db, [person], "Refused lamp")
    refused = settings_for(
        outbox_url, smtp_port=closed_port(), notification_first_retry_seconds=0.3, notification_max_attempts=3
    )
    started = time.monotonic()
    async with running(NotificationSender(refused, poll_seconds=0.02)):
        await eventually(lambda: all_status(db, [email_id], "dead"))
    elapsed = time.monotonic() - started
    assert 0.3 + 0.6 <= elapsed < 10, "two waits between three attempts: 0.3 s, then doubled"
    [row] = (await rows(db, [email_id])).values()
    assert (row.status, row.attempts) == ("dead", 3)
    assert row.last_error is not None and "ConnectionRefusedError" in row.last_error
    async with db() as session:
        dead_letter = await session.scalar(select(DeadLetter).where(DeadLetter.notification_id == email_id))
    assert dead_letter is not None and dead_letter.replayed_at is None
    assert "ConnectionRefusedError" in dead_letter.error
    assert mails(infra.mail_dir, [person]) == Counter()


async def test_a_replayed_dead_letter_goes_back_to_the_outbox_and_is_delivered(
    db: Sessions, outbox_url: str, infra: Stack
) -> None:
    [person] = await make_users(db, 1, "Replayed")
    [email_id] = await shipped(db, [person], "Replayed lamp")
    refused = settings_for(outbox_url, smtp_port=closed_port(), notification_max_attempts=1)
    async with running(NotificationSender(refused, poll_seconds=0.02)):
        await eventually(lambda: all_status(db, [email_id], "dead"))
    async with db() as session:
        dead_id = await session.scalar(select(DeadLetter.id).where(DeadLetter.notification_id == email_id))
    assert dead_id is not None

    # A sender that would not poll for half a minute: only the replay's NOTIFY can wake it in time.
    async with running(NotificationSender(settings_for(outbox_url), poll_seconds=30)):
        await asyncio.sleep(0.5)  # its LISTEN is in place
        async with db() as session, session.begin():
            assert await notifications.replay(session, dead_id) == (email_id, "pending")
        await eventually(lambda: all_status(db, [email_id], "sent"), within=10)
    [row] = (await rows(db, [email_id])).values()
    assert (row.attempts, row.last_error) == (0, None)
    async with db() as session:
        dead_letter = await session.get(DeadLetter, dead_id)
    assert dead_letter is not None and dead_letter.replayed_at is not None
    assert mails(infra.mail_dir, [person]) == Counter(dict.fromkeys(message_ids([email_id]), 1))

    # Replaying again (a second click) never sends it twice; an unknown dead letter is not found.
    async with db() as session, session.begin():
        assert await notifications.replay(session, dead_id) == (email_id, "sent")
        with pytest.raises(DomainError):
            await notifications.replay(session, 2**62)


async def test_a_hanging_mail_server_is_cut_off_without_blocking_the_event_loop(outbox_url: str) -> None:
    hanging = HangingMailServer()
    try:
        delivery = Delivery(settings_for(outbox_url, smtp_port=hanging.port), send_timeout_seconds=0.5)
        message = EmailMessage()
        message["To"] = "nobody@example.com"
        message.set_content("hello")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"longer than 0\.5s"):
            await delivery.send(message)
        elapsed = time.monotonic() - started
        ticker.cancel()
        assert 0.5 <= elapsed < 3.0  # cut at the deadline, not after the 10 s socket timeout
        assert ticks >= 20  # the loop kept running while the thread waited for the server
    finally:
        hanging.close()


async def test_a_sender_killed_mid_send_loses_no_row(db: Sessions, outbox_url: str, infra: Stack) -> None:
    people = await make_users(db, 3, "Killed")
    ids = await shipped(db, people, "Killed lamp")
    hanging = HangingMailServer()
    code = (
        "import asyncio\n"
        "from activities.notifications import NotificationSender\n"
        "from bazaar.settings import Settings\n"
        "stop = asyncio.Event()\n"
        "asyncio.run(NotificationSender(Settings(_env_file=None), concurrency=2, poll_seconds=0.05).run(stop))\n"
    )
    env = {**os.environ, "DATABASE_URL": outbox_url, "SMTP_PORT": str(hanging.port)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=ROOT, env=env)
    try:
        # Two rows claimed, both sends stuck on the hanging server: the batch is under way.
        async def stuck() -> bool:
            assert proc.returncode is None, "the sender process ended"
            return len(hanging.accepted) == 2

        await eventually(stuck, within=30)
        async with db() as session, session.begin():
            free = await session.scalars(
                select(Notification.id).where(Notification.id.in_(ids)).with_for_update(skip_locked=True)
            )
            assert len(free.all()) == 1  # the other two are locked by the sending process
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        hanging.close()

    # Nothing was lost or counted: the rows are pending and due; the next sender delivers each once.
    assert {(n.status, n.attempts) for n in (await rows(db, ids)).values()} == {("pending", 0)}
    async with running(NotificationSender(settings_for(outbox_url), poll_seconds=0.05)):
        await eventually(lambda: all_status(db, ids, "sent"))
    assert mails(infra.mail_dir, people) == Counter(dict.fromkeys(message_ids(ids), 1))
