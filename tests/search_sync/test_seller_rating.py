"""Seller reputation feeds search ranking, on the private stack: revealed reviews change a seller's Bayesian
score, search sync re-sends that seller's listings, and both Meilisearch and the PostgreSQL fallback rank equally
relevant listings by it (sort=rating, and as the tie-breaker of relevance). Listings show the rating too."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bazaar.listings import lifecycle as listings
from bazaar.models import Listing
from bazaar.search.index import apply_index_settings
from bazaar.search.meili import Meili
from bazaar.trust.models import Reputation
from bazaar.trust.reputation import PRIOR_MEAN, bayesian_score
from search_sync.reindex import _catch_up, _load_snapshot
from search_sync.sync import XMIN
from tests.support.search import (
    MASTER_KEY,
    PrivateSearch,
    backend,
    get,
    listing_fields,
    reveal_reviews,
    token_for,
)

pytestmark = pytest.mark.integration

UNRATED = (PRIOR_MEAN, 0)


def marker(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))


async def rate(private: PrivateSearch, listing_id: str, stars: list[int]) -> None:
    """Revealed reviews of the listing's seller, in one transaction (see reveal_reviews)."""
    async with private.session() as s:
        await reveal_reviews(s, uuid.UUID(listing_id), stars)


def assert_ranked(names: list[str], groups: list[set[str]]) -> None:
    """`names` in the order of `groups`; within a group (equal rating and relevance) any order."""
    at = 0
    for group in groups:
        assert set(names[at : at + len(group)]) == group, (names, groups)
        at += len(group)
    assert at == len(names), (names, groups)


async def test_reputation_ranks_listings_in_meilisearch_and_the_fallback(private: PrivateSearch) -> None:
    word = marker("rating")
    names = ["unrated", "top", "low", "empty"]
    sellers = {name: await private.seller() for name in names}
    ids: dict[str, str] = {}
    # Created in this order so that neither oldest- nor newest-first is the rating order; identical texts,
    # so relevance ties and only the seller's rating can order them.
    for name in [*names, "low_brass"]:
        who = sellers["low" if name == "low_brass" else name]
        title = f"{word} brass desk lamp" if name == "low_brass" else f"{word} desk lamp"
        async with private.session() as s:
            x = await listings.create(s, who, listing_fields(title=title, description="Brass, works well."))
            await listings.publish(s, x.id, who, None)
        ids[name] = str(x.id)
    name_of = {v: k for k, v in ids.items()}
    async with private.session() as s:
        # A reputation row without ratings, with the model's default score (0.0): it counts as unrated (the
        # prior), not as the worst seller.
        s.add(Reputation(user_id=sellers["empty"].user_id, orders_completed=2))
    await private.wait_drained()
    docs = private.documents(list(ids.values()))
    assert {
        n: (docs[i]["seller_rating"], docs[i]["seller_rating_count"]) for i, n in name_of.items()
    } == dict.fromkeys(ids, UNRATED)

    # Three 5-star reviews for one seller, two 1-star reviews for another.
    await rate(private, ids["top"], [5, 5, 5])
    await rate(private, ids["low"], [1, 1])
    await private.wait_drained()
    expected = {
        "top": (bayesian_score(15, 3), 3),
        "unrated": UNRATED,
        "empty": UNRATED,
        "low": (bayesian_score(2, 2), 2),
        "low_brass": (bayesian_score(2, 2), 2),
    }
    assert (expected["top"][0], expected["low"][0]) == (4.375, 3.1429)  # (4*5 + 15) / 8, (4*5 + 2) / 7
    docs = private.documents(list(ids.values()))
    assert {
        n: (docs[i]["seller_rating"], docs[i]["seller_rating_count"]) for i, n in name_of.items()
    } == expected

    def ranking(params: dict[str, Any], via: str) -> list[str]:
        response = get(private, per_page=50, **params)
        assert response.headers["X-Search-Backend"] == via
        hits = response.json()["hits"]
        assert {name_of[h["id"]]: (h["seller_rating"], h["seller_rating_count"]) for h in hits} == expected
        return [name_of[h["id"]] for h in hits]

    by_rating = [{"top"}, {"unrated", "empty"}, {"low", "low_brass"}]
    for params in ({"q": word}, {"q": word, "sort": "rating"}):
        assert_ranked(ranking(params, "meilisearch"), by_rating)
    # Rating only breaks ties: the better text match (both words together in the title) still comes first.
    assert_ranked(ranking({"q": f"{word} brass"}, "meilisearch"), [{"low_brass"}, *by_rating[:2], {"low"}])

    # Four 1-star reviews more: the top seller drops below the unrated ones, still above the low one.
    await rate(private, ids["top"], [1, 1, 1, 1])
    await private.wait_drained()
    expected["top"] = (bayesian_score(19, 7), 7)
    assert expected["top"][0] == 3.25  # (4*5 + 19) / 12
    by_rating = [{"unrated", "empty"}, {"top"}, {"low", "low_brass"}]
    queries: list[tuple[dict[str, Any], list[set[str]]]] = [
        ({"q": word}, by_rating),
        ({"q": word, "sort": "rating"}, by_rating),
        ({"q": f"{word} brass"}, [{"low_brass"}, *by_rating[:2], {"low"}]),
    ]
    meili_order = []
    for params, groups in queries:
        meili_order.append(ranking(params, "meilisearch"))
        assert_ranked(meili_order[-1], groups)

    # The PostgreSQL fallback ranks by the same rating, read from the reputations table.
    private.kill_meili()
    try:
        for (params, groups), from_meili in zip(queries, meili_order, strict=True):
            from_postgres = ranking(params, "postgres")
            assert_ranked(from_postgres, groups)
            assert len(from_postgres) == len(from_meili)
    finally:
        private.start_meili()
        deadline = time.monotonic() + 10
        while backend(private) != "meilisearch":
            assert time.monotonic() < deadline, "did not return to Meilisearch"
            await asyncio.sleep(0.1)

    # Every listing shows its seller's rating: the public detail (read twice: the second from the hot cache),
    # the seller's own read, and their listing page.
    async with httpx.AsyncClient(base_url=private.api_url, timeout=10) as api:
        for name, listing_id in ids.items():
            for _ in range(2):
                detail = (await api.get(f"/v1/listings/{listing_id}")).json()
                assert (detail["seller_rating"], detail["seller_rating_count"]) == expected[name], name
        own = await api.get(
            f"/v1/listings/{ids['top']}", headers=await token_for(private, sellers["top"].user_id)
        )
        assert (own.json()["seller_rating"], own.json()["seller_rating_count"]) == (3.25, 7)
        page = await api.get("/v1/me/listings", headers=await token_for(private, sellers["low"].user_id))
        assert sorted(
            (i["id"], i["seller_rating"], i["seller_rating_count"]) for i in page.json()["items"]
        ) == sorted((ids[n], *expected[n]) for n in ("low", "low_brass"))


async def test_reindex_catches_up_rating_changes(private: PrivateSearch) -> None:
    """A rating that changes after the reindex snapshot leaves the listing rows alone (only outbox rows, which
    the live syncer applies to the live index): the catch-up must still bring it into the new index."""
    seller = await private.seller()
    async with private.session() as s:
        x = await listings.create(s, seller, listing_fields(title=f"{marker('reindex')} lamp"))
        await listings.publish(s, x.id, seller, None)
    await private.wait_drained()
    fresh = f"{private.index}__rating_test"
    meili = Meili(private.meili_url, MASTER_KEY, timeout=60)
    engine = create_async_engine(private.database_url, pool_size=2)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

    def document() -> dict[str, Any]:
        with private.master() as client:
            response = client.get(f"/indexes/{fresh}/documents/{x.id}")
            response.raise_for_status()
            return dict(response.json())

    try:
        await apply_index_settings(meili, fresh)
        seen, ratings, _ = await _load_snapshot(meili, sessionmaker, fresh, progress=False)
        assert (document()["seller_rating"], document()["seller_rating_count"]) == UNRATED
        await rate(private, str(x.id), [5, 5])
        async with private.session() as s:  # the listing row itself did not change: same xmin
            assert await s.scalar(select(XMIN).where(Listing.id == x.id)) == seen[x.id]
        assert await _catch_up(meili, sessionmaker, fresh, seen, ratings) >= 1
        assert (document()["seller_rating"], document()["seller_rating_count"]) == (bayesian_score(10, 2), 2)
        assert ratings[seller.user_id] == (bayesian_score(10, 2), 2)  # remembered for the next round
    finally:
        await meili.run_task("DELETE", f"/indexes/{fresh}")
        await meili.aclose()
        await engine.dispose()
