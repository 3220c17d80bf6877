"""The buyer's cart on the real stack: lines of several sellers, re-checked against their listings whenever the
cart is read, and every refusal with its documented code."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.http import Actor, listing_body, published_listing, register, seller_with_payout

pytestmark = pytest.mark.integration


def put_line(http: httpx.Client, buyer: Actor, listing_id: str, quantity: int) -> httpx.Response:
    return http.put(f"/v1/cart/lines/{listing_id}", json={"quantity": quantity}, headers=buyer.headers)


def cart_of(http: httpx.Client, buyer: Actor) -> dict[str, Any]:
    response = http.get("/v1/cart", headers=buyer.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_a_cart_across_sellers_with_quantities_and_totals(http: httpx.Client) -> None:
    first, second = seller_with_payout(http), seller_with_payout(http)
    bike = published_listing(http, first, price={"amount": 45_000, "currency": "EUR"}, quantity=3)
    lamp = published_listing(http, second, price={"amount": 2_500, "currency": "EUR"})
    buyer = register(http, ["buyer"], "Cart Buyer")
    assert cart_of(http, buyer) == {"lines": [], "total": None, "ready": False, "seller_count": 0}

    assert put_line(http, buyer, bike["id"], 2).status_code == 200
    after = put_line(http, buyer, lamp["id"], 1)
    assert after.status_code == 200, after.text
    cart = after.json()
    assert [(line["listing_id"], line["quantity"]) for line in cart["lines"]] == [
        (bike["id"], 2),
        (lamp["id"], 1),
    ]
    assert cart["total"] == {"amount": 2 * 45_000 + 2_500, "currency": "EUR"}
    assert (cart["ready"], cart["seller_count"]) == (True, 2)
    first_line = cart["lines"][0]
    assert first_line["seller_id"] == first.user_id
    assert first_line["unit_price"] == first_line["seen_price"] == {"amount": 45_000, "currency": "EUR"}
    assert (first_line["available_quantity"], first_line["problem"]) == (3, None)

    # Setting a line again changes its quantity; removing takes it out; emptying leaves nothing.
    assert [line["quantity"] for line in put_line(http, buyer, bike["id"], 3).json()["lines"]] == [3, 1]
    removed = http.delete(f"/v1/cart/lines/{lamp['id']}", headers=buyer.headers)
    assert removed.status_code == 200 and [line["listing_id"] for line in removed.json()["lines"]] == [
        bike["id"]
    ]
    missing = http.delete(f"/v1/cart/lines/{lamp['id']}", headers=buyer.headers)
    assert error_code(missing) == (404, "not_found")
    emptied = http.delete("/v1/cart", headers=buyer.headers)
    assert (emptied.status_code, emptied.content) == (204, b"")
    assert cart_of(http, buyer)["lines"] == []


def test_each_line_says_what_changed_since_it_was_set(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    repriced = published_listing(http, seller, price={"amount": 10_000, "currency": "EUR"})
    selling_out = published_listing(http, seller, quantity=2)
    archived = published_listing(http, seller)
    buyer, rival = register(http, ["buyer"], "Slow Buyer"), register(http, ["buyer"], "Quick Buyer")
    for listing, quantity in ((repriced, 1), (selling_out, 2), (archived, 1)):
        assert put_line(http, buyer, listing["id"], quantity).status_code == 200
    assert cart_of(http, buyer)["ready"] is True

    changed = http.patch(
        f"/v1/listings/{repriced['id']}",
        json={"price": {"amount": 12_000, "currency": "EUR"}},
        headers={**seller.headers, "If-Match": "*"},
    )
    assert changed.status_code == 200, changed.text
    assert http.post(f"/v1/listings/{archived['id']}/archive", headers=seller.headers).status_code == 200
    # Another buyer's order takes one of the two: the cart holds no stock.
    placed = http.post(
        "/v1/orders",
        json={"listing_id": selling_out["id"], "quantity": 1, "payment_method": "pm_card_visa"},
        headers={**rival.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert placed.status_code in (201, 202), placed.text

    cart = cart_of(http, buyer)
    lines = {line["listing_id"]: line for line in cart["lines"]}
    assert lines[repriced["id"]]["problem"] == "price_changed"
    assert lines[repriced["id"]]["unit_price"]["amount"] == 12_000
    assert lines[repriced["id"]]["seen_price"]["amount"] == 10_000
    assert (lines[selling_out["id"]]["problem"], lines[selling_out["id"]]["available_quantity"]) == (
        "sold_out",
        1,
    )
    assert (lines[archived["id"]]["problem"], lines[archived["id"]]["available_quantity"]) == (
        "listing_not_available",
        0,
    )
    assert cart["ready"] is False
    assert (
        cart["total"]["amount"] == 10_000 + 2 * selling_out["price"]["amount"] + archived["price"]["amount"]
    )

    # The buyer accepts the new price by setting the line again, takes the one left, and drops the archived one.
    accepted = put_line(http, buyer, repriced["id"], 1).json()["lines"]
    assert [line["seen_price"]["amount"] for line in accepted if line["listing_id"] == repriced["id"]] == [
        12_000
    ]
    assert put_line(http, buyer, selling_out["id"], 1).status_code == 200
    assert http.delete(f"/v1/cart/lines/{archived['id']}", headers=buyer.headers).status_code == 200
    ready = cart_of(http, buyer)
    assert ready["ready"] is True
    assert ready["total"]["amount"] == 12_000 + selling_out["price"]["amount"]


def test_refusals_carry_their_codes_and_change_nothing(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    euro = published_listing(http, seller, quantity=2)
    pounds = published_listing(http, seller, price={"amount": 5_000, "currency": "GBP"})
    costly = published_listing(http, seller, price={"amount": 99_999_999, "currency": "EUR"})
    buyer = register(http, ["buyer"], "Picky Buyer")
    assert put_line(http, buyer, euro["id"], 1).status_code == 200

    too_many = put_line(http, buyer, euro["id"], 3)
    assert error_code(too_many) == (409, "sold_out")
    assert too_many.json()["error"]["details"]["available"] == 2
    assert error_code(put_line(http, buyer, pounds["id"], 1)) == (422, "currency_mismatch")
    assert error_code(put_line(http, buyer, costly["id"], 1)) == (422, "amount_not_chargeable")
    # No such listing is the documented 404; one that exists but is no longer for sale is a 409.
    assert error_code(put_line(http, buyer, str(uuid.uuid4()), 1)) == (404, "not_found")
    archived = published_listing(http, seller)
    assert http.post(f"/v1/listings/{archived['id']}/archive", headers=seller.headers).status_code == 200
    assert error_code(put_line(http, buyer, archived["id"], 1)) == (409, "listing_not_available")
    # Someone else's draft that was never public is not there for the buyer, as its read says: 404, not 409.
    draft = http.post("/v1/listings", json=listing_body(), headers=seller.headers).json()
    assert http.get(f"/v1/listings/{draft['id']}", headers=buyer.headers).status_code == 404
    assert error_code(put_line(http, buyer, draft["id"], 1)) == (404, "not_found")
    assert error_code(put_line(http, buyer, euro["id"], 0)) == (422, "validation_error")
    assert error_code(put_line(http, buyer, euro["id"], 101)) == (422, "validation_error")
    assert error_code(put_line(http, seller, euro["id"], 1)) == (403, "forbidden")  # not a buyer
    assert http.get("/v1/cart").status_code == 401
    assert [(line["listing_id"], line["quantity"]) for line in cart_of(http, buyer)["lines"]] == [
        (euro["id"], 1)
    ]

    # A buyer who also sells cannot put their own listing in their cart.
    both = register(http, ["buyer", "seller"], "Buyer And Seller")
    own_payout = http.post(
        "/v1/payout-account", json={"country": "DE", "default_currency": "EUR"}, headers=both.headers
    )
    assert own_payout.status_code == 201, own_payout.text
    own = published_listing(http, both)
    assert error_code(put_line(http, both, own["id"], 1)) == (422, "own_listing")


def test_a_cart_holds_at_most_fifty_listings(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    buyer = register(http, ["buyer"], "Hoarder")
    listings = [published_listing(http, seller, price={"amount": 100, "currency": "EUR"}) for _ in range(51)]
    for listing in listings[:50]:
        assert put_line(http, buyer, listing["id"], 1).status_code == 200
    full = put_line(http, buyer, listings[50]["id"], 1)
    assert error_code(full) == (409, "cart_full")
    assert (
        put_line(http, buyer, listings[0]["id"], 1).status_code == 200
    )  # a line already in it may be set again
    assert len(cart_of(http, buyer)["lines"]) == 50
