"""Demo data (`make run`) goes through the API like real users: listings, whole orders and reviews."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bazaar.trust.reputation import bayesian_score
from devstack import demo
from tests.support.http import support_user, wait_until

pytestmark = pytest.mark.integration


def test_demo_sellers_end_with_the_reputations_their_ratings_give(stack: Any) -> None:
    demo.load(stack.api_url, count=40)
    with httpx.Client(base_url=stack.api_url, timeout=30) as http:
        for email, ratings in demo.DEMO_RATINGS.items():
            token = http.post("/v1/auth/token", data={"username": email, "password": demo.DEMO_PASSWORD})
            me = http.get("/v1/users/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})

            def reputation(
                user_id: str = me.json()["id"], count: int = len(ratings)
            ) -> dict[str, Any] | None:
                rep = http.get(f"/v1/users/{user_id}/profile").json()["reputation"]
                return rep if rep["rating_count"] == count else None

            rep = wait_until(reputation, timeout=20)
            assert rep["score"] == pytest.approx(bayesian_score(sum(ratings), len(ratings)))
            assert (rep["orders_completed"], rep["completion_rate"]) == (len(ratings), 1.0)
        # And one open dispute in support's queue, on an order of Ben's (other tests' cases may be there too).
        staff = support_user(http, stack)
        token = http.post(
            "/v1/auth/token", data={"username": "ben@demo.bazaar", "password": demo.DEMO_PASSWORD}
        )
        ben = http.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        ).json()

        def bens_open_cases() -> list[dict[str, Any]]:
            queue = http.get("/v1/support/disputes", headers=staff.headers, params={"limit": 200}).json()
            orders = [http.get(f"/v1/orders/{c['order_id']}", headers=staff.headers).json() for c in queue]
            return [c for c, o in zip(queue, orders, strict=True) if o["seller_id"] == ben["id"]]

        [case] = wait_until(bens_open_cases, timeout=20)
        assert (case["source"], case["reason_code"], case["status"]) == ("buyer", "not_as_described", "open")
