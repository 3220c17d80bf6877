"""Request and response models of returns (bazaar/returns, workflows/returns.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.payout_schemas import AppUrl
from api.schemas import LineQuantity, OrderLineOut, Tracking, each_listing_once, example
from bazaar.auth import Principal, actor_of
from bazaar.json_types import JsonBool
from bazaar.orders.types import line_view
from bazaar.payments.money import Money
from bazaar.returns.models import Return, ReturnReason, ReturnStatus
from bazaar.returns.rules import allowed_to
from bazaar.returns.types import ReturnAction
from bazaar.temporal import return_workflow_id
from bazaar.text import multi_line, single_line


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listing_id: uuid.UUID
    quantity: LineQuantity = 1


class ReturnIn(BaseModel):
    model_config = example(
        {
            "lines": [{"listing_id": "0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10", "quantity": 1}],
            "reason": "damaged",
            "message": "The frame arrived bent.",
            "photos": ["https://photos.example.com/bent-frame.jpg"],
        }
    )
    lines: list[ReturnLineIn] = Field(
        min_length=1, max_length=50, description="which lines, and how many of each"
    )
    reason: ReturnReason
    message: Annotated[str, multi_line(max_length=2000)] | None = None
    photos: list[AppUrl] = Field(default=[], max_length=10, description="links to photos of the items")

    @field_validator("lines")
    @classmethod
    def _each_listing_once(cls, lines: list[ReturnLineIn]) -> list[ReturnLineIn]:
        each_listing_once(lines)
        return lines


class ReturnDecisionIn(BaseModel):
    """An approval, optionally with a note."""

    model_config = example({"reason": "Send it back in its box, please"}, {})
    reason: Annotated[str, single_line(max_length=200)] | None = None


class ReturnRejectIn(BaseModel):
    """Why the return is rejected (the buyer reads it)."""

    model_config = example({"reason": "The item shows wear it did not have when shipped"})
    reason: Annotated[str, single_line(min_length=1, max_length=200)]


class ReturnShipIn(BaseModel):
    model_config = example({"carrier": "DHL", "tracking_number": "JD014600003SE"}, {})
    carrier: Annotated[str, single_line(max_length=60)] | None = None
    tracking_number: Annotated[str, single_line(max_length=100)] | None = None
    tracking_url: AppUrl | None = None


class ReturnReceiveIn(BaseModel):
    model_config = example({"restock": True}, {})
    restock: JsonBool = Field(default=True, description="put the returned lines back on sale")


class ReturnResolveIn(BaseModel):
    model_config = example(
        {"approve": True}, {"approve": False, "reason": "Outside what the listing promised"}
    )
    approve: JsonBool
    reason: Annotated[str, single_line(max_length=200)] | None = Field(
        default=None, validate_default=True, description="required to reject (`approve: false`)"
    )
    restock: JsonBool = Field(
        default=False,
        description="after receipt: put the returned lines back on sale (they go back anyway if the seller asked "
        "for it when they arrived)",
    )

    @field_validator("reason")
    @classmethod
    def _why_rejected(cls, reason: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("approve") is False and not reason:
            raise ValueError("say why the return is rejected")
        return reason


class ReturnOut(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    buyer_id: uuid.UUID
    seller_id: uuid.UUID
    status: ReturnStatus
    status_reason: str | None = Field(
        description="why it was rejected, escalated or cancelled, or `order_refunded_in_full` for a return the "
        "order's own refund in full settled (refunded, nothing more refunded)"
    )
    reason: ReturnReason | None = Field(description="the buyer's reason")
    message: str | None = None
    photos: list[str] = []
    lines: list[OrderLineOut]
    refund: Money = Field(description="what the buyer gets back once the seller has the lines")
    tracking: Tracking | None = None
    restocked: bool | None = Field(
        description="whether the seller put the lines back on sale (after receipt)"
    )
    allowed_actions: list[ReturnAction] = Field(
        description="what you (the caller) may do to the return now: your moves as the order's buyer or seller, "
        "or support's"
    )
    workflow_id: str
    created_at: datetime | None = None

    @classmethod
    def of_row(cls, row: Return, *, caller: Principal, approvable: bool) -> ReturnOut:
        """The stored return as `caller` sees it (`approvable`: False when approving it would be refused, its
        order holding nothing more to refund: `bazaar.returns.returns.unapprovable`)."""
        actor = actor_of(caller)
        allowed = allowed_to(row.status, actor, str(row.buyer_id), str(row.seller_id))
        return cls(
            id=row.id,
            order_id=row.order_id,
            buyer_id=row.buyer_id,
            seller_id=row.seller_id,
            status=row.status,
            status_reason=row.status_reason,
            reason=row.reason,
            message=row.message,
            photos=list(row.photos or []),
            # A refunded return's lines are refunded whole (the order counts them in its own lines too).
            lines=[
                OrderLineOut.of(
                    line_view(line), row.currency, line.quantity if row.status == ReturnStatus.REFUNDED else 0
                )
                for line in row.lines
            ],
            refund=Money(amount=row.amount, currency=row.currency),
            tracking=row.tracking,
            restocked=row.restocked,
            allowed_actions=[a for a in allowed if approvable or a != ReturnAction.APPROVE],
            workflow_id=return_workflow_id(str(row.id)),
            created_at=row.created_at,
        )


class ReturnPage(BaseModel):
    items: list[ReturnOut]
