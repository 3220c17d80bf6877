"""Data model of trust and engagement: reviews, reputation, disputes, notifications.

Kept beside `bazaar.models` (same Base, same metadata) so each area stays readable; Alembic sees both.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bazaar.models import Base, Timestamped, _enum, _text_enum


class ReviewDirection(enum.StrEnum):
    BUYER_TO_SELLER = "buyer_to_seller"
    SELLER_TO_BUYER = "seller_to_buyer"


class Review(Base):
    """One side's review of the other after a completed order; hidden until revealed (blind reviews)."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("order_id", "author_id", name="uq_reviews_order_author"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index("ix_reviews_subject_revealed", "subject_id", "revealed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    direction: Mapped[ReviewDirection] = mapped_column(_enum(ReviewDirection, "review_direction"))
    rating: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hidden_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hidden_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    hidden_reason: Mapped[str | None] = mapped_column(String(200))


class ReviewWindow(Base):
    """Opened when an order completes: both sides may review until `closes_at`; then reviews are revealed."""

    __tablename__ = "review_windows"

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Reputation(Base):
    """A user's stored reputation: updated when a review is revealed or an order ends, never on read."""

    __tablename__ = "reputations"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    # Bayesian average of the ratings received (prior: see bazaar.trust.reputation), 1.0-5.0.
    score: Mapped[float] = mapped_column(Float, default=0.0)
    orders_completed: Mapped[int] = mapped_column(Integer, default=0)
    orders_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    orders_disputed: Mapped[int] = mapped_column(Integer, default=0)
    orders_refunded: Mapped[int] = mapped_column(Integer, default=0)  # ended refunded, never completed
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class TrustFlagKind(enum.StrEnum):
    REPEATED_PAIR = "repeated_pair"  # the same author reviewed the same subject again and again
    NEW_ACCOUNT_BURST = "new_account_burst"  # a burst of five-star reviews from new accounts


class TrustFlag(Base):
    """A suspicious pattern for support to look at (never silently dropped)."""

    __tablename__ = "trust_flags"
    __table_args__ = (UniqueConstraint("kind", "subject_id", "evidence_key", name="uq_trust_flag"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[TrustFlagKind] = mapped_column(_text_enum(TrustFlagKind, 64))
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    evidence_key: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DisputeStatus(enum.StrEnum):
    OPEN = "open"
    AWAITING_INFO = "awaiting_info"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class DisputeSource(enum.StrEnum):
    """Who disputes an order: its buyer, or the buyer's bank (a chargeback)."""

    BUYER = "buyer"
    CHARGEBACK = "chargeback"


class DisputeResolution(enum.StrEnum):
    """How support (or the card network's decision) settles a dispute's money."""

    RELEASE = "release"  # escrow to the seller
    REFUND = "refund"  # all of it back to the buyer
    PARTIAL_REFUND = "partial_refund"  # part back to the buyer, the rest to the seller


class DisputeMessageKind(enum.StrEnum):
    """An entry of a dispute's thread."""

    OPENED = "opened"
    MESSAGE = "message"
    EVIDENCE = "evidence"
    INFO_REQUEST = "info_request"  # support asks the buyer or the seller, with a deadline
    NO_RESPONSE = "no_response"  # that deadline passed without an answer
    ESCALATION = "escalation"  # unresolved past the escalation deadline
    CHARGEBACK = "chargeback"  # the card network joined the case


class Dispute(Timestamped, Base):
    __tablename__ = "disputes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    source: Mapped[DisputeSource] = mapped_column(_text_enum(DisputeSource, 16))
    reason_code: Mapped[str] = mapped_column(String(32))
    status: Mapped[DisputeStatus] = mapped_column(_enum(DisputeStatus, "dispute_status"))
    resolution: Mapped[DisputeResolution | None] = mapped_column(_text_enum(DisputeResolution, 32))
    refund_amount: Mapped[int | None] = mapped_column(BigInteger)
    provider_dispute_id: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DisputeMessage(Base):
    """The dispute thread: messages, evidence and requests for information."""

    __tablename__ = "dispute_messages"
    __table_args__ = (UniqueConstraint("dedupe_key", name="uq_dispute_message_dedupe"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dispute_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("disputes.id"), index=True)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    author_role: Mapped[str] = mapped_column(String(16))  # a bazaar.orders.types.Party
    kind: Mapped[DisputeMessageKind] = mapped_column(_text_enum(DisputeMessageKind, 24))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"  # due at next_attempt_at (the sender claims it)
    SENT = "sent"
    DEAD = "dead"  # out of attempts: a dead letter for support


class NotificationChannel(enum.StrEnum):
    INBOX = "inbox"
    EMAIL = "email"


class Notification(Base):
    """One (event, recipient, channel) delivery: the unique key makes each one happen at most once.

    Also the notification outbox: a `pending` row is due at `next_attempt_at`; a sender claims it with
    SELECT ... FOR UPDATE SKIP LOCKED and sends while holding that row lock (activities.notifications).
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("event_key", "recipient_id", "channel", name="uq_notification_delivery"),
        Index("ix_notifications_inbox", "recipient_id", "channel", "read_at"),
        # The claim query's index: partial on the status, so it holds only the few rows still to deliver.
        Index("ix_notifications_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(64))
    recipient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    channel: Mapped[NotificationChannel] = mapped_column(_enum(NotificationChannel, "notification_channel"))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[NotificationStatus] = mapped_column(
        _text_enum(NotificationStatus, 16), default=NotificationStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(Text)  # of the last failed attempt, for operators
    # W3C traceparent of what queued it (an order's transition under an API request): the sender's delivery
    # continues that trace, so the request's trace shows the mail it caused (bazaar/telemetry.py).
    trace_context: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeadLetter(Base):
    """A notification that failed its last attempt; operators list and replay these."""

    __tablename__ = "notification_dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), unique=True)
    error: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NotificationPreference(Base):
    """Opt-outs per event type and channel (absent row = enabled)."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[NotificationChannel] = mapped_column(
        _enum(NotificationChannel, "notification_channel"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
