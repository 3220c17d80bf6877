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
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", SOURCES[path.stem])
    result = await Replayer(workflows=WORKFLOWS).replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
