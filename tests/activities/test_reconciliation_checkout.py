"""Reconciliation reads a checkout's one charge (activities/reconciliation.py): the checkout's payment row has no
order, its PaymentIntent names the checkout (`metadata.checkout_id`, or its `checkout-<id>` transfer group), its
ledger movement books several orders. On the real stack: a clean checkout of three orders, one refunded in part on
the shared PaymentIntent and two paid out in the checkout's transfer group, reconciles with no discrepancy, and
each order's money statement shows the whole charge and agrees. The comparison's rules for it are
tests/bazaar/payments/test_reconcile_checkout.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from activities.reconciliation import _movements, _ours, _owner_ref, _record
from bazaar.models import LedgerAccount, LedgerEntry, Payment, PaymentKind, PaymentOutcome
from tests.support.http import Actor, published_listing, register, seller_with_payout
from tests.support.money import provider, sql, statement_lines
from tests.support.reconciliation import next_second, reconcile

CHECKOUT = str(uuid.uuid4())
ORDER = str(uuid.uuid4())
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_a_checkouts_paymentintent_names_the_checkout_and_an_orders_objects_their_order() -> None:
    charge = {"metadata": {"checkout_id": CHECKOUT, "charge_key": f"checkout-{CHECKOUT}:charge:1"}}
    assert _owner_ref({**charge, "transfer_group": f"checkout-{CHECKOUT}"}) == CHECKOUT
    assert _owner_ref({"metadata": {}, "transfer_group": f"checkout-{CHECKOUT}"}) == CHECKOUT
    # An order's refund or payout in the checkout's group is the order's (its metadata), as before.
    assert _owner_ref({"metadata": {"order_id": ORDER}, "transfer_group": f"checkout-{CHECKOUT}"}) == ORDER
    assert _owner_ref({"metadata": {}, "transfer_group": f"order-{ORDER}"}) == ORDER
    assert _owner_ref({"metadata": {}, "transfer_group": None}) is None
    record = _record(
        "payment_intent",
        {"id": "pi_1", "amount": 100, "currency": "eur", "status": "succeeded", "created": 1, **charge},
    )
    assert record.order_ref == CHECKOUT


def test_a_checkout_payment_row_and_its_split_movement_are_read_without_an_order() -> None:
    key = f"checkout-{CHECKOUT}:charge:1"
    row = Payment(
        idempotency_key=key,
        kind=PaymentKind.CHARGE,
        provider_id=None,
        amount=300,
        currency="EUR",
        outcome=PaymentOutcome.PENDING,
        order_id=None,
        checkout_id=uuid.UUID(CHECKOUT),
        created_at=NOW,
    )
    ours = _ours(row)
    assert (ours.order_id, ours.checkout_id, ours.owner) == (None, CHECKOUT, CHECKOUT)
    other, seller = str(uuid.uuid4()), uuid.uuid4()
    entries = [
        LedgerEntry(
            id=i,
            txn=key,
            order_id=uuid.UUID(order),
            seller_id=seller,
            account=account,
            amount=amount,
            currency="EUR",
            created_at=NOW,
        )
        for i, (order, account, amount) in enumerate(
            [
                (ORDER, LedgerAccount.ESCROW, 100),
                (ORDER, LedgerAccount.BUYER_PAYMENTS, -100),
                (other, LedgerAccount.ESCROW, 200),
                (other, LedgerAccount.BUYER_PAYMENTS, -200),
            ]
        )
    ]
    [movement] = _movements(entries)
    assert (movement.order_id, movement.order_ids, movement.on("escrow")) == (
        None,
        sorted((ORDER, other)),
        300,
    )
    [single] = _movements(entries[:2])
    assert single.order_id == ORDER


# ---- on the stack ---------------------------------------------------------------------------------------------


@dataclass
class StoredCheckout:
    checkout_id: str
    buyer: Actor
    orders: dict[str, str]  # name -> order id
    intent: dict[str, Any]
    window: tuple[datetime, datetime]


def payout_account(stack: Any, seller: Actor) -> str:
    [(account,)] = sql(
        stack, "SELECT provider_account_id FROM payout_accounts WHERE user_id = %s", uuid.UUID(seller.user_id)
    )
    return str(account)


def pay(
    stack: Any,
    key: str,
    kind: str,
    amount: int,
    provider_id: str,
    order_id: str | None,
    checkout_id: str | None = None,
) -> None:
    sql(
        stack,
        "INSERT INTO payments (id, order_id, checkout_id, kind, idempotency_key, amount, currency, outcome, "
        "provider_id) VALUES (%s, %s, %s, %s, %s, %s, 'EUR', 'succeeded', %s)",
        uuid.uuid4(),
        uuid.UUID(order_id) if order_id else None,
        uuid.UUID(checkout_id) if checkout_id else None,
        kind,
        key,
        amount,
        provider_id,
    )


def book(stack: Any, txn: str, order_id: str, seller_id: str, **accounts: int) -> None:
    for account, amount in accounts.items():
        sql(
            stack,
            "INSERT INTO ledger_entries (txn, order_id, seller_id, account, amount, currency) "
            "VALUES (%s, %s, %s, %s, %s, 'EUR')",
            txn,
            uuid.UUID(order_id),
            uuid.UUID(seller_id),
            account,
            amount,
        )


@pytest.fixture(scope="module")
def stored(http: httpx.Client, stack: Any) -> StoredCheckout:
    """A checkout as its workflow leaves it, stored directly: three orders of three sellers paid by one charge
    (one payment row of the checkout, its movement split into each order's escrow); order `a` refunded 10,000 on
    the shared PaymentIntent, then `a` and `b` released and paid out in the checkout's transfer group; `c` still
    in escrow."""
    prices = {"a": 45_000, "b": 5_000, "c": 12_000}
    fees = {"a": 3_530, "b": 530}  # 10 % + 0.30 of what was released (a: 35,000 after its refund)
    sellers = {name: seller_with_payout(http) for name in prices}
    listings = {
        name: published_listing(http, sellers[name], price={"amount": price, "currency": "EUR"})
        for name, price in prices.items()
    }
    buyer = register(http, ["buyer"], "Cart Buyer")
    checkout_id, total = str(uuid.uuid4()), sum(prices.values())
    group, charge_key = f"checkout-{checkout_id}", f"checkout-{checkout_id}:charge:1"
    since = next_second()
    sql(
        stack,
        "INSERT INTO checkouts (id, buyer_id, idempotency_key, payment_method, status, amount, currency, "
        "workflow_id) VALUES (%s, %s, %s, 'pm_card_visa', 'paid', %s, 'EUR', %s)",
        uuid.UUID(checkout_id),
        uuid.UUID(buyer.user_id),
        str(uuid.uuid4()),
        total,
        group,
    )
    orders = {name: str(uuid.uuid4()) for name in prices}
    for name, order_id in orders.items():
        sql(
            stack,
            "INSERT INTO orders (id, buyer_id, seller_id, listing_id, listing_title, quantity, unit_amount, amount, "
            "currency, status, payment_state, stock_reserved, idempotency_key, payment_method, workflow_id, "
            "state_seq, checkout_id) VALUES (%s, %s, %s, %s, %s, 1, %s, %s, 'EUR', %s, %s, true, %s, "
            "'pm_card_visa', %s, 2, %s)",
            uuid.UUID(order_id),
            uuid.UUID(buyer.user_id),
            uuid.UUID(sellers[name].user_id),
            uuid.UUID(listings[name]["id"]),
            listings[name]["title"],
            prices[name],
            prices[name],
            "paid" if name == "c" else "completed",
            "held_in_escrow" if name == "c" else "released",
            str(uuid.uuid4()),
            f"order-{order_id}",
            uuid.UUID(checkout_id),
        )
    intent = provider(
        stack,
        "POST",
        "/v1/payment_intents",
        data={
            "amount": str(total),
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "confirm": "true",
            "transfer_group": group,
            "metadata[checkout_id]": checkout_id,
            "metadata[charge_key]": charge_key,
        },
    )
    assert intent["status"] == "succeeded", intent
    sql(
        stack,
        "UPDATE checkouts SET payment_intent_id = %s WHERE id = %s",
        intent["id"],
        uuid.UUID(checkout_id),
    )
    pay(stack, charge_key, "charge", total, intent["id"], None, checkout_id)
    for name, order_id in orders.items():
        seller = sellers[name].user_id
        book(stack, charge_key, order_id, seller, escrow=prices[name], buyer_payments=-prices[name])
    a, seller_a = orders["a"], sellers["a"].user_id
    refund = provider(
        stack,
        "POST",
        "/v1/refunds",
        data={"payment_intent": intent["id"], "amount": "10000", "metadata[order_id]": a},
    )
    pay(stack, f"{a}:refund:1", "refund", 10_000, refund["id"], a)
    book(stack, f"{a}:refund:1", a, seller_a, escrow=-10_000, refunds=10_000)
    for name, gross in (("a", 35_000), ("b", prices["b"])):
        order_id, seller = orders[name], sellers[name].user_id
        share = gross - fees[name]
        book(
            stack,
            f"{order_id}:release:1",
            order_id,
            seller,
            escrow=-gross,
            platform_fees=fees[name],
            seller_payable=share,
        )
        transfer = provider(
            stack,
            "POST",
            "/v1/transfers",
            data={
                "amount": str(share),
                "currency": "eur",
                "destination": payout_account(stack, sellers[name]),
                "transfer_group": group,
                "metadata[order_id]": order_id,
            },
        )
        pay(stack, f"{order_id}:transfer:1", "transfer", share, transfer["id"], order_id)
        book(stack, f"{order_id}:transfer:1", order_id, seller, seller_payable=-share, seller_payouts=share)
    until = next_second()
    return StoredCheckout(checkout_id, buyer, orders, intent, (since, until))


@pytest.mark.integration
def test_a_clean_checkout_reconciles_with_no_discrepancy(stack: Any, stored: StoredCheckout) -> None:
    summary = reconcile(stack, *stored.window)
    assert summary.discrepancies == [], summary.discrepancies
    assert sql(stack, "SELECT 1 FROM reconciliation_items WHERE window_id = %s", summary.window_id) == []
    # The charge, the refund, the two transfers and the two releases.
    assert summary.matched >= 6, summary


@pytest.mark.integration
def test_each_orders_statement_shows_its_share_of_the_charge_and_its_own_money(
    http: httpx.Client, stored: StoredCheckout
) -> None:
    assert stored.intent["amount"] == 45_000 + 5_000 + 12_000  # one charge; each order shows its share

    def money(name: str) -> dict[str, Any]:
        seen = http.get(f"/v1/orders/{stored.orders[name]}/money", headers=stored.buyer.headers)
        assert seen.status_code == 200, seen.text
        statement: dict[str, Any] = seen.json()
        assert statement["agrees"] is True, statement
        assert statement["discrepancies"] == []
        return statement

    a = money("a")
    assert statement_lines(a) == [
        ("charge", True, 45_000, 45_000, 45_000),
        ("refund", True, 10_000, 10_000, 10_000),
        ("transfer", True, 31_470, 31_470, 31_470),
        ("release", True, None, None, 35_000),
        ("fee", True, 3_530, None, 3_530),
    ]
    [charge] = [line for line in a["lines"] if line["kind"] == "charge"]
    assert (charge["object_id"], charge["payment"]["ref"]) == (
        stored.intent["id"],
        f"checkout-{stored.checkout_id}:charge:1",
    )
    assert statement_lines(money("b")) == [
        ("charge", True, 5_000, 5_000, 5_000),
        ("transfer", True, 4_470, 4_470, 4_470),
        ("release", True, None, None, 5_000),
        ("fee", True, 530, None, 530),
    ]
    assert statement_lines(money("c")) == [
        ("charge", True, 12_000, 12_000, 12_000),
        ("fee", True, 0, None, 0),
    ]


@pytest.mark.integration
def test_a_drift_of_the_checkouts_charge_is_stored_without_an_order_and_clears_once_fixed(
    stack: Any, stored: StoredCheckout
) -> None:
    key = f"checkout-{stored.checkout_id}:charge:1"
    sql(stack, "UPDATE payments SET amount = amount + 100 WHERE idempotency_key = %s", key)
    try:
        drifted = reconcile(stack, *stored.window)
    finally:
        sql(stack, "UPDATE payments SET amount = amount - 100 WHERE idempotency_key = %s", key)
    [item] = drifted.discrepancies
    assert (item.category, item.object_type, item.object_id, item.order_id) == (
        "amount_mismatch",
        "payment_intent",
        stored.intent["id"],
        None,  # no one order's: the detail names the checkout
    )
    assert f"checkout {stored.checkout_id}" in item.detail
    assert sql(
        stack, "SELECT order_id, status FROM reconciliation_items WHERE window_id = %s", drifted.window_id
    ) == [(None, "open")]
    fixed = reconcile(stack, *stored.window)
    assert (fixed.discrepancies, fixed.resolved) == ([], 1)
