"""Listings over HTTP against the real stack: lifecycle, who sees what, ETags, validation, deletion,
"my listings", the category tree and the hot-listing cache."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.http import (
    Actor,
    listing_body,
    published_listing,
    register,
    run_cli,
    seller_with_payout,
    support_user,
    wait_until,
)
from tests.support.search import rate_seller

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def support(http: httpx.Client, stack: Any) -> Actor:
    return support_user(http, stack)


def create(http: httpx.Client, seller: Actor, **overrides: Any) -> dict[str, Any]:
    response = http.post("/v1/listings", json=listing_body(**overrides), headers=seller.headers)
    assert response.status_code == 201, response.text
    assert response.headers["ETag"] == f'"{response.json()["version"]}"'
    return dict(response.json())


def status_for(http: httpx.Client, listing_id: str, actor: Actor | None) -> int:
    return http.get(f"/v1/listings/{listing_id}", headers=actor.headers if actor else {}).status_code


def test_lifecycle_and_visibility(http: httpx.Client, support: Actor) -> None:
    seller = register(http, ["seller"], "Seller")
    other = register(http, ["seller", "buyer"], "Other")
    draft = create(http, seller, quantity=2)
    lid = draft["id"]
    assert draft["status"] == "draft"

    def visibility() -> tuple[int, int, int, int]:
        return (
            status_for(http, lid, seller),
            status_for(http, lid, other),
            status_for(http, lid, None),
            status_for(http, lid, support),
        )

    assert visibility() == (200, 404, 404, 200)
    # Publishing needs a payout account.
    refused = http.post(f"/v1/listings/{lid}/publish", headers=seller.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "payout_account_required"
    assert http.post("/v1/payout-account", json={"country": "DE"}, headers=seller.headers).status_code == 201
    # The same request again answers the account; another country or currency is refused, naming the account's.
    again = http.post("/v1/payout-account", json={"country": "DE"}, headers=seller.headers)
    assert again.status_code == 200 and again.json()["country"] == "DE", (
        again.text
    )  # a replay: nothing created
    elsewhere = http.post(
        "/v1/payout-account", json={"country": "FR", "default_currency": "USD"}, headers=seller.headers
    )
    assert elsewhere.status_code == 409, elsewhere.text
    assert elsewhere.json()["error"]["code"] == "payout_account_exists"
    assert elsewhere.json()["error"]["details"] == {"country": "DE", "default_currency": "EUR"}
    published = http.post(f"/v1/listings/{lid}/publish", headers=seller.headers)
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "active"
    assert published.json()["published_at"] is not None
    assert visibility() == (200, 200, 200, 200)

    # Stock to 0: sold, no longer public; stock back: active again.
    sold = http.patch(
        f"/v1/listings/{lid}", json={"quantity": 0}, headers={**seller.headers, "If-Match": "*"}
    )
    assert sold.json()["status"] == "sold"
    assert visibility() == (200, 404, 404, 200)
    back = http.patch(
        f"/v1/listings/{lid}", json={"quantity": 3}, headers={**seller.headers, "If-Match": "*"}
    )
    assert back.json()["status"] == "active"
    assert visibility() == (200, 200, 200, 200)

    # Archived: only the seller (and support) see it; editing needs publishing it again.
    archived = http.post(f"/v1/listings/{lid}/archive", headers=seller.headers)
    assert archived.json()["status"] == "archived"
    assert visibility() == (200, 404, 404, 200)
    edit = http.patch(
        f"/v1/listings/{lid}", json={"title": "Changed title"}, headers={**seller.headers, "If-Match": "*"}
    )
    assert edit.status_code == 409
    assert edit.json()["error"]["code"] == "invalid_transition"
    assert http.post(f"/v1/listings/{lid}/archive", headers=seller.headers).status_code == 409
    assert http.post(f"/v1/listings/{lid}/publish", headers=seller.headers).json()["status"] == "active"

    # Nobody else may change it: 403 while it is public, 404 while it is not.
    assert (
        http.patch(
            f"/v1/listings/{lid}", json={"title": "Hijacked"}, headers={**other.headers, "If-Match": "*"}
        ).status_code
        == 403
    )
    http.post(f"/v1/listings/{lid}/archive", headers=seller.headers)
    for method, path in (
        ("PATCH", f"/v1/listings/{lid}"),
        ("POST", f"/v1/listings/{lid}/publish"),
        ("DELETE", f"/v1/listings/{lid}"),
    ):
        assert (
            http.request(
                method, path, json={"title": "Hijacked"}, headers={**other.headers, "If-Match": "*"}
            ).status_code
            == 404
        )
    assert http.get(f"/v1/listings/{uuid.uuid4()}").status_code == 404


def test_an_update_without_if_match_is_428_and_changes_nothing(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    listing = create(http, seller)
    refused = http.patch(
        f"/v1/listings/{listing['id']}", json={"title": "Blind edit"}, headers=seller.headers
    )
    assert refused.status_code == 428, refused.text
    assert refused.json()["error"]["code"] == "precondition_required"
    read = http.get(f"/v1/listings/{listing['id']}", headers=seller.headers)
    assert (read.json()["title"], read.headers["ETag"]) == (listing["title"], '"1"')


def test_etag_and_if_match(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    listing = create(http, seller)
    lid = listing["id"]
    read = http.get(f"/v1/listings/{lid}", headers=seller.headers)
    tag = read.headers["ETag"]
    assert tag == '"1"'
    # If-None-Match is a list (RFC 9110 13.1.2): any tag that matches, or `*` for a listing that exists, is 304.
    for held, status in ((tag, 304), (f'"99", W/{tag}', 304), ("*", 304), ('"99", "100"', 200)):
        revalidated = http.get(f"/v1/listings/{lid}", headers={**seller.headers, "If-None-Match": held})
        assert revalidated.status_code == status, (held, revalidated.status_code)
        assert revalidated.headers["ETag"] == tag

    first = http.patch(
        f"/v1/listings/{lid}", json={"title": "First edit"}, headers={**seller.headers, "If-Match": tag}
    )
    assert first.status_code == 200
    assert first.headers["ETag"] == '"2"'
    # A second writer still holding the old ETag loses, and is told the current version.
    stale = http.patch(
        f"/v1/listings/{lid}", json={"title": "Lost edit"}, headers={**seller.headers, "If-Match": tag}
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.json()["error"]["details"]["current_version"] == 2
    for action in ("publish", "archive"):
        r = http.post(f"/v1/listings/{lid}/{action}", headers={**seller.headers, "If-Match": tag})
        assert r.status_code == 412, (action, r.text)
    assert http.delete(f"/v1/listings/{lid}", headers={**seller.headers, "If-Match": tag}).status_code == 412
    weak = http.patch(
        f"/v1/listings/{lid}", json={"description": "x"}, headers={**seller.headers, "If-Match": 'W/"2"'}
    )
    assert weak.status_code == 200
    # If-Match is a list too: one current tag among them is enough; none is 412.
    listed = http.patch(
        f"/v1/listings/{lid}", json={"description": "z"}, headers={**seller.headers, "If-Match": '"1", "3"'}
    )
    assert listed.status_code == 200, listed.text
    assert listed.headers["ETag"] == '"4"'
    none_current = http.patch(
        f"/v1/listings/{lid}", json={"description": "w"}, headers={**seller.headers, "If-Match": '"1", "3"'}
    )
    assert none_current.status_code == 412, none_current.text
    anything = http.patch(
        f"/v1/listings/{lid}", json={"description": "y"}, headers={**seller.headers, "If-Match": "*"}
    )
    assert anything.status_code == 200
    garbage = http.patch(
        f"/v1/listings/{lid}", json={"description": "z"}, headers={**seller.headers, "If-Match": "abc"}
    )
    assert garbage.status_code == 412
    # Found from outside: a tag that is no version of ours gave `details: {}`; docs/api.md promises the version.
    current = http.get(f"/v1/listings/{lid}", headers=seller.headers)
    assert garbage.json()["error"]["details"] == {"current_version": current.json()["version"]}, garbage.text
    assert "no ETag of this API" in garbage.json()["error"]["message"]
    assert current.json()["title"] == "First edit"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": {"amount": 0, "currency": "EUR"}}, ("body", "price", "amount")),
        ({"price": {"amount": -5, "currency": "EUR"}}, ("body", "price", "amount")),
        ({"price": {"amount": 100, "currency": "XXX"}}, ("body", "price", "currency")),
        ({"price": {"amount": 100, "currency": "eur"}}, ("body", "price", "currency")),
        ({"location": {"lat": 91, "lng": 0, "city": "X", "country": "DE"}}, ("body", "location", "lat")),
        ({"location": {"lat": 0, "lng": -181, "city": "X", "country": "DE"}}, ("body", "location", "lng")),
        (
            {"location": {"lat": 0, "lng": 0, "city": "X", "country": "Germany"}},
            ("body", "location", "country"),
        ),
        ({"title": "x" * 141}, ("body", "title")),
        ({"title": "  a "}, ("body", "title")),
        ({"description": "x" * 5001}, ("body", "description")),
        ({"quantity": 0}, ("body", "quantity")),
        ({"condition": "mint"}, ("body", "condition")),
        ({"image_urls": ["ftp://example.com/a.jpg"]}, ("body", "image_urls", 0)),
        ({"image_urls": ["https://example.com/a.jpg"] * 13}, ("body", "image_urls")),
        ({"attributes": {"k" * 41: "v"}}, ("body", "attributes", "k" * 41, "[key]")),
        ({"attributes": {"colour": "v" * 201}}, ("body", "attributes", "colour")),
        ({"category": "Bikes!"}, ("body", "category")),
        ({"owner": "me"}, ("body", "owner")),
    ],
)
def test_validation_422(http: httpx.Client, body: dict[str, Any], field: tuple[Any, ...]) -> None:
    seller = _validation_seller(http)
    response = http.post("/v1/listings", json=listing_body(**body), headers=seller.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in {tuple(e["loc"]) for e in error["details"]["errors"]}, error


_SELLERS: dict[str, Actor] = {}


def _validation_seller(http: httpx.Client) -> Actor:
    if "v" not in _SELLERS:
        _SELLERS["v"] = register(http, ["seller"], "Validator")
    return _SELLERS["v"]


def test_unknown_category_and_null_patch_fields(http: httpx.Client) -> None:
    seller = _validation_seller(http)
    unknown = http.post("/v1/listings", json=listing_body(category="spaceships"), headers=seller.headers)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_category"
    assert unknown.json()["error"]["details"] == {"category": "spaceships"}
    listing = create(http, seller)
    # Any field but `location` is left out to keep it, never null: the 422 names the field, and the document
    # says the same (only `location` may be null in ListingPatch).
    for field in (
        "title",
        "description",
        "price",
        "category",
        "condition",
        "quantity",
        "image_urls",
        "attributes",
    ):
        null = http.patch(
            f"/v1/listings/{listing['id']}", json={field: None}, headers={**seller.headers, "If-Match": "*"}
        )
        assert null.status_code == 422, null.text
        assert null.json()["error"]["details"]["errors"][0]["loc"] == ["body", field], null.text
        assert field in null.json()["error"]["message"], null.text
    patch_schema = http.get("/openapi.json").json()["components"]["schemas"]["ListingPatch"]["properties"]
    nullable = {name for name, prop in patch_schema.items() if {"type": "null"} in prop.get("anyOf", [])}
    assert nullable == {"location"}, nullable
    bad_category = http.patch(
        f"/v1/listings/{listing['id']}",
        json={"category": "nope"},
        headers={**seller.headers, "If-Match": "*"},
    )
    assert bad_category.json()["error"]["code"] == "unknown_category"
    # `location: null` is the one allowed null: it removes the location.
    cleared = http.patch(
        f"/v1/listings/{listing['id']}", json={"location": None}, headers={**seller.headers, "If-Match": "*"}
    )
    assert cleared.status_code == 200
    assert cleared.json()["location"] is None
    attrs = http.patch(
        f"/v1/listings/{listing['id']}",
        json={"attributes": {" size ": " 56 cm "}},
        headers={**seller.headers, "If-Match": "*"},
    )
    assert attrs.json()["attributes"] == {"size": "56 cm"}


def test_delete_removes_or_archives(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    never_sold = published_listing(http, seller)
    gone = http.delete(f"/v1/listings/{never_sold['id']}", headers=seller.headers)
    assert gone.status_code == 200
    assert gone.json() == {"result": "deleted", "listing": None}
    assert status_for(http, never_sold["id"], seller) == 404
    assert http.delete(f"/v1/listings/{never_sold['id']}", headers=seller.headers).status_code == 404

    ordered = published_listing(http, seller, quantity=5)
    buyer = register(http, ["buyer"], "Buyer")
    placed = http.post(
        "/v1/orders",
        json={"listing_id": ordered["id"], "payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert placed.status_code == 201, placed.text
    kept = http.delete(f"/v1/listings/{ordered['id']}", headers=seller.headers)
    assert kept.status_code == 200
    assert kept.json()["result"] == "archived"
    assert kept.json()["listing"]["status"] == "archived"
    assert status_for(http, ordered["id"], seller) == 200
    assert status_for(http, ordered["id"], None) == 404
    # The buyer's order still shows what was bought.
    assert http.get(f"/v1/orders/{placed.json()['id']}", headers=buyer.headers).status_code == 200

    # A listing bought as the second line of a checkout's order is kept (archived) too.
    first, second = published_listing(http, seller, quantity=5), published_listing(http, seller, quantity=5)
    for listing in (first, second):
        put = http.put(f"/v1/cart/lines/{listing['id']}", json={"quantity": 1}, headers=buyer.headers)
        assert put.status_code == 200, put.text
    paid = http.post(
        "/v1/checkouts",
        json={"payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert paid.status_code == 201 and paid.json()["status"] == "paid", paid.text
    [order] = paid.json()["orders"]
    [bought_second] = [line for line in order["lines"] if line["listing_id"] != order["listing_id"]]
    kept_line = http.delete(f"/v1/listings/{bought_second['listing_id']}", headers=seller.headers)
    assert (kept_line.status_code, kept_line.json()["result"]) == (200, "archived"), kept_line.text


def test_my_listings_filter_sort_paginate(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    prices = [500, 100, 900, 300, 700]
    made = [create(http, seller, price={"amount": p, "currency": "EUR"}) for p in prices]
    for listing in made[:2]:
        assert http.post(f"/v1/listings/{listing['id']}/publish", headers=seller.headers).status_code == 200

    def all_pages(**params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = http.get(
                "/v1/me/listings",
                params={**params, **({"cursor": cursor} if cursor else {})},
                headers=seller.headers,
            )
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return items

    newest = all_pages(limit=2)
    assert [x["id"] for x in newest] == [x["id"] for x in reversed(made)]
    assert [x["id"] for x in all_pages(limit=2, sort="oldest")] == [x["id"] for x in made]
    assert [x["price"]["amount"] for x in all_pages(limit=3, sort="price_asc")] == sorted(prices)
    assert [x["price"]["amount"] for x in all_pages(limit=1, sort="price_desc")] == sorted(
        prices, reverse=True
    )
    # Prices compare within a currency, as search sorts them (found from outside: 50 JPY sat among 0.50 EUR):
    # grouped by currency code in the sort's direction, and the pages follow.
    yen = [create(http, seller, price={"amount": p, "currency": "JPY"}) for p in (200, 50)]
    by_price = [(x["price"]["currency"], x["price"]["amount"]) for x in all_pages(limit=2, sort="price_asc")]
    assert by_price == [("EUR", p) for p in sorted(prices)] + [("JPY", 50), ("JPY", 200)], by_price
    down = [(x["price"]["currency"], x["price"]["amount"]) for x in all_pages(limit=3, sort="price_desc")]
    assert down == list(reversed(by_price)), down
    for listing in yen:
        assert http.delete(f"/v1/listings/{listing['id']}", headers=seller.headers).status_code == 200
    assert {x["id"] for x in all_pages(status="active")} == {made[0]["id"], made[1]["id"]}
    assert {x["id"] for x in all_pages(status="draft", limit=100)} == {x["id"] for x in made[2:]}
    # Another seller sees none of them.
    other = register(http, ["seller"], "Other")
    assert http.get("/v1/me/listings", headers=other.headers).json() == {"items": [], "next_cursor": None}
    # Hard cap and bad cursors.
    assert http.get("/v1/me/listings", params={"limit": 101}, headers=seller.headers).status_code == 422
    first = http.get(
        "/v1/me/listings", params={"limit": 1, "sort": "price_asc"}, headers=seller.headers
    ).json()
    wrong_sort = http.get(
        "/v1/me/listings", params={"cursor": first["next_cursor"], "sort": "newest"}, headers=seller.headers
    )
    assert wrong_sort.status_code == 422
    assert (
        http.get("/v1/me/listings", params={"cursor": "garbage!"}, headers=seller.headers).status_code == 422
    )


def test_categories_tree_is_public(http: httpx.Client) -> None:
    response = http.get("/v1/categories")
    assert response.status_code == 200
    roots = {c["slug"]: c for c in response.json()["categories"]}
    assert {"electronics", "sports", "home", "fashion", "books-media", "kids"} <= set(roots)
    sports = {c["slug"] for c in roots["sports"]["children"]}
    assert sports == {"bikes", "camping", "fitness"}
    assert all(child["children"] == [] for child in roots["sports"]["children"])


def _cache_counts(http: httpx.Client) -> tuple[float, float]:
    text = http.get("/metrics").text
    values = {}
    for line in text.splitlines():
        if line.startswith("bazaar_listing_cache_requests_total{"):
            values[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return values.get("hit", 0.0), values.get("miss", 0.0)


def test_hot_cache_serves_public_reads_and_is_invalidated(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    listing = published_listing(http, seller, quantity=3)
    lid = listing["id"]
    http.get(f"/v1/listings/{lid}")  # fills the cache
    hits_before, _ = _cache_counts(http)
    for _ in range(3):
        assert http.get(f"/v1/listings/{lid}").json()["title"] == listing["title"]
    hits_after, _ = _cache_counts(http)
    # A popularity flush (listing_changed NOTIFY) may invalidate the entry between two reads once.
    assert hits_after - hits_before >= 2
    assert "bazaar_listing_cache_hit_ratio" in http.get("/metrics").text

    # A write through the API: the next public read already sees it.
    edited = http.patch(
        f"/v1/listings/{lid}", json={"title": "Edited title"}, headers={**seller.headers, "If-Match": "*"}
    )
    assert edited.status_code == 200
    assert http.get(f"/v1/listings/{lid}").json()["title"] == "Edited title"
    assert http.get(f"/v1/listings/{lid}").headers["ETag"] == edited.headers["ETag"]

    # A write by another process (the worker reserving stock for an order) reaches the cache via NOTIFY.
    buyer = register(http, ["buyer"], "Buyer")
    placed = http.post(
        "/v1/orders",
        json={"listing_id": lid, "payment_method": "pm_card_visa", "quantity": 2},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert placed.status_code == 201, placed.text
    wait_until(lambda: http.get(f"/v1/listings/{lid}").json()["quantity"] == 1, timeout=5, interval=0.02)

    # Sold out by an order: the cached public copy must not keep it visible.
    placed = http.post(
        "/v1/orders",
        json={"listing_id": lid, "payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert placed.status_code == 201, placed.text
    wait_until(lambda: http.get(f"/v1/listings/{lid}").status_code == 404, timeout=5, interval=0.02)


def _rating(listing: dict[str, Any]) -> tuple[float, int]:
    return listing["seller_rating"], listing["seller_rating_count"]


def test_listings_show_the_sellers_rating(http: httpx.Client, stack: Any) -> None:
    seller = seller_with_payout(http)
    created = create(http, seller)
    lid = created["id"]
    assert _rating(created) == (4.0, 0)  # not rated yet: the prior, as search ranks it
    published = http.post(f"/v1/listings/{lid}/publish", headers=seller.headers)
    assert published.status_code == 200 and _rating(published.json()) == (4.0, 0)

    rate_seller(stack.database_url, lid, [5, 4])  # two revealed reviews: (4 * 5 + 9) / 7
    rated = (4.1429, 2)
    for _ in range(2):  # the first public read fills the hot cache, the second is served from it
        assert _rating(http.get(f"/v1/listings/{lid}").json()) == rated
    assert _rating(http.get(f"/v1/listings/{lid}", headers=seller.headers).json()) == rated
    assert [
        _rating(item) for item in http.get("/v1/me/listings", headers=seller.headers).json()["items"]
    ] == [rated]
    edited = http.patch(
        f"/v1/listings/{lid}", json={"title": "Rated lamp"}, headers={**seller.headers, "If-Match": "*"}
    )
    assert edited.status_code == 200 and _rating(edited.json()) == rated
    # Another seller's listing is not affected.
    other = published_listing(http, seller_with_payout(http))
    assert _rating(http.get(f"/v1/listings/{other['id']}").json()) == (4.0, 0)


def test_a_deactivated_sellers_listings_leave_sale_and_search_until_reactivated(
    http: httpx.Client, stack: Any
) -> None:
    seller = seller_with_payout(http)
    title = f"Deactivation lamp {uuid.uuid4().hex[:8]}"
    item = published_listing(http, seller, title=title, quantity=3)
    buyer = register(http, ["buyer"], "Buyer")

    def found() -> list[str]:
        hits = http.get("/v1/search/listings", params={"q": title}).json()["hits"]
        return [hit["id"] for hit in hits]

    assert wait_until(lambda: found() == [item["id"]], timeout=15)
    run_cli(stack, "deactivate-user", seller.email)
    assert wait_until(lambda: found() == [], timeout=15)
    ordered = http.post(
        "/v1/orders",
        json={"listing_id": item["id"], "payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert (ordered.status_code, ordered.json()["error"]["code"]) == (409, "listing_not_available"), (
        ordered.text
    )
    carted = http.put(f"/v1/cart/lines/{item['id']}", json={"quantity": 1}, headers=buyer.headers)
    assert (carted.status_code, carted.json()["error"]["code"]) == (409, "listing_not_available"), carted.text

    run_cli(stack, "activate-user", seller.email)
    assert wait_until(lambda: found() == [item["id"]], timeout=15)
    again = http.post(
        "/v1/orders",
        json={"listing_id": item["id"], "payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert again.status_code == 201, again.text


def test_a_draft_without_stock_is_not_published(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    draft = create(http, seller)
    emptied = http.patch(
        f"/v1/listings/{draft['id']}", json={"quantity": 0}, headers={**seller.headers, "If-Match": "*"}
    )
    assert emptied.status_code == 200, emptied.text
    refused = http.post(f"/v1/listings/{draft['id']}/publish", headers=seller.headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "invalid_transition"), refused.text
    assert http.get(f"/v1/listings/{draft['id']}", headers=seller.headers).json()["status"] == "draft"


def test_a_patch_that_changes_nothing_keeps_the_version(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    draft = create(http, seller, title="Unchanged lamp")
    tag = http.get(f"/v1/listings/{draft['id']}", headers=seller.headers).headers["ETag"]
    for body in ({}, {"title": "Unchanged lamp"}):
        same = http.patch(
            f"/v1/listings/{draft['id']}", json=body, headers={**seller.headers, "If-Match": tag}
        )
        assert (same.status_code, same.headers["ETag"]) == (200, tag), same.text
    changed = http.patch(
        f"/v1/listings/{draft['id']}",
        json={"title": "Changed lamp"},
        headers={**seller.headers, "If-Match": tag},
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != tag, changed.text
