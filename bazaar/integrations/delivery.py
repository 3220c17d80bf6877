"""Webhook deliveries: events fanned out to endpoints, each one sent, signed, retried for days, logged, replayable.

The `sender` process runs this beside the notification outbox (`WebhookSender`, activities/notifications.py),
any number of them at once, woken by the NOTIFY of the trigger on `events` (migration 0014) and by replays:

- **Fan-out**: one sender at a time (the `webhook_fanout` row, locked with SKIP LOCKED) walks the events in the
  feed's order (feed.py: only events no open transaction can still precede) and makes a delivery per
  (event, enabled endpoint of its scope that asked for its type), moving the row's position in the same
  statement. So every event is fanned out exactly once, after it committed, off the path of the change.
- **Sending**: a sender claims a due delivery by pushing its `next_attempt_at` a lease ahead (a short
  transaction), sends it with no transaction open, and records the outcome in another. No transaction stays open
  over an endpoint's answer: an open one would hold back the feed and the fan-out (their horizon is the oldest
  open transaction). A sender that dies mid-send loses nothing: the lease runs out and the delivery is due again.
  So a delivery is sent at least once; receivers deduplicate on `webhook-id` (the same on every retry).
- **Retries**: a 2xx is delivered; anything else (a 3xx too: redirects are not followed, a timeout, a refused
  connection) is retried after the waits of `WEBHOOK_RETRY_SCHEDULE` (5 s, 5 min, 30 min, 2 h, 5 h, then 10 h
  six times: about 2.8 days). When the last one fails, the delivery is `failed`, its endpoint is disabled (no
  new deliveries; pending ones wait until it is enabled again) and its owner notified.
- Every attempt is logged (status code, duration, error, the start of the answer); a delivery can be replayed.
- **Whose**: an endpoint gets events only while its creator is active and holds its scope's role (seller, or
  support for the platform's), as an API key works only then; its pending deliveries wait meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Select, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.errors import DomainError, ErrorCode
from bazaar.integrations import endpoints
from bazaar.integrations.feed import payload
from bazaar.integrations.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from bazaar.settings import Settings
from bazaar.trust import notifications
from bazaar.trust.notifications import NotificationEvent

log = logging.getLogger("webhooks")
CHANNEL = "integration_events"  # NOTIFY: events were written (the trigger) or a delivery was replayed
FAN_OUT_BATCH = 500
EXCERPT = 1000  # characters of an endpoint's answer (and of an error) kept per attempt
USER_AGENT = "Bazaar-Webhooks/1"
DISABLED_TEMPLATE = "webhook_endpoint_disabled"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# An endpoint is live while its creator is active and holds the role of its scope (seller, or support/admin for
# the platform's), as an API key (keys.authenticate): a role revoked or an account deactivated stops its
# deliveries at once (pending ones wait, as for a disabled endpoint, until the owner may hold it again).
_LIVE_OWNER = """
    JOIN users creator ON creator.id = w.created_by AND creator.is_active
     AND CASE WHEN w.seller_id IS NULL THEN creator.roles && ARRAY['support', 'admin']::varchar[]
              ELSE 'seller' = ANY (creator.roles) END
"""

# One statement: lock the position (another sender holding it is skipped), take the next events below the
# horizon in feed order, make their deliveries, move the position to the last event taken.
_FAN_OUT = text(  # a constant fragment in the f-string; every value is a bound parameter
    f"""
    WITH position AS (
        SELECT after_xid, after_id FROM webhook_fanout WHERE id = 1 FOR UPDATE SKIP LOCKED
    ),
    batch AS (
        SELECT e.id, e.xid, e.type, e.seller_id FROM events e, position p
        WHERE (e.xid, e.id) > (p.after_xid, p.after_id)
          AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.xid, e.id
        LIMIT :batch
    ),
    made AS (
        INSERT INTO webhook_deliveries (endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
        SELECT w.id, b.id, 'pending', 0, now(), now()
        FROM batch b JOIN webhook_endpoints w
          ON w.enabled
         AND (w.seller_id IS NULL OR w.seller_id = b.seller_id)
         AND (b.type = ANY (w.event_types) OR split_part(b.type, '.', 1) || '.*' = ANY (w.event_types))
        {_LIVE_OWNER}
        ON CONFLICT ON CONSTRAINT uq_webhook_delivery DO NOTHING
        RETURNING 1
    ),
    last AS (SELECT xid, id FROM batch ORDER BY xid DESC, id DESC LIMIT 1),
    moved AS (
        UPDATE webhook_fanout f SET after_xid = last.xid, after_id = last.id FROM last WHERE f.id = 1 RETURNING 1
    )
    SELECT (SELECT count(*) FROM batch) AS events, (SELECT count(*) FROM made) AS deliveries,
           (SELECT count(*) FROM moved) AS moved
    """  # noqa: S608
)

# The next due delivery of an enabled endpoint that no other sender is claiming, claimed for a lease.
_CLAIM = text(  # a constant fragment in the f-string; every value is a bound parameter
    f"""
    WITH due AS (
        SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
        {_LIVE_OWNER}
        WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.enabled
        ORDER BY d.next_attempt_at
        LIMIT 1
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => :lease)
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, d.next_attempt_at
    """  # noqa: S608
)


# Whether there is anything to fan out: a read (locking the position row would make every idle poll a write).
_ANY_NEW = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM events e, webhook_fanout p
        WHERE p.id = 1 AND (e.xid, e.id) > (p.after_xid, p.after_id)
          AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
    )
    """
)


async def fan_out(session: AsyncSession, batch: int = FAN_OUT_BATCH) -> tuple[int, int]:
    """Fan the next events out (see the module doc); (events walked, deliveries made)."""
    if not await session.scalar(_ANY_NEW):
        return 0, 0
    row = (await session.execute(_FAN_OUT, {"batch": batch})).one()
    return int(row.events), int(row.deliveries)


@dataclass(frozen=True)
class Claim:
    """A delivery claimed until `claimed_until`, with what sending it needs."""

    delivery_id: int
    endpoint_id: uuid.UUID
    attempts: int  # made before this one, since it was (re)queued
    claimed_until: datetime
    url: str
    signing_secrets: list[str]
    message_id: str  # `webhook-id`: the event's, the same on every attempt and replay
    body: str


@dataclass(frozen=True)
class Answer:
    """What one attempt got: a status code and the start of the body, or why there was none."""

    status_code: int | None
    duration_ms: int
    error: str | None
    body: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: (
        str  # delivered, pending (a retry is due later), failed, or dropped (replayed or deleted meanwhile)
    )
    error: str | None = None
    disabled: bool = False  # this failure disabled the endpoint


async def claim(session: AsyncSession, lease: timedelta) -> Claim | None:
    """Claim the next due delivery (None when none is) and read what sending it needs."""
    row = (await session.execute(_CLAIM, {"lease": lease.total_seconds()})).one_or_none()
    if row is None:
        return None
    endpoint = await session.get(WebhookEndpoint, row.endpoint_id)
    event = await session.get(Event, row.event_id)
    assert endpoint is not None and event is not None  # the claimed row's foreign keys
    now = datetime.now(UTC)
    return Claim(
        delivery_id=row.id,
        endpoint_id=row.endpoint_id,
        attempts=row.attempts,
        claimed_until=row.next_attempt_at,
        url=endpoint.url,
        signing_secrets=endpoints.signing_secrets(endpoint, now),
        message_id=f"evt_{event.id}",
        body=json.dumps(payload(event), separators=(",", ":")),
    )


async def send(client: httpx.AsyncClient, claimed: Claim, seconds: float) -> Answer:
    """POST the delivery, signed now (Standard Webhooks), for at most `seconds` in all."""
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claimed.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": endpoints.signature(
            claimed.signing_secrets, claimed.message_id, now, claimed.body
        ),
    }
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            async with client.stream(
                "POST", claimed.url, content=claimed.body.encode(), headers=headers
            ) as r:
                body = await _excerpt(r)
    except Exception as exc:  # any failure to get an answer is this attempt's outcome, retried later
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Answer(None, _ms(started), _clean(why), None)
    return Answer(
        r.status_code, _ms(started), None if 200 <= r.status_code < 300 else f"HTTP {r.status_code}", body
    )


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer (an endpoint may send a lot: the rest is not read)."""
    kept = bytearray()
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= EXCERPT:
            break
    return _clean(kept[:EXCERPT].decode("utf-8", "replace"))


def _clean(value: str) -> str:
    return value.replace("\x00", "")[:EXCERPT]  # PostgreSQL text holds no NUL


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def record(
    session: AsyncSession, claimed: Claim, answer: Answer, delays: tuple[float, ...], base_url: str
) -> Outcome:
    """Log the attempt and move the delivery on: delivered, retried after the schedule's next wait, or failed
    (the endpoint is disabled and its owner told). A delivery replayed meanwhile is left as the replay made it;
    one deleted with its endpoint is forgotten."""
    held = await session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == claimed.delivery_id).with_for_update()
    )
    if held is None:
        return Outcome(claimed.delivery_id, "dropped", answer.error)
    attempt = WebhookAttempt(
        delivery_id=held.id,
        # When the request went out (this transaction starts after the answer came, or did not).
        attempted_at=func.now() - timedelta(milliseconds=answer.duration_ms),
        status_code=answer.status_code,
        duration_ms=answer.duration_ms,
        error=answer.error,
        response_body=answer.body,
    )
    session.add(attempt)
    await session.flush()
    if held.status != DeliveryStatus.PENDING or held.next_attempt_at != claimed.claimed_until:
        return Outcome(held.id, "dropped", answer.error)
    held.attempts = claimed.attempts + 1
    if answer.ok:
        held.status = DeliveryStatus.DELIVERED
        held.delivered_at = datetime.now(UTC)
        return Outcome(held.id, held.status)
    if held.attempts <= len(delays):
        # On the database clock, which the claim compares with.
        wait = timedelta(seconds=delays[held.attempts - 1])
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == held.id)
            .values(attempts=held.attempts, next_attempt_at=func.clock_timestamp() + wait)
            .execution_options(synchronize_session=False)
        )
        return Outcome(held.id, DeliveryStatus.PENDING, answer.error)
    held.status = DeliveryStatus.FAILED
    disabled = await _disable(session, held, attempt, answer, base_url)
    return Outcome(held.id, held.status, answer.error, disabled)


async def _disable(
    session: AsyncSession, held: WebhookDelivery, attempt: WebhookAttempt, answer: Answer, base_url: str
) -> bool:
    """Disable the delivery's endpoint (once) and tell its owner: the seller, or support for the platform's."""
    reason = (
        f"all {held.attempts} attempts to deliver event evt_{held.event_id} failed (the last: {answer.error})"
    )
    row = (
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == held.endpoint_id, WebhookEndpoint.enabled)
            .values(enabled=False, disabled_reason=reason[:200], updated_at=func.now())
            .returning(WebhookEndpoint.seller_id, WebhookEndpoint.url)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if row is None:
        return False  # disabled already (another delivery's last failure, or its owner)
    notice = NotificationEvent(
        event_key=f"webhook_endpoint:{held.endpoint_id}:disabled:{attempt.id}",
        event_type=DISABLED_TEMPLATE,
        recipient_ids=[str(row.seller_id)] if row.seller_id else [],
        recipient_roles=[] if row.seller_id else ["support"],
        # The template's words (bazaar/trust/templates/notifications/webhook_endpoint_disabled.txt).
        data={
            "reason": f"{row.url}: {reason}",
            "message": f'PATCH /v1/webhook-endpoints/{held.endpoint_id} with {{"enabled": true}}',
        },
    )
    await notifications.write(session, [notice], base_url)
    return True


# --------------------------------------------------------------------------------- for the API's routes


async def replay(session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again (the endpoint's scope was checked): pending, fresh attempts, due now; the same
    `webhook-id`. An endpoint that is disabled sends it once it is enabled again."""
    delivery = await session.scalar(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=func.now())
        .returning(WebhookDelivery)
        .execution_options(synchronize_session=False)
    )
    if delivery is None:
        raise DomainError(ErrorCode.NOT_FOUND, "delivery not found for this endpoint")
    await session.execute(select(func.pg_notify(CHANNEL, "")))  # delivered at commit
    return delivery


Viewed = tuple[WebhookDelivery, str, list[WebhookAttempt]]  # a delivery, its event's type, its attempts


async def deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, status: str | None, limit: int, before: int | None
) -> tuple[list[Viewed], int | None]:
    """A page of an endpoint's deliveries, newest first, each with its event's type and its attempts (oldest
    first), and the next page's cursor (`before`; None on the last page: read one past the page to know)."""
    statement = _viewed().where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    if before is not None:
        statement = statement.where(WebhookDelivery.id < before)
    rows = (await session.execute(statement.order_by(WebhookDelivery.id.desc()).limit(limit + 1))).all()
    page = await _with_attempts(session, [(d, t) for d, t in rows[:limit]])
    return page, (page[-1][0].id if len(rows) > limit else None)


async def one(session: AsyncSession, delivery_id: int) -> Viewed:
    row = (await session.execute(_viewed().where(WebhookDelivery.id == delivery_id))).one()
    [viewed] = await _with_attempts(session, [(row[0], row[1])])
    return viewed


def _viewed() -> Select[WebhookDelivery, str]:
    return select(WebhookDelivery, Event.type).join(Event, Event.id == WebhookDelivery.event_id)


async def _with_attempts(session: AsyncSession, rows: list[tuple[WebhookDelivery, str]]) -> list[Viewed]:
    found = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_([d.id for d, _ in rows]))
        .order_by(WebhookAttempt.id)
    )
    attempts: dict[int, list[WebhookAttempt]] = {}
    for attempt in found.all():
        attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [(d, event_type, attempts.get(d.id, [])) for d, event_type in rows]


# ------------------------------------------------------------------------------------------ the sender


class Webhooks:
    """One sender loop's webhook work (`step`): fan out what is new, then claim, send and record one delivery."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        on_new_deliveries: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.client = client
        self.on_new_deliveries = on_new_deliveries  # wake the other loops: there is work for them
        self.delays = settings.webhook_retry_delays()
        self.timeout = settings.webhook_timeout_seconds
        # Longer than any attempt: a delivery is claimed again only if its sender died.
        self.lease = timedelta(seconds=self.timeout + 60)

    async def step(self) -> bool:
        """Whether there was anything to do."""
        async with self.sessionmaker() as session, session.begin():
            walked, made = await fan_out(session)
        if made:
            self.on_new_deliveries()
        async with self.sessionmaker() as session, session.begin():
            claimed = await claim(session, self.lease)
        if claimed is None:
            return walked > 0
        answer = await send(self.client, claimed, self.timeout)
        async with self.sessionmaker() as session, session.begin():
            outcome = await record(session, claimed, answer, self.delays, self.settings.public_base_url)
        if outcome.error is not None:
            log.warning(
                "webhook delivery %s to %s: %s (now %s%s)",
                claimed.delivery_id,
                claimed.url,
                outcome.error,
                outcome.status,
                ", endpoint disabled" if outcome.disabled else "",
            )
        return True
