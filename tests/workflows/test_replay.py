"""Stored histories must replay against the current workflow code: a non-deterministic change fails here."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from bazaar.temporal import DATA_CONVERTER
from worker import WORKFLOWS
from workflows.checkout import CheckoutWorkflow
from workflows.dispute import BOUNDED_PATCH
from workflows.order_payout import PAYOUT_AFTER_ANSWER_PATCH
from workflows.returns import ReturnWorkflow

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
        # Recorded with the dispute case's BOUNDED_PATCH (the ones above without it), and an order that
        # started its case with a static summary (user metadata on the child's start).
        "dispute_case_outbox_refunded",
        "dispute_case_attention_recovered",
        "lean_dispute_case_with_summary",
        # The checkout (type `Checkout`) and an order it started paid (a child `Order` with a CheckoutShare).
        "checkout_paid_two_sellers",
        "checkout_payment_failed",
        "checkout_payment_rejected",
        "checkout_lines_unavailable",
        "checkout_charge_attention_recovered",
        "lean_checkout_order_completed",
        # The return (type `Return`).
        "return_refunded_after_receipt",
        "return_escalated_then_resolved",
        "return_receipt_deadline_refund",
        "return_refund_refused_then_refunded",
        "return_refused_at_open",
        "return_refunded_up_to_held",  # with REFUND_UP_TO_HELD_PATCH (the ones above without it)
        "return_settled_by_the_order",  # with RETURN_SETTLES_PATCH too
        "return_asked_again_for_the_rest",
        # With the order's PAYOUT_AFTER_ANSWER_PATCH (the `lean_*` above without it): the transfer after the answer.
        "lean_paid_out_after_the_answer",
        "lean_payout_refused_after_the_answer",
        "lean_paid_out_again_after_chargeback_won",
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
    assert {n for n, t in types.items() if t == "Checkout"} == {n for n in types if n.startswith("checkout_")}
    assert {n for n, t in types.items() if t == "Return"} == {n for n in types if n.startswith("return_")}
    registered = {getattr(w, "__temporal_workflow_definition").name for w in WORKFLOWS}
    assert set(types.values()) <= registered


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", SOURCES[path.stem])
    result = await Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER).replay_workflow(
        history, raise_on_replay_failure=True
    )
    assert result.replay_failure is None


def _events(name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(SOURCES[name])["events"]
    return events


def _patches(name: str) -> set[str]:
    found = set()
    for event in _events(name):
        marker = event.get("markerRecordedEventAttributes", {})
        if marker.get("markerName") == "core_patch":
            [payload] = marker["details"]["patch-data"]["payloads"]
            found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def _local_activities(name: str) -> list[str]:
    """The local activities a history ran, in order (their markers)."""
    found = []
    for event in _events(name):
        marker = event.get("markerRecordedEventAttributes", {})
        if marker.get("markerName") == "core_local_activity":
            [payload] = marker["details"]["data"]["payloads"]
            found.append(json.loads(base64.b64decode(payload["data"]))["activity_type"])
    return found


def _scheduled_activities(name: str) -> list[str]:
    return [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in _events(name)
        if "activityTaskScheduledEventAttributes" in e
    ]


def _child_starts(name: str) -> int:
    return sum(e["eventType"] == "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED" for e in _events(name))


def test_dispute_cases_before_the_patch_keep_their_commands_and_new_ones_take_the_bounded_path() -> None:
    """Both paths are covered: cases recorded before BOUNDED_PATCH (activities retried without bound,
    notification children) replay on the `_legacy_*` path; cases recorded after it carry its marker, run local
    activities and start no notification children (their notifications are in the steps' transactions)."""
    before = ["dispute_case_worked_and_refunded", "dispute_case_chargeback_joined"]
    after = ["dispute_case_outbox_refunded", "dispute_case_attention_recovered"]
    for name in before:
        assert BOUNDED_PATCH not in _patches(name) and _child_starts(name) > 0, name
        assert any(e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" for e in _events(name)), name
    for name in after:
        assert BOUNDED_PATCH in _patches(name) and _child_starts(name) == 0, name
        assert not any(e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" for e in _events(name)), name
    # The flag went up and came down: memo upserts are commands of the new path, in its history.
    modified = [
        e
        for e in _events("dispute_case_attention_recovered")
        if "workflowPropertiesModifiedEventAttributes" in e
    ]
    assert len(modified) >= 2


async def test_a_static_summary_on_the_child_start_is_not_compared_on_replay() -> None:
    """The order now starts its dispute case with a static summary (user metadata of the start command). Orders
    recorded without it replay against code that sets it (`lean_dispute_refunded`), and the order recorded with
    it replays with its metadata removed too: the metadata is not part of what replay compares."""
    [old_start] = [
        e
        for e in _events("lean_dispute_refunded")
        if "startChildWorkflowExecutionInitiatedEventAttributes" in e
    ]
    assert "userMetadata" not in old_start
    name = "lean_dispute_case_with_summary"
    [start] = [e for e in _events(name) if "startChildWorkflowExecutionInitiatedEventAttributes" in e]
    summary = json.loads(base64.b64decode(start["userMetadata"]["summary"]["data"]))
    assert summary == "Dispute on order 450.00 EUR: Road bike, buyer dispute"
    stripped = json.loads(SOURCES[name])
    for event in stripped["events"]:
        event.pop("userMetadata", None)
    for label, text in (("with", SOURCES[name]), ("without", json.dumps(stripped))):
        history = WorkflowHistory.from_json(f"replay-{name}-{label}-metadata", text)
        result = await Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER).replay_workflow(
            history, raise_on_replay_failure=True
        )
        assert result.replay_failure is None, label


def test_the_checkout_is_registered_for_replay() -> None:
    assert CheckoutWorkflow in WORKFLOWS


def test_checkout_histories_cover_its_paths() -> None:
    """The checkout's histories are the paths they are named for: reserved and settled as local activities,
    charged once as an activity, children only when paid; its order started paid reserves and charges nothing."""
    assert _local_activities("checkout_paid_two_sellers") == ["reserve_checkout", "settle_checkout"]
    assert _scheduled_activities("checkout_paid_two_sellers") == ["charge"]
    assert _child_starts("checkout_paid_two_sellers") == 2
    for name in ("checkout_payment_failed", "checkout_payment_rejected"):
        assert _local_activities(name) == ["reserve_checkout", "settle_checkout"], name
        assert _scheduled_activities(name) == ["charge"] and _child_starts(name) == 0, name
    assert _local_activities("checkout_lines_unavailable") == ["reserve_checkout"]
    assert _scheduled_activities("checkout_lines_unavailable") == []
    assert _scheduled_activities("checkout_charge_attention_recovered") == ["charge", "charge"]
    assert _child_starts("checkout_charge_attention_recovered") == 2
    name = "lean_checkout_order_completed"
    assert "reserve_stock" not in _local_activities(name) and "charge" not in _local_activities(name)
    assert "charge" not in _scheduled_activities(name)
    [started] = [e for e in _events(name) if "workflowExecutionStartedEventAttributes" in e]
    parent = started["workflowExecutionStartedEventAttributes"]["parentWorkflowExecution"]["workflowId"]
    assert parent.startswith("checkout-")


def test_the_return_is_registered_for_replay() -> None:
    assert ReturnWorkflow in WORKFLOWS


def _timers_fired(name: str) -> int:
    return sum(e["eventType"] == "EVENT_TYPE_TIMER_FIRED" for e in _events(name))


def _update_names(name: str) -> list[str]:
    """The Updates a history accepted, in order."""
    return [
        e["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequest"]["input"]["name"]
        for e in _events(name)
        if "workflowExecutionUpdateAcceptedEventAttributes" in e
    ]


def test_return_histories_cover_their_paths() -> None:
    """The return's histories are the paths they are named for: opened and each move saved as local activities,
    the order's refund as an activity (asked again after a refusal), the deadlines as fired timers."""
    moves = ["open_return", "save_return", "save_return", "save_return"]
    name = "return_refunded_after_receipt"
    assert _local_activities(name) == moves and _scheduled_activities(name) == ["refund_return"]
    assert _update_names(name) == ["opened", "approve", "ship", "receive"] and _timers_fired(name) == 0
    name = "return_escalated_then_resolved"
    assert _local_activities(name) == [*moves, "save_return"]  # escalated, approved, shipped, refunded
    assert _update_names(name) == ["opened", "resolve", "ship", "receive"] and _timers_fired(name) == 1
    name = "return_receipt_deadline_refund"
    assert _local_activities(name) == moves and _scheduled_activities(name) == ["refund_return"]
    assert _update_names(name) == ["opened", "approve", "ship"] and _timers_fired(name) == 1
    name = "return_refund_refused_then_refunded"
    assert _local_activities(name) == [*moves, "save_return"]  # approved, shipped, escalated, refunded
    assert _scheduled_activities(name) == ["refund_return", "refund_return"]
    assert sum(e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_FAILED" for e in _events(name)) == 1
    assert _update_names(name) == ["opened", "approve", "ship", "receive", "resolve"]
    name = "return_refused_at_open"
    assert _local_activities(name) == ["open_return"] and _scheduled_activities(name) == []
    assert _update_names(name) == ["opened"]
    name = "return_refunded_up_to_held"  # what the order holds is asked first, then that much refunded
    assert _local_activities(name) == moves and _scheduled_activities(name) == ["refundable", "refund_return"]
    assert _update_names(name) == ["opened", "approve", "ship", "receive"] and _timers_fired(name) == 0
    assert "return-refund-up-to-held" in _patches(name)
    [asked] = [
        json.loads(
            base64.b64decode(e["activityTaskScheduledEventAttributes"]["input"]["payloads"][0]["data"])
        )
        for e in _events(name)
        if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name")
        == "refund_return"
    ]
    assert asked["amount"] == 1_500, asked
    name = "return_settled_by_the_order"  # the order holds nothing: no ask; refunded by the order's refund
    assert _local_activities(name) == moves and _scheduled_activities(name) == ["refundable"]
    assert {"return-refund-up-to-held", "return-settles-with-the-order"} <= _patches(name)
    name = "return_asked_again_for_the_rest"  # refused, what it holds read again, asked for that
    assert _scheduled_activities(name) == ["refundable", "refund_return", "refundable", "refund_return"]
    assert "return-settles-with-the-order" in _patches(name)


def test_orders_before_the_payout_patch_pay_out_in_the_update_and_new_ones_after_it() -> None:
    """Both paths are covered: an order recorded before PAYOUT_AFTER_ANSWER_PATCH ran the transfer as a local
    activity inside confirm-receipt's Update (before the completion's save); one recorded with it saves the
    completion first and schedules the transfer as an activity, whose outcome is a transition of its own."""
    assert PAYOUT_AFTER_ANSWER_PATCH not in _patches("lean_order_completed")
    assert _local_activities("lean_order_completed")[-2:] == ["transfer", "save_transition"]
    assert "transfer" not in _scheduled_activities("lean_order_completed")
    for name in (
        "lean_paid_out_after_the_answer",
        "lean_payout_refused_after_the_answer",
        "lean_paid_out_again_after_chargeback_won",
    ):
        assert PAYOUT_AFTER_ANSWER_PATCH in _patches(name), name
        assert _scheduled_activities(name)[-1] == "transfer", name
    assert "transfer" not in _local_activities("lean_paid_out_after_the_answer")
    # Refused after the answer, then support's retry_transfer: that one pays out inside its Update (local first).
    assert _local_activities("lean_payout_refused_after_the_answer")[-2:] == ["transfer", "save_transition"]
