"""A dispute step the case workflow cannot save in time answers 202 with the case as it stands (the API's wait is
bounded, as for order actions), lands once the database lets it, and a retry with the same Idempotency-Key joins
it instead of posting twice."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.console import disputed_order
from tests.support.http import wait_until

pytestmark = pytest.mark.integration


def thread_bodies(http: httpx.Client, order_id: str, headers: dict[str, str]) -> list[str]:
    found = http.get(f"/v1/orders/{order_id}/dispute", headers=headers)
    assert found.status_code == 200, found.text
    return [entry["body"] for entry in found.json()["thread"]]


def test_a_message_the_case_cannot_save_in_time_answers_202_and_lands_once(
    http: httpx.Client, stack: Any
) -> None:
    _, buyer, order = disputed_order(http, "Road bike, 56 cm")
    wait_until(  # the case is opened right after the dispute Update answers
        lambda: http.get(f"/v1/orders/{order['id']}/dispute", headers=buyer.headers).status_code == 200,
        timeout=30,
        interval=0.2,
    )
    body = f"Here are the photos ({uuid.uuid4()})"
    key = str(uuid.uuid4())
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as blocker:
        # Holds back every write to the thread until this transaction ends: the case's step waits on it.
        blocker.execute("LOCK TABLE dispute_messages IN EXCLUSIVE MODE")
        started = time.monotonic()
        posted = http.post(
            f"/v1/orders/{order['id']}/dispute/messages",
            headers={**buyer.headers, "Idempotency-Key": key},
            json={"body": body},
            timeout=60,
        )
        waited = time.monotonic() - started
        assert posted.status_code == 202, posted.text
        assert posted.headers["Location"] == f"/v1/orders/{order['id']}/dispute"
        assert body not in [entry["body"] for entry in posted.json()["thread"]]
        assert waited < 30, waited  # the API's bounded wait (ORDER_WAIT_SECONDS, twice at most)
        blocker.rollback()
    wait_until(lambda: body in thread_bodies(http, order["id"], buyer.headers), timeout=60, interval=0.5)
    again = http.post(
        f"/v1/orders/{order['id']}/dispute/messages",
        headers={**buyer.headers, "Idempotency-Key": key},
        json={"body": body},
    )
    assert again.status_code == 200, again.text
    assert thread_bodies(http, order["id"], buyer.headers).count(body) == 1
