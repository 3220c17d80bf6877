"""Who may call what: 401 without a valid token and 403 for the wrong role or owner, on every endpoint."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest

from api.app import app
from tests.support.http import listing_body, published_listing, register, seller_with_payout

pytestmark = pytest.mark.integration

# Endpoints anyone may call, and why.
PUBLIC = {
    ("GET", "/healthz"),  # liveness probe
    ("GET", "/readyz"),  # readiness probe
    ("GET", "/metrics"),  # guarded by METRICS_TOKEN / loopback instead of a user token (test below)
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/refresh"),  # authenticated by the refresh token instead
    # Mailed links: authenticated by the single-use token in them (tests/api/test_accounts.py).
    ("GET", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/password-reset"),
    ("GET", "/v1/auth/password-reset/confirm"),
    ("POST", "/v1/auth/password-reset/confirm"),
    ("GET", "/v1/listings/{listing_id}"),  # active listings are public; others 404 (test_listings)
    ("GET", "/v1/categories"),  # the category taxonomy
    ("GET", "/v1/search/listings"),
    ("POST", "/v1/webhooks/stripe"),  # authenticated by the Stripe-Signature instead
    ("GET", "/v1/users/{user_id}/profile"),  # display name and reputation, like a shop front
    ("GET", "/v1/users/{user_id}/reviews"),  # revealed, visible reviews only
    # One-click unsubscribe from a mail client: authenticated by the signed token in the link.
    ("GET", "/v1/notifications/unsubscribe"),
    ("POST", "/v1/notifications/unsubscribe"),
}
SELLER_ONLY = {
    ("POST", "/v1/listings"),
    ("PATCH", "/v1/listings/{listing_id}"),
    ("POST", "/v1/listings/{listing_id}/publish"),
    ("POST", "/v1/listings/{listing_id}/archive"),
    ("DELETE", "/v1/listings/{listing_id}"),
    ("GET", "/v1/me/listings"),
    ("POST", "/v1/payout-account"),
    ("GET", "/v1/payout-account"),
    ("GET", "/v1/payout-account/balance"),
}
SUPPORT_ONLY = {
    ("POST", "/v1/orders/{order_id}/resolve"),
    ("POST", "/v1/orders/{order_id}/dispute/info-requests"),
    ("POST", "/v1/support/reviews/{review_id}/hide"),
    ("GET", "/v1/support/trust-flags"),
    ("GET", "/v1/support/disputes"),
    ("GET", "/v1/support/dead-letters"),
    ("POST", "/v1/support/dead-letters/{dead_letter_id}/replay"),
    ("GET", "/v1/support/reconciliation"),
    ("POST", "/v1/support/reconciliation/{item_id}"),
}
BUYER_ONLY = {("POST", "/v1/orders")}


def all_endpoints() -> list[tuple[str, str]]:
    """Every operation the API serves, from its OpenAPI document (which lists every route)."""
    return sorted(
        (method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations
    )


def concrete(path: str) -> str:
    for name in ("listing_id", "order_id", "user_id", "review_id"):
        path = path.replace(f"{{{name}}}", str(uuid.uuid4()))
    return path.replace("{dead_letter_id}", "1").replace("{notification_id}", "1").replace("{item_id}", "1")


def test_every_endpoint_is_classified() -> None:
    """A new endpoint must be added here, so nobody ships one without deciding who may call it."""
    protected = [e for e in all_endpoints() if e not in PUBLIC]
    assert protected, "expected protected endpoints"
    assert set(all_endpoints()) >= PUBLIC | SELLER_ONLY | BUYER_ONLY | SUPPORT_ONLY


def test_the_document_states_who_may_call_each_operation() -> None:
    """A generated client reads `security` to decide what to send: a public operation states none (`[]`) or an
    optional one (`{}` first: anonymous callers allowed), every other one requires a scheme."""
    wrong = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security")
            if (method.upper(), path) in PUBLIC:
                if security is None or (security and security[0] != {}):
                    wrong.append((method, path, security))
            elif not security or {} in security:
                wrong.append((method, path, security))
    assert not wrong, wrong


@pytest.mark.parametrize(("method", "path"), [e for e in all_endpoints() if e not in PUBLIC])
def test_401_without_or_with_a_bad_token(http: httpx.Client, stack: Any, method: str, path: str) -> None:
    expired = jwt.encode(
        {"sub": str(uuid.uuid4()), "roles": ["buyer", "seller", "admin"], "exp": int(time.time()) - 10},
        stack.jwt_secret,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": str(uuid.uuid4()), "roles": ["admin"], "exp": int(time.time()) + 600},
        "not-the-secret",
        algorithm="HS256",
    )
    for headers in (
        {},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": "Bearer garbage"},
    ):
        response = http.request(method, concrete(path), headers=headers, json={})
        assert response.status_code == 401, (method, path, headers, response.text)
        assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(("method", "path"), sorted(SELLER_ONLY | SUPPORT_ONLY))
def test_403_for_a_buyer_on_seller_and_support_endpoints(http: httpx.Client, method: str, path: str) -> None:
    buyer = register(http, ["buyer"], "Buyer")
    response = http.request(method, concrete(path), headers=buyer.headers, json=listing_body())
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden"


def test_403_for_a_seller_only_account_placing_an_order(http: httpx.Client) -> None:
    seller = register(http, ["seller"], "Seller")
    response = http.post(
        "/v1/orders",
        json={"listing_id": str(uuid.uuid4()), "payment_method": "pm_card_visa"},
        headers={**seller.headers, "Idempotency-Key": "k1"},
    )
    assert response.status_code == 403


def test_403_for_another_seller_changing_my_listing(http: httpx.Client) -> None:
    owner = seller_with_payout(http)
    listing = published_listing(http, owner)
    intruder = register(http, ["seller"], "Intruder")
    for method, path in (("PATCH", "/v1/listings/{id}"), ("POST", "/v1/listings/{id}/archive")):
        response = http.request(
            method,
            path.format(id=listing["id"]),
            headers={**intruder.headers, "If-Match": "*"},
            json={"title": "hijacked"},
        )
        # The listing is active, so its existence is public: the refusal is 403 (drafts answer 404).
        assert response.status_code == 403, response.text
    assert http.get(f"/v1/listings/{listing['id']}").json()["title"] == listing["title"]


def test_webhook_without_valid_signature_is_refused(http: httpx.Client) -> None:
    response = http.post(
        "/v1/webhooks/stripe", content=b'{"id": "evt_1"}', headers={"Stripe-Signature": "t=1,v1=deadbeef"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"


def test_token_endpoint_refuses_wrong_password(http: httpx.Client) -> None:
    user = register(http, ["buyer"], "Someone")
    response = http.post("/v1/auth/token", data={"username": user.email, "password": "wrong-password!"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    unknown = http.post(
        "/v1/auth/token", data={"username": "nobody@example.com", "password": "whatever-pass"}
    )
    assert unknown.status_code == 401


def test_register_validation_and_duplicates(http: httpx.Client) -> None:
    bad = http.post(
        "/v1/auth/register", json={"email": "not-an-email", "password": "short", "roles": ["admin"]}
    )
    assert bad.status_code == 422
    fields = {
        e["loc"][-1] if e["loc"][-1] != 0 else e["loc"][-2] for e in bad.json()["error"]["details"]["errors"]
    }
    assert {"email", "password", "display_name", "roles"} <= fields
    user = register(http, ["buyer"], "Dup")
    again = http.post(
        "/v1/auth/register", json={"email": user.email, "password": "another-password", "display_name": "Dup"}
    )
    # The same answer as for a new address (202, same body): registration reveals no account. The owner is told
    # by mail instead (tests/api/test_accounts.py).
    fresh = http.post(
        "/v1/auth/register",
        json={
            "email": f"new-{uuid.uuid4().hex[:10]}@example.com",
            "password": "another-password",
            "display_name": "Dup",
        },
    )
    assert again.status_code == fresh.status_code == 202, (again.text, fresh.text)
    assert again.json() == fresh.json()
