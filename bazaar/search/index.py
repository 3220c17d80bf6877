"""The listings index: its settings (versioned code, applied idempotently) and the document of a listing."""

from __future__ import annotations

import logging
from typing import Any

from bazaar.listings.lifecycle import SellerRating
from bazaar.models import Listing, ListingStatus
from bazaar.payments.money import CURRENCY_EXPONENTS
from bazaar.search.meili import Meili, MeiliError

log = logging.getLogger("search_index")

# ---------------------------------------------------------------------------------- what words mean
# One place for the search vocabulary, read by both backends: Meilisearch gets it as index settings
# (synonyms, stopWords, typoTolerance below; applied at every sync start and by the reindex), and the
# PostgreSQL fallback (bazaar/search/words.py) expands and drops the same words. Measured with the judged
# searches of tests/data/relevance.json (bench/relevance.py; figures in docs/benchmarks.md).

# Words that mean the same to a buyer: each one finds the others. A multi-word entry is a phrase. Each noun in
# its singular and its plural (found from outside: "prams", "couches", "notebooks" found nothing, and "bicycles"
# lost the bikes: Meilisearch matches a synonym word for word, and a prefix only on the query's side).
SYNONYM_GROUPS: list[tuple[str, ...]] = [
    ("bike", "bikes", "bicycle", "bicycles"),
    ("e-bike", "e-bikes", "ebike", "ebikes", "electric bike", "electric bikes", "electric assist"),
    ("sofa", "sofas", "couch", "couches", "settee", "settees"),
    ("stroller", "strollers", "pram", "prams", "pushchair", "pushchairs", "buggy", "buggies"),
    ("laptop", "laptops", "notebook", "notebooks"),
    ("bbq", "bbqs", "barbecue", "barbecues", "grill", "grills"),
    ("sneakers", "sneaker", "trainers", "trainer"),
    ("earphones", "earphone", "earbuds", "earbud"),
    ("headphones", "headphone", "headset", "headsets"),
    (
        "espresso machine",
        "espresso machines",
        "coffee machine",
        "coffee machines",
        "coffee maker",
        "coffee makers",
    ),
    (
        "cellphone",
        "cellphones",
        "cell phone",
        "cell phones",
        "mobile phone",
        "mobile phones",
        "smartphone",
        "smartphones",
    ),
    ("ps5", "playstation 5"),
    ("turntable", "turntables", "record player", "record players"),
    ("tv", "tvs", "television", "televisions"),
    ("fridge", "fridges", "refrigerator", "refrigerators"),
]
# A word that also finds these (not the other way round): brands whose listings name only the product.
ONE_WAY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "apple": ("iphone", "ipad", "macbook", "airpods"),
    "samsung": ("galaxy",),
    "google": ("pixel",),
    "phone": ("smartphone",),
}
# Words that ask for the cheaper ones first (bazaar/search/words.py): among equally good matches, the
# lower price ranks first. They say nothing about what is wanted, so they are stop words as well.
CHEAP_WORDS: list[str] = ["cheap", "cheapest", "budget", "bargain", "affordable", "inexpensive"]
# Words that say nothing about what is wanted. Price words among them: a price phrase ("under 200 euro")
# becomes a price filter first (bazaar/search/words.py), what is left of it is noise to the text match.
STOP_WORDS: list[str] = [
    *("a", "an", "and", "at", "for", "from", "in", "near", "of", "on", "or", "the", "to", "with"),
    *CHEAP_WORDS,
    *("under", "below", "euro", "euros", "eur"),
]
# Meilisearch allows one typo from 5 letters on (its default), two from 8; the fallback looks for typos in
# words of 5 letters or more that no listing has (trigram similarity, bazaar/search/words.py). From 4, a short
# last word (a prefix too) with a typo matched unrelated words: "lamp" found laptops, "ball" balance bikes.
TYPO_MIN_WORD_SIZE = {"oneTypo": 5, "twoTypos": 8}


def synonyms() -> dict[str, list[str]]:
    """Meilisearch's `synonyms` setting: every entry of a group finds the rest; one-way entries added."""
    found: dict[str, set[str]] = {}
    for group in SYNONYM_GROUPS:
        for word in group:
            found.setdefault(word, set()).update(w for w in group if w != word)
    for word, targets in ONE_WAY_SYNONYMS.items():
        found.setdefault(word, set()).update(targets)
    return {word: sorted(targets) for word, targets in sorted(found.items())}


# Bump when INDEX_SETTINGS change (and say why in the commit), so a settings change is a reviewed event.
# 2: price_bucket facet, filterable/sortable lists for the search API, smaller displayed documents.
# 3: relevance (tests/data/relevance.json, bench/relevance.py): synonyms, stop words, the listing's own
#    category name searchable first.
# 4: seller_can_sell filterable (listings of a seller whose payout account cannot take charges are left out).
# 5: a chosen sort orders every match (`sort` right after `words`), prices within a currency (`currency`
#    sortable): "iphone 13" by price was price-ordered only within each text-relevance bucket; one typo
#    from 5 letters (Meilisearch's default), not 4.
# 6: each synonym in its singular and plural ("prams" finds strollers).
INDEX_SETTINGS_VERSION = 6
INDEX_SETTINGS: dict[str, Any] = {
    # Order matters (the `attribute` rule): the listing's own category name first (a word naming the
    # category the buyer means: "bike", "books"), then the title, the category path (parents:
    # "electronics"), the description, the city.
    "searchableAttributes": ["category_name", "title", "category_names", "description", "city"],
    "filterableAttributes": [
        "categories",
        "condition",
        "price_amount",
        "price_bucket",
        "currency",
        "seller_id",
        "seller_can_sell",
        "city",
        "country",
        "_geo",
    ],
    "sortableAttributes": ["price_amount", "currency", "published_at", "popularity", "seller_rating", "_geo"],
    # A sort the caller chose comes right after `words` (with matchingStrategy "all" every match has all the
    # words, so it orders them all); without one, business signals only break ties after the relevance rules.
    "rankingRules": [
        "words",
        "sort",
        "typo",
        "proximity",
        "attribute",
        "exactness",
        "popularity:desc",
        "seller_rating:desc",
    ],
    "displayedAttributes": ["*"],
    "synonyms": synonyms(),
    "stopWords": STOP_WORDS,
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": TYPO_MIN_WORD_SIZE},
    "faceting": {"maxValuesPerFacet": 100},
    "pagination": {"maxTotalHits": 10_000},
}
MAX_TOTAL_HITS = INDEX_SETTINGS["pagination"]["maxTotalHits"]

# Price facet buckets, in major units of the listing's own currency: (label, lower bound inclusive).
# Buckets only make sense within one currency; the search API facets whatever currency filter is set.
PRICE_BUCKETS: list[tuple[str, int]] = [
    ("0-10", 0),
    ("10-50", 10),
    ("50-100", 50),
    ("100-500", 100),
    ("500-1000", 500),
    ("1000+", 1000),
]


def price_bucket(amount: int, currency: str) -> str:
    major = amount / 10 ** CURRENCY_EXPONENTS.get(currency, 2)
    label = PRICE_BUCKETS[0][0]
    for name, lower in PRICE_BUCKETS:
        if major >= lower:
            label = name
    return label


def is_public(listing: Listing) -> bool:
    return listing.status == ListingStatus.ACTIVE


def listing_document(
    listing: Listing, category_path: list[tuple[str, str]], seller_rating: SellerRating
) -> dict[str, Any]:
    """The search document; `category_path` is (slug, name) from the root to the listing's category.

    `seller_rating` is the seller's (bazaar.listings.lifecycle.SellerRating: the prior until they have ratings); it is
    a ranking rule and a sort, and shown with each hit. A rating change queues the seller's listings.
    `seller_can_sell` (Listing.seller_can_sell) is false while the seller's payout account cannot take charges:
    search leaves the listing out (bazaar/search/query.py); a change of it queues the seller's listings too.
    """
    doc: dict[str, Any] = {
        "id": str(listing.id),
        "title": listing.title,
        "description": listing.description,
        "price_amount": listing.price_amount,
        "currency": listing.currency,
        "price_bucket": price_bucket(listing.price_amount, listing.currency),
        "category": listing.category_slug,
        "categories": [slug for slug, _ in category_path],
        "category_name": category_path[-1][1] if category_path else "",
        "category_names": [name for _, name in category_path],
        "condition": listing.condition,
        "city": listing.city,
        "country": listing.country,
        "seller_id": str(listing.seller_id),
        "seller_rating": seller_rating.score,
        "seller_rating_count": seller_rating.rating_count,
        "seller_can_sell": listing.seller_can_sell,
        "popularity": listing.view_count + 10 * listing.order_count,
        # Milliseconds: listings published within the same second still sort newest-first.
        "published_at": int(listing.published_at.timestamp() * 1000) if listing.published_at else 0,
        "image_url": listing.image_urls[0] if listing.image_urls else None,
        "quantity": listing.quantity,
        "version": listing.version,
    }
    if listing.lat is not None and listing.lng is not None:
        doc["_geo"] = {"lat": listing.lat, "lng": listing.lng}
    return doc


# Settings Meilisearch stores as sets (it answers them sorted); the others keep our order, which matters.
_UNORDERED = {"filterableAttributes", "sortableAttributes", "stopWords"}


def _contains(actual: Any, wanted: Any, key: str = "") -> bool:
    """Whether Meilisearch's (normalised, fuller) settings already carry every wanted value."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(_contains(actual.get(k), v, k) for k, v in wanted.items())
    if key in _UNORDERED and isinstance(actual, list) and isinstance(wanted, list):
        return sorted(map(str, actual)) == sorted(map(str, wanted))
    return bool(actual == wanted)


async def apply_index_settings(meili: Meili, index: str) -> bool:
    """Create the index if needed and apply INDEX_SETTINGS; no task at all when they are already there.

    Returns whether anything changed. Safe to run at every start and from several processes.
    """
    if await meili.get_index(index) is None:
        try:
            await meili.run_task("POST", "/indexes", json={"uid": index, "primaryKey": "id"})
        except MeiliError as exc:
            if exc.code != "index_already_exists":  # another process won the race: fine
                raise
    current = await meili.request("GET", f"/indexes/{index}/settings")
    if _contains(current, INDEX_SETTINGS):
        return False
    log.info("applying index settings v%d to %s", INDEX_SETTINGS_VERSION, index)
    await meili.run_task("PATCH", f"/indexes/{index}/settings", json=INDEX_SETTINGS, max_wait=600)
    return True
