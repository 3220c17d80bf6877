"""Degraded mode on the private stack: with Meilisearch killed, the same search endpoint answers from
PostgreSQL with the same filters, sorts and facets, says so, and goes back to Meilisearch by itself."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from bazaar.listings import lifecycle as listings
from bazaar.models import Listing
from tests.support.search import PrivateSearch, backend, get, listing_fields, token_for

pytestmark = pytest.mark.integration

BERLIN = (52.52, 13.405)
PLACES = [
    (52.52, 13.405, "Berlin"),
    (52.39, 13.06, "Potsdam"),
    (53.55, 9.99, "Hamburg"),
    (48.14, 11.58, "Munich"),
]
CATEGORIES = ["bikes", "camping", "phones", "furniture", "books"]
CONDITIONS = ["new", "good", "fair"]


def degraded_gauge(private: PrivateSearch) -> float:
    text = httpx.get(f"{private.api_url}/metrics").text
    return next(
        float(line.split()[1]) for line in text.splitlines() if line.startswith("bazaar_search_degraded ")
    )


def comparable(body: dict[str, Any], ordered: bool) -> tuple[Any, ...]:
    hits = [(h["id"], h["price"]["amount"], h["category"], h["distance_m"]) for h in body["hits"]]
    return (hits if ordered else sorted(hits), body["total"], body["facets"])


async def test_postgres_fallback_matches_meilisearch_and_recovers(private: PrivateSearch) -> None:
    word = "fallback" + uuid.uuid4().hex[:6].translate(str.maketrans("0123456789", "ghijklmnop"))
    seller = await private.seller()
    other = await private.seller()
    ids = []
    for n in range(16):
        lat, lng, city = PLACES[n % len(PLACES)]
        async with private.session() as s:
            x = await listings.create(
                s,
                other if n == 15 else seller,
                listing_fields(
                    title=f"{word} item {n}",
                    # Markup in a listing's text is text: both backends show it escaped, never dropped.
                    description=f"number {n} of the {word} series"
                    + (" a<b c>d <i>x</i> & more" if n == 0 else "")
                    + (" with a quokka" if n % 3 == 0 else ""),  # a second word some listings have
                    price_amount=1_000 + 997 * n,
                    category_slug=CATEGORIES[n % 5],
                    condition=CONDITIONS[n % 3],
                    lat=lat + n * 0.0013,
                    lng=lng,
                    city=city,  # distinct distances: no ties across pages
                    currency="EUR" if n % 7 else "USD",  # the currency filter has something to drop
                ),
            )
            await listings.publish(s, x.id, other if n == 15 else seller, None)
            ids.append(x.id)
    await private.wait_drained()
    assert backend(private) == "meilisearch"

    queries: list[tuple[dict[str, Any], bool]] = [
        ({"q": word, "sort": "price_asc", "per_page": 50}, True),
        ({"q": word, "sort": "price_desc", "category": "sports", "facets": "true"}, True),
        ({"q": word, "category": ["phones", "home"], "sort": "newest"}, True),
        ({"q": word, "lat": BERLIN[0], "lng": BERLIN[1], "radius_km": 40, "sort": "distance"}, True),
        ({"q": word, "lat": BERLIN[0], "lng": BERLIN[1], "sort": "distance", "per_page": 5, "page": 2}, True),
        (
            {
                "q": word,
                "condition": "good",
                "min_price": 2_000,
                "max_price": 12_000,
                "currency": "EUR",
                "sort": "price_asc",
                "facets": "true",
            },
            True,
        ),
        ({"q": word, "seller_id": str(other.user_id)}, True),
        ({"q": word[:-2], "facets": "true", "currency": "EUR", "sort": "price_asc"}, True),  # prefix search
        ({"q": word, "facets": "true"}, False),
        ({"q": word, "sort": "newest", "per_page": 3, "page": 3}, True),
        # A chosen sort: the listings with every word, prices within a currency.
        ({"q": f"{word} quokka", "sort": "price_desc"}, True),
        ({"q": f"cheap {word} quokka"}, True),
    ]
    before = [get(private, **q).json() for q, _ in queries]
    assert all(b["backend"] == "meilisearch" for b in before)
    assert before[0]["total"] == 16
    with_quokka = [str(ids[n]) for n in (15, 12, 9, 6, 3, 0)]  # EUR by price, then the one in USD
    assert [h["id"] for h in before[-2]["hits"]] == with_quokka

    private.kill_meili()
    started = time.monotonic()
    after = []
    for query, _ in queries:
        response = get(private, **query)
        assert response.headers["X-Search-Backend"] == "postgres"
        after.append(response.json())
    assert time.monotonic() - started < 5  # no long hangs: a refused connection fails over at once
    for (query, ordered), meili_body, pg_body in zip(queries, before, after, strict=True):
        assert comparable(pg_body, ordered) == comparable(meili_body, ordered), query
        assert pg_body["backend"] == "postgres"
        assert all(f"<em>{word[:4]}" in h["highlight"]["title"] for h in pg_body["hits"]), query
    for body in (before[0], after[0]):
        shown = next(h["highlight"]["description"] for h in body["hits"] if h["id"] == str(ids[0]))
        assert "a&lt;b c&gt;d &lt;i&gt;x&lt;/i&gt; &amp; more" in shown, (body["backend"], shown)
    assert degraded_gauge(private) == 1.0

    private.start_meili()
    deadline = time.monotonic() + 5
    while backend(private) != "meilisearch":
        assert time.monotonic() < deadline, "did not return to Meilisearch"
        await asyncio.sleep(0.1)
    assert degraded_gauge(private) == 0.0
    assert get(private, **queries[0][0]).json()["hits"] == before[0]["hits"]


async def test_views_are_batched_into_popularity(private: PrivateSearch) -> None:
    seller = await private.seller()
    async with private.session() as s:
        x = await listings.create(s, seller, listing_fields())
        await listings.publish(s, x.id, seller, None)
    await private.wait_drained()
    url = f"/v1/listings/{x.id}"
    api = httpx.AsyncClient(base_url=private.api_url, timeout=10)
    etag = (await api.get(url, headers=await token_for(private, seller.user_id))).headers["ETag"]
    for _ in range(7):
        assert (await api.get(url)).status_code == 200
    assert (
        await api.get(url, headers=await token_for(private, seller.user_id))
    ).status_code == 200  # no view
    deadline = time.monotonic() + 5
    while True:
        async with private.session() as s:
            row = await s.get(Listing, x.id)
            assert row is not None
            if row.view_count == 7 or time.monotonic() > deadline:
                break
        await asyncio.sleep(0.1)
    assert row.view_count == 7
    await private.wait_drained()
    assert private.documents([str(x.id)])[str(x.id)]["popularity"] == 7
    # Views are not edits: the ETag a seller holds stays valid.
    assert (await api.get(url, headers=await token_for(private, seller.user_id))).headers["ETag"] == etag
    metrics = (await api.get("/metrics")).text
    await api.aclose()
    assert "bazaar_listing_views_flushed_total 7.0" in metrics
    assert "bazaar_search_change_to_searchable_seconds_count" in metrics
    count = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("bazaar_search_change_to_searchable_seconds_count")
    )
    assert count > 0  # fed by search_sync through NOTIFY
