"""A checkout's one charge in the comparison (bazaar/payments/reconcile.py) and in an order's statement
(bazaar/payments/statement.py): one PaymentIntent, the checkout's payment row (no order) and one ledger movement
that books each order's share are one unit that agrees; a lost reply pairs by the checkout; a drift is still
found, and reported with no order (the detail names the checkout); each order's statement shows the whole
charge, and its fee counts only the order's share and the order's own entries."""

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
from bazaar.payments.statement import ChargeShare, statement

S, P = PaymentOutcome.SUCCEEDED, PaymentOutcome.PENDING
CHECKOUT = str(uuid.uuid4())
A, B, C = (str(uuid.uuid4()) for _ in range(3))
SHARES = {A: 45_000, B: 5_000, C: 12_000}
TOTAL = sum(SHARES.values())
CHARGE_KEY = f"checkout-{CHECKOUT}:charge:1"
T = 1_000.0  # inside the window [0, 2000)


def intent(id_: str = "pi_c", amount: int = TOTAL, order_ref: str | None = CHECKOUT) -> ProviderRecord:
    return ProviderRecord("payment_intent", id_, amount, "EUR", "succeeded", T, order_ref)


def checkout_row(
    provider_id: str | None = "pi_c", amount: int = TOTAL, outcome: PaymentOutcome = S
) -> OurPayment:
    return OurPayment(
        CHARGE_KEY, PaymentKind.CHARGE, provider_id, amount, "EUR", outcome, None, T, checkout_id=CHECKOUT
    )


def order_row(key: str, kind: PaymentKind, provider_id: str, amount: int) -> OurPayment:
    return OurPayment(key, kind, provider_id, amount, "EUR", S, key.split(":")[0], T)


def split_charge(shares: dict[str, int] = SHARES) -> Movement:
    """The checkout's charge as booked: each order's share into its escrow, under the one txn."""
    entries = tuple(
        entry
        for order, share in shares.items()
        for entry in (Entry("escrow", "EUR", share, order), Entry("buyer_payments", "EUR", -share, order))
    )
    return Movement(CHARGE_KEY, None, entries, T)


def move(txn: str, **accounts: int) -> Movement:
    order = txn.split(":")[0]
    return Movement(txn, order, tuple(Entry(a, "EUR", v, order) for a, v in accounts.items()), T)


# Order A: refunded 10,000 of its 45,000 on the shared PaymentIntent, then completed and paid out (fee 3,530).
# Order B: completed and paid out (fee 530). Order C: still in escrow.
REFUND_A = ProviderRecord("refund", "re_a", 10_000, "EUR", "succeeded", T, A, payment_intent="pi_c")
TRANSFER_A = ProviderRecord("transfer", "tr_a", 31_470, "EUR", "paid", T, A)
TRANSFER_B = ProviderRecord("transfer", "tr_b", 4_470, "EUR", "paid", T, B)
PROVIDER = [intent(), REFUND_A, TRANSFER_A, TRANSFER_B]
PAYMENTS = [
    checkout_row(),
    order_row(f"{A}:refund:1", PaymentKind.REFUND, "re_a", 10_000),
    order_row(f"{A}:transfer:1", PaymentKind.TRANSFER, "tr_a", 31_470),
    order_row(f"{B}:transfer:1", PaymentKind.TRANSFER, "tr_b", 4_470),
]
MOVEMENTS = [
    split_charge(),
    move(f"{A}:refund:1", escrow=-10_000, refunds=10_000),
    move(f"{A}:release:1", escrow=-35_000, platform_fees=3_530, seller_payable=31_470),
    move(f"{A}:transfer:1", seller_payable=-31_470, seller_payouts=31_470),
    move(f"{B}:release:1", escrow=-5_000, platform_fees=530, seller_payable=4_470),
    move(f"{B}:transfer:1", seller_payable=-4_470, seller_payouts=4_470),
]
LINKS = {"re_a": A, "tr_a": A, "tr_b": B}


def found(
    provider: list[ProviderRecord], payments: list[OurPayment], movements: list[Movement]
) -> list[Discrepancy]:
    return compare(0, 2000, provider, payments, movements, LINKS, (A, B, C), {"pi_c": CHECKOUT}, (CHECKOUT,))[
        1
    ]


def test_a_clean_checkout_split_into_three_orders_reconciles_with_no_discrepancy() -> None:
    matched, items = compare(
        0, 2000, PROVIDER, PAYMENTS, MOVEMENTS, LINKS, (A, B, C), {"pi_c": CHECKOUT}, (CHECKOUT,)
    )
    assert items == []
    assert matched == 6  # the charge, the refund, two transfers, two releases
    [charge] = [u for u in pair(PROVIDER, PAYMENTS, MOVEMENTS) if u.object_id == "pi_c"]
    assert charge.payment is not None and charge.movement is not None
    assert charge.movement.order_ids == sorted((A, B, C))
    assert charge.movement.on("escrow") == TOTAL  # summed over the orders: the PaymentIntent's amount


def test_a_lost_checkout_charge_reply_pairs_by_its_checkout() -> None:
    lost = checkout_row(provider_id=None, outcome=P)
    # An order's lost reply in the same window pairs with its own PaymentIntent, not the checkout's.
    single = OurPayment(f"{A}:charge:1", PaymentKind.CHARGE, None, 700, "EUR", P, A, T)
    units = pair([intent(), intent("pi_a", 700, A)], [lost, single], [])
    assert [(u.object_id, u.payment and u.payment.key) for u in units] == [
        ("pi_a", single.key),
        ("pi_c", CHARGE_KEY),
    ]
    assert judge(units[1]).category == "status_mismatch"  # still pending on our side
    # Once the outcome is stored (still without the provider's id), the three records agree.
    booked = checkout_row(provider_id=None)
    assert [judge(u).agrees for u in pair([intent()], [booked], [split_charge()])] == [True]


def test_a_drift_of_the_checkout_charge_is_found_and_names_the_checkout_not_an_order() -> None:
    # Our row says 100 more than the PaymentIntent and the movement.
    [item] = found([intent()], [checkout_row(amount=TOTAL + 100)], [split_charge()])
    assert (item.category, item.object_type, item.object_id, item.order_id) == (
        "amount_mismatch",
        "payment_intent",
        "pi_c",
        None,
    )
    assert (item.ours_amount, item.provider_amount, item.ledger_amount) == (TOTAL + 100, TOTAL, TOTAL)
    assert f"checkout {CHECKOUT}" in item.detail
    # One order's share booked 100 too high: the whole movement books more escrow than was charged.
    [item] = found([intent()], [checkout_row()], [split_charge({**SHARES, B: 5_100})])
    assert (item.category, item.ledger_amount) == ("amount_mismatch", TOTAL + 100)
    assert "the ledger booked" in item.detail
    # The PaymentIntent itself for another amount.
    [item] = found([intent(amount=TOTAL - 1)], [checkout_row()], [split_charge()])
    assert (item.category, item.provider_amount, item.ours_amount) == ("amount_mismatch", TOTAL - 1, TOTAL)


def test_provider_objects_of_a_checkout_without_our_rows_name_the_right_order_or_none() -> None:
    unknown_refund = ProviderRecord("refund", "re_x", 100, "EUR", "succeeded", T, payment_intent="pi_c")
    order_refund = ProviderRecord("refund", "re_y", 100, "EUR", "succeeded", T, B, payment_intent="pi_c")
    second_intent = intent("pi_again")  # a second PaymentIntent naming the checkout
    items = found([intent(), unknown_refund, order_refund, second_intent], [checkout_row()], [split_charge()])
    named = {d.object_id: (d.category, d.order_id) for d in items}
    assert named == {
        "re_x": ("missing_ours", None),
        "re_y": ("missing_ours", B),  # its own reference names the order
        "pi_again": ("missing_ours", None),
    }
    details = {d.object_id: d.detail for d in items}
    assert f"is the charge of checkout {CHECKOUT}" in details["re_x"]
    assert f"names checkout {CHECKOUT}" in details["pi_again"]
    # A movement of the checkout's charge without its payment row books several orders: no one order.
    [item] = found([], [], [split_charge()])
    assert (item.category, item.object_type, item.order_id) == ("ledger_only", "ledger", None)
    assert A in item.detail and B in item.detail


def order_statement(order: str, movements: list[Movement] = MOVEMENTS) -> dict[str, tuple[bool, int | None]]:
    """The order's statement as reconciliation's order_money builds it from the checkout's whole charge and the
    order's own refunds, transfers and movements (the charge line shows the order's share)."""
    provider = [r for r in PROVIDER if r.object_type == "payment_intent" or r.order_ref == order]
    payments = [p for p in PAYMENTS if p.checkout_id or p.order_id == order]
    mine = [m for m in movements if m.order_id in (None, order)]
    done = statement(order, "EUR", pair(provider, payments, mine), ChargeShare(CHECKOUT, SHARES[order]))
    lines = {line.kind: line for line in done.lines}
    charge = lines["charge"]
    assert charge.provider and charge.payment and charge.ledger
    assert charge.provider.amount == charge.payment.amount == SHARES[order]  # never the other sellers' part
    assert (charge.provider.ref, charge.provider.status) == ("pi_c", "succeeded")
    assert done.agrees == all(line.agrees for line in done.lines)
    return {
        kind: (line.agrees, line.provider.amount if line.provider else None) for kind, line in lines.items()
    }


def test_each_orders_statement_shows_only_its_own_share_of_the_charge_and_its_fee() -> None:
    assert order_statement(A) == {
        "charge": (True, 45_000),
        "refund": (True, 10_000),
        "transfer": (True, 31_470),
        "release": (True, None),
        "fee": (True, 3_530),
    }
    assert order_statement(B) == {
        "charge": (True, 5_000),
        "transfer": (True, 4_470),
        "release": (True, None),
        "fee": (True, 530),
    }
    assert order_statement(C) == {"charge": (True, 12_000), "fee": (True, 0)}  # its 12,000 still in escrow


def test_a_wrong_split_shows_on_the_orders_charge_and_fee_though_the_whole_charge_agrees() -> None:
    # 100 of C's share booked into B's escrow: the charge as a whole is right, each order's money is not.
    shifted = [split_charge({**SHARES, B: 5_100, C: 11_900}), *MOVEMENTS[1:]]
    b = order_statement(B, shifted)
    assert b["charge"] == (False, 5_000)  # booked 5,100 into B's escrow
    assert b["fee"] == (False, 430)  # B's share 5,000, less the 4,570 the ledger holds for B (5,100 - 530)
    assert order_statement(C, shifted)["fee"] == (False, 100)
    assert order_statement(A, shifted)["fee"] == (True, 3_530)
