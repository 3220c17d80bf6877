from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.errors import DomainError
from bazaar.pg_listen import libpq_url
from bazaar.trust.models import Notification, NotificationChannel
from bazaar.trust.notifications import (
    EVENT_TYPES,
    OUTBOX_CHANNEL,
    prepare,
    read_unsubscribe_token,
    render,
    set_preference,
    unsubscribe_token,
)
from tests.support.outbox import make_users

# The `outbox_url` and `db` fixtures (tests/conftest.py): a migrated database of this module's own, and
# sessions on it.

FULL = {
    k: f"<{k}>"
    for k in (
        "recipient_name",
        "buyer_name",
        "listing_title",
        "amount",
        "deadline",
        "order_url",
        "reason",
        "tracking",
        "payout",
        "refunded",
        "message",
        "resolution",
        "opened_at",
        "order_id",
        "step",
        "error",
    )
}


def test_catalogue_covers_the_issue() -> None:
    assert EVENT_TYPES >= {
        "order_paid",
        "order_accepted",
        "order_declined",
        "order_shipped",
        "order_completed",
        "review_invitation",
        "dispute_opened",
        "dispute_updated",
        "dispute_resolved",
        "acceptance_deadline_approaching",
    }


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_template_renders_completely(event_type: str) -> None:
    subject, body = render(event_type, FULL)
    assert subject and "\n" not in subject
    assert "$" not in subject + body, f"unfilled placeholder in {event_type}"
    assert "<recipient_name>" in body


def test_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError):
        render("nope", {})


def test_unsubscribe_token_round_trip_and_tamper() -> None:
    user = uuid.uuid4()
    token = unsubscribe_token("s3cret", user, "order_paid", NotificationChannel.EMAIL)
    assert read_unsubscribe_token("s3cret", token) == (user, "order_paid", NotificationChannel.EMAIL)
    with pytest.raises(DomainError):
        read_unsubscribe_token("other-secret", token)
    signature = token.split(".")[1]
    forged = unsubscribe_token("s3cret", uuid.uuid4(), "order_paid", NotificationChannel.EMAIL).split(".")[0]
    with pytest.raises(DomainError):
        read_unsubscribe_token("s3cret", f"{forged}.{signature}")
    with pytest.raises(DomainError):
        read_unsubscribe_token("s3cret", "garbage")
    # One link, one spelling: junk that base64 decoding would forgive is refused, wherever it is put.
    payload, signed = token.split(".")
    for malleated in (f"{token}x", f"{token}!!!!", f"{payload}=.{signed}", f"{payload}.{signed}=="):
        with pytest.raises(DomainError):
            read_unsubscribe_token("s3cret", malleated)


# ---- the outbox: what `prepare` writes, in the caller's transaction (real PostgreSQL) -------------------


async def _woken(conn: psycopg.AsyncConnection[Any], seconds: float) -> list[str]:
    """The channels of the NOTIFYs `conn` receives within `seconds`."""
    return [n.channel async for n in conn.notifies(timeout=seconds)]


@pytest.mark.integration
async def test_prepare_stores_inbox_rows_delivered_and_queues_email_waking_the_senders(
    db: async_sessionmaker[AsyncSession], outbox_url: str
) -> None:
    seller, buyer = await make_users(db, 2, "Prepared")
    async with db() as session, session.begin():  # the buyer wants no email about shipments
        await set_preference(session, buyer.id, "order_shipped", NotificationChannel.EMAIL, False)
    key = f"test:prepare:{uuid.uuid4()}"

    async def prepare_event(session: AsyncSession) -> list[int]:
        return await prepare(
            session, key, "order_shipped", [seller.id, buyer.id], [], {"listing_title": "Lamp"}, "http://x"
        )

    async with await psycopg.AsyncConnection.connect(libpq_url(outbox_url), autocommit=True) as listener:
        await listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        async with db() as session, session.begin():
            pending = await prepare_event(session)
            assert await _woken(listener, 0.3) == []  # not before the rows are committed
        assert await _woken(listener, 5.0) == [OUTBOX_CHANNEL]

        async with db() as session:
            found = {
                (n.recipient_id, n.channel): n
                for n in await session.scalars(select(Notification).where(Notification.event_key == key))
            }
            due = set(
                await session.scalars(
                    select(Notification.id).where(
                        Notification.event_key == key, Notification.next_attempt_at <= func.now()
                    )
                )
            )
        assert set(found) == {
            (seller.id, NotificationChannel.INBOX),
            (seller.id, NotificationChannel.EMAIL),
            (buyer.id, NotificationChannel.INBOX),
        }
        for (_, channel), note in found.items():
            if channel == NotificationChannel.INBOX:  # an inbox delivery is the stored row
                assert (note.status, note.attempts) == ("sent", 0) and note.sent_at is not None
            else:
                assert (note.status, note.attempts, note.sent_at) == ("pending", 0, None)
                assert note.id in due
        assert pending == [found[seller.id, NotificationChannel.EMAIL].id]

        # The same event again (a retried activity): no second row of any kind, the same answer.
        async with db() as session, session.begin():
            assert await prepare_event(session) == pending
            count = await session.scalar(
                select(func.count()).select_from(Notification).where(Notification.event_key == key)
            )
        assert count == 3
        await _woken(listener, 1.0)  # that commit's wake-up

        # A transaction that rolls back wakes nobody.
        async with db() as session:
            await prepare(session, f"{key}:rolled-back", "order_shipped", [seller.id], [], {}, "http://x")
            await session.rollback()
        assert await _woken(listener, 0.5) == []


def test_an_order_link_goes_to_the_apps_page_when_one_is_set() -> None:
    """Found from outside: the "Order:" link of every mail was the API's URL, which answers 401 in a mail client.
    `ORDER_LINK_TEMPLATE` names the marketplace app's page of an order; without it the API's URL stays."""
    from bazaar.settings import Settings
    from bazaar.trust.notifications import _with_links

    order = {"order_id": "0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10"}
    app = _with_links(order, "https://api.example.com", "https://shop.example.com/orders/{order_id}")
    assert app["order_url"] == "https://shop.example.com/orders/0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10"
    api = _with_links(order, "https://api.example.com")
    assert api["order_url"] == "https://api.example.com/v1/orders/0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10"
    with pytest.raises(ValueError, match="order_id"):
        Settings(_env_file=None, order_link_template="https://shop.example.com/orders")
