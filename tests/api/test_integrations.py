"""Integrations on the test stack: API keys, webhook endpoints and their deliveries, the events feed.

A webhook receiver in this process (tests/bazaar/integrations/receiver.py) verifies every delivery with the
Standard Webhooks reference verifier. For this module the stack's sender process is replaced by one whose retry
schedule is seconds (`WEBHOOK_RETRY_SCHEDULE`), so retries and the end of the schedule happen within a test; the
stack's own sender is back afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from bazaar.integrations.endpoints import MAX_ENDPOINTS
from bazaar.pg_listen import libpq_url
from devstack import services
from tests.bazaar.integrations.receiver import Receiver, receiving
from tests.support.http import (
    Actor,
    listing_body,
    published_listing,
    register,
    seller_with_payout,
    support_user,
)
from tests.support.money import act, act_then_paid_out, place

pytestmark = pytest.mark.integration

SCHEDULE = "0.5,0.5,1"  # three retries: the first attempt and three more within a few seconds


@pytest.fixture(scope="module", autouse=True)
def fast_sender(stack: Any) -> Iterator[None]:
    """The stack's sender, with a retry schedule of seconds, for this module."""
    sup = stack.supervisor
    [usual] = [app for app in stack.apps if app.name == "sender"]
    sup.stop([usual.proc])
    stack.apps.remove(usual)
    fast = services.start_sender(sup, {**stack.process_env("sender"), "WEBHOOK_RETRY_SCHEDULE": SCHEDULE})
    stack.apps.append(fast)
    try:
        yield
    finally:
        sup.stop([fast.proc])
        stack.apps.remove(fast)
        stack.apps.append(services.start_sender(sup, stack.process_env("sender")))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found


def api_key(http: httpx.Client, owner: Actor, **body: Any) -> dict[str, str]:
    created = http.post("/v1/api-keys", json={"name": "test app", **body}, headers=owner.headers)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def endpoint(http: httpx.Client, auth: dict[str, str], url: str, types: list[str]) -> dict[str, Any]:
    created = http.post("/v1/webhook-endpoints", json={"url": url, "event_types": types}, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["secret"].startswith("whsec_")
    return dict(created.json())


def deliveries(http: httpx.Client, auth: dict[str, str], endpoint_id: str) -> list[dict[str, Any]]:
    listed = http.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=auth)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


def feed(http: httpx.Client, auth: dict[str, str], after: int | None, limit: int = 100) -> dict[str, Any]:
    params = {"limit": limit} | ({"after": after} if after is not None else {})
    page = http.get("/v1/events", params=params, headers=auth)
    assert page.status_code == 200, page.text
    return dict(page.json())


def read_feed(
    http: httpx.Client, auth: dict[str, str], after: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Every event from `after` on, page by page; and the cursor to go on from."""
    seen: list[dict[str, Any]] = []
    while True:
        page = feed(http, auth, after, limit)
        seen += page["items"]
        after = page["next_cursor"]
        if not page["has_more"]:
            return seen, after


def read_at_least(
    http: httpx.Client, auth: dict[str, str], after: int | None, limit: int, count: int
) -> tuple[list[dict[str, Any]], int | None]:
    """`read_feed` from `after` on, again from where it stopped, until `count` events came (within 10 s): an event
    shows once every transaction that began before it has ended (the feed never skips one that commits late), so
    on a busy database the newest can take a moment (a full-suite run read one of three at once)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(seen) < count and time.monotonic() < deadline:
        more, after = read_feed(http, auth, after, limit)
        seen += more
        if len(seen) < count:
            time.sleep(0.1)
    return seen, after


# ------------------------------------------------------------------------------------------------ API keys


def test_an_api_key_is_shown_once_stored_hashed_good_for_integrations_only_and_revocable(
    http: httpx.Client, stack: Any
) -> None:
    seller = register(http, ["seller"], "Keys")
    created = http.post("/v1/api-keys", json={"name": "ERP"}, headers=seller.headers)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("bzk_") and len(key) > 40
    assert created.headers["Location"] == f"/v1/api-keys/{created.json()['id']}"
    assert created.json()["scope"] == "seller" and key.startswith(created.json()["prefix"])
    listed = http.get("/v1/api-keys", headers=seller.headers).json()
    assert [k["id"] for k in listed] == [created.json()["id"]] and "key" not in listed[0]
    with psycopg.connect(libpq_url(stack.database_url)) as conn:
        stored = conn.execute(
            "SELECT key_hash FROM api_keys WHERE id = %s", (created.json()["id"],)
        ).fetchone()
    assert stored is not None and key not in stored[0] and len(stored[0]) == 64

    auth = {"Authorization": f"Bearer {key}"}
    assert http.get("/v1/events", headers=auth).status_code == 200
    assert http.get("/v1/webhook-endpoints", headers=auth).status_code == 200
    for method, path in (("GET", "/v1/orders"), ("GET", "/v1/users/me"), ("GET", "/v1/api-keys")):
        refused = http.request(method, path, headers=auth)
        assert refused.status_code == 401, (path, refused.text)  # a key is no access token
    assert http.post("/v1/api-keys", json={"name": "x"}, headers=auth).status_code == 401

    revoked = http.delete(f"/v1/api-keys/{created.json()['id']}", headers=seller.headers)
    assert revoked.status_code == 204
    # Gone, as a deleted webhook endpoint or listing is (found from outside: a second revoke answered 204).
    assert http.delete(f"/v1/api-keys/{created.json()['id']}", headers=seller.headers).status_code == 404
    after = http.get("/v1/events", headers=auth)
    assert after.status_code == 401 and after.json()["error"]["code"] == "not_authenticated"
    # Deleted for its owner: not found, not listed (its row stays for the audit trail).
    assert http.get(f"/v1/api-keys/{created.json()['id']}", headers=seller.headers).status_code == 404
    assert created.json()["id"] not in [
        k["id"] for k in http.get("/v1/api-keys", headers=seller.headers).json()
    ]


def test_who_may_hold_keys_of_which_scope(http: httpx.Client, stack: Any) -> None:
    buyer = register(http, ["buyer"], "NoKeys")
    refused = http.post("/v1/api-keys", json={"name": "x"}, headers=buyer.headers)
    assert refused.status_code == 403
    # Found from outside: a buyer was told of a platform scope they never asked for.
    assert refused.json()["error"]["message"] == (
        "integrations are for sellers (their own events) and support staff (the platform's)"
    )
    assert http.get("/v1/events", headers=buyer.headers).status_code == 403
    seller = register(http, ["seller"], "SellerOnly")
    platform = http.post("/v1/api-keys", json={"name": "x", "scope": "platform"}, headers=seller.headers)
    assert platform.status_code == 403
    staff = support_user(http, stack)
    made = http.post("/v1/api-keys", json={"name": "BI"}, headers=staff.headers)
    assert made.status_code == 201 and made.json()["scope"] == "platform"
    # Another scope's key is not found.
    assert http.get(f"/v1/api-keys/{made.json()['id']}", headers=seller.headers).status_code == 404
    assert http.delete(f"/v1/api-keys/{made.json()['id']}", headers=seller.headers).status_code == 404


# ------------------------------------------------------------------------------------------------ webhooks


def test_a_sellers_endpoint_cannot_ask_for_the_platforms_checkout_events(
    http: httpx.Client, stack: Any
) -> None:
    seller = register(http, ["seller"], "Hooks")
    for types in (["checkout.paid"], ["checkout.*"], ["order.*", "checkout.payment_failed"]):
        refused = http.post(
            "/v1/webhook-endpoints",
            json={"url": "https://hooks.example.com/in", "event_types": types},
            headers=seller.headers,
        )
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "validation_error"), (
            refused.text
        )
        # Said as it is: the platform's events, not unknown ones.
        assert "platform's events" in refused.json()["error"]["message"], refused.text
    made = endpoint(http, seller.headers, "https://hooks.example.com/in", ["order.*"])
    changed = http.patch(
        f"/v1/webhook-endpoints/{made['id']}", json={"event_types": ["checkout.*"]}, headers=seller.headers
    )
    assert changed.status_code == 422, changed.text
    staff = support_user(http, stack)
    assert endpoint(http, staff.headers, "https://hooks.example.com/in", ["checkout.*"])["event_types"]


def test_an_orders_events_arrive_signed_at_the_sellers_endpoint(
    http: httpx.Client, receiver: Receiver
) -> None:
    seller = seller_with_payout(http)
    auth = api_key(http, seller)
    hook = endpoint(http, auth, receiver.url("/orders"), ["order.*", "payout.*"])
    other = seller_with_payout(http)
    item, elsewhere = published_listing(http, seller), published_listing(http, other)
    buyer = register(http, ["buyer"], "Buyer")
    placed = place(http, buyer, item["id"])
    assert placed.status_code == 201 and placed.json()["status"] == "paid", placed.text
    assert place(http, buyer, elsewhere["id"]).status_code == 201  # another seller's: never delivered here
    order = placed.json()["id"]
    act(http, order, "accept", seller)
    act(http, order, "fulfil", seller, {"carrier": "DHL", "tracking_number": "JD014600003SE"})
    act_then_paid_out(http, order, "confirm-receipt", buyer)

    wanted = {"order.paid", "order.confirmed", "order.fulfilled", "order.completed", "payout.sent"}
    got = receiver.wait(
        lambda: wanted <= {r.event["type"] for r in receiver.at("/orders")} and receiver.at("/orders")
    )
    assert all(r.verifies(hook["secret"]) for r in got)
    assert {r.event["data"].get("id") or r.event["data"]["order_id"] for r in got} == {order}
    completed = next(r.event for r in got if r.event["type"] == "order.completed")
    assert completed["data"]["status"] == "completed" and completed["data"]["previous_status"] == "fulfilled"
    assert completed["data"]["amount"] == 45_000 and completed["data"]["seller_id"] == seller.user_id
    payout = next(r.event for r in got if r.event["type"] == "payout.sent")
    assert payout["data"]["amount"] == 45_000 - 4_530 and payout["data"]["status"] == "sent"
    # The feed has the same events, in order.
    events, _ = read_feed(http, auth, None, 3)
    order_events = [e for e in events if e["type"] in wanted]
    assert [e["type"] for e in order_events] == [
        "order.paid",
        "order.confirmed",
        "order.fulfilled",
        "order.completed",
        "payout.sent",
    ]
    assert {e["id"] for e in order_events} == {r.event["id"] for r in got}


def test_retried_after_two_failures_with_every_attempt_logged(http: httpx.Client, receiver: Receiver) -> None:
    seller = register(http, ["seller"], "Flaky")
    auth = api_key(http, seller)
    hook = endpoint(http, auth, receiver.url("/flaky"), ["listing.created"])
    receiver.answer("/flaky", 500, 500)
    created = http.post("/v1/listings", json=listing_body(), headers=seller.headers)
    assert created.status_code == 201, created.text
    got = receiver.wait(lambda: len(receiver.at("/flaky")) >= 3 and receiver.at("/flaky"))
    assert len({r.headers["webhook-id"] for r in got}) == 1 and all(r.verifies(hook["secret"]) for r in got)
    assert got[0].event["data"]["id"] == created.json()["id"]
    [logged] = receiver.wait(
        lambda: [d for d in deliveries(http, auth, hook["id"]) if d["status"] == "delivered"]
    )
    assert logged["event_type"] == "listing.created" and logged["event_id"] == got[0].event["id"]
    assert [a["status_code"] for a in logged["attempts"]] == [500, 500, 200]
    assert logged["attempts"][0]["error"] == "HTTP 500"
    assert logged["attempts"][0]["response_body"] == "receiver says no"


def test_a_rotated_secret_and_the_previous_one_both_verify_during_the_overlap(
    http: httpx.Client, receiver: Receiver
) -> None:
    seller = register(http, ["seller"], "Rotates")
    hook = endpoint(http, seller.headers, receiver.url("/rotated"), ["listing.*"])  # a session works too
    rotated = http.post(f"/v1/webhook-endpoints/{hook['id']}/rotate-secret", headers=seller.headers)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != hook["secret"]
    assert (
        http.get(f"/v1/webhook-endpoints/{hook['id']}", headers=seller.headers).json()[
            "previous_secret_expires_at"
        ]
        == rotated.json()["previous_secret_expires_at"]
    )
    assert http.post("/v1/listings", json=listing_body(), headers=seller.headers).status_code == 201
    [got] = receiver.wait(lambda: receiver.at("/rotated"))
    assert got.verifies(new) and got.verifies(hook["secret"])
    assert not got.verifies("whsec_" + "QUJD" * 11)
    # Rotating again within the overlap (as after a leak) ends the oldest at once; two secrets sign at most.
    again = http.post(f"/v1/webhook-endpoints/{hook['id']}/rotate-secret", headers=seller.headers)
    assert again.status_code == 200, again.text
    assert http.post("/v1/listings", json=listing_body(), headers=seller.headers).status_code == 201
    [_, last] = receiver.wait(lambda: len(receiver.at("/rotated")) >= 2 and receiver.at("/rotated"))
    assert last.verifies(again.json()["secret"]) and last.verifies(new)
    assert not last.verifies(hook["secret"])


def test_a_delivery_is_replayed_with_the_same_message_id(http: httpx.Client, receiver: Receiver) -> None:
    seller = register(http, ["seller"], "Replays")
    auth = api_key(http, seller)
    hook = endpoint(http, auth, receiver.url("/replayed"), ["listing.created"])
    assert http.post("/v1/listings", json=listing_body(), headers=seller.headers).status_code == 201
    [delivered] = receiver.wait(
        lambda: [d for d in deliveries(http, auth, hook["id"]) if d["status"] == "delivered"]
    )
    replay = http.post(
        f"/v1/webhook-endpoints/{hook['id']}/deliveries/{delivered['id']}/replay", headers=auth
    )
    assert replay.status_code == 202, replay.text
    assert replay.json()["status"] in ("pending", "delivered") and replay.json()["id"] == delivered["id"]
    # The endpoint has one delivery: a page of one is the last page (no cursor to an empty one).
    last = http.get(f"/v1/webhook-endpoints/{hook['id']}/deliveries", params={"limit": 1}, headers=auth)
    assert last.json()["next_cursor"] is None and len(last.json()["items"]) == 1, last.text
    first, again = receiver.wait(lambda: len(receiver.at("/replayed")) >= 2 and receiver.at("/replayed"))
    assert first.headers["webhook-id"] == again.headers["webhook-id"] and first.body == again.body
    assert again.verifies(hook["secret"])
    missing = http.post(f"/v1/webhook-endpoints/{hook['id']}/deliveries/{2**62}/replay", headers=auth)
    assert missing.status_code == 404


def test_an_endpoint_failing_past_the_schedule_is_disabled_and_its_owner_told(
    http: httpx.Client, receiver: Receiver
) -> None:
    seller = register(http, ["seller"], "Down")
    auth = api_key(http, seller)
    hook = endpoint(http, auth, receiver.url("/down"), ["listing.*"])
    receiver.answer("/down", *[500] * 20)
    assert http.post("/v1/listings", json=listing_body(), headers=seller.headers).status_code == 201
    receiver.wait(lambda: len(receiver.at("/down")) >= 4, timeout=60)
    disabled = receiver.wait(
        lambda: (
            (e := http.get(f"/v1/webhook-endpoints/{hook['id']}", headers=auth).json())["enabled"] is False
            and e
        )
    )
    assert "HTTP 500" in disabled["disabled_reason"]
    [failed] = [d for d in deliveries(http, auth, hook["id"]) if d["status"] == "failed"]
    assert len(failed["attempts"]) == 4 and failed["next_attempt_at"] is None
    inbox = receiver.wait(
        lambda: [
            n
            for n in http.get("/v1/notifications", headers=seller.headers).json()["items"]
            if n["event_type"] == "webhook_endpoint_disabled"
        ]
    )
    assert hook["id"] in inbox[0]["body"] and receiver.url("/down") in inbox[0]["body"]
    # Enabled again (the receiver is fixed), a replay of the failed delivery goes through.
    # Null is no way to keep a field, as on every PATCH (found from outside: silently ignored here, a 422 on
    # listings): a 422 naming it, nothing changed.
    for field in ("url", "enabled", "description", "event_types"):
        null = http.patch(f"/v1/webhook-endpoints/{hook['id']}", json={field: None}, headers=auth)
        assert null.status_code == 422, null.text
        assert [e["loc"] for e in null.json()["error"]["details"]["errors"]] == [["body", field]]
    enabled = http.patch(f"/v1/webhook-endpoints/{hook['id']}", json={"enabled": True}, headers=auth)
    assert enabled.status_code == 200 and enabled.json()["disabled_reason"] is None
    receiver.recover("/down")
    replay = http.post(f"/v1/webhook-endpoints/{hook['id']}/deliveries/{failed['id']}/replay", headers=auth)
    assert replay.status_code == 202
    receiver.wait(lambda: [d for d in deliveries(http, auth, hook["id"]) if d["status"] == "delivered"])


def test_endpoints_are_validated_and_scoped(http: httpx.Client, receiver: Receiver) -> None:
    seller, other = register(http, ["seller"], "Scoped"), register(http, ["seller"], "Other")
    auth = api_key(http, seller)
    for body in (
        {"url": "ftp://example.com/x", "event_types": ["order.*"]},
        {"url": receiver.url("/x"), "event_types": ["order.nope"]},
        {"url": receiver.url("/x"), "event_types": []},
        {"url": receiver.url("/x"), "event_types": ["order.*"], "secret": "mine"},
    ):
        refused = http.post("/v1/webhook-endpoints", json=body, headers=auth)
        assert refused.status_code == 422, (body, refused.text)
    hook = endpoint(http, auth, receiver.url("/scoped"), ["order.*", "order.paid", "order.*"])
    assert hook["event_types"] == ["order.*", "order.paid"] and hook["scope"] == "seller"
    assert http.get(f"/v1/webhook-endpoints/{hook['id']}", headers=other.headers).status_code == 404
    assert http.delete(f"/v1/webhook-endpoints/{hook['id']}", headers=other.headers).status_code == 404
    assert [e["id"] for e in http.get("/v1/webhook-endpoints", headers=auth).json()] == [hook["id"]]
    assert "secret" not in http.get(f"/v1/webhook-endpoints/{hook['id']}", headers=auth).json()
    assert http.delete(f"/v1/webhook-endpoints/{hook['id']}", headers=auth).status_code == 204
    assert http.get(f"/v1/webhook-endpoints/{hook['id']}", headers=auth).status_code == 404


def test_a_scope_full_of_endpoints_refuses_another_with_a_409_until_one_goes(
    http: httpx.Client, receiver: Receiver
) -> None:
    """Found from outside: the 51st endpoint was a 422 `validation_error` without the `errors` every such error
    carries; a limit reached is the state of the scope, not a bad request."""
    auth = api_key(http, register(http, ["seller"], "Many Hooks"))
    hooks = [endpoint(http, auth, receiver.url(f"/many/{n}"), ["order.*"]) for n in range(MAX_ENDPOINTS)]
    full = http.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url("/one-more"), "event_types": ["order.*"]},
        headers=auth,
    )
    assert full.status_code == 409, full.text
    error = full.json()["error"]
    assert (error["code"], error["details"]) == ("webhook_endpoints_full", {"limit": MAX_ENDPOINTS})
    assert http.delete(f"/v1/webhook-endpoints/{hooks[0]['id']}", headers=auth).status_code == 204
    endpoint(http, auth, receiver.url("/one-more"), ["order.*"])


# -------------------------------------------------------------------------------------------------- the feed


def test_the_feed_gives_every_event_once_across_pages_and_only_the_sellers_own(http: httpx.Client) -> None:
    seller, other = register(http, ["seller"], "Feed"), register(http, ["seller"], "NotMine")
    auth, other_auth = api_key(http, seller), api_key(http, other)
    _, start = read_feed(http, auth, None, 50)
    made = []
    for _ in range(3):
        made.append(http.post("/v1/listings", json=listing_body(), headers=seller.headers).json()["id"])
        http.post("/v1/listings", json=listing_body(), headers=other.headers)
    first, cursor = read_at_least(http, auth, start, 2, 3)
    for _ in range(2):
        made.append(http.post("/v1/listings", json=listing_body(), headers=seller.headers).json()["id"])
    then, _ = read_at_least(http, auth, cursor, 2, 2)
    ids = [e["id"] for e in first + then]
    assert len(ids) == len(set(ids)), "an event was given twice"
    assert [e["data"]["id"] for e in first + then] == made  # each once, in order, only the seller's
    assert all(e["type"] == "listing.created" for e in first + then)
    theirs, _ = read_feed(http, other_auth, None, 100)
    assert not {e["id"] for e in theirs} & set(ids)
    unknown = http.get("/v1/events", params={"after": 2**62}, headers=auth)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "validation_error"
    empty = feed(http, auth, ids[-1])
    assert empty == {"items": [], "next_cursor": ids[-1], "has_more": False}


def test_the_platforms_feed_has_every_sellers_events(http: httpx.Client, stack: Any) -> None:
    staff = support_user(http, stack)
    auth = api_key(http, staff)
    _, start = read_feed(http, auth, None, 500)
    sellers = [register(http, ["seller"], f"Platform{i}") for i in range(2)]
    made = [http.post("/v1/listings", json=listing_body(), headers=s.headers).json()["id"] for s in sellers]
    seen, _ = read_feed(http, auth, start, 500)
    assert [e["data"]["id"] for e in seen if e["data"].get("id") in made] == made


def test_an_unknown_event_type_is_one_error_naming_its_item(http: httpx.Client, receiver: Receiver) -> None:
    """Found from outside: the 422 listed one error per member of the union, with pydantic's enum class names in
    `loc` (`event_types.0.str-enum[EventType]`)."""
    seller = register(http, ["seller"], "Mistyped")
    refused = http.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url("/mistyped"), "event_types": ["order.paid", "order.payed"]},
        headers=seller.headers,
    )
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["error"]["details"]["errors"]
    assert error["loc"] == ["body", "event_types", 1]
    assert "'order.payed' is neither" in error["msg"]
