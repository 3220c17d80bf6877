"""The one comparison of money (bazaar/payments/reconcile.py) and the order statement built on it: one drift is
one discrepancy, currencies are compared everywhere, movements are checked as double entry, every discrepancy
names its order through any link, and a movement spanning a window edge belongs to one window only."""

from __future__ import annotations

import uuid

from bazaar.models import PaymentKind, PaymentOutcome
from bazaar.payments.reconcile import (
    Discrepancy,
    Entry,
    Movement,
    OurPayment,
    ProviderRecord,
    compare,
    judge,
    pair,
)
from bazaar.payments.statement import statement

S, F, P = PaymentOutcome.SUCCEEDED, PaymentOutcome.FAILED, PaymentOutcome.PENDING
O1, O2 = str(uuid.uuid4()), str(uuid.uuid4())
T = 1_000.0  # inside the window [0, 2000)


def pi(
    id_: str,
    amount: int = 1000,
    currency: str = "EUR",
    status: str = "succeeded",
    order_ref: str | None = None,
) -> ProviderRecord:
    return ProviderRecord("payment_intent", id_, amount, currency, status, T, order_ref)


def row(
    key: str,
    kind: PaymentKind,
    provider_id: str | None,
    amount: int = 1000,
    currency: str = "EUR",
    outcome: PaymentOutcome = S,
    created: float = T,
) -> OurPayment:
    return OurPayment(key, kind, provider_id, amount, currency, outcome, key.split(":")[0], created)


def move(txn: str, created: float = T, **accounts: tuple[int, str] | int) -> Movement:
    entries = tuple(
        Entry(account, v[1], v[0]) if isinstance(v, tuple) else Entry(account, "EUR", v)
        for account, v in accounts.items()
    )
    return Movement(txn, txn.split(":")[0], entries, created)


def charge_move(order: str, amount: int = 1000, currency: str = "EUR") -> Movement:
    return move(f"{order}:charge:1", escrow=(amount, currency), buyer_payments=(-amount, currency))


def found(
    provider: list[ProviderRecord],
    payments: list[OurPayment],
    movements: list[Movement],
    links: dict[str, str] | None = None,
    known: tuple[str, ...] = (O1, O2),
) -> list[Discrepancy]:
    return compare(0, 2000, provider, payments, movements, links, known)[1]


def summary(items: list[Discrepancy]) -> list[tuple[str, str, str | None]]:
    return [(d.category, d.object_type, d.order_id) for d in items]


def test_a_charge_whose_three_records_agree_is_one_match() -> None:
    matched, items = compare(
        0, 2000, [pi("pi_1")], [row(f"{O1}:charge:1", PaymentKind.CHARGE, "pi_1")], [charge_move(O1)]
    )
    assert (matched, items) == (1, [])


def test_currency_is_compared_on_each_side_and_each_drift_is_one_item() -> None:
    charge = row(f"{O1}:charge:1", PaymentKind.CHARGE, "pi_1")
    # The provider at 7777 USD against ours at 7777 EUR.
    usd = found(
        [pi("pi_1", 7777, "USD")],
        [row(f"{O1}:charge:1", PaymentKind.CHARGE, "pi_1", 7777)],
        [charge_move(O1, 7777)],
    )
    assert summary(usd) == [("currency_mismatch", "payment_intent", O1)]
    assert (usd[0].provider_currency, usd[0].ours_currency, usd[0].ledger_currency) == ("USD", "EUR", "EUR")
    # Our payment row's currency changed.
    edited = found(
        [pi("pi_1")], [row(f"{O1}:charge:1", PaymentKind.CHARGE, "pi_1", currency="USD")], [charge_move(O1)]
    )
    assert summary(edited) == [("currency_mismatch", "payment_intent", O1)]
    assert "ledger movement is in EUR" in edited[0].detail  # all its problems, in one item
    # The ledger movement's currency changed (still balanced, in USD).
    ledger = found([pi("pi_1")], [charge], [charge_move(O1, currency="USD")])
    assert summary(ledger) == [("currency_mismatch", "payment_intent", O1)]
    assert ledger[0].ledger_currency == "USD"


def test_the_ledger_is_checked_as_double_entry() -> None:
    charge = row(f"{O1}:charge:1", PaymentKind.CHARGE, "pi_1")
    no_counter_entry = move(f"{O1}:charge:1", escrow=1000)
    items = found([pi("pi_1")], [charge], [no_counter_entry])
    assert summary(items) == [("unbalanced", "payment_intent", O1)]
    assert "+1000 EUR" in items[0].detail
    # A successful payment without its movement; a movement claiming a refund with no payment row.
    refund_only = move(f"{O2}:refund:9", escrow=-400, refunds=400)
    items = found([pi("pi_1")], [charge], [refund_only])
    assert summary(items) == [("ledger_only", "ledger", O2), ("missing_ledger", "payment_intent", O1)]
    # A release is ledger-only by design: only its balance is checked.
    release = move(f"{O1}:release:1", escrow=-1000, platform_fees=130, seller_payable=870)
    assert found([], [], [release]) == []
    assert summary(found([], [], [move(f"{O1}:release:1", escrow=-1000, platform_fees=130)])) == [
        ("unbalanced", "ledger", O1)
    ]


def test_amount_and_status_and_missing_sides() -> None:
    items = found(
        [
            pi("pi_1"),
            pi("pi_2", status="requires_payment_method"),
            pi("pi_theirs", 500, order_ref=str(uuid.uuid4())),
        ],
        [
            row(f"{O1}:charge:1", PaymentKind.CHARGE, "pi_1", 1100),
            row(f"{O2}:charge:1", PaymentKind.CHARGE, "pi_2"),  # we think it succeeded
            row(f"{O2}:refund:1", PaymentKind.REFUND, "re_gone", 300),
            row(f"{O2}:refund:2", PaymentKind.REFUND, None, 300, outcome=F),  # refused: nothing to match
        ],
        [charge_move(O1), charge_move(O2), move(f"{O2}:refund:1", escrow=-300, refunds=300)],
    )
    assert summary(items) == [
        ("amount_mismatch", "payment_intent", O1),
        ("missing_ours", "payment_intent", None),
        ("missing_provider", "refund", O2),
        ("status_mismatch", "payment_intent", O2),
    ]
    mismatch = items[0]
    assert (mismatch.ours_amount, mismatch.provider_amount, mismatch.ledger_amount) == (1100, 1000, 1000)
    assert "names no order of ours" in items[1].detail


def test_every_link_names_the_order_and_unparseable_references_are_kept() -> None:
    links = {"pi_1": O1, "tr_1": O2}
    items = found(
        [
            ProviderRecord("refund", "re_x", 100, "EUR", "succeeded", T, payment_intent="pi_1"),
            ProviderRecord("dispute", "dp_x", 1000, "EUR", "needs_response", T, payment_intent="pi_1"),
            ProviderRecord("transfer_reversal", "trr_x", 50, "EUR", "succeeded", T, transfer="tr_1"),
            pi("pi_group", order_ref=O2),  # from transfer_group, no metadata
            pi("pi_legacy", order_ref="order-7 (legacy)"),
        ],
        [],
        [],
        links,
    )
    named = {d.object_id: d.order_id for d in items}
    assert named == {"re_x": O1, "dp_x": O1, "trr_x": O2, "pi_group": O2, "pi_legacy": None}
    legacy = next(d for d in items if d.object_id == "pi_legacy")
    assert "'order-7 (legacy)'" in legacy.detail


def test_a_movement_across_a_window_edge_belongs_to_the_window_it_started_in() -> None:
    won = ProviderRecord("dispute_reversal", "dp_1", 1000, "EUR", "won", 1999, payment_intent="pi_1")
    booked = row(f"{O1}:chargeback_reversal:dp_1", PaymentKind.CHARGEBACK_REVERSAL, "dp_1", created=2000.5)
    movement = move(booked.key, 2000.6, chargebacks=-1000, escrow=1000)
    # The first window, run before the webhook was booked: the provider's money, unknown to us, named by link.
    first = compare(0, 2000, [won], [], [], {"pi_1": O1}, ())[1]
    assert summary(first) == [("missing_ours", "dispute_reversal", O1)]
    # Once booked, the first window matches it, and the next window does not report it again.
    assert compare(0, 2000, [won], [booked], [movement])[1] == []
    assert compare(2000, 4000, [won], [booked], [movement]) == (0, [])


def test_a_lost_charge_reply_matches_by_order() -> None:
    units = pair([pi("pi_1", order_ref=O1)], [row(f"{O1}:charge:1", PaymentKind.CHARGE, None, outcome=P)], [])
    assert len(units) == 1 and units[0].payment is not None
    assert judge(units[0]).category == "status_mismatch"  # still pending on our side


def test_the_statement_judges_each_line_the_same_way_and_checks_the_fee() -> None:
    charge, transfer = (
        row(f"{O1}:charge:1", PaymentKind.CHARGE, "pi_1", 45000),
        row(f"{O1}:transfer:1", PaymentKind.TRANSFER, "tr_1", 40470),
    )
    provider = [
        pi("pi_1", 45000),
        ProviderRecord("transfer", "tr_1", 40470, "EUR", "paid", T),
    ]
    movements = [
        charge_move(O1, 45000),
        move(f"{O1}:release:1", escrow=-45000, platform_fees=4530, seller_payable=40470),
        move(f"{O1}:transfer:1", seller_payable=-40470, seller_payouts=40470),
    ]
    done = statement(O1, "EUR", pair(provider, [charge, transfer], movements))
    assert done.agrees
    assert [(line.kind, line.agrees) for line in done.lines] == [
        ("charge", True),
        ("transfer", True),
        ("release", True),
        ("fee", True),
    ]
    fee = done.lines[-1]
    assert (
        fee.provider is not None
        and fee.ledger is not None
        and fee.provider.amount == fee.ledger.amount == 4530
    )
    # A refund made at the provider only: its line disagrees (as reconciliation's item), and so does the fee.
    stray = ProviderRecord("refund", "re_x", 1000, "EUR", "succeeded", T, payment_intent="pi_1")
    drifted = statement(O1, "EUR", pair([*provider, stray], [charge, transfer], movements))
    assert [(line.kind, line.category) for line in drifted.lines if not line.agrees] == [
        ("refund", "missing_ours"),
        ("fee", "amount_mismatch"),
    ]
