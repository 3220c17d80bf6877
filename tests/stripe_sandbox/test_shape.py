"""Returned objects have the shape of Stripe's own example objects (fixtures/stripe_fixtures.json)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.sandbox import API_KEY, SandboxProcess

# Fields Bazaar reads; each must exist with the fixture's value type wherever the fixture has it.
READ_FIELDS = (
    "id",
    "object",
    "amount",
    "currency",
    "status",
    "metadata",
    "created",
    "latest_charge",
    "transfer_group",
    "amount_received",
    "destination",
    "amount_reversed",
    "type",
    "net",
    "data.object",
    "available",
    "charge",
    "payment_intent",
    "balance_transaction",
    "reversed",
    "reversals",
    "has_more",
    "data",
    "url",
    "livemode",
    "details_submitted",
    "charges_enabled",
    "payouts_enabled",
    "requirements.currently_due",
    "requirements.past_due",
    "requirements.eventually_due",
    "requirements.disabled_reason",
    "expires_at",
)


def _get(obj: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = obj
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return type(value).__name__


@pytest.fixture(scope="module")
def objects(sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    """One live object of every type the sandbox returns."""
    sandbox.control("POST", "/_sandbox/reset")
    http = httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)

    def post(path: str, data: dict[str, str]) -> dict[str, Any]:
        resp = http.post(path, data=data)
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def get(path: str, **params: str) -> dict[str, Any]:
        resp = http.get(path, params=params)
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        return result

    pi = post(
        "/v1/payment_intents",
        {
            "amount": "5000",
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": "true",
            "metadata[order_id]": "o1",
            "transfer_group": "g1",
        },
    )
    refund = post("/v1/refunds", {"payment_intent": pi["id"], "amount": "500"})
    # Stripe's example account is one still onboarding: so is ours.
    sandbox.control("POST", "/_sandbox/settings", {"new_accounts": "pending"})
    account = post(
        "/v1/accounts",
        {
            "type": "express",
            "country": "US",
            "email": "a@example.com",
            "capabilities[transfers][requested]": "true",
        },
    )
    link = post(
        "/v1/account_links",
        {
            "account": account["id"],
            "type": "account_onboarding",
            "refresh_url": "https://example.com/reauth",
            "return_url": "https://example.com/return",
        },
    )
    transfer = post(
        "/v1/transfers",
        {"amount": "1000", "currency": "usd", "destination": account["id"], "transfer_group": "g1"},
    )
    reversal = post(f"/v1/transfers/{transfer['id']}/reversals", {"amount": "100"})
    dispute = sandbox.control(
        "POST", "/_sandbox/disputes", {"payment_intent": pi["id"], "amount": 1000}
    ).json()
    events = get("/v1/events", limit="1")
    try:
        return {
            "payment_intent": get(f"/v1/payment_intents/{pi['id']}"),
            "charge": get(f"/v1/charges/{pi['latest_charge']}"),
            "refund": refund,
            "account": account,
            "account_link": link,
            "transfer": get(f"/v1/transfers/{transfer['id']}"),
            "transfer_reversal": reversal,
            "balance": get("/v1/balance"),
            "balance_transaction": get(f"/v1/balance_transactions/{transfer['balance_transaction']}"),
            "event": events["data"][0],
            "dispute": dispute,
            "list": events,
        }
    finally:
        sandbox.control("POST", "/_sandbox/reset")
        http.close()


KINDS = (
    "payment_intent",
    "charge",
    "refund",
    "account",
    "account_link",
    "transfer",
    "transfer_reversal",
    "balance",
    "balance_transaction",
    "event",
    "dispute",
    "list",
)


@pytest.mark.parametrize("kind", KINDS)
def test_read_fields_match_fixture_types(
    kind: str, objects: dict[str, Any], stripe_fixtures: dict[str, Any]
) -> None:
    ours, theirs = objects[kind], stripe_fixtures[kind]
    checked = 0
    for dotted in READ_FIELDS:
        in_fixture, expected = _get(theirs, dotted)
        if not in_fixture:
            continue
        present, actual = _get(ours, dotted)
        assert present, f"{kind}.{dotted} missing"
        checked += 1
        if expected is None:
            # Nullable in the example: ours may be null or the documented scalar (ids, strings).
            assert actual is None or isinstance(actual, str), f"{kind}.{dotted}: {actual!r}"
        else:
            assert _type_name(actual) == _type_name(expected), f"{kind}.{dotted}: {actual!r} vs {expected!r}"
    assert checked >= 3
    if "object" in theirs:
        assert ours["object"] == theirs["object"]


@pytest.mark.parametrize("kind", KINDS)
def test_top_level_keys_follow_fixture(
    kind: str, objects: dict[str, Any], stripe_fixtures: dict[str, Any]
) -> None:
    ours, theirs = set(objects[kind]), set(stripe_fixtures[kind])
    assert ours - theirs == set(), f"{kind} has keys Stripe's example lacks"
    assert theirs - ours == set(), f"{kind} lacks keys Stripe's example has"


def test_list_and_nested_list_shape(objects: dict[str, Any]) -> None:
    assert objects["list"]["object"] == "list" and objects["list"]["url"] == "/v1/events"
    reversals = objects["transfer"]["reversals"]
    assert reversals["object"] == "list" and reversals["data"][0]["object"] == "transfer_reversal"
    assert objects["event"]["data"]["object"]["object"] == "dispute"


def test_requirements_follow_fixture(objects: dict[str, Any], stripe_fixtures: dict[str, Any]) -> None:
    """A pending account's requirements are Stripe's example account's, key for key and value for value."""
    ours, theirs = objects["account"], stripe_fixtures["account"]
    assert ours["requirements"] == theirs["requirements"]
    assert set(ours["future_requirements"]) == set(theirs["future_requirements"])
    flags = ("details_submitted", "charges_enabled", "payouts_enabled")
    assert [ours[f] for f in flags] == [theirs[f] for f in flags] == [False, False, False]
