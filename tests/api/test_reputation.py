"""A seller's order rates on their public profile, through the API: shares of the orders that ended, each order
counted once however it ended, so no rate leaves 0-1 (a dispute refunded in full used to count as a dispute in no
denominator: a dispute rate of 2.0)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.http import (
    Actor,
    published_listing,
    register,
    seller_with_payout,
    support_user,
    wait_until,
)
from tests.support.money import act, act_then_paid_out, place

pytestmark = pytest.mark.integration


def _rates(http: httpx.Client, seller: Actor) -> dict[str, Any]:
    response = http.get(f"/v1/users/{seller.user_id}/profile")
    assert response.status_code == 200, response.text
    return dict(response.json()["reputation"])


def _order(http: httpx.Client, buyer: Actor, listing_id: str, seller: Actor, *moves: str) -> str:
    placed = place(http, buyer, listing_id)
    assert placed.status_code == 201 and placed.json()["status"] == "paid", placed.text
    for move in moves:
        act(http, placed.json()["id"], move, seller)
    return str(placed.json()["id"])


def _disputed(http: httpx.Client, buyer: Actor, listing_id: str, seller: Actor) -> str:
    order_id = _order(http, buyer, listing_id, seller, "accept", "fulfil")
    act(
        http, order_id, "dispute", buyer, {"reason_code": "not_as_described", "message": "not the bike I saw"}
    )
    return order_id


def test_every_ended_order_counts_once_and_rates_stay_within_one(http: httpx.Client, stack: Any) -> None:
    staff = support_user(http, stack)
    seller = seller_with_payout(http)
    listing = published_listing(http, seller, quantity=10)["id"]
    buyer = register(http, ["buyer"], "Buyer")

    # A dispute refunded in full: the order ended (refunded), and it was disputed.
    first = _disputed(http, buyer, listing, seller)
    act(http, first, "resolve", staff, {"resolution": "refund"})
    rates = wait_until(lambda: (r := _rates(http, seller))["dispute_rate"] > 0 and r, timeout=20)
    assert (rates["orders_completed"], rates["completion_rate"], rates["dispute_rate"]) == (0, 0.0, 1.0)
    assert rates["orders_ended"] == 1

    # A second one refunded, one completed, one declined by the seller, and one the buyer cancelled (not the
    # seller's doing: not counted).
    second = _disputed(http, buyer, listing, seller)
    act(http, second, "resolve", staff, {"resolution": "refund"})
    completed = _order(http, buyer, listing, seller, "accept", "fulfil")
    assert act_then_paid_out(http, completed, "confirm-receipt", buyer)["status"] == "completed"
    _order(http, buyer, listing, seller, "decline")
    cancelled = _order(http, buyer, listing, seller)
    assert act(http, cancelled, "cancel", buyer)["status"] == "cancelled"

    # Four ended orders count: 1 completed, 1 declined, 2 refunded after a dispute.
    expected = {"completion_rate": 0.25, "cancellation_rate": 0.25, "dispute_rate": 0.5}
    final = wait_until(
        lambda: (r := _rates(http, seller))["cancellation_rate"] > 0 and r["completion_rate"] > 0 and r,
        timeout=20,
    )
    assert {k: final[k] for k in expected} == expected, final
    assert (final["orders_completed"], final["orders_ended"]) == (1, 4)


def test_a_listings_cached_read_shows_its_sellers_new_rating_at_once(http: httpx.Client) -> None:
    """Found from outside: anonymous reads (served from the API's hot-listing cache) kept a seller's old rating
    for up to the cache's 30 s after a review of another of their listings changed it."""
    seller = seller_with_payout(http)
    shown, sold = (published_listing(http, seller, quantity=3)["id"] for _ in range(2))
    before = http.get(f"/v1/listings/{shown}").json()  # anonymous: now in the cache
    assert before["seller_rating_count"] == 0
    buyer = register(http, ["buyer"], "Reviewer")
    order = _order(http, buyer, sold, seller, "accept", "fulfil")
    assert act_then_paid_out(http, order, "confirm-receipt", buyer)["status"] == "completed"
    for author, rating in ((buyer, 1), (seller, 5)):  # both sides: the reviews are revealed
        written = http.post(f"/v1/orders/{order}/reviews", headers=author.headers, json={"rating": rating})
        assert written.status_code == 201, written.text
    wait_until(lambda: _rates(http, seller)["rating_count"] == 1, timeout=20)
    after = wait_until(
        lambda: (read := http.get(f"/v1/listings/{shown}").json())["seller_rating_count"] == 1 and read,
        timeout=5,  # the cache keeps an entry 30 s: only its invalidation gets here in time
    )
    assert after["seller_rating"] < before["seller_rating"]
