"""Webhook delivery on real PostgreSQL (a database of this module's own, so the stack's sender never drains it)
and a local receiver that verifies signatures with the Standard Webhooks reference verifier. Senders run in
this process with a retry schedule of fractions of a second."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select, update

from activities.notifications import WebhookSender
from bazaar.integrations import delivery, endpoints, events
from bazaar.integrations.events import EventType
from bazaar.integrations.models import WebhookDelivery, WebhookEndpoint
from bazaar.integrations.scope import Scope
from bazaar.models import User
from bazaar.settings import Settings
from bazaar.trust.models import Notification
from tests.bazaar.integrations.receiver import Receiver, receiving
from tests.support.outbox import Sessions, eventually, make_users

pytestmark = pytest.mark.integration
T = TypeVar("T")
SCHEDULE = "0.2,0.2,0.4"  # three retries: four attempts in about a second


def settings_for(url: str, **changes: Any) -> Settings:
    values = {"database_url": url, "webhook_retry_schedule": SCHEDULE, "webhook_timeout_seconds": 3.0}
    return Settings(_env_file=None).model_copy(update={**values, **changes})


@pytest.fixture
def receiver() -> Any:
    with receiving() as found:
        yield found


@contextlib.asynccontextmanager
async def sending(url: str, **changes: Any) -> AsyncIterator[WebhookSender]:
    sender = WebhookSender(settings_for(url, **changes), concurrency=2, poll_seconds=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        yield sender
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def change_user(db: Sessions, user_id: uuid.UUID, **values: Any) -> None:
    async with db() as session, session.begin():
        found = await session.get(User, user_id)
        assert found is not None
        for name, value in values.items():
            setattr(found, name, value)


async def seller(db: Sessions) -> User:
    [user] = await make_users(db, 1, "Seller")
    await change_user(db, user.id, roles=["seller"])
    return user


async def endpoint(db: Sessions, owner: uuid.UUID | None, url: str, types: list[str]) -> WebhookEndpoint:
    """A seller's endpoint (`owner`), or the platform's, made by a new support user."""
    user = owner
    if user is None:
        user = (await make_users(db, 1, "Support"))[0].id
        await change_user(db, user, roles=["support"])
    async with db() as session, session.begin():
        return await endpoints.create(session, Scope(owner, user), url, types, "test", True)


async def emit(db: Sessions, event_type: EventType, seller_id: uuid.UUID | None, **data: Any) -> None:
    async with db() as session, session.begin():
        await events.record(session, event_type, seller_id, {"object": event_type.split(".")[0], **data})


async def deliveries_of(db: Sessions, endpoint_id: uuid.UUID) -> list[delivery.Viewed]:
    async with db() as session:
        page, _ = await delivery.deliveries(session, endpoint_id, None, 100, None)
        return page


async def test_a_sellers_events_arrive_signed_and_only_theirs(
    db: Sessions, outbox_url: str, receiver: Receiver
) -> None:
    mine, other = await seller(db), await seller(db)
    hook = await endpoint(db, mine.id, receiver.url("/mine"), ["order.*"])
    platform = await endpoint(db, None, receiver.url("/all"), ["order.paid", "listing.*"])
    async with sending(outbox_url):
        await emit(db, EventType.ORDER_PAID, mine.id, id="o1")
        await emit(db, EventType.ORDER_PAID, other.id, id="o2")
        await emit(db, EventType.LISTING_CREATED, mine.id, id="l1")
        await emit(db, EventType.PAYOUT_SENT, mine.id, order_id="o1")
        await receiver.until(lambda: len(receiver.at("/mine")) >= 1 and len(receiver.at("/all")) >= 3)
        await asyncio.sleep(0.3)  # nothing else comes
    [got] = receiver.at("/mine")
    assert got.verifies(hook.secret)
    assert not got.verifies(platform.secret)
    assert got.event["type"] == "order.paid" and got.event["data"]["id"] == "o1"
    assert got.headers["webhook-id"] == f"evt_{got.event['id']}"
    assert got.headers["content-type"] == "application/json"
    assert sorted(r.event["data"]["id"] for r in receiver.at("/all")) == ["l1", "o1", "o2"]
    assert all(r.verifies(platform.secret) for r in receiver.at("/all"))


async def test_retried_after_failures_then_delivered_with_every_attempt_logged(
    db: Sessions, outbox_url: str, receiver: Receiver
) -> None:
    owner = await seller(db)
    hook = await endpoint(db, owner.id, receiver.url("/flaky"), ["dispute.*"])
    receiver.answer("/flaky", 500, 500)
    async with sending(outbox_url):
        await emit(db, EventType.DISPUTE_OPENED, owner.id, id="d1")
        await receiver.until(lambda: len(receiver.at("/flaky")) == 3)
        [(_, event_type, attempts)] = await eventually(
            lambda: _when(deliveries_of(db, hook.id), lambda d: d and d[0][0].status == "delivered")
        )
    got = receiver.at("/flaky")
    assert len({r.headers["webhook-id"] for r in got}) == 1  # one message, retried
    assert all(r.verifies(hook.secret) for r in got)
    assert got[1].at - got[0].at >= 0.15  # the schedule's waits
    assert event_type == "dispute.opened"
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.error for a in attempts] == ["HTTP 500", "HTTP 500", None]
    assert attempts[0].response_body == "receiver says no" and attempts[0].duration_ms >= 0


async def test_an_attempt_is_logged_at_the_time_it_was_sent(
    db: Sessions, outbox_url: str, receiver: Receiver
) -> None:
    """`attempted_at` is when the request went out, not when the answer was recorded after it."""
    owner = await seller(db)
    hook = await endpoint(db, owner.id, receiver.url("/slow"), ["dispute.*"])
    receiver.slow("/slow", 1.5)
    async with sending(outbox_url):
        await emit(db, EventType.DISPUTE_OPENED, owner.id, id="d1")
        [(_, _, [attempt])] = await eventually(
            lambda: _when(deliveries_of(db, hook.id), lambda d: d and d[0][0].status == "delivered")
        )
    [got] = receiver.at("/slow")
    assert attempt.duration_ms >= 1_500
    assert abs(attempt.attempted_at.timestamp() - got.at) < 0.5, (attempt.attempted_at, got.at)


async def _when(value: Awaitable[T], check: Callable[[T], Any]) -> T | None:
    found = await value
    return found if check(found) else None


async def test_a_rotated_secret_and_the_previous_one_both_verify_during_the_overlap(
    db: Sessions, outbox_url: str, receiver: Receiver
) -> None:
    owner = await seller(db)
    hook = await endpoint(db, owner.id, receiver.url("/rotated"), ["review.*"])
    async with db() as session, session.begin():
        rotated = await endpoints.rotate_secret(
            session, Scope(owner.id, owner.id), hook.id, timedelta(hours=1)
        )
    async with sending(outbox_url):
        await emit(db, EventType.REVIEW_REVEALED, owner.id, id="r1")
        [got] = await receiver.until(lambda: receiver.at("/rotated"))
    assert rotated.secret != hook.secret
    assert got.verifies(rotated.secret) and got.verifies(hook.secret)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    # Past the overlap only the new secret signs.
    assert rotated.previous_secret_expires_at is not None
    after = rotated.previous_secret_expires_at + timedelta(seconds=1)
    assert endpoints.signing_secrets(rotated, after) == [rotated.secret]


async def test_a_replay_sends_the_same_message_again(
    db: Sessions, outbox_url: str, receiver: Receiver
) -> None:
    owner = await seller(db)
    hook = await endpoint(db, owner.id, receiver.url("/replayed"), ["payout.sent"])
    async with sending(outbox_url):
        await emit(db, EventType.PAYOUT_SENT, owner.id, order_id="o9")
        await receiver.until(lambda: receiver.at("/replayed"))
        [(row, _, _)] = await eventually(
            lambda: _when(deliveries_of(db, hook.id), lambda d: d and d[0][0].status == "delivered")
        )
        async with db() as session, session.begin():
            await delivery.replay(session, hook.id, row.id)
        first, again = await receiver.until(
            lambda: len(receiver.at("/replayed")) == 2 and receiver.at("/replayed")
        )
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert first.body == again.body and again.verifies(hook.secret)


async def test_the_endpoint_is_disabled_and_its_owner_told_when_the_schedule_runs_out(
    db: Sessions, outbox_url: str, receiver: Receiver
) -> None:
    owner = await seller(db)
    hook = await endpoint(db, owner.id, receiver.url("/down"), ["order.*"])
    receiver.answer("/down", *[503] * 10)
    async with sending(outbox_url):
        await emit(db, EventType.ORDER_CANCELLED, owner.id, id="o5")
        await receiver.until(lambda: len(receiver.at("/down")) == 4)  # the first attempt and three retries
        [(_, _, attempts)] = await eventually(
            lambda: _when(deliveries_of(db, hook.id), lambda d: d and d[0][0].status == "failed")
        )
        await emit(db, EventType.ORDER_COMPLETED, owner.id, id="o5")  # a disabled endpoint gets nothing new
        await asyncio.sleep(0.5)
    assert len(attempts) == 4 and len(receiver.at("/down")) == 4
    async with db() as session:
        disabled = await session.get(WebhookEndpoint, hook.id)
        assert disabled is not None and not disabled.enabled
        assert disabled.disabled_reason and "HTTP 503" in disabled.disabled_reason
        told = (
            await session.scalars(
                select(Notification).where(
                    Notification.recipient_id == owner.id,
                    Notification.event_type == "webhook_endpoint_disabled",
                )
            )
        ).all()
    assert {n.channel for n in told} == {"inbox", "email"}
    assert receiver.url("/down") in told[0].body and str(hook.id) in told[0].body


async def test_a_claimed_delivery_whose_sender_died_is_claimed_again_after_its_lease(
    db: Sessions, outbox_url: str
) -> None:
    async with db() as session, session.begin():  # the other tests' endpoints (the platform's gets this too)
        await session.execute(update(WebhookEndpoint).values(enabled=False))
    owner = await seller(db)
    hook = await endpoint(db, owner.id, "http://127.0.0.1:9/never", ["listing.*"])
    await emit(db, EventType.LISTING_ARCHIVED, owner.id, id="l7")
    async with db() as session, session.begin():
        await delivery.fan_out(session)
    async with db() as session, session.begin():
        first = await delivery.claim(session, timedelta(seconds=0.3))
    async with db() as session, session.begin():
        assert await delivery.claim(session, timedelta(seconds=0.3)) is None  # claimed: not due
    await asyncio.sleep(0.4)
    async with db() as session, session.begin():
        second = await delivery.claim(session, timedelta(seconds=30))
    assert first is not None and second is not None and first.delivery_id == second.delivery_id
    # The first sender's late outcome is dropped: the delivery is the second's now.
    answer = delivery.Answer(200, 5, None, "ok")
    async with db() as session, session.begin():
        late = await delivery.record(session, first, answer, (1.0,), "http://bazaar.test")
    assert late.status == "dropped"
    async with db() as session, session.begin():
        assert (
            await delivery.record(session, second, answer, (1.0,), "http://bazaar.test")
        ).status == "delivered"
    async with db() as session:
        row = await session.get(WebhookDelivery, second.delivery_id)
        assert row is not None and row.status == "delivered" and row.endpoint_id == hook.id


async def test_an_answer_that_takes_too_long_is_a_failed_attempt() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    claimed = delivery.Claim(
        1, uuid.uuid4(), 0, datetime.now(UTC), "http://x.test/", ["whsec_" + "A" * 44], "evt_1", "{}"
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        answer = await delivery.send(client, claimed, 0.2)
    assert answer.status_code is None and answer.error == "TimeoutError" and not answer.ok


def test_urls_https_public_unless_local_ones_are_allowed() -> None:
    problem = endpoints.url_problem
    assert problem("https://erp.example.com/hooks", allow_local=False) is None
    assert problem("http://erp.example.com/hooks", allow_local=False) == "must be https"
    assert problem("https://localhost/hooks", allow_local=False) == "must be a public host"
    assert problem("https://10.0.0.7/hooks", allow_local=False) == "must be a public address"
    assert problem("https://[::1]/hooks", allow_local=False) == "must be a public address"
    assert problem("http://127.0.0.1:8080/hooks", allow_local=True) is None
    assert problem("ftp://example.com/", allow_local=True) is not None


async def test_an_endpoint_gets_nothing_once_its_owner_may_not_hold_its_scope(
    db: Sessions, outbox_url: str, receiver: Receiver
) -> None:
    """Found from outside: a platform endpoint kept getting every event after its creator lost the support role,
    and a seller's after the seller was deactivated (while their API keys were refused at once)."""
    mine = await seller(db)
    hook = await endpoint(db, mine.id, receiver.url("/mine"), ["listing.*"])
    platform = await endpoint(db, None, receiver.url("/all"), ["listing.*"])
    await change_user(db, mine.id, is_active=False)
    await change_user(db, platform.created_by, roles=["buyer"])
    async with sending(outbox_url):
        await emit(db, EventType.LISTING_CREATED, mine.id, id="while-away")
        await asyncio.sleep(1.0)
        assert receiver.at("/mine") == [] and receiver.at("/all") == []
        await change_user(db, mine.id, is_active=True)
        await change_user(db, platform.created_by, roles=["admin"])
        await emit(db, EventType.LISTING_CREATED, mine.id, id="back")
        await receiver.until(lambda: len(receiver.at("/mine")) >= 1 and len(receiver.at("/all")) >= 1)
        await asyncio.sleep(0.3)  # nothing else comes
    for path in ("/mine", "/all"):
        assert [r.event["data"]["id"] for r in receiver.at(path)] == ["back"], path
    assert await deliveries_of(db, hook.id) and await deliveries_of(db, platform.id)
