"""Idempotency under concurrency, key expiry, and the embeddable app factory."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from starlette.testclient import TestClient

from stripe_sandbox.app import create_app
from stripe_sandbox.state import IDEMPOTENCY_TTL_SECONDS, Store
from tests.support.sandbox import API_KEY, SandboxProcess


def test_concurrent_requests_with_one_key_have_one_effect(sbx: SandboxProcess) -> None:
    def post(_: int) -> httpx.Response:
        return httpx.post(
            f"{sbx.url}/v1/payment_intents",
            data={"amount": "1000", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true"},
            headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "race-1"},
            timeout=5,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(post, range(8)))
    ok = [r for r in responses if r.status_code == 200]
    # Stripe answers a still-running duplicate with 409 idempotency_error; anything else must be a replay.
    assert all(
        r.status_code == 409 and r.json()["error"]["type"] == "idempotency_error"
        for r in responses
        if r.status_code != 200
    )
    assert ok and len({r.json()["id"] for r in ok}) == 1
    assert sbx.control("GET", "/_sandbox/requests").json()["total"] == 1


def test_idempotency_records_expire_after_24_hours(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s.json"))
    records = store.data["idempotency"]
    records["k\x00old"] = {"created": time.time() - IDEMPOTENCY_TTL_SECONDS - 1}
    records["k\x00new"] = {"created": time.time() - 60}
    store.prune_idempotency()
    assert list(records) == ["k\x00new"]


def test_create_app_is_embeddable(tmp_path: Path) -> None:
    state = tmp_path / "embedded.json"
    with TestClient(create_app(str(state), None, None)) as http:
        assert http.get("/_sandbox/health").json()["status"] == "ok"
        resp = http.post(
            "/v1/accounts",
            data={"type": "express", "metadata[k]": "v"},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        assert resp.status_code == 200 and resp.json()["metadata"] == {"k": "v"}
    assert resp.json()["id"] in state.read_text()
