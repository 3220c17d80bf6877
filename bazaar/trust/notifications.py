"""Notifications: the event catalogue, templates, preferences, unsubscribe tokens, the inbox and the outbox.

The `notifications` table is also a transactional outbox: `prepare` writes an event's rows in the caller's
transaction (inbox rows already delivered, email rows pending and due), and the NotificationSender of each
worker (activities.notifications) drains the pending ones, woken by a NOTIFY on `OUTBOX_CHANNEL`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from string import Template

from sqlalchemy import Boolean, and_, bindparam, case, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bazaar.auth import Principal
from bazaar.errors import DomainError, ErrorCode, field_error
from bazaar.models import AuditEvent, Role, User
from bazaar.settings import get_settings
from bazaar.telemetry import traceparent
from bazaar.trust.models import DeadLetter, Notification, NotificationChannel, NotificationPreference

OUTBOX_CHANNEL = "notification_outbox"  # NOTIFY: pending rows are due (a sender claims them)
# Inline, not a bind parameter, so a prepared (generic) plan still uses the partial index ix_notifications_due.
PENDING = Notification.status == literal_column("'pending'")
TEMPLATES = Path(__file__).resolve().parent / "templates" / "notifications"
EVENT_TYPES = frozenset(p.stem for p in TEMPLATES.glob("*.txt"))


@cache
def _template(path: Path) -> tuple[Template, Template]:
    first, _, body = path.read_text().partition("\n")
    return Template(first.removeprefix("Subject: ")), Template(body.strip() + "\n")


def render_file(path: Path, data: dict[str, str]) -> tuple[str, str]:
    """Subject and body of the mail template at `path` (its first line is `Subject: ...`); a missing variable
    renders as its placeholder rather than failing a delivery."""
    subject, body = _template(path)
    return subject.safe_substitute(data), body.safe_substitute(data)


def render(event_type: str, data: dict[str, str]) -> tuple[str, str]:
    """Subject and body of a notification (one template per event type)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown notification event {event_type!r}")
    return render_file(TEMPLATES / f"{event_type}.txt", data)


def unsubscribe_token(secret: str, user_id: uuid.UUID, event_type: str, channel: NotificationChannel) -> str:
    payload = f"{user_id}:{event_type}:{channel.value}".encode()
    signature = hmac.new(b"unsubscribe:" + secret.encode(), payload, hashlib.sha256).digest()
    return f"{base64.urlsafe_b64encode(payload).decode()}.{base64.urlsafe_b64encode(signature).decode()}"


def read_unsubscribe_token(secret: str, token: str) -> tuple[uuid.UUID, str, NotificationChannel]:
    try:
        payload_b64, _ = token.split(".")
        user_id, event_type, channel = base64.urlsafe_b64decode(payload_b64).decode().split(":")
        named = uuid.UUID(user_id), event_type, NotificationChannel(channel)
        # The whole token against the one we would sign: base64 decoding forgives stray characters, so
        # comparing the decoded signature alone let a link with junk appended through.
        if not hmac.compare_digest(token.encode(), unsubscribe_token(secret, *named).encode()):
            raise ValueError("bad signature")
        return named
    except (ValueError, UnicodeDecodeError) as exc:
        raise DomainError(ErrorCode.INVALID_SIGNATURE, "invalid unsubscribe link") from exc


async def set_preference(
    session: AsyncSession, user_id: uuid.UUID, event_type: str, channel: NotificationChannel, enabled: bool
) -> None:
    if event_type not in EVENT_TYPES:
        raise field_error(
            "event_type", f"unknown event type {event_type!r}", "value_error", event_types=sorted(EVENT_TYPES)
        )
    await session.execute(
        insert(NotificationPreference)
        .values(user_id=user_id, event_type=event_type, channel=channel, enabled=enabled)
        .on_conflict_do_update(index_elements=["user_id", "event_type", "channel"], set_={"enabled": enabled})
    )


async def preferences(session: AsyncSession, user_id: uuid.UUID) -> dict[str, dict[str, bool]]:
    """Every event type and channel, enabled unless the user opted out."""
    rows = (
        await session.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    ).all()
    chosen = {(r.event_type, r.channel): r.enabled for r in rows}
    return {
        event: {c.value: chosen.get((event, c), True) for c in NotificationChannel}
        for event in sorted(EVENT_TYPES)
    }


@dataclass
class NotificationEvent:
    """One business event to notify, also the payload workflows hand to activities: its key (each key is
    notified once per recipient and channel), its template, who gets it (users, and every user of a role) and
    the template's data."""

    event_key: str  # unique per business event, e.g. "order:<id>:paid"
    event_type: str
    recipient_ids: list[str] = field(default_factory=list)
    recipient_roles: list[str] = field(default_factory=list)  # e.g. ["support"]
    data: dict[str, str] = field(default_factory=dict)


# Who `write` notifies, with the (user, event, channel) each has opted out of: built once, like the rows' insert.
_OPTED_OUT = aliased(NotificationPreference)
_RECIPIENTS = select(
    User.id, User.display_name, User.roles, _OPTED_OUT.event_type, _OPTED_OUT.channel
).outerjoin(
    _OPTED_OUT,
    and_(
        _OPTED_OUT.user_id == User.id,
        _OPTED_OUT.event_type.in_(bindparam("event_types", expanding=True)),
        _OPTED_OUT.enabled.is_(False),
    ),
)
_RECIPIENTS_BY_ID = _RECIPIENTS.where(User.id.in_(bindparam("user_ids", expanding=True)))
_RECIPIENTS_BY_ID_OR_ROLE = _RECIPIENTS.where(
    or_(User.id.in_(bindparam("user_ids", expanding=True)), User.roles.overlap(bindparam("roles")))
)
_WAKE_SENDER = select(func.pg_notify(OUTBOX_CHANNEL, ""))

# The rows of `write` as one executemany statement, built and compiled once (a multi-row VALUES built per call
# was compiled anew each time, on every order transition): an inbox row is delivered by being stored.
_INSERT_ROWS = (
    insert(Notification)
    .values(
        sent_at=case((bindparam("stored", type_=Boolean), func.now())),
        next_attempt_at=func.now(),
    )
    .on_conflict_do_nothing(constraint="uq_notification_delivery")
    .returning(Notification.status)
)


async def write(session: AsyncSession, events: list[NotificationEvent], base_url: str) -> int:
    """Create the (event, recipient, channel) rows that preferences allow, once per triple, in the caller's
    transaction: inbox rows are delivered by being stored (`sent`), email rows are pending and due now, and
    the senders are woken on commit. Three statements whatever the number of events and recipients (an order's
    transition runs this on its critical path). Returns how many rows were new."""
    if not events:
        return 0
    for event in events:
        if event.event_type not in EVENT_TYPES:
            raise ValueError(f"unknown notification event {event.event_type!r}")
    named = {
        uuid.UUID(e.data["buyer_id"]) for e in events if "buyer_id" in e.data and "buyer_name" not in e.data
    }
    wanted = {uuid.UUID(r) for e in events for r in e.recipient_ids}
    roles = sorted({Role(r).value for e in events for r in e.recipient_roles})
    # Core statements on the session's connection: no ORM bookkeeping on an order's critical path.
    connection = await session.connection()
    who = _RECIPIENTS_BY_ID_OR_ROLE if roles else _RECIPIENTS_BY_ID
    params = {"user_ids": sorted(wanted | named), "event_types": sorted({e.event_type for e in events})}
    rows = (await connection.execute(who, {**params, "roles": roles} if roles else params)).all()
    names = {user_id: name for user_id, name, _, _, _ in rows}
    user_roles = {user_id: set(found or []) for user_id, _, found, _, _ in rows}
    silenced = {(user_id, event_type, channel) for user_id, _, _, event_type, channel in rows if channel}
    queued_by = traceparent()  # the sender continues this trace when it delivers (bazaar/telemetry.py)
    values = []
    order_links = get_settings().order_link_template or ""
    for event in events:
        data = _with_links(event.data, base_url, order_links)
        if "buyer_id" in data and "buyer_name" not in data:
            data["buyer_name"] = names.get(uuid.UUID(data["buyer_id"])) or "A buyer"
        staff = {Role(r).value for r in event.recipient_roles}
        ids = {uuid.UUID(r) for r in event.recipient_ids}
        recipients = {u for u in names if u in ids or staff & user_roles[u]}
        for user_id in sorted(recipients):
            subject, body = render(event.event_type, {**data, "recipient_name": names[user_id]})
            for channel in NotificationChannel:
                if (user_id, event.event_type, channel) in silenced:
                    continue
                stored = channel == NotificationChannel.INBOX
                values.append(
                    {
                        "event_key": event.event_key,
                        "event_type": event.event_type,
                        "recipient_id": user_id,
                        "channel": channel,
                        "subject": subject,
                        "body": body,
                        "data": data,
                        "status": "sent" if stored else "pending",
                        "stored": stored,
                        "trace_context": None if stored else queued_by,
                    }
                )
    if not values:
        return 0
    inserted = (await connection.execute(_INSERT_ROWS, values)).all()
    if any(status == "pending" for (status,) in inserted):
        await wake_sender(session)
    return len(inserted)


async def prepare(
    session: AsyncSession,
    event_key: str,
    event_type: str,
    recipient_ids: list[uuid.UUID],
    recipient_roles: list[str],
    data: dict[str, str],
    base_url: str,
) -> list[int]:
    """One event's rows (see `write`); returns the event's rows still pending, what the legacy
    NotificationWorkflow delivers itself (it may run again after a commit, so it reads them back)."""
    event = NotificationEvent(event_key, event_type, [str(r) for r in recipient_ids], recipient_roles, data)
    await write(session, [event], base_url)
    pending = await session.scalars(
        select(Notification.id)
        .where(Notification.event_key == event_key, Notification.status == "pending")
        .order_by(Notification.id)
    )
    return list(pending.all())


async def wake_sender(session: AsyncSession) -> None:
    """Tell the senders that rows are due. PostgreSQL delivers a NOTIFY on commit only, so a sender never
    looks for rows that are not visible yet (and a rolled-back transaction wakes nobody)."""
    await (await session.connection()).execute(_WAKE_SENDER)


async def replay(session: AsyncSession, dead_letter_id: int) -> tuple[int, str]:
    """Put a dead-lettered notification back in the outbox (pending, attempts reset, due now) and mark the
    dead letter replayed, in the caller's transaction. Returns the notification id and its status now:
    `pending` (a sender delivers it), or `sent` if it was delivered meanwhile (never sent twice)."""
    dead = await session.get(DeadLetter, dead_letter_id)
    if dead is None:
        raise DomainError(ErrorCode.NOT_FOUND, "dead letter not found")
    requeued = await session.scalar(
        update(Notification)
        .where(Notification.id == dead.notification_id, Notification.status == "dead")
        .values(status="pending", attempts=0, next_attempt_at=func.now(), last_error=None)
        .returning(Notification.status)
        .execution_options(synchronize_session=False)
    )
    dead.replayed_at = dead.replayed_at or datetime.now(UTC)
    if requeued is not None:
        await wake_sender(session)
        return dead.notification_id, requeued
    # A repeated click (already pending again) or a row delivered meanwhile: nothing to put back.
    status = await session.scalar(select(Notification.status).where(Notification.id == dead.notification_id))
    return dead.notification_id, status or "missing"


async def replay_audited(session: AsyncSession, dead_letter_id: int, staff: Principal) -> tuple[int, str]:
    """Support replays a dead letter (`replay`), audited with the acting support user in the same transaction:
    the one way the REST route and the console do it."""
    notification_id, status = await replay(session, dead_letter_id)
    session.add(
        AuditEvent(
            actor_id=staff.user_id,
            actor_role="support",
            subject_type="dead_letter",
            subject_id=str(dead_letter_id),
            action="dead_letter.replayed",
            data={"notification_id": str(notification_id), "status": status},
        )
    )
    return notification_id, status


def _with_links(data: dict[str, str], base_url: str, order_link_template: str = "") -> dict[str, str]:
    """The order's URL, which templates show and the event itself does not carry: the marketplace app's page of
    it (`ORDER_LINK_TEMPLATE`), else the API's."""
    data = dict(data)
    if "order_id" in data:
        order_id = data["order_id"]
        link = order_link_template.replace("{order_id}", order_id) if order_link_template else ""
        data.setdefault("order_url", link or f"{base_url}/v1/orders/{order_id}")
    return data


async def inbox(
    session: AsyncSession, user_id: uuid.UUID, unread_only: bool, limit: int, before_id: int | None
) -> tuple[list[Notification], int]:
    base = select(Notification).where(
        Notification.recipient_id == user_id,
        Notification.channel == NotificationChannel.INBOX,
        Notification.status == "sent",
    )
    if unread_only:
        base = base.where(Notification.read_at.is_(None))
    page = base.where(Notification.id < before_id) if before_id is not None else base
    items = (await session.scalars(page.order_by(Notification.id.desc()).limit(limit))).all()
    unread = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.recipient_id == user_id,
            Notification.channel == NotificationChannel.INBOX,
            Notification.status == "sent",
            Notification.read_at.is_(None),
        )
    )
    return list(items), int(unread or 0)


async def mark_read(session: AsyncSession, user_id: uuid.UUID, notification_id: int | None) -> int:
    """Mark one (or, with None, every) inbox notification of this user read; returns how many changed."""
    stmt = update(Notification).where(
        Notification.recipient_id == user_id,
        Notification.channel == NotificationChannel.INBOX,
        Notification.read_at.is_(None),
    )
    if notification_id is not None:
        stmt = stmt.where(Notification.id == notification_id)
    result = await session.execute(stmt.values(read_at=datetime.now(UTC)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
