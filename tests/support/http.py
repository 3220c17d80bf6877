"""Test helpers for talking to the real API over HTTP as real users."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

PASSWORD = "correct-horse-battery"
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Actor:
    user_id: str
    email: str
    headers: dict[str, str]


def register(http: httpx.Client, roles: list[str], name: str = "Test User") -> Actor:
    """A new account, logged in. Registration answers 202 without the account (it reveals no account), so
    the id comes from GET /v1/users/me."""
    email = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:10]}@example.com"
    created = http.post(
        "/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name, "roles": roles}
    )
    assert created.status_code == 202, created.text
    token = http.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    me = http.get("/v1/users/me", headers=headers)
    assert me.status_code == 200, me.text
    return Actor(me.json()["id"], email, headers)


def listing_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": f"Brompton folding bike {uuid.uuid4().hex[:6]}",
        "description": "Six gears, serviced last month.",
        "price": {"amount": 45_000, "currency": "EUR"},
        "category": "bikes",
        "condition": "good",
        "quantity": 1,
        "location": {"lat": 52.52, "lng": 13.405, "city": "Berlin", "country": "DE"},
    }
    body.update(overrides)
    return body


def seller_with_payout(http: httpx.Client) -> Actor:
    seller = register(http, ["seller"], "Seller")
    payout = http.post(
        "/v1/payout-account", json={"country": "DE", "default_currency": "EUR"}, headers=seller.headers
    )
    assert payout.status_code == 201, payout.text
    assert payout.json()["provider_account_id"].startswith("acct_")
    return seller


def published_listing(http: httpx.Client, seller: Actor, **overrides: Any) -> dict[str, Any]:
    created = http.post("/v1/listings", json=listing_body(**overrides), headers=seller.headers)
    assert created.status_code == 201, created.text
    published = http.post(f"/v1/listings/{created.json()['id']}/publish", headers=seller.headers)
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "active"
    return dict(published.json())


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll until predicate() is truthy; return its value, or fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    assert value, f"condition not met within {timeout}s"
    return value


def run_cli(
    stack: Any, *args: str, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`python -m cli <args>` on the test stack, as operators run it; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        check=check,
        env=stack.child_env(),
        cwd=Path(__file__).resolve().parent.parent.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def support_user(http: httpx.Client, stack: Any) -> Actor:
    """A support account the way operators make one: the CLI grants the role, then a fresh token."""
    staff = register(http, ["buyer"], "Support")
    run_cli(stack, "grant-role", staff.email, "support")
    token = http.post("/v1/auth/token", data={"username": staff.email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return Actor(staff.user_id, staff.email, {"Authorization": f"Bearer {token.json()['access_token']}"})


def at_once(http: httpx.Client, send: Callable[[httpx.Client, T], R], each: Sequence[T]) -> list[R]:
    """`send(client, x)` for every x of `each` at the same time, each on a connection of its own (a race)."""

    def one(x: T) -> R:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as own:
            return send(own, x)

    with ThreadPoolExecutor(max_workers=len(each)) as pool:
        return list(pool.map(one, each))


def assert_422(response: httpx.Response, loc: list[Any], words: str = "") -> dict[str, Any]:
    """A 422 validation_error whose errors include `loc`, and whose message names the field."""
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "validation_error", error
    assert loc in [e["loc"] for e in error["details"]["errors"]], error
    assert str(loc[-1] if loc[-1] != "[key]" else loc[-2]) in error["message"] or len(loc) == 1, error
    assert words in error["message"] or any(words in e["msg"] for e in error["details"]["errors"]), error
    return error
