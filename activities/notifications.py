"""Notification side effects: the outbox sender, one way to build and send an email, and the legacy activities.

`bazaar.trust.notifications.prepare` writes an event's rows in the transaction of whatever caused it (inbox rows
already delivered, email rows pending). The `NotificationSender` (one per worker process, any number of
processes) drains the pending rows: it claims a due row with SELECT ... FOR UPDATE SKIP LOCKED and sends it
while holding that row lock, then records the outcome in the same transaction. So:

- a row is sent by at most one sender at a time (the others skip it while it is locked);
- a sender that dies mid-send loses nothing: its connection closes, PostgreSQL rolls the transaction back
  and releases the lock, and the row, still pending and due, is claimed again (that attempt is not counted);
- a failed attempt is retried with exponential backoff (`NOTIFICATION_FIRST_RETRY_SECONDS`, doubling, at most
  `RETRY_CAP`); the `NOTIFICATION_MAX_ATTEMPTS`th failure marks the row `dead` with a dead-letter row.

A sent row is never sent again. (An SMTP server that accepted a message whose acknowledgement was lost, or a
sender that died between the server's acceptance and its commit, can still cause a second copy; the
Message-ID is stable per delivery so mail clients fold such a duplicate.)

The three activities serve NotificationWorkflows started before the outbox; their deliveries claim rows the
same way, so a row both paths see is still sent once.

`WebhookSender` drains the other outbox of the sender process, webhook deliveries (bazaar.integrations.delivery),
with the same loops (`OutboxLoops`); it holds no transaction open over an endpoint's answer (that module says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default as default_policy

import httpx
import idna
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from temporalio import activity

from bazaar.db import transaction
from bazaar.integrations import delivery as webhooks
from bazaar.models import User
from bazaar.pg_listen import listen_forever
from bazaar.settings import Settings
from bazaar.telemetry import resumed
from bazaar.trust import notifications
from bazaar.trust.models import DeadLetter, Notification, NotificationChannel
from bazaar.trust.notifications import NotificationEvent

log = logging.getLogger("notifications")
# Lines up to RFC 5322's 998: at the default 78 a header too long to fold at a space (the List-Unsubscribe URL)
# is written as RFC 2047 encoded-words, which the structured List-Unsubscribe must not be (RFC 2369, 8058).
MAIL_POLICY = default_policy.clone(max_line_length=998)
_TRACER = trace.get_tracer("bazaar.notifications")
RETRY_CAP = timedelta(hours=1)  # the longest wait between two attempts of one row
SMTP_TIMEOUT_SECONDS = 10.0  # each socket operation of a send
SEND_TIMEOUT_SECONDS = 30.0  # a whole send: past this the connection is cut (a server that drips replies)


@dataclass
class DeadLetterRequest:
    notification_id: int
    error: str


@dataclass
class Outcome:
    status: str  # the row's status after the attempt: sent, pending (retry scheduled) or dead
    error: str | None = None  # why the attempt failed


class DeliveryFailed(Exception):
    """A legacy delivery attempt failed (recorded on the row); raised so Temporal retries it."""


def deliverable_address(address: str) -> str:
    """The address as any SMTP server takes it where it can be: an internationalised domain in its ASCII (IDNA)
    form. A local part beyond ASCII needs a server with SMTPUTF8, which smtplib then asks for; a server without it
    refuses the send, which is retried and ends in the dead letters support sees."""
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return address


class _SmtpSend:
    """One message sent in a worker thread, which the event loop can cut short by shutting its socket."""

    def __init__(self, settings: Settings, message: EmailMessage) -> None:
        self.settings = settings
        self.message = message
        self.smtp: smtplib.SMTP | None = None
        self.aborted = threading.Event()

    def run(self) -> None:
        settings = self.settings
        # Created here, not in the event loop: without local_hostname it looks up this host's FQDN.
        with smtplib.SMTP(timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            self.smtp = smtp
            smtp.connect(settings.smtp_host, settings.smtp_port)
            if self.aborted.is_set():  # cut while connecting, before the socket could be shut
                raise TimeoutError("SMTP send cut short")
            if settings.smtp_user:
                smtp.starttls()
                smtp.login(settings.smtp_user, settings.require("smtp_password"))
            smtp.send_message(self.message)

    def abort(self) -> None:
        """From the event loop: make the thread's blocked socket call fail now."""
        self.aborted.set()
        sock = self.smtp.sock if self.smtp is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Delivery:
    """Deliver one notification row that the caller holds locked, and record the outcome in the caller's
    transaction. The one way to build and send an email, for the sender and the legacy activities alike."""

    def __init__(self, settings: Settings, send_timeout_seconds: float = SEND_TIMEOUT_SECONDS) -> None:
        self.settings = settings
        self.send_timeout_seconds = send_timeout_seconds

    async def attempt(
        self, session: AsyncSession, note: Notification, *, dead_letter: bool = True
    ) -> Outcome:
        """`note` must be locked (FOR UPDATE) in `session`. With `dead_letter`, the last allowed failure marks
        the row dead; without (legacy), the row stays as it was and its workflow decides. Traced as
        `smtp send` under the trace of what queued the row (its `trace_context`)."""
        try:
            if note.channel == NotificationChannel.EMAIL:
                recipient = await session.get(User, note.recipient_id)
                if recipient is None:
                    raise LookupError(f"recipient {note.recipient_id} not found")
                with (
                    resumed(note.trace_context),
                    _TRACER.start_as_current_span(
                        "smtp send",
                        kind=SpanKind.CLIENT,
                        attributes={
                            "server.address": self.settings.smtp_host,
                            "server.port": self.settings.smtp_port,
                            "bazaar.notification.id": note.id,
                            "bazaar.notification.event_type": note.event_type,
                            "bazaar.notification.attempt": note.attempts + 1,
                        },
                    ),
                ):
                    await self.send(self.email(note, recipient))
        except Exception as exc:  # any failure of this delivery is retried, then dead-lettered, never lost
            # PostgreSQL text holds no NUL: a server's odd reply must not make the failure unrecordable.
            error = f"{type(exc).__name__}: {exc}".replace("\x00", "")[:2000]
            return Outcome(await self._failed(session, note, error, dead_letter), error)
        await session.execute(
            update(Notification)
            .where(Notification.id == note.id)
            .values(status="sent", sent_at=func.clock_timestamp(), last_error=None)
            .execution_options(synchronize_session=False)
        )
        return Outcome("sent")

    async def _failed(self, session: AsyncSession, note: Notification, error: str, dead_letter: bool) -> str:
        attempts = note.attempts + 1
        if dead_letter and attempts >= self.settings.notification_max_attempts:
            await session.execute(
                update(Notification)
                .where(Notification.id == note.id)
                .values(attempts=attempts, last_error=error)
                .execution_options(synchronize_session=False)
            )
            await bury(session, note.id, error)
            return "dead"
        delay = self.retry_delay(attempts)
        # On the database clock, which the claim query compares with; from now, not from the claim.
        await session.execute(
            update(Notification)
            .where(Notification.id == note.id)
            .values(attempts=attempts, last_error=error, next_attempt_at=func.clock_timestamp() + delay)
            .execution_options(synchronize_session=False)
        )
        return note.status

    def retry_delay(self, attempts: int) -> timedelta:
        """Wait before the next attempt after `attempts` failures: first retry delay, doubling, capped."""
        seconds = self.settings.notification_first_retry_seconds * 2.0 ** min(attempts - 1, 60)
        return timedelta(seconds=min(seconds, RETRY_CAP.total_seconds()))

    def email(self, note: Notification, recipient: User) -> EmailMessage:
        message = EmailMessage(policy=MAIL_POLICY)
        message["From"] = self.settings.smtp_from
        message["To"] = deliverable_address(recipient.email)
        message["Subject"] = note.subject
        message["Message-ID"] = f"<notification-{note.id}@bazaar.local>"  # the same on every retry
        if note.event_type not in notifications.EVENT_TYPES:
            # An account's own mail (verify the address, reset the password): nothing a user can opt out of, so no
            # unsubscribe link that would only be refused.
            message.set_content(note.body)
            return message
        token = notifications.unsubscribe_token(
            self.settings.link_secret(), recipient.id, note.event_type, NotificationChannel.EMAIL
        )
        unsubscribe = f"{self.settings.public_base_url}/v1/notifications/unsubscribe?token={token}"
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(f"{note.body}\n--\nStop these emails: {unsubscribe}\n")
        return message

    async def send(self, message: EmailMessage) -> None:
        """SMTP in a thread (never blocks the event loop), for at most `send_timeout_seconds`. When cut short
        or cancelled, this still waits for the thread to stop (within one socket timeout), so the caller's
        row lock outlives the send: never two sends of one row at a time."""
        send = _SmtpSend(self.settings, message)
        thread = asyncio.ensure_future(asyncio.to_thread(send.run))
        try:
            await asyncio.wait_for(asyncio.shield(thread), self.send_timeout_seconds)
        except BaseException as exc:
            if thread.done():
                raise  # the send's own error
            send.abort()
            await asyncio.wait([thread])
            accepted = not thread.cancelled() and thread.exception() is None
            if isinstance(exc, TimeoutError):
                if accepted:
                    return  # the message was accepted before the cut; only the goodbye was slow
                raise TimeoutError(f"SMTP send took longer than {self.send_timeout_seconds:g}s") from None
            raise


async def bury(session: AsyncSession, notification_id: int, error: str) -> None:
    """Mark the row dead and (re)open its dead letter: listed and replayed by support."""
    await session.execute(
        update(Notification)
        .where(Notification.id == notification_id)
        .values(status="dead")
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        insert(DeadLetter)
        .values(notification_id=notification_id, error=error[:2000])
        .on_conflict_do_update(
            index_elements=["notification_id"],
            set_={"error": error[:2000], "failed_at": func.now(), "replayed_at": None},
        )
    )


def _due() -> Select[Notification]:
    """The next due row that no other sender holds, locked (uses ix_notifications_due)."""
    return (
        select(Notification)
        .where(notifications.PENDING, Notification.next_attempt_at <= func.now())
        .order_by(Notification.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


WAKE_DELAY_SECONDS = 0.05


class OutboxLoops:
    """`concurrency` loops draining one outbox, each handling one row at a time (`deliver_next`, falsy when
    nothing was due) in transactions of its own pool. Woken by NOTIFY on `channel`, and polling every
    `poll_seconds` for retries that fall due and for wake-ups missed while the LISTEN connection was down."""

    channel: str
    name: str

    def __init__(
        self, settings: Settings, *, concurrency: int, poll_seconds: float, stop_grace: float
    ) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.stop_grace = stop_grace  # how long work under way may take to finish on stop
        # Its own small pool: a slow mail server or endpoint holds these connections, never the activities' ones.
        self.engine: AsyncEngine = create_async_engine(
            settings.database_url, pool_size=concurrency, max_overflow=0, pool_pre_ping=True
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._wakeup = asyncio.Event()
        self._pending_wake: asyncio.TimerHandle | None = None

    async def deliver_next(self) -> object:
        raise NotImplementedError

    async def close(self) -> None:
        await self.engine.dispose()

    def wake(self) -> None:
        """Wake every idle loop (each waits on the event it saw before it last looked for rows)."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def wake_soon(self) -> None:
        """A NOTIFY: wake the loops a moment later, once for a burst of NOTIFYs. Neither a mail nor a webhook is
        urgent to the millisecond, and the transaction that sent it usually belongs to an order's transition
        whose workflow task is still finishing: the sender's work should not compete with it."""
        if self._pending_wake is None:

            def fire() -> None:
                self._pending_wake = None
                self.wake()

            self._pending_wake = asyncio.get_running_loop().call_later(WAKE_DELAY_SECONDS, fire)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; survives database (and mail server or endpoint) outages. On stop, work under way
        finishes (each is bounded by its timeout)."""
        listener = asyncio.create_task(
            listen_forever(
                self.settings.database_url,
                {self.channel: lambda _: self.wake_soon()},
                on_state=lambda up: self.wake() if up else None,
            )
        )
        loops = [asyncio.create_task(self._loop(stop)) for _ in range(self.concurrency)]
        log.info("%s running (%d at a time)", self.name, self.concurrency)
        try:
            await stop.wait()
            # Work under way finishes (bounded by its timeout) rather than leave a half-done row.
            await asyncio.wait(loops, timeout=self.stop_grace)
        finally:
            if self._pending_wake is not None:
                self._pending_wake.cancel()
            for task in (listener, *loops):
                task.cancel()
            await asyncio.gather(listener, *loops, return_exceptions=True)
            await self.close()

    async def _loop(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            wakeup = self._wakeup  # taken before looking, so a NOTIFY sent while we look is not missed
            try:
                delivered = await self.deliver_next()
            except Exception as exc:  # the database is unreachable: retry, a little later each time
                failures += 1
                log.warning("%s: %r", self.name, exc)
                await _first(stop, None, min(self.poll_seconds * failures, 30.0))
                continue
            failures = 0
            if not delivered:
                await _first(stop, wakeup, self.poll_seconds)


class NotificationSender(OutboxLoops):
    """Drains the notification outbox: each loop claims and delivers one due row at a time in its own
    transaction. Woken by NOTIFY on `bazaar.trust.notifications.OUTBOX_CHANNEL`."""

    channel = notifications.OUTBOX_CHANNEL
    name = "notification sender"

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = 4,
        poll_seconds: float = 2.0,
        send_timeout_seconds: float = SEND_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(
            settings,
            concurrency=concurrency,
            poll_seconds=poll_seconds,
            stop_grace=send_timeout_seconds + SMTP_TIMEOUT_SECONDS + 5,
        )
        self.delivery = Delivery(settings, send_timeout_seconds)

    async def deliver_next(self) -> Outcome | None:
        """Claim one due row and deliver it while holding its lock; None when no row is due."""
        async with self.sessionmaker() as session, session.begin():
            note = await session.scalar(_due())
            if note is None:
                return None
            outcome = await self.delivery.attempt(session, note)
        if outcome.error is not None:
            with resumed(note.trace_context):  # the line ends with the trace id of what queued the mail
                log.warning("notification %s: %s (now %s)", note.id, outcome.error, outcome.status)
        return outcome


class WebhookSender(OutboxLoops):
    """Delivers webhooks (bazaar.integrations.delivery): each loop fans new events out to endpoints and sends one
    due delivery at a time. Woken by NOTIFY on `bazaar.integrations.delivery.CHANNEL` (written events, replays).
    In the sender process beside the notification outbox: the same kind of work, the same way."""

    channel = webhooks.CHANNEL
    name = "webhook sender"

    def __init__(self, settings: Settings, *, concurrency: int = 4, poll_seconds: float = 2.0) -> None:
        super().__init__(
            settings,
            concurrency=concurrency,
            poll_seconds=poll_seconds,
            stop_grace=settings.webhook_timeout_seconds + 5,
        )
        # One connection pool to endpoints for all loops; redirects are not followed (a 3xx is a failure).
        self.client = httpx.AsyncClient(follow_redirects=False, timeout=settings.webhook_timeout_seconds)
        self.webhooks = webhooks.Webhooks(
            settings, self.sessionmaker, self.client, on_new_deliveries=self.wake
        )

    async def deliver_next(self) -> bool:
        return await self.webhooks.step()

    async def close(self) -> None:
        await self.client.aclose()
        await super().close()


async def _first(stop: asyncio.Event, wakeup: asyncio.Event | None, seconds: float) -> None:
    """Wait until `stop` or `wakeup` is set, or `seconds` pass."""
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, wakeup) if e is not None]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class NotificationActivities:
    """The activities of NotificationWorkflow, kept for workflows started before the outbox."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.delivery = Delivery(settings)

    @activity.defn
    async def prepare_notifications(self, req: NotificationEvent) -> list[int]:
        async with transaction() as session:
            return await notifications.prepare(
                session,
                req.event_key,
                req.event_type,
                [uuid.UUID(r) for r in req.recipient_ids],
                req.recipient_roles,
                req.data,
                self.settings.public_base_url,
            )

    @activity.defn
    async def deliver_notification(self, notification_id: int) -> str:
        """Deliver one row; returns its status. A row a sender holds right now is left to it (`pending`).
        Raises (so Temporal retries) when the attempt fails; the attempt is recorded first."""
        async with transaction() as session:
            note = await session.scalar(
                select(Notification)
                .where(Notification.id == notification_id)
                .with_for_update(skip_locked=True)
            )
            if note is None:
                status = await session.scalar(
                    select(Notification.status).where(Notification.id == notification_id)
                )
                return status or "missing"
            if note.status == "sent":
                return "sent"
            outcome = await self.delivery.attempt(session, note, dead_letter=False)
        if outcome.error is not None:
            raise DeliveryFailed(outcome.error)
        return outcome.status

    @activity.defn
    async def dead_letter_notification(self, req: DeadLetterRequest) -> None:
        async with transaction() as session:
            note = await session.scalar(
                select(Notification)
                .where(Notification.id == req.notification_id)
                .with_for_update(skip_locked=True)
            )
            # Missing, delivered, or held by a sender right now (which records its own outcome).
            if note is None or note.status == "sent":
                return
            await bury(session, note.id, req.error)
