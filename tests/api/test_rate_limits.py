"""Request limits as in production, on a second API beside the test stack's (whose API relaxes the per-address and
per-buyer limits: one test client plays every user). Both APIs count in the same PostgreSQL table, as replicas
do. Each test speaks from client addresses of its own (X-Forwarded-For from the trusted loopback proxy).

Over a limit: 429 `rate_limited` with Retry-After, and every response of a limited route carries the IETF
RateLimit-Policy / RateLimit fields.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.accounts import bearer, client_address, from_address, limited_api, new_email
from tests.support.http import PASSWORD, published_listing, register, seller_with_payout, wait_until
from tests.support.money import sql

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        limited_api(stack, tmp_path_factory.mktemp("limited-api")) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def limited_after(send: Any, allowed: int) -> httpx.Response:
    """Send `allowed` requests that must pass the limit, then one that must not; returns the refused one."""
    for n in range(allowed):
        response = send(n)
        assert response.status_code != 429, (n, response.text)
    refused: httpx.Response = send(allowed)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    return refused


def left(response: httpx.Response) -> int:
    """What the RateLimit header says is left (`r`); its `t`, the seconds to the window's end, moves on with time."""
    found = re.search(r";r=(\d+)", response.headers["RateLimit"])
    assert found, response.headers["RateLimit"]
    return int(found.group(1))


def test_logins_per_client_address(api: httpx.Client) -> None:
    address = client_address()

    def attempt(n: int) -> httpx.Response:
        # A new account name each time: this is the address's limit, not an account's lockout.
        data = {"username": new_email(f"spray{n}"), "password": "sprayed-password-1"}
        return api.post("/v1/auth/token", data=data, headers=from_address(address))

    refused = limited_after(attempt, 30)
    assert '"login-address-60s";q=30;w=60' in refused.headers["RateLimit-Policy"]
    assert '"login-address-3600s";q=300;w=3600' in refused.headers["RateLimit-Policy"]
    assert re.search(r'"login-address-60s";r=0;t=\d+', refused.headers["RateLimit"])
    # Another address is not affected; the refresh endpoint shares the address's budget.
    assert attempt(0).status_code == 429
    other = api.post(
        "/v1/auth/token",
        data={"username": new_email(), "password": "x" * 12},
        headers=from_address(client_address()),
    )
    assert other.status_code == 401
    assert (
        api.post("/v1/auth/refresh", json={"refresh_token": "x"}, headers=from_address(address)).status_code
        == 429
    )


def test_registrations_per_client_address(api: httpx.Client) -> None:
    address = client_address()

    def attempt(n: int) -> httpx.Response:
        body = {"email": new_email(f"bulk{n}"), "password": "short", "display_name": "Bulk"}
        return api.post("/v1/auth/register", json=body, headers=from_address(address))  # 422s count too

    refused = limited_after(attempt, 20)
    assert refused.headers["RateLimit-Policy"] == '"register";q=20;w=3600'
    strong = {"email": new_email(), "password": PASSWORD, "display_name": "Elsewhere"}
    assert (
        api.post("/v1/auth/register", json=strong, headers=from_address(client_address())).status_code == 202
    )


def test_password_resets_per_client_address(api: httpx.Client) -> None:
    address = client_address()

    def attempt(n: int) -> httpx.Response:
        return api.post("/v1/auth/password-reset", json={"email": new_email()}, headers=from_address(address))

    limited_after(attempt, 20)
    confirm = {"token": "guessed-token", "password": "guessed-password-1"}
    assert (
        api.post("/v1/auth/password-reset/confirm", json=confirm, headers=from_address(address)).status_code
        == 429
    )


def test_order_creation_per_buyer(api: httpx.Client, http: httpx.Client) -> None:
    buyer, other = register(http, ["buyer"], "Eager"), register(http, ["buyer"], "Calm")
    missing = str(uuid.uuid4())  # answered quickly after the limit is counted: the request itself fails

    def attempt(n: int, who: Any = buyer) -> httpx.Response:
        headers = {**who.headers, "Idempotency-Key": f"rl-{uuid.uuid4()}", **from_address(client_address())}
        return api.post(
            "/v1/orders", json={"listing_id": missing, "payment_method": "pm_card_visa"}, headers=headers
        )

    refused = limited_after(attempt, 30)
    assert '"orders-60s";q=30;w=60' in refused.headers["RateLimit-Policy"]
    assert attempt(0, other).status_code != 429


def test_a_retry_with_the_same_key_spends_nothing_of_the_order_limit(
    api: httpx.Client, http: httpx.Client
) -> None:
    """Found from outside: a client retrying (or polling with) the same Idempotency-Key, as the docs invite, was
    refused 429 after one order, and each retry spent the daily quota."""
    seller, buyer = seller_with_payout(http), register(http, ["buyer"], "Patient")
    item = published_listing(http, seller, title="Retried teapot", quantity=2)
    headers = {**buyer.headers, "Idempotency-Key": f"rl-{uuid.uuid4()}", **from_address(client_address())}
    body = {"listing_id": item["id"], "payment_method": "pm_card_visa"}
    placed = api.post("/v1/orders", json=body, headers=headers)
    assert placed.status_code in (201, 202), placed.text
    remaining = left(placed)
    for _ in range(35):  # more than the 30 a minute the limit allows
        retry = api.post("/v1/orders", json=body, headers=headers)
        assert retry.status_code in (200, 202), retry.text
        assert retry.json()["id"] == placed.json()["id"]
        assert left(retry) == remaining, "a retry is told where the limit stands, uncounted"
    # A new order of the same buyer is counted as before.
    other = api.post("/v1/orders", json=body, headers={**headers, "Idempotency-Key": f"rl-{uuid.uuid4()}"})
    assert other.status_code in (201, 202) and left(other) == remaining - 1, other.headers


def test_anonymous_search_per_client_address(api: httpx.Client, http: httpx.Client) -> None:
    address = client_address()

    def search(n: int) -> httpx.Response:
        return api.get("/v1/search/listings", params={"q": f"lamp {n}"}, headers=from_address(address))

    first = search(0)
    assert first.status_code == 200
    assert first.headers["RateLimit-Policy"] == '"search-anonymous";q=60;w=60'
    assert re.fullmatch(r'"search-anonymous";r=59;t=\d+', first.headers["RateLimit"])
    limited_after(lambda n: search(n + 1), 59)
    assert api.get("/v1/search/listings", headers=from_address(client_address())).status_code == 200
    # Signed in, from the same address: the user's own budget.
    user = register(http, ["buyer"], "Searcher")
    signed_in = api.get("/v1/search/listings", headers=from_address(address, user.headers))
    assert signed_in.status_code == 200
    assert signed_in.headers["RateLimit-Policy"] == '"search-user";q=300;w=60'


def test_listing_reads_per_client_address(api: httpx.Client) -> None:
    address = client_address()
    listing = str(uuid.uuid4())
    refused = limited_after(lambda n: api.get(f"/v1/listings/{listing}", headers=from_address(address)), 120)
    assert refused.headers["RateLimit-Policy"] == '"listing-reads";q=120;w=60'


def test_views_count_once_per_client_address(api: httpx.Client, http: httpx.Client, stack: Any) -> None:
    """Read through the API with the production limits (the test stack's own counts every view)."""
    listing = published_listing(http, seller_with_payout(http))
    first, second, third = client_address(), client_address(), client_address()
    for address, reads in ((first, 5), (second, 3), (third, 1)):
        for _ in range(reads):
            assert api.get(f"/v1/listings/{listing['id']}", headers=from_address(address)).status_code == 200

    def views() -> int:
        return int(sql(stack, "SELECT view_count FROM listings WHERE id = %s", listing["id"])[0][0])

    wait_until(lambda: views() == 3, timeout=20)  # flushed every POPULARITY_FLUSH_SECONDS
    for _ in range(4):  # later reads of a counted address stay uncounted; a new address counts once
        api.get(f"/v1/listings/{listing['id']}", headers=from_address(first))
    api.get(f"/v1/listings/{listing['id']}", headers=from_address(client_address()))
    wait_until(lambda: views() >= 4, timeout=20)
    assert views() == 4


def test_limits_are_shared_by_replicas(api: httpx.Client, http: httpx.Client) -> None:
    """The account lockout counted on one API is seen by the other (one table in PostgreSQL)."""
    user = register(http, ["buyer"], "Shared")
    for n in range(5):
        replica = (api, http)[n % 2]
        assert (
            replica.post(
                "/v1/auth/token", data={"username": user.email, "password": f"nope-{n}-xyz"}
            ).status_code
            == 401
        )
    for replica in (api, http):
        locked = replica.post("/v1/auth/token", data={"username": user.email, "password": PASSWORD})
        assert locked.status_code == 429, locked.text
    assert (
        http.get("/v1/users/me", headers=bearer(user.headers["Authorization"].split()[1])).status_code == 200
    )
