"""Request and response models for reviews, reputation, notifications and support tools.

Request strings follow api/schemas.py's rule: labels are a single line, prose is multi-line (bazaar.text).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bazaar.text import multi_line, single_line
from bazaar.trust.models import DeadLetter, Dispute, DisputeMessage, Notification, NotificationChannel, Review


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: int = Field(ge=1, le=5)
    text: Annotated[str, multi_line(max_length=2000)] = ""


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
    reason: Annotated[str, multi_line(min_length=3, max_length=200)]


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
    event_type: Annotated[str, single_line(max_length=64)]
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


class DisputeIn(BaseModel):
    """A buyer opens a dispute on a fulfilled order."""

    model_config = ConfigDict(extra="forbid")
    reason_code: Literal["not_received", "not_as_described", "damaged", "counterfeit", "other"]
    message: Annotated[str, multi_line(min_length=1, max_length=2000)] = Field(
        description="what went wrong, for the seller and support"
    )


class DisputeMessageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Annotated[str, multi_line(min_length=1, max_length=5000)]
    kind: Literal["message", "evidence"] = "message"


class InfoRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    party: Literal["buyer", "seller"]
    question: Annotated[str, multi_line(min_length=3, max_length=2000)]
    deadline_hours: int = Field(default=48, ge=1, le=24 * 14)


class DisputeThreadEntryOut(BaseModel):
    at: datetime
    author_role: str
    author_id: uuid.UUID | None
    kind: str
    body: str
    data: dict[str, Any]


class DisputeSummaryOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    source: str  # buyer | chargeback
    reason_code: str
    provider_dispute_id: str | None  # the card network's dispute (chargebacks)
    status: str
    resolution: str | None
    refund_amount: int | None
    opened_at: datetime
    resolved_at: datetime | None

    @classmethod
    def of_case(cls, dispute: Dispute) -> DisputeSummaryOut:
        return cls(**_case_fields(dispute))


def _case_fields(dispute: Dispute) -> dict[str, Any]:
    return {
        "id": dispute.id,
        "order_id": dispute.order_id,
        "source": dispute.source,
        "reason_code": dispute.reason_code,
        "provider_dispute_id": dispute.provider_dispute_id,
        "status": dispute.status.value,
        "resolution": dispute.resolution,
        "refund_amount": dispute.refund_amount,
        "opened_at": dispute.created_at,
        "resolved_at": dispute.resolved_at,
    }


class DisputeOut(DisputeSummaryOut):
    thread: list[DisputeThreadEntryOut]

    @classmethod
    def of(cls, dispute: Dispute, thread: list[DisputeMessage]) -> DisputeOut:
        return cls(
            **_case_fields(dispute),
            thread=[
                DisputeThreadEntryOut(
                    at=m.created_at,
                    author_role=m.author_role,
                    author_id=m.author_id,
                    kind=m.kind,
                    body=m.body,
                    data=m.data,
                )
                for m in thread
            ],
        )
