"""Request and response models at the HTTP edge (pydantic v2).

Every string a request carries is typed with `bazaar.text`: names, titles, codes and other labels are a single
line; prose (descriptions, reasons, notes, messages) is multi-line. Money in a request is a `Price` (what the
provider can charge); responses use `Money`, which accepts whatever is stored. Response models hold no input
rules, so stored data always serialises.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    UrlConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from bazaar.json_types import JSON_NUMBER, JsonFloat, JsonInt
from bazaar.listings.lifecycle import SellerRating
from bazaar.models import (
    AuditEvent,
    LedgerAccount,
    Listing,
    ListingCondition,
    ListingStatus,
    Order,
    OrderStatus,
    PaymentState,
    Role,
)
from bazaar.orders.rules import allowed_for
from bazaar.orders.types import (
    OrderAction,
    OrderEvent,
    OrderLineView,
    OrderView,
    Party,
    order_line_views,
    view_lines,
)
from bazaar.payments.money import MAX_CHARGE, Money, Price
from bazaar.temporal import order_workflow_id
from bazaar.text import multi_line, refuse_control_characters, single_line
from bazaar.trust.models import DisputeResolution
from bazaar.trust.reputation import PRIOR_MEAN

# PostgreSQL's bigint: the bound of any integer that may reach a query (beyond it, the database errs).
INT64_MAX = 2**63 - 1
CountryCode = Annotated[str, single_line(2, 2, pattern="^[A-Z]{2}$", strip=False)]
# An amount to move, in minor units (its currency is the order's); the bounds inside the type, so the document
# states them on an optional field too (a constraint on `X | None` itself is not JSON Schema).
ChargeableAmount = Annotated[int, Field(gt=0, le=MAX_CHARGE), JSON_NUMBER]
SELLER_RATING = (
    "the seller's rating, 1-5: the Bayesian average of their revealed reviews, or the prior "
    f"({PRIOR_MEAN}) while they have none; search ranks by it"
)
SELLER_RATING_COUNT = "revealed ratings behind seller_rating (0: not rated yet)"


def example(*values: dict[str, Any], forbid: bool = True) -> ConfigDict:
    """A request model's config: examples for the document (and its clients), and no unknown fields."""
    return ConfigDict(extra="forbid" if forbid else "ignore", json_schema_extra={"examples": [*values]})


class RegisterIn(BaseModel):
    model_config = example(
        {
            "email": "sam@example.com",
            "password": "sam-password-1",
            "display_name": "Sam",
            "roles": ["seller"],
        },
        forbid=False,
    )
    email: Annotated[EmailStr, refuse_control_characters()]
    password: Annotated[str, single_line(min_length=10, max_length=128, strip=False)]
    display_name: Annotated[str, single_line(min_length=1, max_length=80)]
    roles: list[Literal["buyer", "seller"]] = Field(default=["buyer"], min_length=1)


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
    # No control-character rule: a password is compared, never stored or shown, and an account registered
    # before registration refused them must still log in. Registration's length bound keeps hashing cheap.
    password: str = Field(max_length=128)
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


class LocationOut(BaseModel):
    lat: float
    lng: float
    city: str
    country: str


class Location(LocationOut):
    model_config = ConfigDict(extra="forbid")
    lat: JsonFloat = Field(ge=-90, le=90)
    lng: JsonFloat = Field(ge=-180, le=180)
    city: Annotated[str, single_line(min_length=1, max_length=80)]
    country: CountryCode


# Sane sizes for free-form fields: big enough for real listings, small enough to index and render.
AttributeKey = Annotated[str, single_line(min_length=1, max_length=40)]
AttributeValue = Annotated[str, single_line(max_length=200)]
# Single line: a title goes into email Subject headers.
Title = Annotated[str, single_line(min_length=3, max_length=140)]
Description = Annotated[str, multi_line(max_length=5000)]
# The check runs on the raw string: URL parsing would silently drop tabs and line breaks (WHATWG).
ImageUrl = Annotated[
    HttpUrl, UrlConstraints(max_length=2048, allowed_schemes=["http", "https"]), refuse_control_characters()
]
CategorySlug = Annotated[str, single_line(1, 64, pattern=r"^[a-z0-9][a-z0-9-]*$", strip=False)]


class ListingIn(BaseModel):
    model_config = example(
        {
            "title": "Carbon road bike, 56 cm",
            "description": "Serviced in May.\nNew chain and tyres.",
            "price": {"amount": 45000, "currency": "EUR"},
            "category": "bikes",
            "condition": "good",
            "quantity": 1,
            "image_urls": ["https://images.example.com/bike-1.jpg"],
            "location": {"lat": 52.52, "lng": 13.405, "city": "Berlin", "country": "DE"},
            "attributes": {"frame_size": "56 cm"},
        }
    )
    title: Title
    description: Description = ""
    price: Price
    category: CategorySlug = Field(description="a slug from GET /v1/categories")
    condition: ListingCondition = ListingCondition.GOOD
    quantity: JsonInt = Field(default=1, ge=1, le=10_000)
    image_urls: list[ImageUrl] = Field(default=[], max_length=12)
    location: Location | None = None
    attributes: dict[AttributeKey, AttributeValue] = Field(default={}, max_length=30)

    def columns(self) -> dict[str, Any]:
        return _columns(self.model_dump(exclude_unset=False))


class ListingPatch(BaseModel):
    """Only the fields sent change; `location: null` removes the location. Any other field is left out to keep
    it, never null (the document says so: only `location` may be null)."""

    model_config = example(
        {"title": "Carbon road bike, 56 cm, new tyres", "price": {"amount": 42000, "currency": "EUR"}},
        {"quantity": 0},
        {"location": None},
    )
    # `SkipJsonSchema[None]`: None is the "not sent" default, not a value a client may send.
    title: Title | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    price: Price | SkipJsonSchema[None] = None
    category: CategorySlug | SkipJsonSchema[None] = None
    condition: ListingCondition | SkipJsonSchema[None] = None
    quantity: Annotated[int, Field(ge=0, le=10_000), JSON_NUMBER] | SkipJsonSchema[None] = Field(
        default=None, description="0 marks an active listing sold"
    )
    image_urls: Annotated[list[ImageUrl], Field(max_length=12)] | SkipJsonSchema[None] = None
    location: Location | None = None
    attributes: Annotated[dict[AttributeKey, AttributeValue], Field(max_length=30)] | SkipJsonSchema[None] = (
        None
    )

    @field_validator(
        "title",
        "description",
        "price",
        "category",
        "condition",
        "quantity",
        "image_urls",
        "attributes",
        mode="before",
    )
    @classmethod
    def not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise PydanticCustomError(
                "null_not_allowed",
                "{field} cannot be null (leave it out to keep it)",
                {"field": info.field_name},
            )
        return value

    def columns(self) -> dict[str, Any]:
        return _columns(self.model_dump(exclude_unset=True))


def _columns(data: dict[str, Any]) -> dict[str, Any]:
    """Edge fields -> model columns."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "price" and value is not None:
            out["price_amount"], out["currency"] = value["amount"], value["currency"]
        elif key == "category" and value is not None:
            out["category_slug"] = value
        elif key == "condition" and value is not None:
            out["condition"] = ListingCondition(value).value  # the column is plain text
        elif key == "image_urls" and value is not None:
            out["image_urls"] = [str(u) for u in value]
        elif key == "location":
            loc = value or {}
            out.update(
                lat=loc.get("lat"), lng=loc.get("lng"), city=loc.get("city"), country=loc.get("country")
            )
        elif value is not None:
            out[key] = value
    return out


class ListingOut(BaseModel):
    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    description: str
    price: Money
    category: str
    condition: ListingCondition
    quantity: int
    image_urls: list[str]
    location: LocationOut | None
    attributes: dict[str, str]
    status: ListingStatus
    version: int
    published_at: datetime | None
    created_at: datetime
    updated_at: datetime
    seller_rating: float = Field(description=SELLER_RATING)
    seller_rating_count: int = Field(description=SELLER_RATING_COUNT)

    @classmethod
    def of(cls, listing: Listing, rating: SellerRating) -> ListingOut:
        location = None
        if listing.lat is not None and listing.lng is not None and listing.city and listing.country:
            location = LocationOut(
                lat=listing.lat, lng=listing.lng, city=listing.city, country=listing.country
            )
        return cls(
            id=listing.id,
            seller_id=listing.seller_id,
            title=listing.title,
            description=listing.description,
            price=Money(amount=listing.price_amount, currency=listing.currency),
            category=listing.category_slug,
            condition=ListingCondition(listing.condition),
            quantity=listing.quantity,
            image_urls=listing.image_urls,
            location=location,
            attributes=listing.attributes,
            status=listing.status,
            version=listing.version,
            published_at=listing.published_at,
            created_at=listing.created_at,
            updated_at=listing.updated_at,
            seller_rating=rating.score,
            seller_rating_count=rating.rating_count,
        )


class ListingPage(BaseModel):
    items: list[ListingOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class ListingDeleteOut(BaseModel):
    result: Literal["deleted", "archived"] = Field(
        description="deleted: it never had orders and is gone; archived: it has orders, so it is kept"
    )
    listing: ListingOut | None = None


class CategoryNode(BaseModel):
    slug: str
    name: str
    children: list[CategoryNode]


class CategoriesOut(BaseModel):
    categories: list[CategoryNode]


class SearchHit(BaseModel):
    id: uuid.UUID
    title: str
    price: Money
    category: str
    condition: ListingCondition
    city: str | None
    country: str | None
    seller_id: uuid.UUID
    image_url: str | None
    highlight: dict[str, str] = Field(description="HTML-escaped snippets; matches wrapped in <em>")
    distance_m: int | None = Field(default=None, description="metres from lat/lng, when they were given")
    seller_rating: float = Field(description=SELLER_RATING)
    seller_rating_count: int = Field(description=SELLER_RATING_COUNT)


class SearchOut(BaseModel):
    hits: list[SearchHit]
    total: int = Field(description="matches, exact up to 10,000 (the pagination cap)")
    page: int
    per_page: int
    facets: dict[str, dict[str, int]] | None = Field(
        default=None, description="with facets=true: counts per category (incl. parents), condition, price"
    )
    processing_time_ms: int = Field(description="time the search backend spent")
    backend: Literal["meilisearch", "postgres"] = Field(
        description="postgres: degraded mode while Meilisearch is unreachable (also X-Search-Backend)"
    )


class OrderIn(BaseModel):
    model_config = example(
        {
            "listing_id": "0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10",
            "quantity": 1,
            "payment_method": "pm_card_visa",
        }
    )
    listing_id: uuid.UUID
    quantity: JsonInt = Field(default=1, ge=1, le=100)
    payment_method: Annotated[str, single_line(3, 64, pattern=r"^pm_[A-Za-z0-9_]+$", strip=False)]


class ActionIn(BaseModel):
    """Optional with the actions that take it: sent without a body, the action has no reason."""

    model_config = example({"reason": "Sold elsewhere, sorry"}, {})
    reason: Annotated[str, multi_line(max_length=500)] | None = None


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
    quantity: JsonInt = Field(default=1, ge=1, le=100)


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
    status_reason: str | None
    buyer_id: uuid.UUID
    seller_id: uuid.UUID | None
    listing_id: uuid.UUID
    listing_title: str
    quantity: int
    total: Money | None
    payment_state: PaymentState
    workflow_id: str
    tracking: dict[str, str] | None = None
    refunded: Money | None = None
    allowed_actions: list[OrderAction] = []
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
    def of_view(cls, view: OrderView) -> OrderOut:
        """The order as its workflow answered an Update."""
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
            allowed_actions=view.allowed_actions,
            needs_attention=view.attention,
            lines=[
                OrderLineOut.of(line, view.currency, view.refunded_units.get(line.listing_id, 0))
                for line in view_lines(view)
            ],
            checkout_id=uuid.UUID(view.checkout_id) if view.checkout_id else None,
        )

    @classmethod
    def of_row(cls, order: Order, refunded: int = 0) -> OrderOut:
        """The order as its projection stores it (and, when the caller read it, what was refunded of it)."""
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
            allowed_actions=allowed_for(order.status, order.payment_state),
        )


class TimelineEvent(BaseModel):
    at: datetime
    action: OrderEvent
    actor_role: Party
    actor_id: uuid.UUID | None
    data: dict[str, Any]

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
    next_cursor: str | None


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
    currency: str
    held: int
    available: int
    paid_out: int


class LedgerLineOut(BaseModel):
    at: datetime
    order_id: uuid.UUID
    account: LedgerAccount
    signed_amount: int
    currency: str


class SellerBalanceOut(BaseModel):
    balances: list[BalanceOut]
    history: list[LedgerLineOut]
