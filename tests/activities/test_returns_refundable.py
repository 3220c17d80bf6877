"""`ReturnActivities.refundable` once the order's history is gone (its run ended past the namespace's retention,
which a 30-day return window can outlast): the stored order says what it holds, instead of a Query retried for
good (a return waiting forever)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.returns import ReturnActivities
from bazaar.settings import Settings
from bazaar.temporal import order_workflow_id
from tests.support.money import act, paid_order

pytestmark = pytest.mark.integration


async def test_an_order_whose_history_is_gone_is_read_from_its_row(http: httpx.Client, stack: Any) -> None:
    seller, _, order = paid_order(http)
    act(http, order["id"], "refund", seller, {"amount": 1_500})
    client = await Client.connect(stack.temporal_address)
    refundable = ReturnActivities(Settings()).refundable
    env = ActivityEnvironment(client=client)
    held = await env.run(refundable, order["id"])
    assert held == order["total"]["amount"] - 1_500  # from the order's own state
    gone = WorkflowExecution(workflow_id=order_workflow_id(order["id"]))
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(namespace=client.namespace, workflow_execution=gone)
    )
    for _ in range(100):  # the deletion is the server's background work
        try:
            await client.get_workflow_handle(gone.workflow_id).query("state")
        except RPCError as exc:
            assert exc.status == RPCStatusCode.NOT_FOUND, exc
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the order's history was never deleted")
    assert await env.run(refundable, order["id"]) == held  # from its row and its refunds
