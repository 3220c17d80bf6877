"""Connect accounts, transfers, reversals and the platform ledger."""

from __future__ import annotations

import pytest
import stripe


def _fund(client: stripe.StripeClient, amount: int, currency: str = "usd") -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "transfer_group": "grp_1",
        }
    )


def _available(client: stripe.StripeClient, currency: str = "usd") -> int:
    return sum(b.amount for b in client.v1.balance.retrieve().available if b.currency == currency)


def _account(client: stripe.StripeClient) -> stripe.Account:
    return client.v1.accounts.create(
        params={
            "type": "express",
            "country": "US",
            "email": "seller@example.com",
            "capabilities": {"transfers": {"requested": True}, "card_payments": {"requested": True}},
            "metadata": {"seller_id": "s_1"},
        }
    )


def test_account_create_and_retrieve(client: stripe.StripeClient) -> None:
    acct = _account(client)
    assert acct.id.startswith("acct_") and acct.object == "account"
    assert acct.type == "express" and acct.country == "US" and acct.email == "seller@example.com"
    assert acct.capabilities is not None and acct.capabilities.transfers == "active"
    assert acct.metadata is not None and acct.metadata["seller_id"] == "s_1"
    again = client.v1.accounts.retrieve(acct.id)
    assert again.id == acct.id and again.default_currency == "usd" and again.charges_enabled is True
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.accounts.retrieve("acct_missing")
    assert exc.value.http_status == 404


def test_transfers_are_limited_by_available_balance(client: stripe.StripeClient) -> None:
    acct = _account(client)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.create(params={"amount": 100, "currency": "usd", "destination": acct.id})
    assert exc.value.code == "balance_insufficient"

    _fund(client, 5000)
    tr = client.v1.transfers.create(
        params={
            "amount": 4000,
            "currency": "usd",
            "destination": acct.id,
            "transfer_group": "grp_1",
            "metadata": {"payout": "p1"},
        }
    )
    assert tr.id.startswith("tr_") and tr.amount == 4000 and tr.destination == acct.id
    assert tr.amount_reversed == 0 and tr.reversed is False and tr.transfer_group == "grp_1"
    assert _available(client) == 1000
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.create(params={"amount": 1001, "currency": "usd", "destination": acct.id})
    assert exc.value.code == "balance_insufficient"
    # Per currency: EUR funds do not cover a USD transfer.
    _fund(client, 9000, "eur")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.create(params={"amount": 2000, "currency": "usd", "destination": acct.id})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.create(params={"amount": 10, "currency": "usd", "destination": "acct_nope"})
    assert exc.value.param == "destination"

    listed = client.v1.transfers.list(params={"transfer_group": "grp_1"})
    assert [t.id for t in listed.data] == [tr.id]
    assert client.v1.transfers.list(params={"destination": acct.id}).data[0].id == tr.id
    assert client.v1.transfers.retrieve(tr.id).metadata["payout"] == "p1"
    txn = client.v1.balance_transactions.retrieve(str(tr.balance_transaction))
    assert txn.type == "transfer" and txn.net == -4000


def test_transfer_with_source_transaction(client: stripe.StripeClient) -> None:
    acct = _account(client)
    pi = _fund(client, 3000)
    tr = client.v1.transfers.create(
        params={
            "amount": 3000,
            "currency": "usd",
            "destination": acct.id,
            "source_transaction": str(pi.latest_charge),
        }
    )
    assert tr.source_transaction == pi.latest_charge
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.create(
            params={
                "amount": 1,
                "currency": "usd",
                "destination": acct.id,
                "source_transaction": str(pi.latest_charge),
            }
        )


def test_transfer_reversal_limits(client: stripe.StripeClient) -> None:
    acct = _account(client)
    _fund(client, 6000)
    tr = client.v1.transfers.create(params={"amount": 6000, "currency": "usd", "destination": acct.id})
    assert _available(client) == 0
    rev = client.v1.transfers.reversals.create(tr.id, params={"amount": 2500, "metadata": {"why": "refund"}})
    assert rev.id.startswith("trr_") and rev.amount == 2500 and rev.transfer == tr.id
    assert _available(client) == 2500
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.transfers.reversals.create(tr.id, params={"amount": 3501})
    assert exc.value.param == "amount"
    rest = client.v1.transfers.reversals.create(tr.id)
    assert rest.amount == 3500
    tr = client.v1.transfers.retrieve(tr.id)
    assert tr.amount_reversed == 6000 and tr.reversed is True
    assert [r.id for r in tr.reversals.data] == [rest.id, rev.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.reversals.create(tr.id, params={"amount": 1})
    txns = client.v1.balance_transactions.list(params={"type": "transfer_refund"}).data
    assert sorted(t.amount for t in txns) == [2500, 3500]
    assert [e.type for e in client.v1.events.list(params={"type": "transfer.reversed"}).data] == [
        "transfer.reversed",
        "transfer.reversed",
    ]
    assert _available(client) == 6000


def test_balance_transactions_pagination_and_type_filter(client: stripe.StripeClient) -> None:
    acct = _account(client)
    pis = [_fund(client, 1000 + i) for i in range(4)]
    client.v1.refunds.create(params={"payment_intent": pis[0].id, "amount": 100})
    client.v1.transfers.create(params={"amount": 500, "currency": "usd", "destination": acct.id})

    everything = client.v1.balance_transactions.list(params={"limit": 100}).data
    assert [t.type for t in everything] == ["transfer", "refund", "charge", "charge", "charge", "charge"]
    assert sum(t.net for t in everything) == _available(client) == 4006 - 100 - 500

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, object] = {"limit": 2}
        if cursor:
            params["starting_after"] = cursor
        page = client.v1.balance_transactions.list(params=params)  # type: ignore[arg-type]
        seen.extend(t.id for t in page.data)
        if not page.has_more:
            break
        cursor = page.data[-1].id
    assert seen == [t.id for t in everything]

    charges = client.v1.balance_transactions.list(params={"type": "charge", "limit": 3})
    assert len(charges.data) == 3 and charges.has_more is True
    assert all(t.type == "charge" and t.fee == 0 and t.net == t.amount for t in charges.data)
    last = client.v1.balance_transactions.list(
        params={"type": "charge", "limit": 3, "starting_after": charges.data[-1].id}
    )
    assert len(last.data) == 1 and last.has_more is False
    assert client.v1.balance_transactions.list(params={"type": "payout"}).data == []
