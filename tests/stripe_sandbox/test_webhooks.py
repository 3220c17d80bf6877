"""Signed webhook delivery to a real HTTP receiver, with retries after failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from tests.support.sandbox import SandboxProcess, free_port

SECRET = "whsec_test_sandbox_secret"


@dataclass
class Delivery:
    body: str
    signature: str
    status: int


@dataclass
class Receiver:
    """Records every POST; answers 500 while ``fail_all`` is set."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    fail_all: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate: object, timeout: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                matched = [d for d in self.deliveries if predicate(d)]  # type: ignore[operator]
            if matched:
                return matched
            time.sleep(0.05)
        raise AssertionError("webhook not delivered in time")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            with rec.lock:
                status = 500 if rec.fail_all else 200
                rec.deliveries.append(Delivery(body, self.headers.get("Stripe-Signature", ""), status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{port}/webhooks/stripe"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def hooked(receiver: Receiver) -> Iterator[SandboxProcess]:
    proc = SandboxProcess("--webhook-url", receiver.url, "--webhook-secret", SECRET).start()
    try:
        yield proc
    finally:
        proc.stop()


def _event_type(d: Delivery) -> str:
    return str(stripe.Webhook.construct_event(d.body, d.signature, SECRET).type)


def test_events_are_delivered_with_valid_signature(hooked: SandboxProcess, receiver: Receiver) -> None:
    pi = hooked.client().v1.payment_intents.create(
        params={"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    [delivery] = receiver.wait_for(lambda d: '"payment_intent.succeeded"' in d.body and pi.id in d.body)
    event = stripe.Webhook.construct_event(delivery.body, delivery.signature, SECRET)
    assert event.type == "payment_intent.succeeded"
    assert event.data.object["id"] == pi.id and event.data.object["status"] == "succeeded"
    assert event.id.startswith("evt_")
    # The same event is retrievable from the API.
    assert hooked.client().v1.events.retrieve(event.id).type == "payment_intent.succeeded"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body, delivery.signature, "whsec_wrong")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body.replace("2000", "2001"), delivery.signature, SECRET)


def test_failed_delivery_is_retried(hooked: SandboxProcess, receiver: Receiver) -> None:
    client = hooked.client()
    acct = client.v1.accounts.create(params={"type": "express", "country": "US"})
    pi = client.v1.payment_intents.create(
        params={"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    with receiver.lock:
        receiver.fail_all = True
    tr = client.v1.transfers.create(params={"amount": 1000, "currency": "usd", "destination": acct.id})
    receiver.wait_for(lambda d: tr.id in d.body and d.status == 500)
    with receiver.lock:
        receiver.fail_all = False
    ok = receiver.wait_for(lambda d: tr.id in d.body and d.status == 200)
    attempts = [d for d in receiver.deliveries if tr.id in d.body]
    assert len(attempts) >= 2 and attempts[0].status == 500
    assert _event_type(ok[0]) == "transfer.created"
    # Every attempt carries a freshly computed, valid signature.
    assert all(_event_type(d) == "transfer.created" for d in attempts)
    assert pi.status == "succeeded"


def test_account_changes_are_delivered(hooked: SandboxProcess, receiver: Receiver) -> None:
    acct = hooked.client().v1.accounts.create(params={"type": "express", "country": "DE"})
    hooked.control("POST", f"/_sandbox/accounts/{acct.id}/restrict", {"disable": "charges"})
    [delivery] = receiver.wait_for(lambda d: acct.id in d.body and '"charges_enabled": false' in d.body)
    event = stripe.Webhook.construct_event(delivery.body, delivery.signature, SECRET)
    assert event.type == "account.updated" and event.data.object["id"] == acct.id
    assert event.data.object["requirements"]["disabled_reason"] == "requirements.past_due"
    assert event.data["previous_attributes"]["charges_enabled"] is True
