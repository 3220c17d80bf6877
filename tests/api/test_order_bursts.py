"""Orders placed in a burst, found from outside: 87 orders at once answered 503 ("nothing was done") after 30-68 s
for orders that were placed and charged. Each request's session held a connection while the rate limiter waited
for a second one from the same pool, and the 202 of a slow placement read its row from that exhausted pool."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.http import Actor, published_listing, register, seller_with_payout, wait_until

pytestmark = pytest.mark.integration

# More than the API's pool holds (10 + 10 overflow by default): each request on a connection of its own.
BURST = 32


def test_a_burst_of_orders_is_answered_and_every_answer_is_true(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    item = published_listing(
        http, seller, title="Burst kettle", quantity=BURST + 10, price={"amount": 1500, "currency": "EUR"}
    )
    buyers = [register(http, ["buyer"], f"Burst {n}") for n in range(4)]
    asks = [(buyers[n % len(buyers)], str(uuid.uuid4())) for n in range(BURST)]

    start = threading.Barrier(BURST)

    def place(ask: tuple[Actor, str]) -> httpx.Response:
        buyer, key = ask
        with httpx.Client(base_url=str(http.base_url), timeout=120) as client:
            assert client.get("/healthz").status_code == 200  # connected before the burst
            start.wait()  # then every request at once, as a burst arrives
            return client.post(
                "/v1/orders",
                json={"listing_id": item["id"], "payment_method": "pm_card_visa"},
                headers={**buyer.headers, "Idempotency-Key": key},
            )

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        answers = list(pool.map(place, asks))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 202}, [a.text for a in answers if a.status_code not in (201, 202)][:3]
    # Every answer named an order that exists, and only those took stock.
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == BURST

    def settled() -> bool:
        listing = http.get(f"/v1/listings/{item['id']}").json()
        return bool(listing["quantity"] == 10)

    wait_until(settled, timeout=60)
    for (buyer, _), answer in zip(asks, answers, strict=True):
        order = http.get(answer.headers["Location"], headers=buyer.headers)
        assert order.status_code == 200 and order.json()["status"] in ("pending", "paid"), order.text
