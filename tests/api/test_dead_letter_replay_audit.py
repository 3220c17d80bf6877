"""A dead letter's replay is audited with the support user who did it, whether through the REST route or the
console: both call the one domain function (bazaar.trust.notifications.replay_audited)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.support.console import log_in, page_csrf
from tests.support.dead_letters import dead_letter
from tests.support.http import Actor, register, support_user
from tests.support.money import sql

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def staff(http: httpx.Client, stack: Any) -> Actor:
    return support_user(http, stack)


def dead_letter_of(http: httpx.Client, stack: Any) -> tuple[int, int]:
    """A new dead letter (an email whose only attempt failed): its id and its notification's id."""
    user = register(http, ["buyer"], "Replay Buyer")
    event_key = f"test:replay-audit:{uuid.uuid4()}"
    email_id = asyncio.run(
        dead_letter(user, event_key, {"listing_title": "Audited lamp", "tracking": "none"})
    )
    [(dead_id,)] = sql(stack, "SELECT id FROM notification_dead_letters WHERE notification_id = %s", email_id)
    return int(dead_id), email_id


def audit_rows(stack: Any, dead_id: int) -> list[tuple[Any, ...]]:
    return sql(
        stack,
        "SELECT actor_id::text, actor_role, action, data FROM audit_events "
        "WHERE subject_type = 'dead_letter' AND subject_id = %s ORDER BY id",
        str(dead_id),
    )


def test_rest_replay_is_audited_with_the_support_user(http: httpx.Client, stack: Any, staff: Actor) -> None:
    dead_id, email_id = dead_letter_of(http, stack)
    assert audit_rows(stack, dead_id) == []

    replayed = http.post(f"/v1/support/dead-letters/{dead_id}/replay", headers=staff.headers)
    assert replayed.status_code == 202, replayed.text
    assert audit_rows(stack, dead_id) == [
        (
            staff.user_id,
            "support",
            "dead_letter.replayed",
            {"notification_id": str(email_id), "status": replayed.json()["status"]},
        )
    ]

    # A refused replay (no such dead letter) changes nothing, so it leaves no row.
    missing = http.post("/v1/support/dead-letters/999999999/replay", headers=staff.headers)
    assert missing.status_code == 404, missing.text
    assert audit_rows(stack, 999999999) == []


def test_console_replay_is_the_same_audited_replay(http: httpx.Client, stack: Any, staff: Actor) -> None:
    dead_id, email_id = dead_letter_of(http, stack)
    with httpx.Client(base_url=stack.api_url, timeout=30, follow_redirects=False) as browser:
        assert log_in(browser, staff.email).status_code == 303
        done = browser.post(
            f"/console/dead-letters/{dead_id}/replay", headers={"X-CSRF-Token": page_csrf(browser)}
        )
    assert done.status_code == 303 and "ok=" in done.headers["location"], done.headers.get("location")
    [(actor, role, action, data)] = audit_rows(stack, dead_id)
    assert (actor, role, action, data["notification_id"]) == (
        staff.user_id,
        "support",
        "dead_letter.replayed",
        str(email_id),
    )
    # The console's own record of the action, as for every console action.
    [(console_data,)] = sql(
        stack,
        "SELECT data FROM audit_events WHERE actor_id = %s AND action = 'console.dead_letter_replayed' "
        "AND subject_id = %s",
        staff.user_id,
        f"dead_letter:{dead_id}",
    )
    assert console_data["outcome"] == "done", console_data
