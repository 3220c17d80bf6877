"""Request and response models at the HTTP edge (pydantic v2).

Every string a request carries is typed with `bazaar.text`: names, titles, codes and other labels are a single
line; prose (descriptions, reasons, notes, messages) is multi-line. Money in a request is a `Price` (what the
provider can charge); responses use `Money`, which accepts whatever is stored. Response models hold no input
rules, so stored data always serialises.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import pycountry
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from typing_extensions import TypedDict

from bazaar.accounts.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from bazaar.auth import Principal, actor_of
from bazaar.json_types import JSON_NUMBER
from bazaar.models import (
    AuditEvent,
    LedgerAccount,
    Order,
    OrderStatus,
    PaymentState,
    Role,
)
from bazaar.orders.rules import allowed_for, allowed_to
from bazaar.orders.types import (
    OrderAction,
    OrderEvent,
    OrderLineView,
    OrderView,
    Party,
    order_line_views,
    view_lines,
)
from bazaar.payments.money import AnsweredCurrency, ChargeableAmount, Money
from bazaar.temporal import order_workflow_id
from bazaar.text import multi_line, refuse_control_characters, single_line
from bazaar.trust.models import DisputeResolution

# PostgreSQL's bigint: the bound of any integer that may reach a query (beyond it, the database errs).
INT64_MAX = 2**63 - 1


def _iso_country(code: str) -> str:
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{code} is not an ISO 3166-1 country code")
    return code


CountryCode = Annotated[
    str, single_line(2, 2, pattern="^[A-Z]{2}$", strip=False), AfterValidator(_iso_country)
]


class OrderSide(enum.StrEnum):
    """Which side of an order: the buyer's or the seller's."""

    BUYER = "buyer"
    SELLER = "seller"


class SignupRole(enum.StrEnum):
    """The roles an account may take for itself (support is granted)."""

    BUYER = "buyer"
    SELLER = "seller"


class NamedEnum:
    """Pydantic metadata for `Annotated[str, NamedEnum(...)]`: a set of values known only at run time (e.g. the
    notification templates on disk) as one named enum in the document, referred to wherever it is used, so a
    generated client has one type for it. The values are listed, not checked: the domain checks them."""

    def __init__(self, name: str, values: list[str], description: str) -> None:
        self.name, self.values, self.description = name, values, description

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.str_schema(ref=self.name)  # a `ref`: one definition, and $refs to it

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        reference = handler(schema)
        handler.resolve_ref_schema(reference).update(
            title=self.name, description=self.description, enum=self.values
        )
        return reference


def example(*values: dict[str, Any]) -> ConfigDict:
    """A request model's config: examples for the document (and its clients), and no unknown fields."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [*values]})


def without_null(schema: dict[str, Any]) -> None:
    """Drop the null pydantic documents for a `X | None = None` (a PATCH field left out to keep it, an optional
    parameter a client leaves out: neither takes null)."""
    kept = [branch for branch in schema.pop("anyOf", []) if branch != {"type": "null"}]
    schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept} if kept else {})


def keep(description: str | None = None) -> Any:
    """A PATCH field: left out to keep it, never null (`PatchIn`)."""
    return Field(default=None, json_schema_extra=without_null, description=description)


KEEP = keep()


class PatchIn(BaseModel):
    """A PATCH body: only the fields sent change; a field is left out to keep it, and null is refused (a 422
    naming it) unless it is one of `NULLABLE`, where null clears it. One rule for every PATCH (found from outside:
    null was refused on listings and silently ignored on webhook endpoints)."""

    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise PydanticCustomError(
                "null_not_allowed",
                "{field} cannot be null (leave it out to keep it)",
                {"field": info.field_name},
            )
        return value


class RegisterIn(BaseModel):
    model_config = example(
        {
            "email": "sam@example.com",
            "password": "sam-password-1",
            "display_name": "Sam",
            "roles": ["seller"],
        },
    )
    email: Annotated[EmailStr, refuse_control_characters()]
    password: Annotated[str, single_line(min_length=10, max_length=128, strip=False)]
    display_name: Annotated[str, single_line(min_length=1, max_length=80)]
    roles: list[SignupRole] = Field(default=[SignupRole.BUYER], min_length=1)


# A password given to be compared (a login, the current one of a change): text like any other (a NUL or another
# control character is a 422, as registration refuses them), exact (not stripped), and bounded as registration
# bounds it so hashing stays cheap.
GivenPassword = Annotated[str, single_line(max_length=PASSWORD_MAX_LENGTH, strip=False)]


class TokenForm(BaseModel):
    """The OAuth2 password-grant form (RFC 6749 4.3), the fields of FastAPI's OAuth2PasswordRequestForm."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"grant_type": "password", "username": "sam@example.com", "password": "sam-password-1"}
            ]
        }
    )
    grant_type: Literal["password"] | None = None
    username: Annotated[str, single_line(max_length=320)] = Field(description="the account's email")
    password: GivenPassword
    scope: Annotated[str, single_line(max_length=500)] = ""
    client_id: Annotated[str, single_line(max_length=200)] | None = None
    client_secret: Annotated[str, single_line(max_length=200, strip=False)] | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str
    display_name: str
    roles: list[Role]
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


# How many units of one listing a line takes: an order's, a cart's, a refund's, a return's (one bound; found from
# outside: the cart's was 99, the order's 100).
MAX_UNITS = 100
LineQuantity = Annotated[int, Field(ge=1, le=MAX_UNITS), JSON_NUMBER]


class OrderIn(BaseModel):
    model_config = example(
        {
            "listing_id": "0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10",
            "quantity": 1,
            "payment_method": "pm_card_visa",
        }
    )
    listing_id: uuid.UUID
    quantity: LineQuantity = 1
    payment_method: Annotated[str, single_line(3, 64, pattern=r"^pm_[A-Za-z0-9_]+$", strip=False)]


class ActionIn(BaseModel):
    """Optional with the actions that take it: sent without a body, the action has no reason."""

    model_config = example({"reason": "Sold elsewhere, sorry"}, {})
    reason: Annotated[str, multi_line(max_length=500)] | None = None


class Tracking(TypedDict, total=False):
    """How a parcel can be followed: only the fields the sender gave are present (never null)."""

    carrier: str
    tracking_number: str
    tracking_url: str


class FulfilIn(BaseModel):
    """Optional: sent without a body, the order is marked shipped without tracking."""

    model_config = example(
        {
            "carrier": "DHL",
            "tracking_number": "JD014600003SE",
            "tracking_url": "https://www.dhl.com/track?id=JD014600003SE",
        },
        {},
    )
    carrier: Annotated[str, single_line(max_length=60)] | None = None
    tracking_number: Annotated[str, single_line(max_length=100)] | None = None
    tracking_url: Annotated[HttpUrl, refuse_control_characters()] | None = None


class ResolveIn(BaseModel):
    model_config = example(
        {"resolution": "partial_refund", "refund_amount": 1500, "note": "Scratched frame: 15.00 EUR back"},
        {"resolution": "release"},
    )
    resolution: DisputeResolution
    refund_amount: ChargeableAmount | None = Field(
        default=None, description="minor units, for partial_refund (and only for it)"
    )
    note: Annotated[str, multi_line(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _amount_only_for_a_partial_refund(self) -> ResolveIn:
        # A release or a full refund with an amount contradicts itself: refused rather than the amount dropped.
        if self.refund_amount is not None and self.resolution != DisputeResolution.PARTIAL_REFUND:
            raise ValueError(f"refund_amount is only for partial_refund, not {self.resolution.value}")
        return self


class RefundLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listing_id: uuid.UUID
    quantity: LineQuantity = 1


def each_listing_once(lines: list[Any] | None) -> None:
    """Lines name each listing once (an order has each listing once): a repeat is a mistake, not a sum."""
    seen = [line.listing_id for line in lines or []]
    if len(seen) != len(set(seen)):
        raise ValueError("each listing can appear in one line only")


class RefundIn(BaseModel):
    """By amount, or by lines (each line's unit price times the quantity): one of the two."""

    model_config = example(
        {"amount": 1500, "reason": "Scratch on the frame, agreed with the buyer"},
        {
            "lines": [{"listing_id": "0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10", "quantity": 1}],
            "reason": "Lamp missing",
        },
    )
    amount: ChargeableAmount | None = Field(default=None, description="minor units of the order's currency")
    lines: list[RefundLineIn] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="or: these of the order's lines, at their unit prices",
    )
    reason: Annotated[str, multi_line(max_length=500)] | None = None

    @model_validator(mode="after")
    def _amount_or_lines(self) -> RefundIn:
        if (self.amount is None) == (self.lines is None):
            raise ValueError("give either amount or lines")
        each_listing_once(self.lines)
        return self


class OrderLineOut(BaseModel):
    listing_id: uuid.UUID
    title: str
    quantity: int
    unit_price: Money = Field(description="the listing's price when the order was placed")
    refunded_quantity: int = Field(
        default=0, description="units of this line refunded by line (a refund by lines, a return): never more"
    )

    @classmethod
    def of(cls, line: OrderLineView, currency: str, refunded: int = 0) -> OrderLineOut:
        return cls(
            listing_id=uuid.UUID(line.listing_id),
            title=line.listing_title,
            quantity=line.quantity,
            unit_price=Money(amount=line.unit_amount, currency=currency),
            refunded_quantity=refunded,
        )


class OrderOut(BaseModel):
    id: uuid.UUID
    status: OrderStatus = Field(
        description="`rejected` only in the answer to a placement that was refused (nothing is stored)"
    )
    status_reason: str | None = Field(
        description="why the order is in its status, a snake_case code: `payment_failed`, `payment_rejected` "
        "(not paid), `buyer_cancelled`, `seller_cancelled`, `support_cancelled`, `seller_declined`, "
        "`acceptance_timeout`, `buyer_confirmed`, `dispute_window_passed`, a dispute's reason code while disputed, "
        "`dispute_released`, `dispute_refunded`, `dispute_partially_refunded`, `chargeback`, `chargeback_won`, "
        "`chargeback_lost`, ... An open set: act on the codes you know and show the others as they are (new ones may be added)"
    )
    buyer_id: uuid.UUID
    seller_id: uuid.UUID | None
    listing_id: uuid.UUID
    listing_title: str
    quantity: int
    total: Money | None
    payment_state: PaymentState = Field(
        description="where the order's money is. `released`: the fee is the platform's, the rest the seller's; "
        "the transfer to the seller follows the release within a moment (the seller's balance has it `available`, "
        "then `paid_out`; the timeline's `order.payout_sent`), or the state moves on to `transfer_failed` (the "
        "provider refused it: support retries) or `payout_on_hold` (the seller's payouts are disabled at the "
        "provider)"
    )
    workflow_id: str
    tracking: Tracking | None = None
    refunded: Money | None = Field(
        default=None,
        description="what the platform refunded to the buyer (refunds that succeeded); a chargeback the card "
        "network took back is not in it (`payment_state` `chargeback` or `charged_back`; the money statement "
        "`GET /v1/orders/{id}/money` lists it)",
    )
    allowed_actions: list[OrderAction] = Field(
        default=[],
        description="what you (the caller) may do to the order now: your moves as its buyer or seller, or "
        "support's; the others' moves are not listed",
    )
    needs_attention: str | None = Field(
        default=None, description="why support is looking at this order (a step keeps failing), if it is"
    )
    lines: list[OrderLineOut] = Field(
        default=[],
        description="what the order bought (`listing_id`, `listing_title` and `quantity` above are its first line)",
    )
    checkout_id: uuid.UUID | None = Field(
        default=None, description="the checkout that placed this order with other sellers' orders, if one did"
    )

    @classmethod
    def of_view(cls, view: OrderView, *, caller: Principal) -> OrderOut:
        """The order as its workflow answered an Update, as `caller` sees it."""
        return cls(
            id=uuid.UUID(view.order_id),
            status=view.status,
            status_reason=view.reason,
            buyer_id=uuid.UUID(view.buyer_id),
            seller_id=uuid.UUID(view.seller_id) if view.seller_id else None,
            listing_id=uuid.UUID(view.listing_id),
            listing_title=view.listing_title,
            quantity=view.quantity,
            total=Money(amount=view.amount, currency=view.currency) if view.amount else None,
            payment_state=view.payment_state,
            workflow_id=order_workflow_id(view.order_id),
            tracking=view.tracking,
            refunded=Money(amount=view.refunded_amount, currency=view.currency)
            if view.refunded_amount
            else None,
            allowed_actions=_allowed_to(
                caller, view.allowed_actions, view.status, view.buyer_id, view.seller_id
            ),
            needs_attention=view.attention,
            lines=[
                OrderLineOut.of(line, view.currency, view.refunded_units.get(line.listing_id, 0))
                for line in view_lines(view)
            ],
            checkout_id=uuid.UUID(view.checkout_id) if view.checkout_id else None,
        )

    @classmethod
    def of_row(cls, order: Order, refunded: int = 0, *, caller: Principal) -> OrderOut:
        """The order as its projection stores it, as `caller` sees it (and, when the caller read it, what was
        refunded of it)."""
        units = {str(line.listing_id): line.refunded_quantity for line in order.lines}
        return cls(
            id=order.id,
            status=order.status,
            status_reason=order.status_reason,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            listing_id=order.listing_id,
            listing_title=order.listing_title,
            quantity=order.quantity,
            total=Money(amount=order.amount, currency=order.currency),
            payment_state=order.payment_state,
            workflow_id=order.workflow_id,
            tracking=order.tracking,
            lines=[
                OrderLineOut.of(line, order.currency, units.get(line.listing_id, 0))
                for line in order_line_views(order)
            ],
            checkout_id=order.checkout_id,
            refunded=Money(amount=refunded, currency=order.currency) if refunded else None,
            needs_attention=order.needs_attention,
            allowed_actions=_allowed_to(
                caller,
                allowed_for(order.status, order.payment_state, order.needs_attention),
                order.status,
                str(order.buyer_id),
                str(order.seller_id) if order.seller_id else None,
            ),
        )


def _allowed_to(
    caller: Principal, actions: list[OrderAction], status: OrderStatus, buyer_id: str, seller_id: str | None
) -> list[OrderAction]:
    actor = actor_of(caller)
    return allowed_to(actions, status, actor, buyer_id, seller_id)


class TimelineEvent(BaseModel):
    at: datetime
    action: OrderEvent
    actor_role: Party
    actor_id: uuid.UUID | None
    data: dict[str, Any] = Field(
        description="the move's `status`, `reason` and `payment_state`, and `note`: the actor's own words when "
        "they gave any (a cancellation's or refund's reason, support's resolution note)"
    )

    @classmethod
    def of(cls, event: AuditEvent) -> TimelineEvent:
        """An order's audit event (its columns are plain text)."""
        return cls(
            at=event.at,
            action=OrderEvent(event.action),
            actor_role=Party(event.actor_role),
            actor_id=event.actor_id,
            data=event.data,
        )


class OrderDetailOut(OrderOut):
    timeline: list[TimelineEvent]


class OrderPage(BaseModel):
    items: list[OrderOut]
    # The type of the `before` it is passed back as, so a generated client passes it without converting.
    next_cursor: uuid.UUID | None = Field(description="pass as `before` for the next page; null on the last")


class StuckOrderOut(BaseModel):
    """An order that needs a person (support's `GET /v1/support/stuck-orders`), from Temporal's visibility."""

    order_id: str
    workflow_id: str
    status: OrderStatus
    payment_state: PaymentState
    attention: str | None
    started_at: datetime | None
    temporal_ui: str


class StuckOrderPage(BaseModel):
    items: list[StuckOrderOut]


class BalanceOut(BaseModel):
    currency: AnsweredCurrency
    held: int
    available: int
    paid_out: int


class LedgerLineOut(BaseModel):
    at: datetime
    order_id: uuid.UUID
    account: LedgerAccount
    signed_amount: int
    currency: AnsweredCurrency


class SellerBalanceOut(BaseModel):
    balances: list[BalanceOut]
    history: list[LedgerLineOut]
