"""Stored histories must replay against the current workflow code: a non-deterministic change fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).resolve().parent.parent / "histories").glob("*.json"))
SOURCES = {p.stem: p.read_text() for p in HISTORIES}


def test_histories_exist() -> None:
    assert {p.stem for p in HISTORIES} >= {
        "order_completed",
        "order_payment_failed",
        "order_sold_out",
        "order_dispute_partial_refund",
        "order_cancelled_by_buyer",
        "order_chargeback_lost",
        "order_reopened_by_chargeback_won",
        "order_payout_retried",
        "order_transfer_failed_before_retry",  # recorded by the code before the payout-retry patch
        # Recorded after the trust-and-notifications patch (the ones above predate it).
        "trust_order_completed",
        "trust_dispute_refunded",
        "trust_reminded_then_timed_out",
        "trust_chargeback_lost",
        # The order's children.
        "dispute_case_worked_and_refunded",
        "review_round_both_reviewed",
        "notification_order_paid",
        # All of the above were recorded by the previous order workflow (type `OrderWorkflow`, replayed by
        # `LegacyOrderWorkflow`). Recorded by the lean order (type `Order`), and its new children and sweep:
        "lean_attention_then_retry",
        "lean_cancelled_by_buyer",
        "lean_chargeback_lost",
        "lean_dispute_partial_refund",
        "lean_dispute_refunded",
        "lean_fulfil_refused_then_shipped",
        "lean_order_completed",
        "lean_payment_failed",
        "lean_payment_rejected",
        "lean_payout_retried",
        "lean_refund_refused_then_declined",
        "lean_reminded_then_timed_out",
        "lean_reopened_by_chargeback_won",
        "lean_sold_out",
        "dispute_case_chargeback_joined",
        "reveal_due_reviews_sweep",
    }


def workflow_type(path: Path) -> str:
    first = WorkflowHistory.from_json(path.stem, SOURCES[path.stem]).events[0]
    return first.workflow_execution_started_event_attributes.workflow_type.name


def test_histories_replay_against_the_version_that_recorded_them() -> None:
    """Orders started before the lean order path are `OrderWorkflow` (now LegacyOrderWorkflow); new ones
    are `Order`. Both types stay registered while histories of either may be running."""
    types = {p.stem: workflow_type(p) for p in HISTORIES}
    assert {n for n, t in types.items() if t == "OrderWorkflow"} == {
        n for n in types if n.startswith(("order_", "trust_"))
    }
    assert {n for n, t in types.items() if t == "Order"} == {n for n in types if n.startswith("lean_")}
    registered = {getattr(w, "__temporal_workflow_definition").name for w in WORKFLOWS}
    assert set(types.values()) <= registered


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", SOURCES[path.stem])
    result = await Replayer(workflows=WORKFLOWS).replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
