"""Reconciliation proves the books, on the real stack (issue 15): a clean window of every order shape reports
nothing; one drift of each class, injected the way a bad restore, a manual fix or a dashboard click would, is
reported once, with its order; a chargeback won just before a window edge whose booking lands after it (the
order's worker is down across the edge) is reported by the first window and cleared by the next run; and the
open-discrepancy gauge on /metrics and support's list show the same items, through their lifecycle."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from bazaar.orders.types import PlaceOrder
from bazaar.temporal import order_workflow_id
from tests.support.http import (
    Actor,
    published_listing,
    register,
    run_cli,
    seller_with_payout,
    support_user,
    wait_until,
)
from tests.support.money import AMOUNT, act, act_then_paid_out, order_until, paid_out, place, provider, sql
from tests.support.reconciliation import next_second, reconcile, reconcile_async
from tests.support.workers import order_worker, stack_client
from workflows.order import OrderWorkflow

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings(
        "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
    ),  # stripe SDK
]


@dataclass
class Shop:
    seller: Actor
    buyer: Actor
    listing_id: str
    staff: Actor


@pytest.fixture(scope="module")
def shop(http: httpx.Client, stack: Any) -> Shop:
    seller = seller_with_payout(http)
    listing = published_listing(http, seller, quantity=40)
    return Shop(seller, register(http, ["buyer"], "Buyer"), str(listing["id"]), support_user(http, stack))


def items_of(stack: Any, window: str) -> set[tuple[str, str, str | None]]:
    rows = sql(
        stack,
        "SELECT category, object_type, order_id::text FROM reconciliation_items WHERE window_id = %s",
        window,
    )
    return {(c, t, o) for c, t, o in rows}


def items_on(stack: Any, order_id: str) -> list[tuple[Any, ...]]:
    """Every item that names the order, in every window."""
    return sql(
        stack,
        "SELECT category, object_type, status FROM reconciliation_items WHERE order_id = %s",
        uuid.UUID(order_id),
    )


def order(http: httpx.Client, shop: Shop, pm: str = "pm_card_visa") -> str:
    placed = place(http, shop.buyer, shop.listing_id, pm=pm)
    assert placed.status_code == 201, placed.text
    return str(placed.json()["id"])


def charge_intent(stack: Any, order_id: str) -> str:
    [(intent,)] = sql(
        stack, "SELECT provider_id FROM payments WHERE idempotency_key = %s", f"{order_id}:charge:1"
    )
    return str(intent)


def sandbox(stack: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{stack.stripe_api_base}/_sandbox/{path}", json=body, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def booked(stack: Any, key: str) -> bool:
    return bool(sql(stack, "SELECT 1 FROM ledger_entries WHERE txn = %s", key))


def edit_ledger(stack: Any, statement: str, *params: Any) -> None:
    """Change ledger entries as a bad restore would (the table is append-only: its trigger is bypassed, in one
    transaction, so nothing else ever sees it off)."""
    with psycopg.connect(stack.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_append_only")
        conn.execute(statement, params)
        conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_append_only")


# ---- a clean window of every order shape ------------------------------------------------------------------


def test_a_clean_window_of_every_order_shape_reports_nothing(
    http: httpx.Client, stack: Any, shop: Shop
) -> None:
    since = next_second()
    paid = order(http, shop)
    declined = order(http, shop, "pm_card_chargeDeclined")
    cancelled = order(http, shop)
    act(http, cancelled, "cancel", shop.buyer)
    completed = order(http, shop)
    for step, who in (("accept", shop.seller), ("fulfil", shop.seller), ("confirm-receipt", shop.buyer)):
        act(http, completed, step, who)
    paid_out(http, completed, shop.buyer)
    partial = order(http, shop)
    act(http, partial, "accept", shop.seller)
    act(http, partial, "fulfil", shop.seller)
    act(http, partial, "dispute", shop.buyer, {"reason_code": "damaged", "message": "scratched"})
    act_then_paid_out(
        http, partial, "resolve", shop.staff, {"resolution": "partial_refund", "refund_amount": 10_000}
    )
    lost = order(http, shop)
    lost_dispute = sandbox(stack, "disputes", {"payment_intent": charge_intent(stack, lost)})
    order_until(http, lost, shop.buyer, "disputed")
    sandbox(stack, f"disputes/{lost_dispute['id']}/close", {"status": "lost"})
    won = order(http, shop)
    for step, who in (("accept", shop.seller), ("fulfil", shop.seller), ("confirm-receipt", shop.buyer)):
        act(http, won, step, who)
    paid_out(http, won, shop.buyer)
    won_dispute = sandbox(stack, "disputes", {"payment_intent": charge_intent(stack, won)})
    wait_until(lambda: booked(stack, f"{won}:release_reversal:1"), 15)
    sandbox(stack, f"disputes/{won_dispute['id']}/close", {"status": "won"})
    order_until(http, lost, shop.buyer, "refunded")
    wait_until(lambda: booked(stack, f"{won}:transfer:2"), 15)  # released and paid out again
    until = next_second()

    summary = reconcile(stack, since, until)
    assert summary.discrepancies == [], summary.discrepancies
    assert items_of(stack, summary.window_id) == set()
    # Each order's movements were all compared: charges (7), refunds (2), transfers (4 + 1 reversal), disputes
    # (2 + 1 reinstatement), and the ledger-only releases and their reversal (5) balance too.
    assert summary.matched >= 22, summary
    for oid in (paid, declined, cancelled, completed, partial, lost, won):
        assert items_on(stack, oid) == []


# ---- one drift of each class ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drifts(http: httpx.Client, stack: Any, shop: Shop) -> dict[str, Any]:
    since = next_second()
    orders = {name: order(http, shop) for name in ("usd_row", "usd_ledger", "no_counter", "ledger_only")}
    orders |= {name: order(http, shop) for name in ("stray_refund", "stray_intent", "stray_reversal")}
    for step, who in (("accept", shop.seller), ("fulfil", shop.seller), ("confirm-receipt", shop.buyer)):
        act(http, orders["stray_reversal"], step, who)
    paid_out(http, orders["stray_reversal"], shop.buyer)
    # Currency, on our payment row and on the ledger movement (both entries: still balanced, in USD).
    sql(
        stack,
        "UPDATE payments SET currency = 'USD' WHERE idempotency_key = %s",
        f"{orders['usd_row']}:charge:1",
    )
    edit_ledger(
        stack, "UPDATE ledger_entries SET currency = 'USD' WHERE txn = %s", f"{orders['usd_ledger']}:charge:1"
    )
    # A charge's counter-entry deleted.
    edit_ledger(
        stack,
        "DELETE FROM ledger_entries WHERE txn = %s AND account = 'buyer_payments'",
        f"{orders['no_counter']}:charge:1",
    )
    # A refund booked in the ledger only (balanced, no payment row, nothing at the provider).
    sql(
        stack,
        "INSERT INTO ledger_entries (txn, order_id, seller_id, account, amount, currency) "
        "SELECT %s, id, seller_id, a.account::ledger_account, a.amount, 'EUR' FROM orders, "
        "(VALUES ('escrow', -1000), ('refunds', 1000)) AS a(account, amount) WHERE orders.id = %s",
        f"{orders['ledger_only']}:refund:9",
        uuid.UUID(orders["ledger_only"]),
    )
    # Provider objects on our orders without our metadata: a refund of our charge, a reversal of our payout,
    # a PaymentIntent in our order's transfer group; and one whose order reference is not an order id at all.
    provider(
        stack,
        "POST",
        "/v1/refunds",
        data={"payment_intent": charge_intent(stack, orders["stray_refund"]), "amount": "1000"},
    )
    [(transfer,)] = sql(
        stack,
        "SELECT provider_id FROM payments WHERE idempotency_key = %s",
        f"{orders['stray_reversal']}:transfer:1",
    )
    provider(stack, "POST", f"/v1/transfers/{transfer}/reversals", data={"amount": "1000"})
    card = {"currency": "eur", "payment_method": "pm_card_visa", "confirm": "true"}
    provider(
        stack,
        "POST",
        "/v1/payment_intents",
        data={**card, "amount": "1234", "transfer_group": f"order-{orders['stray_intent']}"},
    )
    legacy = provider(
        stack,
        "POST",
        "/v1/payment_intents",
        data={**card, "amount": "999", "metadata[order_id]": "order-7 (legacy)"},
    )
    until = next_second()
    return {"orders": orders, "legacy": legacy, "summary": reconcile(stack, since, until)}


def test_each_drift_is_reported_once_with_its_order(stack: Any, drifts: dict[str, Any]) -> None:
    orders, summary = drifts["orders"], drifts["summary"]
    expected = {
        "usd_row": ("currency_mismatch", "payment_intent"),
        "usd_ledger": ("currency_mismatch", "payment_intent"),
        "no_counter": ("unbalanced", "payment_intent"),
        "ledger_only": ("ledger_only", "ledger"),
        "stray_refund": ("missing_ours", "refund"),
        "stray_intent": ("missing_ours", "payment_intent"),
        "stray_reversal": ("missing_ours", "transfer_reversal"),
    }
    assert items_of(stack, summary.window_id) == {
        *((category, object_type, orders[name]) for name, (category, object_type) in expected.items()),
        ("missing_ours", "payment_intent", None),  # the unparseable reference
    }
    for name, (category, object_type) in expected.items():
        assert items_on(stack, orders[name]) == [(category, object_type, "open")], name
    found = {d.object_id: d for d in summary.discrepancies}
    usd_row = next(d for d in summary.discrepancies if d.order_id == orders["usd_row"])
    assert (usd_row.ours_currency, usd_row.provider_currency, usd_row.ledger_currency) == (
        "USD",
        "EUR",
        "EUR",
    )
    usd_ledger = next(d for d in summary.discrepancies if d.order_id == orders["usd_ledger"])
    assert (usd_ledger.ours_currency, usd_ledger.provider_currency, usd_ledger.ledger_currency) == (
        "EUR",
        "EUR",
        "USD",
    )
    no_counter = next(d for d in summary.discrepancies if d.order_id == orders["no_counter"])
    assert f"+{AMOUNT} EUR" in no_counter.detail
    legacy = found[drifts["legacy"]["id"]]
    assert (legacy.order_id, legacy.provider_amount) == (None, 999)
    assert "'order-7 (legacy)'" in legacy.detail
    # Re-running reports the same items, once each (no second row, nothing resolved).
    again = reconcile(stack, datetime.fromisoformat(summary.since), datetime.fromisoformat(summary.until))
    assert (again.opened, again.discrepancies) == (0, summary.discrepancies)
    for name, (category, object_type) in expected.items():
        assert items_on(stack, orders[name]) == [(category, object_type, "open")], name


# ---- a booking across the window edge ---------------------------------------------------------------------


@pytest.fixture
async def temporal(stack: Any) -> AsyncIterator[Client]:
    # This process runs the order's activities: its database engine and settings must be the stack's.
    async with stack_client(stack) as client:
        yield client


async def until_true(check: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_a_chargeback_won_before_the_edge_and_booked_after_it_clears_in_the_next_run(
    stack: Any, shop: Shop, temporal: Client
) -> None:
    queue = f"reconcile-books-{uuid.uuid4()}"
    since = await asyncio.to_thread(next_second)
    oid = str(uuid.uuid4())
    async with order_worker(temporal, queue):
        await temporal.start_workflow(
            OrderWorkflow.run,
            PlaceOrder(
                order_id=oid,
                buyer_id=shop.buyer.user_id,
                listing_id=shop.listing_id,
                quantity=1,
                payment_method="pm_card_visa",
                idempotency_key=str(uuid.uuid4()),
            ),
            id=order_workflow_id(oid),
            task_queue=queue,
        )
        await until_true(lambda: booked(stack, f"{oid}:charge:1"))
        intent = await asyncio.to_thread(charge_intent, stack, oid)
        dispute = await asyncio.to_thread(sandbox, stack, "disputes", {"payment_intent": intent})
        await until_true(lambda: booked(stack, f"{oid}:chargeback:{dispute['id']}"))
    # The worker is down: the network's decision arrives (the webhook is stored and signalled), nobody books it.
    await asyncio.to_thread(sandbox, stack, f"disputes/{dispute['id']}/close", {"status": "won"})
    await until_true(
        lambda: sql(
            stack,
            "SELECT 1 FROM stripe_events WHERE type = 'charge.dispute.funds_reinstated' "
            "AND payload->'data'->'object'->>'id' = %s",
            dispute["id"],
        )
    )
    midnight = await asyncio.to_thread(next_second)
    first = await reconcile_async(temporal, since, midnight)
    assert [(d.category, d.object_type, d.object_id, d.order_id) for d in first.discrepancies] == [
        ("missing_ours", "dispute_reversal", dispute["id"], oid)  # named through the dispute's PaymentIntent
    ]
    async with order_worker(temporal, queue):  # the worker is back, after midnight
        await until_true(lambda: booked(stack, f"{oid}:chargeback_reversal:{dispute['id']}"))
    until = await asyncio.to_thread(next_second)
    second = await reconcile_async(temporal, midnight, until)
    assert second.discrepancies == []  # the booking is the first window's, not reported again here
    assert first.window_id in second.rechecked and second.resolved >= 1
    [(status, changed_by, note)] = sql(
        stack,
        "SELECT status, changed_by, note FROM reconciliation_items WHERE order_id = %s",
        uuid.UUID(oid),
    )
    assert (status, changed_by) == ("resolved", None) and note.startswith("matched by the reconciliation run")


# ---- the gauge and support's list --------------------------------------------------------------------------


def gauge(http: httpx.Client) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(http.get("/metrics").text):
        if family.name == "bazaar_reconciliation_open_discrepancies":
            for sample in family.samples:
                if sample.value:
                    counts[(sample.labels["category"], sample.labels["object_type"])] += int(sample.value)
    return counts


def support_list(http: httpx.Client, staff: Actor, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = http.get(
            "/v1/support/reconciliation",
            headers=staff.headers,
            params={**params, "limit": 500, **({"before": cursor} if cursor else {})},
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def test_the_gauge_and_the_support_list_show_the_same_items(
    http: httpx.Client, stack: Any, shop: Shop, drifts: dict[str, Any]
) -> None:
    listed = support_list(http, shop.staff)
    assert {i["status"] for i in listed} == {"open"}
    assert gauge(http) == Counter((i["category"], i["object_type"]) for i in listed)
    stray = drifts["orders"]["stray_refund"]
    [item] = support_list(http, shop.staff, order_id=stray)
    assert (item["category"], item["object_type"], item["order_id"]) == ("missing_ours", "refund", stray)
    assert http.get("/v1/support/reconciliation", headers=shop.buyer.headers).status_code == 403

    before = gauge(http)[("missing_ours", "refund")]
    acked = http.post(
        f"/v1/support/reconciliation/{item['id']}",
        headers=shop.staff.headers,
        json={"status": "acknowledged", "note": "asking the provider who refunded it"},
    )
    assert acked.status_code == 200, acked.text
    assert (acked.json()["status"], acked.json()["changed_by"]) == ("acknowledged", shop.staff.user_id)
    assert gauge(http)[("missing_ours", "refund")] == before - 1
    assert stray not in {i["order_id"] for i in support_list(http, shop.staff)}
    assert gauge(http) == Counter((i["category"], i["object_type"]) for i in support_list(http, shop.staff))
    # A later run leaves support's decision alone; the CLI shows what the API shows.
    summary = drifts["summary"]
    reconcile(stack, datetime.fromisoformat(summary.since), datetime.fromisoformat(summary.until))

    def cli(*args: str) -> Any:
        return json.loads(run_cli(stack, "reconciliation", *args).stdout)

    [shown] = cli("list", "--status", "acknowledged", "--order", stray)
    assert [
        i["id"] for i in cli("list", "--status", "open", "--status", "acknowledged", "--order", stray)
    ] == [
        item["id"]
    ]  # several statuses, as the API takes them; a category or status it does not know is a usage error
    bad = run_cli(stack, "reconciliation", "list", "--category", "bogus", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr, bad.stderr
    # Found from outside: a window that is no date, or ends before it starts, printed a traceback.
    for window in (["--since", "garbage"], ["--since", "2026-11-20", "--until", "2026-11-19"]):
        refused = run_cli(stack, "reconcile", *window, check=False)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert "usage: bazaar reconcile" in refused.stderr, refused.stderr
    assert (shown["id"], shown["status"], shown["note"]) == (item["id"], "acknowledged", acked.json()["note"])
    note = "refunded by hand at the provider: booked as a correction"
    resolved = cli("resolve", str(item["id"]), "--note", note, "--as", shop.staff.email)
    assert (resolved["status"], resolved["note"], resolved["changed_by"]) == (
        "resolved",
        note,
        shop.staff.user_id,
    )
    shown_by_api = support_list(http, shop.staff, order_id=stray, status="resolved")
    assert [(i["id"], i["status"], i["note"]) for i in shown_by_api] == [(item["id"], "resolved", note)]
    # One drift, one item: a window run on demand over the same hours finds the same stray refund and opens no
    # second item beside support's resolved one (found from outside: each overlapping run opened one, and the
    # gauge counted the drift again).
    counted = gauge(http)
    since, until = datetime.fromisoformat(summary.since), datetime.fromisoformat(summary.until)
    reconcile(stack, since - timedelta(hours=1), until + timedelta(hours=1))
    every = support_list(http, shop.staff, order_id=stray, status=["open", "acknowledged", "resolved"])
    assert [(i["id"], i["status"]) for i in every] == [(item["id"], "resolved")]
    assert gauge(http) == counted
    missing = http.post(
        "/v1/support/reconciliation/999999999",
        headers=shop.staff.headers,
        json={"status": "open", "note": "x"},
    )
    assert missing.status_code == 404
