"""The order workflow's timers: the acceptance deadline and the dispute window.

Runs on a Temporal dev server (the time-skipping server rejects our custom search attributes), so these
tests use one-second deadlines instead of skipping time.
"""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from bazaar.orders.types import ActionRequest
from tests.support.orders import AMOUNT, FEE, SELLER, placed
from tests.support.workflow_fakes import FakeWorld
from workflows.order import OrderWorkflow


async def test_acceptance_deadline_cancels_with_refund(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, acceptance_timeout_seconds=1) as order:
        view = await order.result()
    assert (view.status, view.reason, view.payment_state) == ("cancelled", "acceptance_timeout", "refunded")
    assert [r.amount for r in world.refunds] == [AMOUNT]
    assert world.released == [order.id]
    assert world.transitions()[-1].actor_role == "system"


async def test_dispute_window_passing_completes(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=1) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        view = await order.result()
    assert (view.status, view.reason) == ("completed", "dispute_window_passed")
    assert [t.amount for t in world.transfers] == [AMOUNT - FEE]
