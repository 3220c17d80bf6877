"""What the support console's tests (tests/api/console/) need: the browser (Debian's chromium, driven by Playwright's
Python API, never a browser build of Playwright's own) and real data for each page, made the way users and failures
make it: a disputed order, a dead-lettered email, a trust flag from a burst of five-star reviews, a stuck order."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from bazaar.orders.types import STUCK_ORDERS_QUERY
from bazaar.temporal import order_workflow_id
from tests.support import dead_letters
from tests.support.http import PASSWORD, Actor, published_listing, register, seller_with_payout
from tests.support.money import act, act_then_paid_out, fulfilled_order, place, start_stuck_charge
from workflows.order import OrderWorkflow

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "console"
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")


def chromium() -> str:
    """Debian's chromium, or a failure that says how to get it (never a skip: the console must be tested)."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not found:
        pytest.fail(
            f"the support console's browser tests need Debian's chromium at {CHROMIUM} (or CHROMIUM_BIN): "
            "`make bootstrap` installs it as root with `apt-get update && apt-get install -y chromium`; "
            "it could not be obtained on this machine (see the [bootstrap] lines of `make test`)",
            pytrace=False,
        )
    return found


def login_form(client: httpx.Client) -> str:
    """The login page's CSRF token (a fresh client gets its cookie with it)."""
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match[1]


def log_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    token = login_form(client)
    return client.post(
        "/console/login", data={"email": email, "password": password, "csrf_token": token, "next": ""}
    )


def page_csrf(client: httpx.Client, path: str = "/console/disputes") -> str:
    """The session's CSRF token, as a page hands it to htmx."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = re.search(r'"X-CSRF-Token": "([0-9a-f]{64})"', page.text)
    assert match
    return match[1]


def disputed_order(http: httpx.Client, title: str) -> tuple[Actor, Actor, dict[str, Any]]:
    """A shipped order whose buyer opened a dispute (escrow frozen, a case for support)."""
    seller, buyer, order = fulfilled_order(http, title=title)
    act(
        http,
        order["id"],
        "dispute",
        buyer,
        {"reason_code": "damaged", "message": "The frame arrived bent; photos attached."},
    )
    return seller, buyer, order


def flagged_seller(http: httpx.Client) -> tuple[Actor, list[Actor]]:
    """A seller with three five-star reviews from brand-new accounts within a day: a `new_account_burst` flag."""
    seller = seller_with_payout(http)
    item = published_listing(http, seller, title="Vintage desk lamp", quantity=3)
    buyers = []
    for n, text in enumerate(("Best seller ever!!!", "Amazing, 5 stars", "Perfect perfect perfect")):
        buyer = register(http, ["buyer"], f"New Buyer {n + 1}")
        placed = place(http, buyer, item["id"])
        assert placed.status_code == 201, placed.text
        order = placed.json()
        act(http, order["id"], "accept", seller)
        act(http, order["id"], "fulfil", seller)
        act_then_paid_out(http, order["id"], "confirm-receipt", buyer)
        review = http.post(
            f"/v1/orders/{order['id']}/reviews", headers=buyer.headers, json={"rating": 5, "text": text}
        )
        assert review.status_code == 201, review.text
        buyers.append(buyer)
    return seller, buyers


async def dead_letter(recipient: Actor, order_id: str, listing_title: str) -> int:
    """A dead-lettered "shipped" email about `order_id` to `recipient` (tests.support.dead_letters)."""
    return await dead_letters.dead_letter(
        recipient,
        f"order:{order_id}:shipped-again:{uuid.uuid4().hex[:8]}",
        {"order_id": order_id, "listing_title": listing_title, "tracking": "DHL JD014600003SE"},
    )


async def stuck_order(http: httpx.Client, stack: Any) -> tuple[str, WorkflowHandle[Any, Any]]:
    """An order whose charge keeps failing past its (short) bound: it needs attention. The caller clears the
    provider's faults (tests.support.money.clear_faults) when it is done with it."""
    seller = await asyncio.to_thread(seller_with_payout, http)
    item = await asyncio.to_thread(published_listing, http, seller, title="Espresso machine", quantity=2)
    buyer = await asyncio.to_thread(register, http, ["buyer"], "Stuck Buyer")
    client = await Client.connect(stack.temporal_address)
    order_id, handle = await start_stuck_charge(stack, client, buyer.user_id, item["id"], 2)

    async def flagged() -> bool:
        view = await handle.query(OrderWorkflow.state)
        return view is not None and view.attention is not None

    for _ in range(100):
        if await flagged():
            break
        await asyncio.sleep(0.2)
    assert await flagged(), "the order never needed attention"
    # Support's queue reads Temporal's visibility, which follows a moment later.
    for _ in range(100):
        listed = {e.id async for e in client.list_workflows(STUCK_ORDERS_QUERY)}
        if order_workflow_id(order_id) in listed:
            return order_id, handle
        await asyncio.sleep(0.2)
    raise AssertionError("the stuck order never showed in the stuck-orders query")
