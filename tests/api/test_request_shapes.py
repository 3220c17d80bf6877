"""What a request may hold beyond its fields' own rules, on the real stack: no unknown body field, and no second
value for a query parameter that takes one (each a 422 naming it)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.http import PASSWORD, Actor, assert_422, seller_with_payout

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seller(http: httpx.Client) -> Actor:
    return seller_with_payout(http)


def test_an_unknown_field_is_422_on_every_body(http: httpx.Client) -> None:
    """Found from outside: the account and payout bodies ignored unknown fields where the others refused them, so a
    registration with `role` for `roles` made a buyer without a word."""
    email = f"typo-{uuid.uuid4().hex[:8]}@example.com"
    typo = {"email": email, "password": "correct-horse-battery", "display_name": "Typo", "role": ["seller"]}
    assert_422(http.post("/v1/auth/register", json=typo), ["body", "role"], "not permitted")
    reset = http.post("/v1/auth/password-reset", json={"email": email, "mail": email})
    assert_422(reset, ["body", "mail"], "not permitted")


def test_a_query_parameter_of_one_value_sent_twice_is_422(http: httpx.Client, seller: Actor) -> None:
    """Found from outside: the last value won silently, so `sort=zzz&sort=newest` answered 200 where
    `sort=newest&sort=zzz` was a 422. A parameter that takes several (`category`) still does."""
    for query in ("sort=zzz&sort=newest", "sort=newest&sort=price_asc", "per_page=5&per_page=10"):
        repeated = http.get(f"/v1/search/listings?{query}")
        assert_422(repeated, ["query", query.split("=")[0]], "give it once")
    assert http.get("/v1/search/listings?category=electronics&category=bikes").status_code == 200
    twice = http.get("/v1/orders?role=buyer&role=seller", headers=seller.headers)
    assert_422(twice, ["query", "role"], "give it once")


def test_a_form_field_sent_twice_is_422(http: httpx.Client, seller: Actor) -> None:
    """Found from outside: the token endpoint took the last of two usernames (or passwords) without a word, so a
    proxy or log reading the first saw another login than the API did."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    twice = http.post(
        "/v1/auth/token", content=f"username=a%40example.com&username={seller.email}&password=x", headers=form
    )
    assert_422(twice, ["body", "username"], "give it once")
    password_twice = http.post(
        "/v1/auth/token", content=f"username={seller.email}&password=x&password=y", headers=form
    )
    assert_422(password_twice, ["body", "password"], "give it once")
    once = http.post("/v1/auth/token", data={"username": seller.email, "password": PASSWORD})
    assert once.status_code == 200, once.text


def test_a_header_of_one_value_sent_twice_is_422(http: httpx.Client, seller: Actor) -> None:
    """Found from outside: of two Idempotency-Key headers the first won silently, so a proxy or log reading the
    other saw another request than the API did. Nothing is placed."""
    keys = [("Idempotency-Key", str(uuid.uuid4())), ("Idempotency-Key", str(uuid.uuid4()))]
    headers = httpx.Headers([*seller.headers.items(), *keys])
    twice = http.post(
        "/v1/orders",
        json={"listing_id": str(uuid.uuid4()), "payment_method": "pm_card_visa"},
        headers=headers,
    )
    error = assert_422(twice, ["header", "Idempotency-Key"], "give it once")
    assert [e["type"] for e in error["details"]["errors"]] == ["repeated"], error
