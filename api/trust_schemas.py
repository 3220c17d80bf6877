"""Request and response models for reviews, reputation, notifications and support tools.

Request strings follow api/schemas.py's rule: labels are a single line, prose is multi-line (bazaar.text).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, RootModel

from api.schemas import NamedEnum, OrderSide, example
from bazaar.accounts import mail as account_mail
from bazaar.json_types import JsonBool, JsonInt
from bazaar.models import Role
from bazaar.orders.types import Party
from bazaar.text import multi_line
from bazaar.trust.models import (
    DeadLetter,
    Dispute,
    DisputeMessage,
    DisputeMessageKind,
    DisputeResolution,
    DisputeSource,
    DisputeStatus,
    Notification,
    NotificationChannel,
    NotificationStatus,
    Review,
    ReviewDirection,
    TrustFlagKind,
)
from bazaar.trust.notifications import EVENT_TYPES

# A notification's event type: one of the templates (bazaar/trust/templates/notifications). Listed in the
# schema only: a request with another one is refused by the domain (with the list), and stored rows keep theirs.
NotificationEventType = Annotated[
    str,
    NamedEnum(
        "NotificationEventType",
        sorted(EVENT_TYPES),
        "what a notification is about: one of its templates (bazaar/trust/templates/notifications)",
    ),
]

# What a mail in the outbox is about: a notification's event type, or one of the account mails (verify the
# address, reset the password: bazaar/accounts/templates, never in an inbox), which can end in the dead letters too.
MailedEventType = Annotated[
    str,
    NamedEnum(
        "MailedEventType",
        sorted(EVENT_TYPES | account_mail.EVENT_TYPES),
        "what a mail is about: a notification's event type (NotificationEventType) or an account mail's "
        "(account_verify_email, account_password_reset, account_registration_attempt)",
    ),
]


class ReviewIn(BaseModel):
    model_config = example({"rating": 5, "text": "Exactly as described"})
    rating: JsonInt = Field(ge=1, le=5)
    text: Annotated[str, multi_line(max_length=2000)] = ""


class ReviewOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    author_id: uuid.UUID
    subject_id: uuid.UUID
    direction: ReviewDirection
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
            direction=review.direction,
            rating=review.rating,
            text=review.text,
            created_at=review.created_at,
            revealed=review.revealed_at is not None,
            hidden=review.hidden_at is not None,
        )


class HideReviewIn(BaseModel):
    model_config = example({"reason": "Insults the seller"})
    reason: Annotated[str, multi_line(min_length=3, max_length=200)]


class ReputationOut(BaseModel):
    score: float = Field(description="Bayesian average of ratings received (1-5)")
    rating_count: int
    orders_completed: int
    orders_ended: int = Field(
        description="the seller's ended orders (completed, cancelled by the seller, refunded without completing): "
        "what the rates are shares of; while it is 0 they are 0 and say nothing yet"
    )
    # Shares of the seller's ended orders (bazaar.trust.reputation.rates).
    completion_rate: float = Field(ge=0, le=1, description="share of ended orders that completed")
    cancellation_rate: float = Field(ge=0, le=1, description="share of ended orders the seller cancelled")
    dispute_rate: float = Field(
        ge=0, le=1, description="share of ended orders disputed by the buyer or through a chargeback"
    )


class ProfileOut(BaseModel):
    id: uuid.UUID
    display_name: str
    member_since: datetime
    roles: list[Role]
    reputation: ReputationOut


class TrustFlagOut(BaseModel):
    id: int
    kind: TrustFlagKind
    subject_id: uuid.UUID
    details: dict[str, Any]
    created_at: datetime


class NotificationOut(BaseModel):
    id: int
    event_type: NotificationEventType
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
    model_config = example({"event_type": "order_paid", "channel": "email", "enabled": False})
    event_type: NotificationEventType
    channel: NotificationChannel
    enabled: JsonBool


class PreferencesOut(RootModel[dict[NotificationEventType, dict[NotificationChannel, bool]]]):
    """Per notification event type, per channel (`inbox`, `email`): whether it is sent, e.g.
    `{"order_paid": {"inbox": true, "email": false}}`."""


class MarkedOut(BaseModel):
    marked: int = Field(description="how many notifications this marked read (0: they already were)")


class UnsubscribedOut(BaseModel):
    status: Literal["unsubscribed"] = "unsubscribed"
    event_type: NotificationEventType
    channel: NotificationChannel


class ReplayOut(BaseModel):
    notification_id: int  # the same id as DeadLetterOut.notification_id
    status: NotificationStatus | Literal["missing"] = Field(
        description="pending: queued again (a repeated replay changes nothing); sent: it was delivered "
        "meanwhile; dead, missing: nothing was put back",
        examples=["pending"],
    )


class DeadLetterOut(BaseModel):
    id: int
    notification_id: int
    event_type: MailedEventType
    channel: NotificationChannel
    recipient_id: uuid.UUID
    error: str
    failed_at: datetime

    @classmethod
    def of(cls, dead: DeadLetter, note: Notification) -> DeadLetterOut:
        return cls(
            id=dead.id,
            notification_id=note.id,
            event_type=note.event_type,
            channel=note.channel,
            recipient_id=note.recipient_id,
            error=dead.error,
            failed_at=dead.failed_at,
        )


class DisputeReasonCode(enum.StrEnum):
    """What went wrong, as the buyer files it."""

    NOT_RECEIVED = "not_received"
    NOT_AS_DESCRIBED = "not_as_described"
    DAMAGED = "damaged"
    COUNTERFEIT = "counterfeit"
    OTHER = "other"


class DisputePostKind(enum.StrEnum):
    """What a party or support adds to a dispute's thread."""

    MESSAGE = "message"
    EVIDENCE = "evidence"


class DisputeIn(BaseModel):
    """A buyer opens a dispute on a fulfilled order."""

    model_config = example({"reason_code": "not_as_described", "message": "The frame is 52 cm, not 56 cm"})
    reason_code: DisputeReasonCode
    message: Annotated[str, multi_line(min_length=1, max_length=2000)] = Field(
        description="what went wrong, for the seller and support"
    )


class DisputeMessageBody(BaseModel):
    model_config = example({"body": "Photos of the frame attached", "kind": "evidence"})
    body: Annotated[str, multi_line(min_length=1, max_length=5000)]
    kind: DisputePostKind = DisputePostKind.MESSAGE


class InfoRequestBody(BaseModel):
    model_config = example(
        {"party": "seller", "question": "Please send the shipping receipt", "deadline_hours": 48}
    )
    party: OrderSide
    question: Annotated[str, multi_line(min_length=3, max_length=2000)]
    deadline_hours: JsonInt = Field(default=48, ge=1, le=24 * 14)


class DisputeThreadEntryOut(BaseModel):
    at: datetime
    author_role: Party
    author_id: uuid.UUID | None
    kind: DisputeMessageKind
    body: str
    data: dict[str, Any]


class DisputeSummaryOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    source: DisputeSource
    reason_code: str = Field(
        description="the buyer's reason (see DisputeIn), or `chargeback`; cases opened by earlier versions "
        "may hold other codes"
    )
    provider_dispute_id: str | None  # the card network's dispute (chargebacks)
    status: DisputeStatus
    resolution: DisputeResolution | None
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
        "status": dispute.status,
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
                    author_role=Party(m.author_role),
                    author_id=m.author_id,
                    kind=m.kind,
                    body=m.body,
                    data=m.data,
                )
                for m in thread
            ],
        )
