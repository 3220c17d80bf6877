"""Demo data (`make run`) goes through the API like real users: listings, whole orders and reviews."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bazaar import demo
from bazaar.reputation import bayesian_score
from tests.api.helpers import wait_until

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
