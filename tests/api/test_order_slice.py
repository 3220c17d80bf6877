"""The vertical slice over HTTP against the real stack: listing -> search -> order -> paid (or declined)."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import httpx
import pytest

from tests.support.binaries import venv_binary
from tests.support.http import Actor, published_listing, register, seller_with_payout, wait_until

pytestmark = pytest.mark.integration


def order(
    http: httpx.Client, buyer: Actor, listing_id: str, key: str, pm: str = "pm_card_visa", quantity: int = 1
) -> httpx.Response:
    return http.post(
        "/v1/orders",
        json={"listing_id": listing_id, "payment_method": pm, "quantity": quantity},
        headers={**buyer.headers, "Idempotency-Key": key},
    )


def payment_intents_for(stack: Any, order_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{stack.stripe_api_base}/v1/payment_intents",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {stack.stripe_secret_key}"},
    )
    response.raise_for_status()
    return [pi for pi in response.json()["data"] if pi["metadata"].get("order_id") == order_id]


def temporal_list(stack: Any, query: str) -> list[dict[str, Any]]:
    temporal = venv_binary("temporal")
    out = subprocess.run(
        [temporal, "workflow", "list", "--address", stack.temporal_address, "--query", query, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    parsed = json.loads(out.stdout) if out.stdout.strip() else []
    return parsed if isinstance(parsed, list) else [parsed]


def test_seller_lists_buyer_finds_and_pays(http: httpx.Client, stack: Any) -> None:
    seller = seller_with_payout(http)
    title_word = f"zebrawood{uuid.uuid4().hex[:6]}"
    listing = published_listing(http, seller, title=f"{title_word} chess set", category="games")

    # Found through Meilisearch within a couple of seconds.
    hits = wait_until(
        lambda: http.get("/v1/search/listings", params={"q": title_word}).json()["hits"], timeout=5
    )
    assert hits[0]["id"] == listing["id"]
    assert "<em>" in hits[0]["highlight"]["title"]

    buyer = register(http, ["buyer"], "Buyer")
    placed = order(http, buyer, listing["id"], key=str(uuid.uuid4()))
    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert body["status"] == "paid"
    assert body["total"] == {"amount": 45_000, "currency": "EUR"}
    assert body["workflow_id"] == f"order-{body['id']}"

    # Both sides see it; an outsider does not.
    for actor in (buyer, seller):
        seen = http.get(f"/v1/orders/{body['id']}", headers=actor.headers)
        assert seen.status_code == 200
        assert seen.json()["status"] == "paid"
        assert [e["action"] for e in seen.json()["timeline"]][-1] == "order.paid"
    assert (
        http.get("/v1/orders", params={"role": "seller"}, headers=seller.headers).json()["items"][0]["id"]
        == body["id"]
    )
    outsider = register(http, ["buyer"], "Outsider")
    assert http.get(f"/v1/orders/{body['id']}", headers=outsider.headers).status_code == 403

    # The charge went through the provider with the order's idempotency key, and the outcome is stored.
    intents = payment_intents_for(stack, body["id"])
    assert len(intents) == 1
    assert intents[0]["status"] == "succeeded"
    assert intents[0]["transfer_group"] == f"order-{body['id']}"

    # Operators find it by search attribute.
    found = wait_until(lambda: temporal_list(stack, f'OrderStatus="paid" AND BuyerId="{buyer.user_id}"'))
    assert found[0]["execution"]["workflowId"] == f"order-{body['id']}"

    # Sold out now (quantity 1): the listing left the index and a second buyer gets a clear 409.
    other = register(http, ["buyer"], "Late Buyer")
    late = order(http, other, listing["id"], key=str(uuid.uuid4()))
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "sold_out"
    wait_until(
        lambda: not http.get("/v1/search/listings", params={"q": title_word}).json()["hits"], timeout=5
    )


def test_declined_card_cancels_and_returns_stock(http: httpx.Client, stack: Any) -> None:
    seller = seller_with_payout(http)
    listing = published_listing(http, seller, quantity=2)
    buyer = register(http, ["buyer"], "Buyer")
    placed = order(http, buyer, listing["id"], key=str(uuid.uuid4()), pm="pm_card_chargeDeclined", quantity=2)
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "cancelled"
    assert placed.json()["status_reason"] == "payment_failed"
    after = http.get(f"/v1/listings/{listing['id']}").json()
    assert after["quantity"] == 2
    assert after["status"] == "active"
    # A second attempt with a good card succeeds: the stock really came back.
    retry = order(http, buyer, listing["id"], key=str(uuid.uuid4()), quantity=2)
    assert retry.json()["status"] == "paid"


def test_same_idempotency_key_gives_one_order_and_one_charge(http: httpx.Client, stack: Any) -> None:
    seller = seller_with_payout(http)
    listing = published_listing(http, seller, quantity=5)
    buyer = register(http, ["buyer"], "Buyer")
    key = str(uuid.uuid4())
    first = order(http, buyer, listing["id"], key=key)
    second = order(http, buyer, listing["id"], key=key)
    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert len(payment_intents_for(stack, first.json()["id"])) == 1
    assert http.get(f"/v1/listings/{listing['id']}").json()["quantity"] == 4
    mine = http.get("/v1/orders", headers=buyer.headers).json()["items"]
    assert [o["id"] for o in mine] == [first.json()["id"]]
    # The same key for a different request is refused, not silently answered with the first order.
    reused = order(http, buyer, listing["id"], key=key, quantity=2)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_order_refusals_are_clear(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    listing = published_listing(http, seller)
    buyer = register(http, ["buyer", "seller"], "Buyer")
    missing_key = http.post(
        "/v1/orders",
        json={"listing_id": listing["id"], "payment_method": "pm_card_visa"},
        headers=buyer.headers,
    )
    assert missing_key.status_code == 400
    assert missing_key.json()["error"]["code"] == "idempotency_key_required"
    seller_only = order(http, seller, listing["id"], str(uuid.uuid4()))
    assert seller_only.status_code == 403  # an account without the buyer role may not buy
    assert http.post("/v1/payout-account", json={"country": "DE"}, headers=buyer.headers).status_code == 201
    own_listing = published_listing(http, buyer)
    own = order(http, buyer, own_listing["id"], str(uuid.uuid4()))
    assert own.status_code == 422
    assert own.json()["error"]["code"] == "own_listing"
    assert own.json()["error"]["details"] == {"listing_id": own_listing["id"]}
    bad = http.post(
        "/v1/orders",
        json={"listing_id": "not-a-uuid", "payment_method": "visa"},
        headers={**buyer.headers, "Idempotency-Key": "k"},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_error"
    assert {tuple(e["loc"]) for e in bad.json()["error"]["details"]["errors"]} == {
        ("body", "listing_id"),
        ("body", "payment_method"),
    }
    unknown = order(http, buyer, str(uuid.uuid4()), str(uuid.uuid4()))
    assert unknown.status_code == 409
    assert unknown.json()["error"]["code"] == "listing_not_available"
