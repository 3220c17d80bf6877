"""Listing search: typed parameters become a Meilisearch query. User input never reaches a filter unescaped."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from bazaar.meili import Meili


class SortOrder(enum.StrEnum):
    RELEVANCE = "relevance"
    NEWEST = "newest"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    POPULAR = "popular"
    RATING = "rating"
    DISTANCE = "distance"


FACET_ATTRIBUTES = ["categories", "condition"]


@dataclass
class ListingQuery:
    q: str = ""
    categories: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    min_price: int | None = None
    max_price: int | None = None
    currency: str | None = None
    seller_id: str | None = None
    lat: float | None = None
    lng: float | None = None
    radius_km: float | None = None
    sort: SortOrder = SortOrder.RELEVANCE
    page: int = 1
    per_page: int = 20
    facets: bool = False


def quote(value: str) -> str:
    """A Meilisearch filter string literal: escape backslash and double quote, then wrap in quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_filter(query: ListingQuery) -> list[str | list[str]]:
    """AND of clauses; a list inside is an OR. Attribute names are fixed here, values typed or quoted."""
    clauses: list[str | list[str]] = []
    if query.categories:
        clauses.append([f"categories = {quote(c)}" for c in query.categories])
    if query.conditions:
        clauses.append([f"condition = {quote(c)}" for c in query.conditions])
    if query.currency:
        clauses.append(f"currency = {quote(query.currency)}")
    if query.min_price is not None:
        clauses.append(f"price_amount >= {int(query.min_price)}")
    if query.max_price is not None:
        clauses.append(f"price_amount <= {int(query.max_price)}")
    if query.seller_id:
        clauses.append(f"seller_id = {quote(query.seller_id)}")
    if query.lat is not None and query.lng is not None and query.radius_km is not None:
        clauses.append(
            f"_geoRadius({float(query.lat)}, {float(query.lng)}, {round(float(query.radius_km) * 1000)})"
        )
    return clauses


def build_sort(query: ListingQuery) -> list[str]:
    match query.sort:
        case SortOrder.NEWEST:
            return ["published_at:desc"]
        case SortOrder.PRICE_ASC:
            return ["price_amount:asc"]
        case SortOrder.PRICE_DESC:
            return ["price_amount:desc"]
        case SortOrder.POPULAR:
            return ["popularity:desc"]
        case SortOrder.RATING:
            return ["seller_rating:desc"]
        case SortOrder.DISTANCE:
            return [f"_geoPoint({float(query.lat or 0)}, {float(query.lng or 0)}):asc"]
        case _:
            return []


def build_request(query: ListingQuery) -> dict[str, Any]:
    body: dict[str, Any] = {
        "q": query.q,
        "filter": build_filter(query),
        "sort": build_sort(query),
        "page": query.page,
        "hitsPerPage": query.per_page,
        "attributesToHighlight": ["title", "description"],
        "attributesToCrop": ["description"],
        "cropLength": 30,
    }
    if query.facets:
        body["facets"] = FACET_ATTRIBUTES
    return body


async def search_listings(meili: Meili, index: str, query: ListingQuery) -> dict[str, Any]:
    return await meili.search(index, build_request(query))
