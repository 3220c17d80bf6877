"""``--state-file``: state and idempotency records survive a restart."""

from __future__ import annotations

import json
from pathlib import Path

import stripe

from tests.support.sandbox import SandboxProcess, headers_of


def test_state_survives_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "stripe-state.json"
    params = {
        "amount": 4200,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
        "metadata": {"order_id": "persist"},
    }
    first = SandboxProcess("--state-file", str(state_file)).start()
    try:
        client = first.client()
        pi = client.v1.payment_intents.create(params=params, options={"idempotency_key": "persist-1"})  # type: ignore[arg-type]
        acct = client.v1.accounts.create(params={"type": "express", "country": "US"})
        tr = client.v1.transfers.create(params={"amount": 1200, "currency": "usd", "destination": acct.id})
    finally:
        first.stop()
    assert json.loads(state_file.read_text())["objects"]["payment_intent"][pi.id]["status"] == "succeeded"
    assert not [p for p in tmp_path.iterdir() if p.name != state_file.name]  # no temp files left behind

    second = SandboxProcess("--state-file", str(state_file)).start()
    try:
        client = second.client()
        again = client.v1.payment_intents.retrieve(pi.id)
        assert again.status == "succeeded" and again.metadata["order_id"] == "persist"
        assert client.v1.transfers.retrieve(tr.id).destination == acct.id
        assert sum(b.amount for b in client.v1.balance.retrieve().available) == 3000
        replay = client.v1.payment_intents.create(params=params, options={"idempotency_key": "persist-1"})  # type: ignore[arg-type]
        assert replay.id == pi.id and headers_of(replay).get("Idempotent-Replayed") == "true"
        assert second.control("GET", "/_sandbox/requests").json()["paths"]["/v1/payment_intents"] == 1
        assert isinstance(client.v1.events.list().data[0], stripe.Event)
    finally:
        second.stop()
