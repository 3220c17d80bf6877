"""Search filters are built from typed parameters; user strings are always quoted and escaped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from bazaar.errors import DomainError
from bazaar.listings.cache import HotCache
from bazaar.listings.lifecycle import OwnSort, Taxonomy, _decode_cursor, _encode_cursor
from bazaar.models import Listing
from bazaar.search.index import INDEX_SETTINGS, _contains, price_bucket
from bazaar.search.query import (
    MARK_END,
    MARK_START,
    ListingQuery,
    SortOrder,
    _meili_hit,
    build_filter,
    build_request,
    build_sort,
    distance_m,
    quote,
    render_highlight,
)
from bazaar.search.service import CircuitBreaker

HOSTILE = [
    'x" OR seller_id = "B',
    "\\",
    '\\"',
    "a AND b",
    "NOT active",
    "(bikes) OR (1 = 1)",
    "électronique - 日本語 🚲 \u2013",
    '"',
    "' OR ''='",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_quote_produces_one_string_literal(value: str) -> None:
    literal = quote(value)
    assert literal.startswith('"')
    assert literal.endswith('"')
    inner = literal[1:-1]
    # Every quote inside is escaped, and unescaping gives back exactly the user's value.
    unescaped, i = [], 0
    while i < len(inner):
        if inner[i] == "\\":
            assert inner[i + 1] in ('"', "\\")
            unescaped.append(inner[i + 1])
            i += 2
        else:
            assert inner[i] != '"', f"unescaped quote in {literal}"
            unescaped.append(inner[i])
            i += 1
    assert "".join(unescaped) == value


def test_filter_uses_fixed_attribute_names_and_typed_numbers() -> None:
    query = ListingQuery(
        categories=["bikes", 'x" OR 1=1'],
        min_price=100,
        max_price=900,
        currency="EUR",
        lat=52.5,
        lng=13.4,
        radius_km=2.5,
    )
    clauses = build_filter(query)
    assert clauses[0] == ['categories = "bikes"', 'categories = "x\\" OR 1=1"']
    assert 'currency = "EUR"' in clauses
    assert "price_amount >= 100" in clauses
    assert "price_amount <= 900" in clauses
    assert "_geoRadius(52.5, 13.4, 2500)" in clauses


def test_sorts() -> None:
    assert build_sort(ListingQuery(sort=SortOrder.RELEVANCE)) == []
    # Prices compare within a currency: grouped by it unless the query names one.
    assert build_sort(ListingQuery(sort=SortOrder.PRICE_ASC)) == ["currency:asc", "price_amount:asc"]
    assert build_sort(ListingQuery(sort=SortOrder.PRICE_DESC, currency="EUR")) == ["price_amount:desc"]
    assert build_sort(ListingQuery(sort=SortOrder.DISTANCE, lat=1.5, lng=2.0)) == ["_geoPoint(1.5, 2.0):asc"]


def test_request_shape() -> None:
    body = build_request(ListingQuery(q="bike", facets=True, page=2, per_page=10))
    assert body["facets"] == ["categories", "condition", "price_bucket"]
    assert (body["page"], body["hitsPerPage"]) == (2, 10)
    assert body["highlightPreTag"] == MARK_START
    assert "description" not in body["attributesToRetrieve"]  # only the cropped snippet travels
    assert "facets" not in build_request(ListingQuery())
    # A chosen order lists the listings with every word; relevance may drop words from the end.
    assert body["matchingStrategy"] == "last"
    assert build_request(ListingQuery(q="iphone 13", sort=SortOrder.NEWEST))["matchingStrategy"] == "all"


def test_highlight_is_html_safe() -> None:
    marked = f'{MARK_START}<b>{MARK_END} & "x" <script>'
    assert render_highlight(marked) == '<em>&lt;b&gt;</em> &amp; "x" &lt;script&gt;'


def test_distance() -> None:
    assert distance_m(52.52, 13.405, 52.52, 13.405) == 0
    assert 500_000 < distance_m(52.52, 13.405, 48.1351, 11.582) < 510_000  # Berlin - Munich
    assert distance_m(0, 179.9, 0, -179.9) < 23_000  # across the antimeridian


def test_a_hit_sorted_by_distance_shows_the_distance_it_was_sorted_by() -> None:
    """Found from outside: with `sort=distance`, our own distance (another earth radius, rounded) ran 1 m backwards
    between neighbours; Meilisearch's `_geoDistance`, what it ordered by, is the one shown."""
    doc = {
        "id": str(uuid.uuid4()),
        "title": "Lamp",
        "price_amount": 1_000,
        "currency": "EUR",
        "category": "lamps",
        "condition": "good",
        "seller_id": str(uuid.uuid4()),
        "_geo": {"lat": 48.1351, "lng": 11.582},
    }
    near = ListingQuery(lat=52.52, lng=13.405)
    assert _meili_hit({**doc, "_geoDistance": 504_321}, near)["distance_m"] == 504_321
    assert _meili_hit(doc, near)["distance_m"] == distance_m(52.52, 13.405, 48.1351, 11.582)


def test_price_buckets() -> None:
    assert price_bucket(999, "EUR") == "0-10"
    assert price_bucket(1_000, "EUR") == "10-50"
    assert price_bucket(49_999, "EUR") == "100-500"
    assert price_bucket(100_000, "EUR") == "1000+"
    assert price_bucket(999, "JPY") == "500-1000"  # JPY has no minor unit


def test_circuit_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("bazaar.search.service.time.monotonic", lambda: now[0])
    breaker = CircuitBreaker(retry_seconds=2.0)
    assert breaker.allow() and not breaker.is_open
    breaker.failure()
    assert breaker.is_open and not breaker.allow()
    now[0] += 2.0
    assert breaker.allow()  # one probe...
    assert not breaker.allow()  # ...the others keep using the fallback
    breaker.failure()
    now[0] += 1.0
    assert not breaker.allow()
    now[0] += 1.0
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow() and breaker.allow()
    # A probe that never reports back (cancelled request) does not wedge it.
    breaker.failure()
    now[0] += 2.0
    assert breaker.allow()
    now[0] += 2.0
    assert breaker.allow()


def test_hot_cache_refuses_a_read_that_raced_an_invalidation() -> None:
    cache: HotCache[str, int] = HotCache(max_entries=10, ttl_seconds=60)
    assert cache.get("a") is None and not cache.put("a", 1, cache.token())  # disabled until the feed is up
    cache.set_enabled(True)
    token = cache.token()  # a read begins...
    cache.invalidate(["a"])  # ...the row changes and the change is announced...
    assert not cache.put("a", 1, token)  # ...so the old row must not be cached
    assert cache.put("b", 2, token)  # other keys are unaffected
    token = cache.token()
    assert cache.put("a", 3, token) and cache.get("a") == 3
    cache.invalidate(["a"])
    assert cache.get("a") is None
    assert (cache.hits, cache.misses) == (1, 1)  # lookups while disabled are not counted


def test_hot_cache_ttl_lru_and_forgetting(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("bazaar.listings.cache.time.monotonic", lambda: now[0])
    cache: HotCache[int, int] = HotCache(max_entries=2, ttl_seconds=5, remember_invalidations=2)
    cache.set_enabled(True)
    for key in (1, 2, 3):
        cache.put(key, key, cache.token())
    assert cache.get(1) is None and cache.get(3) == 3  # least recently used went first
    now[0] = 6.0
    assert cache.get(3) is None  # expired
    token = cache.token()
    cache.invalidate([10, 11, 12])  # more than it remembers: 10 is forgotten...
    assert not cache.put(10, 1, token)  # ...so a racing put for it is refused, to be safe
    assert cache.put(99, 1, cache.token())
    cache.set_enabled(False)
    assert cache.get(99) is None and len(cache) == 0


def test_taxonomy() -> None:
    tree = Taxonomy(
        parents={"sports": None, "bikes": "sports", "ebikes": "bikes", "home": None},
        names={"sports": "Sports", "bikes": "Bikes", "ebikes": "E-bikes", "home": "Home"},
    )
    assert tree.path("ebikes") == [("sports", "Sports"), ("bikes", "Bikes"), ("ebikes", "E-bikes")]
    assert sorted(tree.descendants("sports")) == ["bikes", "ebikes", "sports"]
    assert tree.descendants("home") == ["home"]
    assert [n["slug"] for n in tree.tree()] == ["home", "sports"]
    assert tree.tree()[1]["children"][0]["children"][0]["slug"] == "ebikes"
    assert "bikes" in tree and "cars" not in tree


def test_settings_comparison_ignores_what_meilisearch_normalises() -> None:
    current = {
        **INDEX_SETTINGS,
        "sortableAttributes": sorted(INDEX_SETTINGS["sortableAttributes"]),
        "typoTolerance": {**INDEX_SETTINGS["typoTolerance"], "disableOnWords": []},
        "stopWords": sorted(INDEX_SETTINGS["stopWords"]),  # a set to Meilisearch: answered sorted
    }
    assert _contains(current, INDEX_SETTINGS)
    assert not _contains(
        {**current, "rankingRules": list(reversed(INDEX_SETTINGS["rankingRules"]))}, INDEX_SETTINGS
    )


def test_own_listing_cursors_round_trip_and_reject_tampering() -> None:
    listing = Listing(
        id=uuid.uuid4(), price_amount=1234, currency="JPY", created_at=datetime(2026, 1, 2, 3, 4, 5, 678, UTC)
    )
    for sort in OwnSort:
        keys = _decode_cursor(_encode_cursor(listing, sort), sort)
        # By time: the time and the id; by price: the currency (prices compare within one), the price and the id.
        assert keys in ((listing.created_at, listing.id), ("JPY", 1234, listing.id)), keys
    with pytest.raises(DomainError):
        _decode_cursor(_encode_cursor(listing, OwnSort.PRICE_ASC), OwnSort.NEWEST)
    for junk in ("", "!!!", "W10", "WyJuZXdlc3QiLCAiYSIsICJiIl0"):
        with pytest.raises(DomainError):
            _decode_cursor(junk, OwnSort.NEWEST)
