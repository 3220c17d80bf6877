"""Listing, category and search models at the HTTP edge (pydantic v2): what a seller sends to create and change a
listing, and how listings read back, alone, in pages and as search hits. Text and money types as in
`api.schemas`."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    HttpUrl,
    UrlConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from api.schemas import KEEP, CountryCode, PatchIn, example
from bazaar.json_types import JSON_NUMBER, JsonFloat, JsonInt
from bazaar.listings import stock
from bazaar.listings.lifecycle import SellerRating
from bazaar.models import Listing, ListingCondition, ListingStatus
from bazaar.payments.money import Money, Price
from bazaar.text import multi_line, refuse_control_characters, single_line
from bazaar.trust.reputation import PRIOR_MEAN

SELLER_RATING = (
    "the seller's rating, 1-5: the Bayesian average of their revealed reviews, or the prior "
    f"({PRIOR_MEAN}) while they have none; search ranks by it"
)
SELLER_RATING_COUNT = "revealed ratings behind seller_rating (0: not rated yet)"


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


class _KeysNamedByPattern:
    """A map's key rule as JSON Schema's `propertyNames` and its values as `additionalProperties`. Pydantic
    states a key pattern as `patternProperties` alone, which leaves every key outside the pattern (a control
    character, a blank key) open to any value, and client generators type the map three different ways (found
    from outside: the document accepted what the API refused)."""

    def __get_pydantic_json_schema__(
        self, core: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core)
        for key_pattern, value in schema.pop("patternProperties", {}).items():
            schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": key_pattern}
            schema["additionalProperties"] = value
        return schema


Attributes = Annotated[dict[AttributeKey, AttributeValue], Field(max_length=30), _KeysNamedByPattern()]
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
    attributes: Attributes = {}

    def columns(self) -> dict[str, Any]:
        return _columns(self.model_dump(exclude_unset=False))


class ListingPatch(PatchIn):
    """Only the fields sent change; `location: null` removes the location. Any other field is left out to keep
    it, never null (and the document says so)."""

    NULLABLE = frozenset({"location"})

    model_config = example(
        {"title": "Carbon road bike, 56 cm, new tyres", "price": {"amount": 42000, "currency": "EUR"}},
        {"quantity": 0},
        {"location": None},
    )
    title: Title | None = KEEP
    description: Description | None = KEEP
    price: Price | None = KEEP
    category: CategorySlug | None = KEEP
    condition: ListingCondition | None = KEEP
    quantity: (
        Annotated[int, Field(ge=0, le=10_000, description="0 marks an active listing sold"), JSON_NUMBER]
        | None
    ) = KEEP
    image_urls: Annotated[list[ImageUrl], Field(max_length=12)] | None = KEEP
    location: Location | None = None
    attributes: Attributes | None = KEEP

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
    purchasable: bool = Field(
        default=False,
        description="whether it can be ordered now: active, in stock, and its seller can take payments now (an "
        "active listing of a seller whose payout account is restricted is not; ordering it is a 409 "
        "`listing_not_available`)",
    )

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
            purchasable=stock.available(listing) > 0,
        )


class ListingPage(BaseModel):
    items: list[ListingOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class SearchBackend(enum.StrEnum):
    """What answered a search: Meilisearch, or PostgreSQL while Meilisearch is unreachable."""

    MEILISEARCH = "meilisearch"
    POSTGRES = "postgres"


class ListingDeleteResult(enum.StrEnum):
    """What a delete did to the listing."""

    DELETED = "deleted"
    ARCHIVED = "archived"


class ListingDeleteOut(BaseModel):
    result: ListingDeleteResult = Field(
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
        default=None,
        description="with facets=true: counts per category (incl. parents), condition and price band; a band "
        "is in major units of each listing's own currency (0-10, 10-50, 50-100, 100-500, 500-1000, 1000+), so "
        "filter by `currency` for bands of one currency",
    )
    processing_time_ms: int = Field(description="time the search backend spent")
    backend: SearchBackend = Field(
        description="postgres: degraded mode while Meilisearch is unreachable (also X-Search-Backend)"
    )
