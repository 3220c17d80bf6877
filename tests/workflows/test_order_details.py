"""Operators in the Temporal UI: the order workflow keeps its current details up to date (what it waits for,
until when; a failing step's retries; a refused payout), read back the way the UI reads them (the built-in
`__temporal_workflow_metadata` query). The static summary the API sets at start: tests/api/test_order_metadata.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from bazaar.orders.details import utc
from bazaar.orders.types import ActionRequest
from tests.support.orders import BUYER, SELLER, SUPPORT, placed, unplaced
from tests.support.workflow_fakes import FakeWorld
from workflows.order import OrderWorkflow

METADATA_QUERY = "__temporal_workflow_metadata"


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def test_details_follow_the_order_with_its_deadlines(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, acceptance_timeout_seconds=3 * 3600) as order:
        details = await current_details(order.handle)
        headline, actions = details.split("\n")
        match = re.fullmatch(r"waiting for the seller to accept until (.+ UTC)", headline)
        assert match, details
        deadline = datetime.strptime(match[1], "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
        expected = datetime.now(UTC) + timedelta(hours=3)
        assert abs((deadline - expected).total_seconds()) < 120, (deadline, expected)
        assert set(actions.removeprefix("next: ").split(", ")) == {"accept", "decline", "cancel", "refund"}
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        confirmed = await current_details(order.handle)
        assert confirmed.startswith("waiting for the seller to ship\nnext: "), confirmed
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        shipped = await current_details(order.handle)
        assert shipped.startswith(
            "shipped: waiting for the buyer to confirm receipt or open a dispute until "
        )
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="not_as_described"))
        disputed = await current_details(order.handle)
        assert disputed.startswith("disputed by the buyer: escrow frozen, waiting for support to resolve\n")
        assert "resolve_dispute" in disputed


async def test_details_name_the_failing_step_and_its_retries(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    world.fail("charge")
    async with unplaced(
        workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=3600
    ) as order:
        await order.state_when(lambda v: v.attention is not None)
        first = await current_details(order.handle)
        assert first.startswith("needs attention: charge: "), first
        assert "(retry 1, next at " in first and "support can retry now" in first
        assert first.endswith("| placing: reserving the stock and charging the buyer\nnext: cancel, retry"), (
            first
        )
        next_at = re.search(r"next at (.+? UTC)", first)
        assert next_at and next_at[1] == utc(datetime.strptime(next_at[1], "%Y-%m-%d %H:%M UTC"))
        await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))  # still failing: the second round
        assert "(retry 2, next at " in await current_details(order.handle)
        world.clear()
        await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
        paid = await current_details(order.handle)
        assert paid.startswith("waiting for the seller to accept until "), paid
        assert "needs attention" not in paid


async def test_details_of_a_refused_payout_count_the_transfer_attempts(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(reject_transfers=2)
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        await order.paid_out()
        assert await current_details(order.handle) == (
            "completed, payout refused by the provider (transfer attempt 1): waiting for support to retry "
            "the payout\nnext: refund, retry_transfer"
        )
        await order.act(OrderWorkflow.retry_transfer, ActionRequest(SUPPORT))
        assert "(transfer attempt 2)" in await current_details(order.handle)
        await order.act(OrderWorkflow.retry_transfer, ActionRequest(SUPPORT))
        assert await current_details(order.handle) == "completed: escrow released to the seller\nnext: refund"


async def test_details_say_the_transfer_after_the_release_is_under_way(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    world.delays["transfer"] = 3.0
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert await current_details(order.handle) == (
            "completed: escrow released, transferring the seller's payout\nnext: refund"
        )
        await order.paid_out()
        assert await current_details(order.handle) == "completed: escrow released to the seller\nnext: refund"
