"""Reconciliation on the real stack: a planted discrepancy found by the CLI run (the documented on-demand path),
one item per drift, stored idempotently; window ids; the daily Schedule exists. The comparison's rules are
tests/bazaar/payments/test_reconcile.py; every drift class, the lifecycle and the gauge are
tests/activities/test_reconciliation_books.py."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from activities.reconciliation import ReconcileWindow, reconciliation_workflow_id, window_id
from bazaar.settings import get_settings
from bazaar.temporal import RECONCILIATION, task_queue
from tests.support.binaries import venv_binary
from tests.support.http import run_cli
from tests.support.money import AMOUNT, paid_order, payment_intents_for, provider, sql
from workflows.reconciliation import SCHEDULE_ID, previous_day

CATEGORIES = (
    "missing_ours",
    "missing_provider",
    "missing_ledger",
    "ledger_only",
    "unbalanced",
    "currency_mismatch",
    "amount_mismatch",
    "status_mismatch",
)


def test_windows_and_ids() -> None:
    window = previous_day(datetime(2026, 11, 25, 2, 30, tzinfo=UTC))
    assert window == ReconcileWindow("2026-11-24T00:00:00+00:00", "2026-11-25T00:00:00+00:00")
    assert reconciliation_workflow_id(window) == "reconciliation-20261124T000000Z-20261125T000000Z"
    with pytest.raises(ValueError, match="time zone"):
        window_id(ReconcileWindow("2026-11-24T00:00:00", "2026-11-25T00:00:00"))
    # Whole seconds, as the provider counts: a fraction never changes the window.
    assert window_id(ReconcileWindow("2026-11-24T00:00:00.900+00:00", "2026-11-24T01:00:00.1+00:00")) == (
        "20261124T000000Z-20261124T010000Z"
    )


# ---- on the stack -------------------------------------------------------------------------------------------


def reconcile_cli(stack: Any, since: datetime, until: datetime) -> dict[str, Any]:
    done = run_cli(
        stack,
        "reconcile",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def stored_items(stack: Any, window: str) -> list[tuple[Any, ...]]:
    return sql(
        stack,
        "SELECT category, object_type, object_id, order_id, ours_amount, provider_amount, ours_status, "
        "provider_status, detail, first_seen_at, status FROM reconciliation_items WHERE window_id = %s "
        "ORDER BY category, object_type, object_id",
        window,
    )


@pytest.fixture(scope="module")
def planted(http: httpx.Client, stack: Any) -> dict[str, Any]:
    """A window with a clean order, an order whose charge row we alter, and a PaymentIntent only the
    provider knows (created directly at the provider with order metadata we never issued)."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    _, _, clean = paid_order(http)
    _, _, altered = paid_order(http)
    stranger_order = str(uuid.uuid4())
    planted_pi = provider(
        stack,
        "POST",
        "/v1/payment_intents",
        data={
            "amount": "1234",
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": "true",
            "metadata[order_id]": stranger_order,
        },
    )
    sql(
        stack,
        "UPDATE payments SET amount = amount + 100 WHERE idempotency_key = %s",
        f"{altered['id']}:charge:1",
    )
    until = datetime.now(UTC) + timedelta(seconds=2)
    time.sleep(1)  # the window's last second is over at the provider (it counts whole seconds)
    return {
        "since": since,
        "until": until,
        "clean": clean,
        "altered": altered,
        "planted_pi": planted_pi,
        "stranger_order": stranger_order,
    }


def stable(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without what depends on earlier runs (items opened, windows re-checked)."""
    return {k: v for k, v in summary.items() if k not in ("opened", "resolved", "rechecked")}


@pytest.mark.integration
def test_reconciliation_finds_planted_discrepancies_and_reruns_idempotently(
    stack: Any, planted: dict[str, Any]
) -> None:
    first = reconcile_cli(stack, planted["since"], planted["until"])
    pi = planted["planted_pi"]
    stranger = [d for d in first["discrepancies"] if d["object_id"] == pi["id"]]
    assert [
        (d["category"], d["provider_amount"], d["provider_currency"], d["order_id"]) for d in stranger
    ] == [
        ("missing_ours", 1234, "EUR", None)  # its metadata names an order we do not have: kept in the detail
    ]
    assert planted["stranger_order"] in stranger[0]["detail"]
    altered = planted["altered"]["id"]
    [altered_pi] = payment_intents_for(stack, altered)
    # One drift, one item: the row disagrees with the provider and with its own ledger movement.
    [mismatch] = [d for d in first["discrepancies"] if d["order_id"] == altered]
    assert (mismatch["category"], mismatch["object_type"], mismatch["object_id"]) == (
        "amount_mismatch",
        "payment_intent",
        altered_pi["id"],
    )
    assert (mismatch["ours_amount"], mismatch["provider_amount"], mismatch["ledger_amount"]) == (
        AMOUNT + 100,
        AMOUNT,
        AMOUNT,
    )
    assert (mismatch["ours_currency"], mismatch["provider_currency"], mismatch["ledger_currency"]) == (
        "EUR",
        "EUR",
        "EUR",
    )
    assert not [d for d in first["discrepancies"] if d["order_id"] == planted["clean"]["id"]]
    assert first["matched"] > 0
    assert first["opened"] == len(first["discrepancies"])

    window = first["window_id"]
    stored = stored_items(stack, window)
    assert len(stored) == sum(first[c] for c in CATEGORIES) == len(first["discrepancies"])
    second = reconcile_cli(stack, planted["since"], planted["until"])
    assert stable(second) == stable(first)
    assert second["opened"] == 0
    assert stored_items(stack, window) == stored
    [(runs, workflow_id)] = sql(
        stack, "SELECT runs, workflow_id FROM reconciliation_runs WHERE window_id = %s", window
    )
    assert (runs, workflow_id) == (2, f"reconciliation-{window}")


@pytest.mark.integration
def test_the_daily_schedule_exists_and_reconciles_yesterday(stack: Any) -> None:
    def temporal(*args: str) -> str:
        done = subprocess.run(
            [venv_binary("temporal"), *args, "--address", stack.temporal_address],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    text = temporal("schedule", "describe", "--schedule-id", SCHEDULE_ID, "-o", "json")
    assert "DailyReconciliationWorkflow" in text
    assert task_queue(RECONCILIATION, get_settings().temporal_task_queue) in text  # its context's queue
    assert get_settings().reconciliation_cron == "30 2 * * *"
    assert "T02:30:00Z" in text  # the next runs (the server keeps the cron as a calendar)
    # Run it now, as an operator would: the previous UTC day gets reconciled (and stored) by the stack's worker.
    windows = {window_id(previous_day(datetime.now(UTC)))}
    temporal("schedule", "trigger", "--schedule-id", SCHEDULE_ID)
    deadline = time.monotonic() + 20
    while not sql(stack, "SELECT 1 FROM reconciliation_runs WHERE window_id = ANY(%s)", list(windows)):
        windows.add(window_id(previous_day(datetime.now(UTC))))  # midnight may pass meanwhile
        assert time.monotonic() < deadline, "the scheduled reconciliation did not run"
        time.sleep(0.2)
