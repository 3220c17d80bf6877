"""Reads of trust data on the real stack at their edges: a public user's reviews and the inbox's cursor."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.http import register, wait_until
from tests.support.money import paid_order

pytestmark = pytest.mark.integration


def test_reviews_of_a_user_the_profile_does_not_show_are_404_as_its_profile(http: httpx.Client) -> None:
    """Found from outside: an unknown id's reviews answered 200 [], where its profile answers 404, so a client
    could not tell a user nobody reviewed from no such user."""
    nobody = uuid.uuid4()
    for path in (f"/v1/users/{nobody}/reviews", f"/v1/users/{nobody}/profile"):
        response = http.get(path)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), path
    someone = register(http, ["buyer"], "Unreviewed")
    reviews = http.get(f"/v1/users/{someone.user_id}/reviews")
    assert (reviews.status_code, reviews.json()) == (200, [])


def test_an_inbox_cursor_of_zero_is_a_cursor_not_the_first_page(http: httpx.Client) -> None:
    """Found from outside: `before=0` answered the first page (0 was taken for no cursor); no id is below it."""
    seller, _, _ = paid_order(http)
    first = wait_until(
        lambda: (page := http.get("/v1/notifications", headers=seller.headers).json())["items"] and page
    )
    assert first["items"]
    below_zero = http.get("/v1/notifications", params={"before": 0}, headers=seller.headers)
    assert below_zero.status_code == 200, below_zero.text
    assert below_zero.json()["items"] == []
