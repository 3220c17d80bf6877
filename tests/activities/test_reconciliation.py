"""Reconciliation: the comparison rules (pure), and on the real stack a planted discrepancy found by the CLI
run (the documented on-demand path), stored idempotently, with a metric per discrepancy; the daily Schedule
exists."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.payments import make_stripe_client
from activities.reconciliation import (
    BalanceTxn,
    OurPayment,
    ProviderRecord,
    ReconcileWindow,
    ReconciliationActivities,
    compare,
    reconciliation_workflow_id,
    window_id,
)
from bazaar.db import get_engine, get_sessionmaker
from bazaar.models import PaymentKind, PaymentOutcome
from bazaar.settings import get_settings
from tests.support.binaries import venv_binary
from tests.support.money import AMOUNT, ROOT, paid_order, payment_intents_for, provider, sql
from workflows.reconciliation import SCHEDULE_ID, ReconciliationWorkflow, previous_day

S, F = PaymentOutcome.SUCCEEDED, PaymentOutcome.FAILED


def ours(
    key: str,
    kind: PaymentKind,
    provider_id: str | None,
    amount: int = 1000,
    outcome: PaymentOutcome = S,
    in_window: bool = True,
) -> OurPayment:
    return OurPayment(key, kind, provider_id, amount, outcome, "o1", in_window)


def categories(found: list[Any]) -> list[tuple[str, str, str]]:
    return [(d.category, d.object_type, d.object_id) for d in found]


# ---- the rules ----------------------------------------------------------------------------------------------


def test_everything_matching_is_matched() -> None:
    matched, found = compare(
        [
            ProviderRecord("payment_intent", "pi_1", 1000, "succeeded", "o1"),
            ProviderRecord("refund", "re_1", 400, "succeeded"),
        ],
        [BalanceTxn("txn_1", "charge", "ch_1", 1000), BalanceTxn("txn_2", "refund", "re_1", -400)],
        {"ch_1": "pi_1"},
        [
            ours("o1:charge:1", PaymentKind.CHARGE, "pi_1"),
            ours("o1:refund:1", PaymentKind.REFUND, "re_1", 400),
        ],
        {"o1:charge:1": {"escrow": 1000}, "o1:refund:1": {"refunds": 400}},
    )
    assert found == []
    assert matched == 6  # 2 objects, 2 ledger movements, 2 balance transactions


def test_each_kind_of_discrepancy() -> None:
    matched, found = compare(
        [
            ProviderRecord("payment_intent", "pi_theirs", 500, "succeeded", "o9"),  # not ours
            ProviderRecord("payment_intent", "pi_1", 1000, "succeeded", "o1"),  # we recorded 1100
            ProviderRecord("transfer", "tr_1", 900, "paid"),
            ProviderRecord("payment_intent", "pi_2", 1000, "succeeded", "o1"),  # we think it failed
        ],
        [BalanceTxn("txn_x", "adjustment", "dp_unknown", -700)],
        {},
        [
            ours("o1:charge:1", PaymentKind.CHARGE, "pi_1", 1100),
            ours("o1:transfer:1", PaymentKind.TRANSFER, "tr_1", 900),
            ours("o2:charge:1", PaymentKind.CHARGE, "pi_2", 1000, F),
            ours("o3:refund:1", PaymentKind.REFUND, "re_gone", 300),  # the provider never had it
            ours("o4:refund:1", PaymentKind.REFUND, None, 300, F),  # refused: nothing to match
        ],
        {"o1:charge:1": {"escrow": 1000}},  # the transfer and refund movements are missing
    )
    assert categories(found) == [
        ("amount_mismatch", "ledger", "o1:charge:1"),
        ("amount_mismatch", "payment_intent", "pi_1"),
        ("missing_ours", "balance_transaction", "txn_x"),
        ("missing_ours", "ledger", "o1:transfer:1"),
        ("missing_ours", "ledger", "o3:refund:1"),
        ("missing_ours", "payment_intent", "pi_theirs"),
        ("missing_provider", "refund", "re_gone"),
        ("status_mismatch", "payment_intent", "pi_2"),
    ]
    assert matched == 1  # the transfer object


def test_a_charge_whose_reply_was_lost_matches_by_order() -> None:
    matched, found = compare(
        [ProviderRecord("payment_intent", "pi_1", 1000, "succeeded", "o1")],
        [],
        {},
        [ours("o1:charge:1", PaymentKind.CHARGE, None, outcome=PaymentOutcome.PENDING)],
        {},
    )
    assert categories(found) == [("status_mismatch", "payment_intent", "pi_1")]  # still pending on our side
    assert matched == 0


def test_windows_and_ids() -> None:
    window = previous_day(datetime(2026, 11, 25, 2, 30, tzinfo=UTC))
    assert window == ReconcileWindow("2026-11-24T00:00:00+00:00", "2026-11-25T00:00:00+00:00")
    assert reconciliation_workflow_id(window) == "reconciliation-20261124T000000Z-20261125T000000Z"
    with pytest.raises(ValueError, match="time zone"):
        window_id(ReconcileWindow("2026-11-24T00:00:00", "2026-11-25T00:00:00"))


# ---- on the stack -------------------------------------------------------------------------------------------


def reconcile_cli(stack: Any, since: datetime, until: datetime) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "reconcile",
            "--since",
            since.isoformat(),
            "--until",
            until.isoformat(),
        ],
        env=stack.child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
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
        "provider_status, detail, first_seen_at FROM reconciliation_items WHERE window_id = %s "
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
    return {"since": since, "until": until, "clean": clean, "altered": altered, "planted_pi": planted_pi}


@pytest.mark.integration
def test_reconciliation_finds_planted_discrepancies_and_reruns_idempotently(
    stack: Any, planted: dict[str, Any]
) -> None:
    first = reconcile_cli(stack, planted["since"], planted["until"])
    found = {(d["category"], d["object_type"], d["object_id"]): d for d in first["discrepancies"]}
    pi = planted["planted_pi"]
    assert found[("missing_ours", "payment_intent", pi["id"])]["provider_amount"] == 1234
    altered = planted["altered"]["id"]
    [altered_pi] = payment_intents_for(stack, altered)
    mismatch = found[("amount_mismatch", "payment_intent", altered_pi["id"])]
    assert (mismatch["ours_amount"], mismatch["provider_amount"], mismatch["order_id"]) == (
        AMOUNT + 100,
        AMOUNT,
        altered,
    )
    assert ("amount_mismatch", "ledger", f"{altered}:charge:1") in found
    charge_txn = [d for d in first["discrepancies"] if d["object_type"] == "balance_transaction"]
    assert {(d["category"], d["provider_amount"]) for d in charge_txn} >= {
        ("missing_ours", 1234),
        ("amount_mismatch", AMOUNT),
    }
    assert not [d for d in first["discrepancies"] if d["order_id"] == planted["clean"]["id"]]
    assert first["matched"] > 0
    assert first["missing_ours"] >= 2 and first["amount_mismatch"] >= 3

    window = first["window_id"]
    stored = stored_items(stack, window)
    assert len(stored) == sum(
        first[c] for c in ("missing_ours", "missing_provider", "amount_mismatch", "status_mismatch")
    )
    second = reconcile_cli(stack, planted["since"], planted["until"])
    assert second == first
    assert stored_items(stack, window) == stored
    [(runs, workflow_id)] = sql(
        stack, "SELECT runs, workflow_id FROM reconciliation_runs WHERE window_id = %s", window
    )
    assert (runs, workflow_id) == (2, f"reconciliation-{window}")


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")  # stripe SDK
async def test_each_discrepancy_is_a_metric(stack: Any, planted: dict[str, Any]) -> None:
    get_settings.cache_clear()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
    buffer = MetricBuffer(10_000)
    client = await Client.connect(
        stack.temporal_address, runtime=Runtime(telemetry=TelemetryConfig(metrics=buffer))
    )
    queue = f"reconcile-test-{uuid.uuid4()}"
    # A window of its own (one second longer), so the CLI test's stored window is left alone.
    window = ReconcileWindow(
        planted["since"].isoformat(), (planted["until"] + timedelta(seconds=1)).isoformat()
    )
    activities = ReconciliationActivities(make_stripe_client(get_settings()))
    async with Worker(
        client, task_queue=queue, workflows=[ReconciliationWorkflow], activities=[activities.reconcile]
    ):
        summary = await client.execute_workflow(
            ReconciliationWorkflow.run, window, id=reconciliation_workflow_id(window), task_queue=queue
        )
    await get_engine().dispose()
    counted: dict[tuple[str, str], int] = {}
    for update in buffer.retrieve_updates():
        if update.metric.name == "bazaar_reconciliation_discrepancies":
            key = (str(update.attributes["category"]), str(update.attributes["object_type"]))
            counted[key] = counted.get(key, 0) + int(update.value)
    expected: dict[tuple[str, str], int] = {}
    for item in summary.discrepancies:
        expected[(item.category, item.object_type)] = expected.get((item.category, item.object_type), 0) + 1
    assert counted == expected
    assert counted[("missing_ours", "payment_intent")] >= 1


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
    assert get_settings().temporal_task_queue in text
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
