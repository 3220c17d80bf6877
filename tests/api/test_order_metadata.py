"""Operators in the Temporal UI: an order placed through the API carries a static summary and details (set with
the workflow's start options), and its current details say what it waits for. Read back the way the UI reads
them: `describe` (user metadata) and the built-in `__temporal_workflow_metadata` query."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from tests.support.http import published_listing, register, seller_with_payout
from tests.support.money import act, place

pytestmark = pytest.mark.integration


async def test_an_order_workflow_carries_its_summary_and_current_details(
    http: httpx.Client, stack: Any
) -> None:
    seller = seller_with_payout(http)
    title = "Metadata road bike"
    item = published_listing(http, seller, title=title, quantity=1)
    buyer = register(http, ["buyer"], "Bob Buyer")
    placed = place(http, buyer, item["id"])
    assert placed.status_code == 201, placed.text
    order = placed.json()
    client = await Client.connect(stack.temporal_address)
    handle = client.get_workflow_handle(order["workflow_id"])

    described = await handle.describe()
    assert await described.static_summary() == f"Order 450.00 EUR: {title}, Seller -> Bob Buyer"
    details = await described.static_details()
    assert details is not None
    assert f"**Order** `{order['id']}`" in details and f"**Seller** `{seller.user_id}`" in details

    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.startswith("waiting for the seller to accept until ")
    assert metadata.definition.type == "Order"

    act(http, order["id"], "accept", seller)
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert metadata.current_details.startswith("waiting for the seller to ship\n")
