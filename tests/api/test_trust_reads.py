"""Reads of trust data on the real stack at their edges: a public user's reviews, the inbox's cursor, and a dead
account mail in support's list as the document declares it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.support.accounts import mails_to
from tests.support.dead_letters import dead_account_mail
from tests.support.http import register, support_user, wait_until
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


def test_a_dead_account_mail_is_listed_with_an_event_type_the_document_declares(
    http: httpx.Client, stack: Any
) -> None:
    """Found from outside: a dead-lettered password reset was listed with `account_password_reset`, a value the
    list's declared enum did not hold, so a client generated from the document could not read the list."""
    staff, user = support_user(http, stack), register(http, ["buyer"], "Unreachable")
    note_id = asyncio.run(dead_account_mail(user))
    listed = http.get("/v1/support/dead-letters", headers=staff.headers)
    assert listed.status_code == 200, listed.text
    [dead] = [d for d in listed.json() if d["notification_id"] == note_id]
    assert dead["event_type"] == "account_password_reset"
    doc = http.get("/openapi.json").json()
    item = doc["paths"]["/v1/support/dead-letters"]["get"]["responses"]["200"]["content"]["application/json"]
    ref = doc["components"]["schemas"][item["schema"]["items"]["$ref"].rsplit("/", 1)[1]]
    enum_ref = ref["properties"]["event_type"]["$ref"].rsplit("/", 1)[1]
    assert dead["event_type"] in doc["components"]["schemas"][enum_ref]["enum"]
    # Replayed, it is mailed: no dead letter is left behind for other tests' counts.
    replayed = http.post(f"/v1/support/dead-letters/{dead['id']}/replay", headers=staff.headers)
    assert replayed.status_code == 202, replayed.text
    wait_until(lambda: mails_to(stack, user.email, "Reset your Bazaar password"), timeout=20)
