"""Record workflow histories for the replay tests: `python -m tests.workflows.record_histories [--all]`.

Run it when a deliberate, patched change to a workflow adds new paths; never to "fix" a failing replay
(that failure is the signal that running workflows would break; see docs/workflow-versioning.md).
By default it records only scenarios that have no history yet: the stored ones were made by older code
and are the proof that workflows started by that code still replay. `--all` re-records everything (only
before a first release, or after the old versions' workflows have all closed).
`order_transfer_failed_before_retry.json` is not made here: it was recorded once with the workflow code
before the payout-retry patch (see docs/workflow-versioning.md) and must never be re-recorded.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from tests.binaries import venv_binary
from tests.workflows.conftest import SEARCH_ATTRIBUTES
from tests.workflows.fakes import FakeWorld
from tests.workflows.test_order_workflow import BUYER, SELLER, SUPPORT, placed, run_to_end
from tests.workflows.test_provider_events import RECORDED, record
from workflows.dispute import DisputeMessageIn, DisputeWorkflow, InfoRequest, dispute_workflow_id
from workflows.notification import notify_workflow_id
from workflows.order import ActionRequest, OrderWorkflow
from workflows.reviews import ReviewWorkflow, reviews_workflow_id

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
SCENARIOS = {
    "order_completed": FakeWorld(stock=1),
    "order_payment_failed": FakeWorld(decline=True),
    "order_sold_out": FakeWorld(stock=0),
}


CHILDREN = ("dispute_case_worked_and_refunded", "review_round_both_reviewed", "notification_order_paid")


async def record_children(env: WorkflowEnvironment) -> dict[str, WorkflowHistory]:
    """Histories of the child workflows an order starts (each replayed like the orders' own)."""
    world = FakeWorld(stock=2)
    client = env.client
    async with placed(env, world, dispute_window_seconds=3600) as disputed:
        await disputed.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await disputed.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await disputed.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent"))
        case = client.get_workflow_handle(dispute_workflow_id(disputed.id))
        await case.execute_update(
            DisputeWorkflow.request_info, InfoRequest(SUPPORT.user_id, "seller", "Shipping receipt?", 86_400)
        )
        await case.execute_update(
            DisputeWorkflow.add_message, DisputeMessageIn(SELLER.user_id, "seller", "Attached", "evidence")
        )
        await disputed.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        await case.result()
        paid = client.get_workflow_handle(notify_workflow_id(f"order:{disputed.id}:paid"))
        await paid.result()
    async with placed(env, world) as reviewed:
        await reviewed.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await reviewed.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await reviewed.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        round_ = client.get_workflow_handle(reviews_workflow_id(reviewed.id))
        await round_.signal(ReviewWorkflow.review_submitted, BUYER.user_id)
        await round_.signal(ReviewWorkflow.review_submitted, SELLER.user_id)
        await round_.result()
        return {
            "dispute_case_worked_and_refunded": await case.fetch_history(),
            "review_round_both_reviewed": await round_.fetch_history(),
            "notification_order_paid": await paid.fetch_history(),
        }


async def main(everything: bool) -> None:
    def wanted(name: str) -> bool:
        return everything or not (HISTORIES / f"{name}.json").exists()

    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--headless"],
    ) as env:
        for name, world in SCENARIOS.items():
            if wanted(name):
                _, history = await run_to_end(env, world)
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}")
        # The order's children: a dispute case worked and resolved, a review round, one notification.
        if any(wanted(name) for name in CHILDREN):
            for name, history in (await record_children(env)).items():
                if wanted(name):
                    (HISTORIES / f"{name}.json").write_text(history.to_json())
                    print(f"recorded {name}")
        # Dispute, cancellation, chargeback and payout-retry paths (tests/workflows/test_provider_events.py).
        for name in RECORDED:
            if wanted(name):
                _, history = await record(env, name)
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}")


if __name__ == "__main__":
    asyncio.run(main("--all" in sys.argv[1:]))
