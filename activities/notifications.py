"""Notification side effects: create the deliveries, send them (inbox or SMTP), dead-letter the failures.

Each (event, recipient, channel) row is delivered at most once: a sent row is never sent again. (An SMTP
server that accepted a message whose acknowledgement was lost can still see it twice; the Message-ID is
stable per delivery so mail clients fold such a duplicate.)
"""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from bazaar import notifications
from bazaar.db import transaction
from bazaar.models import User
from bazaar.settings import Settings
from bazaar.trust_models import DeadLetter, Notification, NotificationChannel


@dataclass
class PrepareNotifications:
    event_key: str  # unique per business event, e.g. "order:<id>:paid"
    event_type: str
    recipient_ids: list[str] = field(default_factory=list)
    recipient_roles: list[str] = field(default_factory=list)  # e.g. ["support"]
    data: dict[str, str] = field(default_factory=dict)


@dataclass
class DeadLetterRequest:
    notification_id: int
    error: str


class NotificationActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn
    async def prepare_notifications(self, req: PrepareNotifications) -> list[int]:
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
        """Deliver one row; returns its final status. Raises (so Temporal retries) when SMTP fails."""
        async with transaction() as session:
            note = await session.scalar(
                select(Notification).where(Notification.id == notification_id).with_for_update()
            )
            if note is None or note.status == "sent":
                return note.status if note else "missing"
            note.attempts += 1
            recipient = await session.get(User, note.recipient_id)
            assert recipient is not None
            message = self._email(note, recipient) if note.channel == NotificationChannel.EMAIL else None
        if message is not None:
            await asyncio.to_thread(self._send, message)
        async with transaction() as session:
            note = await session.get(Notification, notification_id)
            assert note is not None
            note.status = "sent"
            note.sent_at = datetime.now(UTC)
        return "sent"

    @activity.defn
    async def dead_letter_notification(self, req: DeadLetterRequest) -> None:
        async with transaction() as session:
            note = await session.get(Notification, req.notification_id)
            if note is None or note.status == "sent":
                return
            note.status = "dead"
            await session.execute(
                insert(DeadLetter)
                .values(notification_id=req.notification_id, error=req.error[:2000])
                .on_conflict_do_update(
                    index_elements=["notification_id"],
                    set_={"error": req.error[:2000], "failed_at": datetime.now(UTC), "replayed_at": None},
                )
            )

    def _email(self, note: Notification, recipient: User) -> EmailMessage:
        token = notifications.unsubscribe_token(
            self.settings.require("jwt_secret"), recipient.id, note.event_type, NotificationChannel.EMAIL
        )
        unsubscribe = f"{self.settings.public_base_url}/v1/notifications/unsubscribe?token={token}"
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = recipient.email
        message["Subject"] = note.subject
        message["Message-ID"] = f"<notification-{note.id}@bazaar.local>"  # the same on every retry
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(f"{note.body}\n--\nStop these emails: {unsubscribe}\n")
        return message

    def _send(self, message: EmailMessage) -> None:
        settings = self.settings
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            if settings.smtp_user:
                smtp.starttls()
                smtp.login(settings.smtp_user, settings.require("smtp_password"))
            smtp.send_message(message)
