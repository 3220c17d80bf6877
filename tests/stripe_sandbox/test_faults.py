"""Fault injection: server errors, hangs and lost responses, as the SDK experiences them."""

from __future__ import annotations

import time

import pytest
import stripe

from tests.support.sandbox import SandboxProcess, headers_of

PARAMS = {"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


def _performed(sbx: SandboxProcess) -> int:
    return int(sbx.control("GET", "/_sandbox/requests").json()["total"])


def test_error_fault_returns_500_and_does_nothing(sbx: SandboxProcess, client: stripe.StripeClient) -> None:
    resp = sbx.control(
        "POST",
        "/_sandbox/faults",
        {"mode": "error", "count": 1, "path_prefix": "/v1/payment_intents", "method": "POST"},
    )
    assert resp.status_code == 200
    client.v1.balance.retrieve()  # a GET does not match the POST-only fault
    with pytest.raises(stripe.APIError) as exc:
        client.v1.payment_intents.create(params=PARAMS, options={"idempotency_key": "err-1"})  # type: ignore[arg-type]
    assert exc.value.http_status == 500
    assert exc.value.error is not None and exc.value.error.type == "api_error"
    assert client.v1.payment_intents.list().data == []
    assert _performed(sbx) == 0
    # The fault was consumed and nothing was stored under the key: a retry performs the charge once.
    pi = client.v1.payment_intents.create(params=PARAMS, options={"idempotency_key": "err-1"})  # type: ignore[arg-type]
    assert pi.status == "succeeded" and _performed(sbx) == 1


def test_hang_fault_times_out_client_without_effect(sbx: SandboxProcess) -> None:
    sbx.control("POST", "/_sandbox/faults", {"mode": "hang", "count": 1})
    client = sbx.client(http_client=stripe.RequestsClient(timeout=0.5))
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.payment_intents.create(params=PARAMS)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    assert _performed(sbx) == 0
    assert client.v1.payment_intents.list().data == []


def test_drop_response_commits_then_replays(sbx: SandboxProcess, client: stripe.StripeClient) -> None:
    sbx.control(
        "POST", "/_sandbox/faults", {"mode": "drop_response", "count": 1, "path_prefix": "/v1/payment"}
    )
    with pytest.raises(stripe.APIConnectionError):
        client.v1.payment_intents.create(params=PARAMS, options={"idempotency_key": "drop-1"})  # type: ignore[arg-type]
    existing = client.v1.payment_intents.list().data
    assert len(existing) == 1 and existing[0].status == "succeeded"
    assert _performed(sbx) == 1

    retried = client.v1.payment_intents.create(params=PARAMS, options={"idempotency_key": "drop-1"})  # type: ignore[arg-type]
    assert retried.id == existing[0].id
    assert headers_of(retried).get("Idempotent-Replayed") == "true"
    assert _performed(sbx) == 1
    assert sum(b.amount for b in client.v1.balance.retrieve().available) == 1500


def test_fault_count_path_filter_and_clear(sbx: SandboxProcess, client: stripe.StripeClient) -> None:
    sbx.control("POST", "/_sandbox/faults", {"mode": "error", "count": 2, "path_prefix": "/v1/transfers"})
    client.v1.payment_intents.create(params={"amount": 600, "currency": "usd"})
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.transfers.list()
    client.v1.transfers.list()
    sbx.control("POST", "/_sandbox/faults", {"mode": "error", "count": 5})
    assert len(sbx.control("GET", "/_sandbox/faults").json()["faults"]) == 1
    assert sbx.control("DELETE", "/_sandbox/faults").status_code == 200
    client.v1.transfers.list()
    assert sbx.control("POST", "/_sandbox/faults", {"mode": "explode"}).status_code == 400
