"""activities/metrics.py on the test stack's worker: a paid order is counted as a pending -> paid transition with
the time it spent pending, and its charge as a succeeded payment call; a declined card as a declined one. All on
the worker's Prometheus endpoint, labelled by states and outcomes only."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support.http import published_listing, register, seller_with_payout
from tests.support.money import place

pytestmark = pytest.mark.integration


def _value(page: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for line in page.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(?P<labels>[^}}]*)\}} (?P<value>\S+)", line)
        if match and all(f'{k}="{v}"' in match["labels"].split(",") for k, v in labels.items()):
            total += float(match["value"])
    return total


def test_transitions_time_in_state_and_payment_outcomes_are_counted(stack: Any, http: httpx.Client) -> None:
    def scrape() -> str:
        return httpx.get(stack.worker_metrics_url, timeout=10).text

    before = scrape()
    seller = seller_with_payout(http)
    item = published_listing(http, seller, quantity=2)
    buyer = register(http, ["buyer"], "Buyer")
    assert place(http, buyer, item["id"]).json()["status"] == "paid"
    assert place(http, buyer, item["id"], pm="pm_card_chargeDeclined").json()["status"] == "cancelled"
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("bazaar_order_transitions", from_status="pending", status="paid") >= 1
    assert grew("bazaar_order_transitions", from_status="pending", status="cancelled") >= 1
    assert grew("bazaar_order_state_seconds_count", status="pending") >= 2
    assert grew("bazaar_payment_calls", kind="charge", outcome="succeeded") >= 1
    assert grew("bazaar_payment_calls", kind="charge", outcome="declined") >= 1
    for line in after.splitlines():  # bounded labels: no ids of orders, users or listings
        if line.startswith("bazaar_"):
            assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", line), line
