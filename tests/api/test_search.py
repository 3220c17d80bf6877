"""Search over HTTP against the real stack (real Meilisearch): filters, sorts, geo radius, facets,
pagination, validation, and a hostile input corpus that must neither break nor widen a search."""

from __future__ import annotations

import random
import string
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.listing_runtime import listing_runtime
from api.listing_schemas import SearchOut
from bazaar.search.meili import Meili
from bazaar.search.query import ListingQuery, distance_m, search_meili
from bazaar.settings import Settings
from bazaar.text import control_character_problem
from tests.support.http import Actor, published_listing, seller_with_payout, wait_until
from tests.support.search import rate_seller

pytestmark = pytest.mark.integration

HOSTILE = [
    'x" OR seller_id = "B',
    '" OR 1=1 OR "',
    "\\",
    '\\"',
    '\\\\" OR \\"',
    "a AND b",
    "NOT active",
    "(bikes) OR (1 = 1)",
    "categories = bikes OR categories EXISTS",
    "_geoRadius(0, 0, 100000000)",
    "électronique - 日本語 🚲 \u2013 \u0000",
    '"',
    "' OR ''='",
    "%27%20OR%201%3D1",
    "*",
    "\u202e\u200b",
    "x" * 150,
]
BERLIN = (52.52, 13.405)
POTSDAM = (52.3906, 13.0645)
HAMBURG = (53.5511, 9.9937)
MUNICH = (48.1351, 11.582)


def marker() -> str:
    """A word no other listing has (letters only, so the tokenizer keeps it whole)."""
    return "".join(random.choices(string.ascii_lowercase, k=12))


def location(point: tuple[float, float], city: str) -> dict[str, Any]:
    return {"lat": point[0], "lng": point[1], "city": city, "country": "DE"}


def search(http: httpx.Client, **params: Any) -> dict[str, Any]:
    response = http.get("/v1/search/listings", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["X-Search-Backend"] == "meilisearch"
    SearchOut.model_validate(response.json())  # the hand-serialised body keeps the documented shape
    return dict(response.json())


@pytest.fixture(scope="module")
def corpus(http: httpx.Client) -> dict[str, Any]:
    """Five listings of one seller and one of another, all carrying the same marker word."""
    word = marker()
    seller = seller_with_payout(http)
    other = seller_with_payout(http)

    def make(
        who: Actor,
        name: str,
        category: str,
        condition: str,
        amount: int,
        currency: str,
        point: tuple[float, float],
        city: str,
    ) -> str:
        listing = published_listing(
            http,
            who,
            title=f"{word} {name}",
            category=category,
            condition=condition,
            price={"amount": amount, "currency": currency},
            location=location(point, city),
            description=f"A {name} in {city}, {word} quality.",
        )
        return str(listing["id"])

    ids = {
        "bike_berlin": make(seller, "city bike", "bikes", "good", 10_000, "EUR", BERLIN, "Berlin"),
        "tent_potsdam": make(seller, "tent", "camping", "new", 2_500, "EUR", POTSDAM, "Potsdam"),
        "phone_hamburg": make(seller, "phone", "phones", "fair", 70_000, "EUR", HAMBURG, "Hamburg"),
        "bike_munich": make(seller, "kids bike", "bikes", "like_new", 500, "EUR", MUNICH, "Munich"),
        "bike_usd": make(seller, "road bike", "bikes", "good", 12_000, "USD", BERLIN, "Berlin"),
        "other_seller": make(other, "lamp", "furniture", "good", 4_000, "EUR", BERLIN, "Berlin"),
    }
    wait_until(lambda: search(http, q=word, per_page=50)["total"] == len(ids), timeout=15, interval=0.1)
    return {"word": word, "ids": ids, "seller": seller, "other": other}


def ids_of(result: dict[str, Any]) -> list[str]:
    return [hit["id"] for hit in result["hits"]]


def test_text_filters_and_sorts(http: httpx.Client, corpus: dict[str, Any]) -> None:
    word, ids, seller = corpus["word"], corpus["ids"], corpus["seller"]
    mine = {k: v for k, v in ids.items() if k != "other_seller"}
    everything = search(http, q=word, per_page=50)
    assert set(ids_of(everything)) == set(ids.values())
    assert all(f"<em>{word}</em>" in hit["highlight"]["title"] for hit in everything["hits"])
    assert isinstance(everything["processing_time_ms"], int)

    # Category includes its sub-categories; several categories are an OR.
    assert set(ids_of(search(http, q=word, category="sports"))) == {
        ids["bike_berlin"],
        ids["tent_potsdam"],
        ids["bike_munich"],
        ids["bike_usd"],
    }
    assert set(ids_of(search(http, q=word, category=["camping", "phones"]))) == {
        ids["tent_potsdam"],
        ids["phone_hamburg"],
    }
    assert set(ids_of(search(http, q=word, condition=["good"], seller_id=seller.user_id))) == {
        ids["bike_berlin"],
        ids["bike_usd"],
    }
    priced = search(http, q=word, min_price=2_000, max_price=20_000, currency="EUR")
    assert set(ids_of(priced)) == {ids["bike_berlin"], ids["tent_potsdam"], ids["other_seller"]}
    assert set(ids_of(search(http, q=word, seller_id=seller.user_id, per_page=50))) == set(mine.values())

    eur = [
        ids["bike_munich"],
        ids["tent_potsdam"],
        ids["other_seller"],
        ids["bike_berlin"],
        ids["phone_hamburg"],
    ]
    assert ids_of(search(http, q=word, currency="EUR", sort="price_asc")) == eur
    assert ids_of(search(http, q=word, currency="EUR", sort="price_desc")) == list(reversed(eur))
    assert ids_of(search(http, q=word, sort="newest")) == list(reversed(ids.values()))

    # Pagination: pages are disjoint and add up to the total.
    pages = [search(http, q=word, sort="newest", per_page=4, page=p) for p in (1, 2)]
    assert [len(p["hits"]) for p in pages] == [4, 2]
    assert ids_of(pages[0]) + ids_of(pages[1]) == ids_of(search(http, q=word, sort="newest"))
    assert pages[1]["total"] == 6


def test_geo_radius_and_distance(http: httpx.Client, corpus: dict[str, Any]) -> None:
    word, ids = corpus["word"], corpus["ids"]
    near = {"q": word, "lat": BERLIN[0], "lng": BERLIN[1]}
    potsdam_m = distance_m(*BERLIN, *POTSDAM)
    assert 25_000 < potsdam_m < 30_000
    berlin = {ids["bike_berlin"], ids["bike_usd"], ids["other_seller"]}
    assert set(ids_of(search(http, **near, radius_km=10))) == berlin
    assert set(ids_of(search(http, **near, radius_km=potsdam_m / 1000 + 2))) == berlin | {ids["tent_potsdam"]}
    assert set(ids_of(search(http, **near, radius_km=potsdam_m / 1000 - 2))) == berlin
    assert len(search(http, **near, radius_km=1_000)["hits"]) == 6

    by_distance = search(http, **near, sort="distance", per_page=10)
    distances = [hit["distance_m"] for hit in by_distance["hits"]]
    assert distances == sorted(distances)
    assert ids_of(by_distance)[3:] == [ids["tent_potsdam"], ids["phone_hamburg"], ids["bike_munich"]]
    hit = {h["id"]: h for h in by_distance["hits"]}
    assert hit[ids["bike_berlin"]]["distance_m"] == 0
    assert abs(hit[ids["tent_potsdam"]]["distance_m"] - potsdam_m) <= 1
    assert 250_000 < hit[ids["phone_hamburg"]]["distance_m"] < 260_000
    # Without a point there is no distance.
    assert all(h["distance_m"] is None for h in search(http, q=word)["hits"])


def test_facets(http: httpx.Client, corpus: dict[str, Any]) -> None:
    word = corpus["word"]
    result = search(http, q=word, facets="true")
    facets = result["facets"]
    assert facets["category"] == {
        "sports": 4,
        "bikes": 3,
        "camping": 1,
        "electronics": 1,
        "phones": 1,
        "home": 1,
        "furniture": 1,
    }
    assert facets["condition"] == {"good": 3, "new": 1, "fair": 1, "like_new": 1}
    # Price buckets are per currency: restrict to one to get meaningful ranges, in bucket order.
    eur = search(http, q=word, facets="true", currency="EUR")["facets"]["price"]
    assert list(eur.items()) == [("0-10", 1), ("10-50", 2), ("100-500", 1), ("500-1000", 1)]
    # Facets follow the other filters.
    bikes = search(http, q=word, facets="true", category="bikes")["facets"]
    assert bikes["condition"] == {"good": 2, "like_new": 1}
    assert search(http, q=word)["facets"] is None


def test_seller_rating_ranks_and_is_shown(http: httpx.Client, stack: Any) -> None:
    """Equally relevant listings of three sellers: revealed reviews reorder them (relevance breaks the tie by
    the seller's rating; sort=rating sorts by it), and every hit shows the rating it ranked by."""
    word = marker()
    made = {}
    for name in ("unrated", "top", "low"):  # neither oldest- nor newest-first is the rating order
        listing = published_listing(
            http, seller_with_payout(http), title=f"{word} reading lamp", description="Brass, works well."
        )
        made[name] = str(listing["id"])

    def ranked(**params: Any) -> list[tuple[str, float, int]]:
        hits = search(http, q=word, **params)["hits"]
        return [(h["id"], h["seller_rating"], h["seller_rating_count"]) for h in hits]

    wait_until(lambda: len(ranked()) == 3, timeout=15)
    assert {(score, count) for _, score, count in ranked()} == {(4.0, 0)}  # nobody rated yet: the prior

    rate_seller(stack.database_url, made["top"], [5, 5, 4])  # (4 * 5 + 14) / 8
    rate_seller(stack.database_url, made["low"], [2, 1])  # (4 * 5 + 3) / 7
    expected = [(made["top"], 4.25, 3), (made["unrated"], 4.0, 0), (made["low"], 3.2857, 2)]
    for sort in ("rating", "relevance"):
        wait_until(lambda sort=sort: ranked(sort=sort) == expected, timeout=15)


def test_a_chosen_sort_orders_every_listing_with_all_the_words(http: httpx.Client) -> None:
    """Found from outside: `q=iphone 13&sort=price_asc` was in price order only within each text-relevance
    bucket (listings with both words in the title, then in the description, then with one word), and prices of
    different currencies compared as bare minor units (3000 JPY between 20.00 and 100.00 EUR). A chosen sort
    orders all the listings that have every word; prices compare within a currency."""
    word, other = marker(), marker()
    seller = seller_with_payout(http)

    def make(title: str, amount: int, currency: str = "EUR", description: str = "Works.") -> str:
        price = {"amount": amount, "currency": currency}
        listing = published_listing(http, seller, title=title, price=price, description=description)
        return str(listing["id"])

    in_title = make(f"{word} {other} kettle", 9_000)
    in_description = make(f"{word} kettle", 1_000, description=f"An {other} kettle, barely used.")
    one_word = make(f"{word} teapot", 500)  # lacks `other`: not a match of a sorted two-word search
    yen = make(f"{word} {other} pot", 3_000, "JPY")
    dollars = make(f"{word} {other} pan", 2_000, "USD")
    wait_until(lambda: search(http, q=word)["total"] == 5, timeout=15, interval=0.1)

    two_words = f"{word} {other}"
    eur = [in_description, in_title]
    assert ids_of(search(http, q=two_words, sort="price_asc", currency="EUR")) == eur
    assert ids_of(search(http, q=two_words, sort="price_desc", currency="EUR")) == eur[::-1]
    # Without a currency: grouped by currency (code order), then by price.
    assert ids_of(search(http, q=two_words, sort="price_asc")) == [*eur, yen, dollars]
    assert ids_of(search(http, q=two_words, sort="price_desc")) == [*eur[::-1], yen, dollars]
    assert ids_of(search(http, q=two_words, sort="newest")) == [dollars, yen, in_description, in_title]
    # Relevance still finds the listing with one of the words, last.
    assert ids_of(search(http, q=two_words))[-1] == one_word


def test_a_short_word_allows_no_typo(http: httpx.Client) -> None:
    """Found from outside: "lamp" found laptops and "ball" balance bikes (a last word is a prefix, and one typo
    was allowed from 4 letters: "lamp" -> "lap..."). One typo is allowed from 5 letters, as Meilisearch's default."""
    word = marker()
    laptop = published_listing(http, seller_with_payout(http), title=f"{word} laptop", description="Fast.")
    wait_until(lambda: search(http, q=word)["total"] == 1, timeout=15, interval=0.1)
    assert ids_of(search(http, q=f"{word} lapto", sort="newest")) == [laptop["id"]]  # a prefix
    assert ids_of(search(http, q=f"{word} lamp", sort="newest")) == []
    assert ids_of(search(http, q=f"{word} laptpo", sort="newest")) == [laptop["id"]]  # one typo at 6 letters


def test_the_hot_path_and_the_route_answer_alike(http: httpx.Client, corpus: dict[str, Any]) -> None:
    """api/search_direct.py answers plain searches before routing; the route answers the rest. The same search
    through both (`facets=FALSE`/`TRUE` is not plain to the hot path, the route reads it as false/true) gets
    the same body and the same headers, the per-request ones aside."""
    word, seller = corpus["word"], corpus["seller"]
    searches: list[dict[str, Any]] = [
        {"q": word},
        {"q": f"  {word} ", "category": ["sports", "camping"], "condition": ["good", "new"], "per_page": 3},
        {"q": word, "min_price": 500, "max_price": 20_000, "currency": "EUR", "sort": "price_desc"},
        {"q": word, "lat": BERLIN[0], "lng": BERLIN[1], "radius_km": 30, "sort": "distance", "per_page": 2},
        {"q": word, "seller_id": seller.user_id, "facets": "true"},
    ]
    per_request = {"date", "server-timing", "ratelimit", "x-trace-id", "content-length"}
    for params in searches:
        hot = http.get("/v1/search/listings", params=params)
        routed_facets = "TRUE" if params.get("facets") == "true" else "FALSE"
        routed = http.get("/v1/search/listings", params={**params, "facets": routed_facets})
        assert hot.status_code == routed.status_code == 200, (hot.text, routed.text)
        assert hot.json()["hits"], params
        bodies = [{**r.json(), "processing_time_ms": 0} for r in (hot, routed)]
        assert bodies[0] == bodies[1], params
        headers = [{k: v for k, v in r.headers.items() if k not in per_request} for r in (hot, routed)]
        assert headers[0] == headers[1], params
        assert hot.headers["server-timing"].startswith("meilisearch;dur=")


@pytest.mark.parametrize(
    "params",
    [
        {"lat": 52.5},
        {"lng": 13.4},
        {"radius_km": 5},
        {"radius_km": 5, "lat": 52.5},
        {"sort": "distance"},
        {"lat": 91, "lng": 0},
        {"lat": 0, "lng": 181},
        {"radius_km": 0, "lat": 0, "lng": 0},
        {"min_price": 10},
        {"min_price": 500, "max_price": 100, "currency": "EUR"},
        {"min_price": -1, "currency": "EUR"},
        {"currency": "eur"},
        {"currency": "XXX"},
        {"page": 101, "per_page": 100},
        {"page": 0},
        {"per_page": 101},
        {"category": "spaceships"},
        {"category": ["bikes"] * 11},
        {"condition": "mint"},
        {"sort": "cheapest"},
        {"seller_id": "not-a-uuid"},
        {"q": "x" * 201},
    ],
)
def test_invalid_parameters_get_422(http: httpx.Client, params: dict[str, Any]) -> None:
    response = http.get("/v1/search/listings", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] in ("validation_error", "unknown_category")
    if error["code"] == "validation_error":
        # Every 422, parameters that do not go together included, names a parameter the request sent or lacks.
        [where, name, *_] = error["details"]["errors"][0]["loc"]
        assert where == "query" and name in {*params, "lat", "lng", "currency"}, error


def test_hostile_input_through_the_api(http: httpx.Client, corpus: dict[str, Any]) -> None:
    """Every parameter, every hostile value: a clean 200 or 422, and a seller filter never widens."""
    word, seller, ids = corpus["word"], corpus["seller"], corpus["ids"]
    mine = {v for k, v in ids.items() if k != "other_seller"}
    for value in HOSTILE:
        scoped = http.get("/v1/search/listings", params={"q": f"{word} {value}", "seller_id": seller.user_id})
        plain = http.get("/v1/search/listings", params={"q": value})
        if control_character_problem(value, multiline=False) is not None:
            # Control characters (the NUL) are never text: refused at the edge, with a 422 naming q.
            for refused in (scoped, plain):
                assert refused.status_code == 422, (value, refused.text)
                assert refused.json()["error"]["details"]["errors"][0]["loc"] == ["query", "q"]
        else:
            assert scoped.status_code == 200, (value, scoped.text)
            assert set(ids_of(scoped.json())) <= mine, value
            assert plain.status_code == 200, (value, plain.text)
        for name in ("category", "condition", "currency", "seller_id", "sort", "lat", "min_price", "page"):
            response = http.get("/v1/search/listings", params={"q": word, name: value})
            assert response.status_code == 422, (name, value, response.status_code, response.text)


def test_hostile_filters_against_real_meilisearch(stack: Any, corpus: dict[str, Any]) -> None:
    """Below the API's validation: hostile strings in every string filter, straight into the real index.
    Meilisearch must accept each filter (escaping holds) and match the literal string, i.e. nothing."""
    import asyncio

    word, seller, other = corpus["word"], corpus["seller"], corpus["other"]

    async def run() -> None:
        meili = Meili(stack.meili_url, stack.meili_search_key)
        try:
            for value in [*HOSTILE, f'{seller.user_id}" OR seller_id = "{other.user_id}']:
                for query in (
                    ListingQuery(q=word, seller_id=value),
                    ListingQuery(q=word, categories=[value]),
                    ListingQuery(q=word, conditions=[value, "good"], seller_id=seller.user_id),
                    ListingQuery(q=word, currency=value),
                ):
                    result = await search_meili(meili, "listings", query)
                    assert {h["seller_id"] for h in result.hits} <= {seller.user_id}, (value, query)
                    if query.seller_id == value or query.categories or query.currency:
                        assert result.hits == [], (value, query)
            # And the escaping still matches real values exactly.
            exact = await search_meili(meili, "listings", ListingQuery(q=word, seller_id=seller.user_id))
            assert len(exact.hits) == 5
        finally:
            await meili.aclose()

    asyncio.run(run())


def test_hostile_listing_text_is_found_and_escaped(http: httpx.Client) -> None:
    word = marker()
    seller = seller_with_payout(http)
    title = f'{word} <script>alert("x")</script> \\ "quoted" 日本語'
    listing = published_listing(http, seller, title=title, description='<img src=x onerror="1"> & more')
    result = wait_until(lambda: search(http, q=word)["hits"], timeout=15)
    assert result[0]["id"] == listing["id"]
    assert result[0]["title"] == title  # the data itself is returned as is (JSON)...
    snippet = result[0]["highlight"]["title"]
    assert "<script>" not in snippet and "&lt;script&gt;" in snippet  # ...snippets are safe to render
    assert f"<em>{word}</em>" in snippet
    assert "<img" not in result[0]["highlight"]["description"]


def test_api_holds_only_the_search_key(stack: Any) -> None:
    """The API's Meilisearch client authenticates with the search-only key, which cannot write."""
    import asyncio

    settings = Settings(_env_file=None, **{k.lower(): v for k, v in stack.env.items()})
    assert settings.meili_search_key is not None and settings.meili_master_key is not None

    async def run() -> None:
        app = FastAPI()
        async with listing_runtime(app, settings):
            sent = app.state.meili.http.headers["Authorization"]
        assert sent == f"Bearer {stack.meili_search_key}"
        assert stack.meili_search_key != stack.meili_master_key

    asyncio.run(run())
    write = httpx.post(
        f"{stack.meili_url}/indexes/listings/documents",
        json=[{"id": str(uuid.uuid4())}],
        headers={"Authorization": f"Bearer {stack.meili_search_key}"},
    )
    assert write.status_code == 403
