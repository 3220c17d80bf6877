"""PaymentIntents, declines, idempotency and refunds through the official SDK over real HTTP."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.support.sandbox import SandboxProcess, headers_of


def _usd_available(client: stripe.StripeClient) -> int:
    balance = client.v1.balance.retrieve()
    return sum(b.amount for b in balance.available if b.currency == "usd")


def _charge(client: stripe.StripeClient, amount: int = 2500, **extra: object) -> stripe.PaymentIntent:
    params = {"amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True, **extra}
    return client.v1.payment_intents.create(params=params)  # type: ignore[arg-type]


def test_automatic_capture_succeeds_and_funds_balance(client: stripe.StripeClient) -> None:
    pi = _charge(client, 2500, metadata={"order_id": "ord_1"}, transfer_group="ord_1", description="Order 1")
    assert pi.id.startswith("pi_")
    assert pi.status == "succeeded"
    assert pi.amount_received == 2500
    assert pi.capture_method == "automatic"
    assert pi.metadata["order_id"] == "ord_1"
    assert pi.transfer_group == "ord_1"
    assert isinstance(pi.latest_charge, str) and pi.latest_charge.startswith("ch_")
    assert pi.livemode is False and isinstance(pi.created, int)

    fetched = client.v1.payment_intents.retrieve(pi.id, params={"expand": ["latest_charge"]})
    charge = fetched.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert charge.captured is True and charge.amount_captured == 2500 and charge.paid is True
    assert charge.payment_intent == pi.id

    assert _usd_available(client) == 2500
    txns = client.v1.balance_transactions.list(params={"type": "charge"})
    assert [(t.amount, t.net, t.fee, t.source) for t in txns.data] == [(2500, 2500, 0, charge.id)]

    events = client.v1.events.list(params={"type": "payment_intent.succeeded"})
    assert len(events.data) == 1
    assert events.data[0].data.object["id"] == pi.id


def test_create_then_confirm_and_manual_capture(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(
        params={"amount": 5000, "currency": "usd", "capture_method": "manual"}
    )
    assert pi.status == "requires_payment_method"
    pi = client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_mastercard"})
    assert pi.status == "requires_capture" and pi.amount_capturable == 5000
    assert _usd_available(client) == 0
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 6000})
    assert exc.value.param == "amount_to_capture"
    pi = client.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 4000})
    assert pi.status == "succeeded" and pi.amount_received == 4000 and pi.amount_capturable == 0
    assert _usd_available(client) == 4000
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.payment_intents.cancel(pi.id)
    assert exc.value.code == "payment_intent_unexpected_state"


def test_cancel_uncaptured(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(
        params={
            "amount": 900,
            "currency": "usd",
            "capture_method": "manual",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    pi = client.v1.payment_intents.cancel(pi.id, params={"cancellation_reason": "abandoned"})
    assert pi.status == "canceled" and pi.cancellation_reason == "abandoned"
    assert _usd_available(client) == 0
    assert (
        client.v1.events.list(params={"type": "payment_intent.canceled"}).data[0].data.object["id"] == pi.id
    )


@pytest.mark.parametrize(
    ("payment_method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
def test_declines_are_402_card_errors_without_balance_change(
    client: stripe.StripeClient, payment_method: str, decline_code: str
) -> None:
    with pytest.raises(stripe.CardError) as exc:
        _charge(client, 1200, payment_method=payment_method)
    err = exc.value
    assert err.http_status == 402
    assert err.code == "card_declined"
    assert err.error is not None and err.error.decline_code == decline_code
    assert err.error.type == "card_error"
    pi = err.error.payment_intent
    assert pi is not None and pi.status == "requires_payment_method"
    assert pi.last_payment_error is not None and pi.last_payment_error.decline_code == decline_code
    stored = client.v1.payment_intents.retrieve(pi.id)
    assert stored.status == "requires_payment_method"
    assert stored.last_payment_error is not None and stored.last_payment_error.code == "card_declined"
    assert _usd_available(client) == 0
    assert client.v1.balance_transactions.list().data == []
    assert [e.type for e in client.v1.events.list(params={"type": "payment_intent.payment_failed"}).data] == [
        "payment_intent.payment_failed"
    ]
    # A declined PaymentIntent can be retried with another card.
    retried = client.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert retried.status == "succeeded"
    assert _usd_available(client) == 1200


def test_idempotent_replay_performs_one_charge(sbx: SandboxProcess, client: stripe.StripeClient) -> None:
    params = {
        "amount": 3100,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
        "metadata": {"order_id": "o-9"},
    }
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "order-o-9"})  # type: ignore[arg-type]
    second = client.v1.payment_intents.create(params=params, options={"idempotency_key": "order-o-9"})  # type: ignore[arg-type]
    assert second.id == first.id
    assert headers_of(first).get("Idempotency-Key") == "order-o-9"
    assert "Idempotent-Replayed" not in headers_of(first)
    assert headers_of(second).get("Idempotent-Replayed") == "true"
    assert sbx.control("GET", "/_sandbox/requests").json()["paths"] == {"/v1/payment_intents": 1}
    assert len(client.v1.payment_intents.list().data) == 1
    assert _usd_available(client) == 3100

    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(
            params={**params, "amount": 3200},  # type: ignore[typeddict-item]
            options={"idempotency_key": "order-o-9"},
        )
    assert sbx.control("GET", "/_sandbox/requests").json()["total"] == 1


def test_idempotency_keys_are_scoped_to_the_api_key(sbx: SandboxProcess) -> None:
    params = {"amount": 700, "currency": "usd"}
    a = sbx.client().v1.payment_intents.create(params=params, options={"idempotency_key": "shared"})  # type: ignore[arg-type]
    other = stripe.StripeClient("sk_test_other", base_addresses={"api": sbx.url}, max_network_retries=0)
    b = other.v1.payment_intents.create(params=params, options={"idempotency_key": "shared"})  # type: ignore[arg-type]
    assert a.id != b.id


def test_replayed_card_error(sbx: SandboxProcess, client: stripe.StripeClient) -> None:
    params = {"amount": 800, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True}
    errors = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as exc:
            client.v1.payment_intents.create(params=params, options={"idempotency_key": "declined-1"})  # type: ignore[arg-type]
        errors.append(exc.value)
    assert errors[0].json_body == errors[1].json_body
    assert errors[1].headers is not None and errors[1].headers.get("Idempotent-Replayed") == "true"
    assert sbx.control("GET", "/_sandbox/requests").json()["total"] == 1
    assert len(client.v1.payment_intents.list().data) == 1


def test_idempotency_key_limits_and_auth(sbx: SandboxProcess) -> None:
    resp = httpx.post(
        f"{sbx.url}/v1/payment_intents",
        data={"amount": "500", "currency": "usd"},
        headers={"Authorization": "Bearer sk_test_x", "Idempotency-Key": "k" * 256},
    )
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    ok = httpx.post(
        f"{sbx.url}/v1/payment_intents",
        data={"amount": "500", "currency": "usd"},
        headers={"Authorization": "Bearer sk_test_x", "Idempotency-Key": "k" * 255},
    )
    assert ok.status_code == 200 and ok.headers["Request-Id"].startswith("req_")

    unauth = httpx.get(f"{sbx.url}/v1/balance")
    assert unauth.status_code == 401 and unauth.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient("sk_live_nope", base_addresses={"api": sbx.url}).v1.balance.retrieve()

    unknown = httpx.post(
        f"{sbx.url}/v1/payment_intents",
        data={"amount": "500", "currency": "usd", "bogus": "1"},
        headers={"Authorization": "Bearer sk_test_x"},
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "parameter_unknown"
    missing = httpx.get(
        f"{sbx.url}/v1/payment_intents/pi_nope", headers={"Authorization": "Bearer sk_test_x"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"


def test_refunds_full_partial_and_over_limit(client: stripe.StripeClient) -> None:
    pi = _charge(client, 10_000)
    partial = client.v1.refunds.create(
        params={
            "payment_intent": pi.id,
            "amount": 3000,
            "reason": "requested_by_customer",
            "metadata": {"line": "2"},
        }
    )
    assert partial.id.startswith("re_") and partial.status == "succeeded"
    assert partial.amount == 3000 and partial.charge == pi.latest_charge and partial.payment_intent == pi.id
    assert _usd_available(client) == 7000

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 7001})
    assert exc.value.http_status == 400 and exc.value.param == "amount"

    rest = client.v1.refunds.create(params={"charge": str(pi.latest_charge)})
    assert rest.amount == 7000
    assert _usd_available(client) == 0
    charge = client.v1.charges.retrieve(str(pi.latest_charge))
    assert charge.refunded is True and charge.amount_refunded == 10_000

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi.id, "amount": 1})
    assert exc.value.code == "charge_already_refunded"

    listed = client.v1.refunds.list(params={"payment_intent": pi.id})
    assert [r.id for r in listed.data] == [rest.id, partial.id]
    metadata = client.v1.refunds.retrieve(partial.id).metadata
    assert metadata is not None and metadata["line"] == "2"
    refund_txns = client.v1.balance_transactions.list(params={"type": "refund"}).data
    assert sorted(t.net for t in refund_txns) == [-7000, -3000]
    types = {e.type for e in client.v1.events.list(params={"type": "charge.*"}).data}
    assert {"charge.refunded", "charge.succeeded"} <= types


def test_refund_of_unpaid_intent_is_rejected(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(params={"amount": 500, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={"payment_intent": pi.id})


def test_dispute_control_endpoints(sbx: SandboxProcess, client: stripe.StripeClient) -> None:
    pi = _charge(client, 4000)
    resp = sbx.control("POST", "/_sandbox/disputes", {"payment_intent": pi.id, "reason": "fraudulent"})
    assert resp.status_code == 200
    dispute = resp.json()
    assert (
        dispute["id"].startswith("dp_")
        and dispute["amount"] == 4000
        and dispute["status"] == "needs_response"
    )
    assert _usd_available(client) == 0
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={"payment_intent": pi.id})
    assert exc.value.code == "charge_disputed"
    closed = sbx.control("POST", f"/_sandbox/disputes/{dispute['id']}/close", {"status": "won"}).json()
    assert closed["status"] == "won"
    assert _usd_available(client) == 4000
    types = [e.type for e in client.v1.events.list(params={"type": "charge.dispute.*"}).data]
    assert "charge.dispute.created" in types and "charge.dispute.closed" in types
    assert client.v1.disputes.retrieve(dispute["id"]).status == "won"


def test_list_payment_intents_pagination_and_created_filter(client: stripe.StripeClient) -> None:
    ids = [
        client.v1.payment_intents.create(params={"amount": 100 + i, "currency": "eur"}).id for i in range(5)
    ]
    page1 = client.v1.payment_intents.list(params={"limit": 2})
    assert [p.id for p in page1.data] == ids[::-1][:2] and page1.has_more is True
    page2 = client.v1.payment_intents.list(params={"limit": 2, "starting_after": page1.data[-1].id})
    assert [p.id for p in page2.data] == ids[::-1][2:4]
    back = client.v1.payment_intents.list(params={"limit": 2, "ending_before": page2.data[0].id})
    assert [p.id for p in back.data] == ids[::-1][:2]
    created = page1.data[0].created
    assert len(client.v1.payment_intents.list(params={"created": {"gte": created, "lte": created}}).data) >= 1
    assert client.v1.payment_intents.list(params={"created": {"gt": created}}).data == []
    assert [p.id for p in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()] == ids[
        ::-1
    ]
