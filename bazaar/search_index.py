"""The listings index: its settings (versioned code, applied idempotently) and the document of a listing."""

from __future__ import annotations

from typing import Any

from bazaar.models import Listing, ListingStatus

# Bump when INDEX_SETTINGS change, so operators can see which settings an index carries.
INDEX_SETTINGS_VERSION = 1
INDEX_SETTINGS: dict[str, Any] = {
    "searchableAttributes": ["title", "category_names", "description", "city"],
    "filterableAttributes": [
        "categories",
        "condition",
        "price_amount",
        "currency",
        "seller_id",
        "city",
        "country",
        "_geo",
    ],
    "sortableAttributes": ["price_amount", "published_at", "popularity", "seller_rating", "_geo"],
    # Business signals only break ties after the built-in relevance rules.
    "rankingRules": [
        "words",
        "typo",
        "proximity",
        "attribute",
        "sort",
        "exactness",
        "popularity:desc",
        "seller_rating:desc",
    ],
    "displayedAttributes": ["*"],
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 8}},
    "faceting": {"maxValuesPerFacet": 100},
    "pagination": {"maxTotalHits": 10_000},
}


def is_public(listing: Listing) -> bool:
    return listing.status == ListingStatus.ACTIVE


def listing_document(
    listing: Listing, category_path: list[tuple[str, str]], seller_rating: float
) -> dict[str, Any]:
    """The search document; `category_path` is (slug, name) from the root to the listing's category."""
    doc: dict[str, Any] = {
        "id": str(listing.id),
        "title": listing.title,
        "description": listing.description,
        "price_amount": listing.price_amount,
        "currency": listing.currency,
        "category": listing.category_slug,
        "categories": [slug for slug, _ in category_path],
        "category_names": [name for _, name in category_path],
        "condition": listing.condition,
        "city": listing.city,
        "country": listing.country,
        "seller_id": str(listing.seller_id),
        "seller_rating": seller_rating,
        "popularity": listing.view_count + 10 * listing.order_count,
        "published_at": int(listing.published_at.timestamp()) if listing.published_at else 0,
        "image_url": listing.image_urls[0] if listing.image_urls else None,
        "quantity": listing.quantity,
        "version": listing.version,
    }
    if listing.lat is not None and listing.lng is not None:
        doc["_geo"] = {"lat": listing.lat, "lng": listing.lng}
    return doc
