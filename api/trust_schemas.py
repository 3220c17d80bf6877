"""Request and response models for reviews, reputation, notifications and support tools."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bazaar.trust_models import DeadLetter, Notification, NotificationChannel, Review


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: int = Field(ge=1, le=5)
    text: str = Field(default="", max_length=2000)


class ReviewOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    author_id: uuid.UUID
    subject_id: uuid.UUID
    direction: str
    rating: int
    text: str
    created_at: datetime
    revealed: bool
    hidden: bool

    @classmethod
    def of(cls, review: Review) -> ReviewOut:
        return cls(
            id=review.id,
            order_id=review.order_id,
            author_id=review.author_id,
            subject_id=review.subject_id,
            direction=review.direction.value,
            rating=review.rating,
            text=review.text,
            created_at=review.created_at,
            revealed=review.revealed_at is not None,
            hidden=review.hidden_at is not None,
        )


class HideReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=200)


class ReputationOut(BaseModel):
    score: float = Field(description="Bayesian average of ratings received (1-5)")
    rating_count: int
    orders_completed: int
    completion_rate: float
    cancellation_rate: float
    dispute_rate: float


class ProfileOut(BaseModel):
    id: uuid.UUID
    display_name: str
    member_since: datetime
    roles: list[str]
    reputation: ReputationOut


class TrustFlagOut(BaseModel):
    id: int
    kind: str
    subject_id: uuid.UUID
    details: dict[str, Any]
    created_at: datetime


class NotificationOut(BaseModel):
    id: int
    event_type: str
    subject: str
    body: str
    data: dict[str, str]
    created_at: datetime
    read: bool

    @classmethod
    def of(cls, note: Notification) -> NotificationOut:
        return cls(
            id=note.id,
            event_type=note.event_type,
            subject=note.subject,
            body=note.body,
            data=note.data,
            created_at=note.created_at,
            read=note.read_at is not None,
        )


class InboxOut(BaseModel):
    items: list[NotificationOut]
    unread_count: int
    next_cursor: int | None


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_type: str = Field(max_length=64)
    channel: NotificationChannel
    enabled: bool


class DeadLetterOut(BaseModel):
    id: int
    notification_id: int
    event_type: str
    channel: str
    recipient_id: uuid.UUID
    error: str
    failed_at: datetime

    @classmethod
    def of(cls, dead: DeadLetter, note: Notification) -> DeadLetterOut:
        return cls(
            id=dead.id,
            notification_id=note.id,
            event_type=note.event_type,
            channel=note.channel.value,
            recipient_id=note.recipient_id,
            error=dead.error,
            failed_at=dead.failed_at,
        )
