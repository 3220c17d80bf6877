"""Trust over HTTP on the real stack: blind reviews and reputation, disputes, notifications (inbox, email with
one-click unsubscribe, preferences) and dead letters replayed through the real worker and SMTP sink.

Notifications are delivered off the order's critical path (emails by the worker's outbox sender), so every check
on an inbox, a mailbox or a revealed review polls (`wait_until`).
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import string
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from bazaar.trust.notifications import EVENT_TYPES
from bazaar.trust.reputation import bayesian_score
from tests.support.accounts import mails_to
from tests.support.dead_letters import dead_letter
from tests.support.http import Actor, register, support_user, wait_until
from tests.support.money import act, fulfilled_order, paid_order, sql

pytestmark = pytest.mark.integration

WAIT = 20.0  # seconds for anything a Temporal child workflow does


@pytest.fixture(scope="module")
def staff(http: httpx.Client, stack: Any) -> Actor:
    return support_user(http, stack)


# ---- helpers ---------------------------------------------------------------------------------------------


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def inbox(http: httpx.Client, actor: Actor, **params: Any) -> dict[str, Any]:
    response = http.get("/v1/notifications", headers=actor.headers, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def inbox_item(
    http: httpx.Client, actor: Actor, event_type: str, order_id: str, timeout: float = WAIT
) -> dict[str, Any]:
    """Wait for `actor`'s inbox notification of `event_type` about `order_id`."""

    def found() -> dict[str, Any] | None:
        for item in inbox(http, actor, limit=100)["items"]:
            if item["event_type"] == event_type and item["data"].get("order_id") == order_id:
                return dict(item)
        return None

    item: dict[str, Any] = wait_until(found, timeout=timeout)
    return item


def mail(stack: Any, address: str, subject: str, timeout: float = WAIT) -> EmailMessage:
    message: EmailMessage = wait_until(
        lambda: next((m for m in mails_to(stack, address) if m["Subject"] == subject), None), timeout=timeout
    )
    return message


def deliveries(stack: Any, event_key: str, recipient: Actor) -> dict[str, str]:
    """channel -> status of the notification rows of one event for one recipient."""
    rows = sql(
        stack,
        "SELECT channel::text, status FROM notifications WHERE event_key = %s AND recipient_id = %s",
        event_key,
        uuid.UUID(recipient.user_id),
    )
    return {channel: status for channel, status in rows}


def metrics(http: httpx.Client) -> dict[str, float]:
    response = http.get("/metrics")  # the test client is a loopback client and the stack sets no token
    assert response.status_code == 200, response.text
    values = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def complete(http: httpx.Client, order_id: str, seller: Actor, buyer: Actor) -> None:
    act(http, order_id, "accept", seller)
    act(http, order_id, "fulfil", seller, {"carrier": "DHL", "tracking_number": "JD0142"})
    assert act(http, order_id, "confirm-receipt", buyer)["status"] == "completed"


def review(http: httpx.Client, order_id: str, author: Actor, rating: Any, text: str = "") -> httpx.Response:
    return http.post(
        f"/v1/orders/{order_id}/reviews", headers=author.headers, json={"rating": rating, "text": text}
    )


def order_reviews(http: httpx.Client, order_id: str, viewer: Actor) -> list[dict[str, Any]]:
    response = http.get(f"/v1/orders/{order_id}/reviews", headers=viewer.headers)
    assert response.status_code == 200, response.text
    return list(response.json())


def public_reviews(http: httpx.Client, user_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/v1/users/{user_id}/reviews")
    assert response.status_code == 200, response.text
    return list(response.json())


def reputation_of(http: httpx.Client, user_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/users/{user_id}/profile")
    assert response.status_code == 200, response.text
    return dict(response.json()["reputation"])


def dispute(http: httpx.Client, order_id: str, viewer: Actor) -> httpx.Response:
    return http.get(f"/v1/orders/{order_id}/dispute", headers=viewer.headers)


# ---- reviews and reputation ------------------------------------------------------------------------------


def test_blind_reviews_reveal_when_both_sides_wrote_and_feed_reputation(
    http: httpx.Client, stack: Any, staff: Actor
) -> None:
    seller, buyer, order = paid_order(http)
    oid = order["id"]

    early = review(http, oid, buyer, 5)  # the order is only paid: no review window yet
    assert early.status_code == 409, early.text
    assert error_code(early) == "review_not_allowed"
    assert early.json()["error"]["details"] == {"status": "paid"}

    complete(http, oid, seller, buyer)
    inbox_item(http, buyer, "review_invitation", oid)  # sent once the review window is open
    inbox_item(http, seller, "review_invitation", oid)

    outsider = register(http, ["buyer", "seller"], "Outsider")
    stranger = review(http, oid, outsider, 5)
    assert (stranger.status_code, error_code(stranger)) == (403, "forbidden")
    assert http.get(f"/v1/orders/{oid}/reviews", headers=outsider.headers).status_code == 403
    for bad in (0, 6):
        invalid = review(http, oid, buyer, bad)
        assert (invalid.status_code, error_code(invalid)) == (422, "validation_error"), invalid.text

    by_buyer = review(http, oid, buyer, 5, "Great seller, fast shipping")
    assert by_buyer.status_code == 201, by_buyer.text
    written = by_buyer.json()
    assert (written["direction"], written["subject_id"], written["rating"]) == (
        "buyer_to_seller",
        seller.user_id,
        5,
    )
    assert (written["revealed"], written["hidden"]) == (False, False)

    twice = review(http, oid, buyer, 1, "changed my mind")
    assert (twice.status_code, error_code(twice)) == (409, "review_exists")

    # Blind: the seller and the public do not see the buyer's review yet; the author and support do.
    assert order_reviews(http, oid, seller) == []
    assert [r["id"] for r in order_reviews(http, oid, buyer)] == [written["id"]]
    assert [r["id"] for r in order_reviews(http, oid, staff)] == [written["id"]]
    assert public_reviews(http, seller.user_id) == []
    assert reputation_of(http, seller.user_id)["rating_count"] == 0

    by_seller = review(http, oid, seller, 4, "Smooth buyer")
    assert by_seller.status_code == 201, by_seller.text
    assert by_seller.json()["direction"] == "seller_to_buyer"

    # Both wrote: the review round reveals both, for both sides and the public.
    revealed = wait_until(
        lambda: (
            (seen := order_reviews(http, oid, seller)) and len(seen) == 2 and all(r["revealed"] for r in seen)
        ),
        timeout=WAIT,
    )
    assert revealed
    assert {r["author_id"] for r in order_reviews(http, oid, buyer)} == {buyer.user_id, seller.user_id}
    [public] = public_reviews(http, seller.user_id)
    assert (public["id"], public["rating"], public["text"]) == (
        written["id"],
        5,
        "Great seller, fast shipping",
    )
    assert [r["rating"] for r in public_reviews(http, buyer.user_id)] == [4]

    seller_rep = wait_until(lambda: (rep := reputation_of(http, seller.user_id))["rating_count"] == 1 and rep)
    assert seller_rep["score"] == pytest.approx(bayesian_score(5, 1))
    assert seller_rep["score"] != pytest.approx(bayesian_score(0, 0))  # not just the prior
    assert (seller_rep["orders_completed"], seller_rep["completion_rate"]) == (1, 1.0)
    buyer_rep = reputation_of(http, buyer.user_id)
    assert (buyer_rep["rating_count"], buyer_rep["score"]) == (1, pytest.approx(bayesian_score(4, 1)))

    for author in (buyer, seller):  # revealed: the round is over, and each side has had their say
        late = review(http, oid, author, 5)
        assert (late.status_code, error_code(late)) == (409, "review_exists"), late.text

    # Support hides the buyer's review: gone from the public list, audited; others may not hide.
    not_staff = http.post(
        f"/v1/support/reviews/{written['id']}/hide", headers=seller.headers, json={"reason": "I dislike it"}
    )
    assert (not_staff.status_code, error_code(not_staff)) == (403, "forbidden")
    hidden = http.post(
        f"/v1/support/reviews/{written['id']}/hide", headers=staff.headers, json={"reason": "personal data"}
    )
    assert hidden.status_code == 200, hidden.text
    assert hidden.json()["hidden"] is True
    assert public_reviews(http, seller.user_id) == []
    assert [r["author_id"] for r in order_reviews(http, oid, seller)] == [seller.user_id]
    audit = sql(
        stack,
        "SELECT actor_id, actor_role, action, data FROM audit_events WHERE subject_type = 'review' "
        "AND subject_id = %s",
        written["id"],
    )
    assert audit == [
        (
            uuid.UUID(staff.user_id),
            "support",
            "review.hidden",
            {"reason": "personal data", "order_id": oid},
        )
    ]
    missing = http.post(
        f"/v1/support/reviews/{uuid.uuid4()}/hide", headers=staff.headers, json={"reason": "not there"}
    )
    assert (missing.status_code, error_code(missing)) == (404, "not_found")


def test_a_hidden_review_leaves_the_reputation_and_the_search_ranking(
    http: httpx.Client, staff: Actor
) -> None:
    word = "".join(random.choices(string.ascii_lowercase, k=12))  # only this seller's listing has it
    seller, buyer, order = paid_order(http, title=f"{word} desk lamp", quantity=2)  # one left: still listed
    oid = order["id"]
    complete(http, oid, seller, buyer)
    inbox_item(http, buyer, "review_invitation", oid)
    by_buyer = review(http, oid, buyer, 5, "five stars from a fresh account")
    assert by_buyer.status_code == 201, by_buyer.text
    assert review(http, oid, seller, 4).status_code == 201

    def rated(count: int, score: float) -> None:
        wait_until(
            lambda: (
                (rep := reputation_of(http, seller.user_id))["rating_count"] == count
                and rep["score"] == pytest.approx(score)
            ),
            timeout=WAIT,
        )
        wait_until(
            lambda: (
                [
                    (h["seller_rating"], h["seller_rating_count"])
                    for h in http.get("/v1/search/listings", params={"q": word}).json()["hits"]
                ]
                == [(pytest.approx(score), count)]
            ),
            timeout=WAIT,
        )

    rated(1, bayesian_score(5, 1))
    hidden = http.post(
        f"/v1/support/reviews/{by_buyer.json()['id']}/hide",
        headers=staff.headers,
        json={"reason": "abusive words"},
    )
    assert hidden.status_code == 200, hidden.text
    rated(0, bayesian_score(0, 0))  # no longer counted: the prior again, in the profile and in search
    assert reputation_of(http, buyer.user_id)["rating_count"] == 1  # the seller's review of the buyer stands


# ---- disputes --------------------------------------------------------------------------------------------


def test_dispute_thread_info_request_and_resolution(http: httpx.Client, stack: Any, staff: Actor) -> None:
    seller, buyer, order = fulfilled_order(http)
    oid = order["id"]
    opening = f"arrived scratched {uuid.uuid4().hex[:8]}"
    disputed = act(http, oid, "dispute", buyer, {"reason_code": "damaged", "message": opening})
    assert disputed["status"] == "disputed"

    case = wait_until(lambda: (r := dispute(http, oid, buyer)).status_code == 200 and r.json(), timeout=WAIT)
    assert (case["order_id"], case["source"], case["reason_code"], case["status"]) == (
        oid,
        "buyer",
        "damaged",
        "open",
    )
    [opened] = case["thread"]
    assert (opened["kind"], opened["author_role"], opened["author_id"], opened["body"]) == (
        "opened",
        "buyer",
        buyer.user_id,
        opening,
    )
    for party in (seller, staff):
        seen = dispute(http, oid, party)
        assert seen.status_code == 200, seen.text
        assert [m["body"] for m in seen.json()["thread"]] == [opening]

    # Support finds it in the queue of unresolved cases (the buyer cannot see the queue).
    queue = http.get("/v1/support/disputes", headers=staff.headers, params={"limit": 200})
    assert queue.status_code == 200, queue.text
    assert oid in [c["order_id"] for c in queue.json()]
    assert {c["status"] for c in queue.json()} <= {"open", "awaiting_info", "escalated"}
    resolved_only = http.get("/v1/support/disputes", headers=staff.headers, params={"status": "resolved"})
    assert oid not in [c["order_id"] for c in resolved_only.json()]
    assert http.get("/v1/support/disputes", headers=buyer.headers).status_code == 403

    outsider = register(http, ["buyer", "seller"], "Outsider")
    peek = dispute(http, oid, outsider)
    assert (peek.status_code, error_code(peek)) == (403, "forbidden")
    assert opening not in peek.text and "thread" not in peek.json()
    intrude = http.post(f"/v1/orders/{oid}/dispute/messages", headers=outsider.headers, json={"body": "hi"})
    assert (intrude.status_code, error_code(intrude)) == (403, "forbidden")

    reply = http.post(
        f"/v1/orders/{oid}/dispute/messages",
        headers=seller.headers,
        json={"body": "It was packed in bubble wrap", "kind": "evidence"},
    )
    assert reply.status_code == 200, reply.text
    assert [(m["author_role"], m["kind"], m["body"]) for m in reply.json()["thread"]][1:] == [
        ("seller", "evidence", "It was packed in bubble wrap")
    ]

    question = "Please send a photo of the damage"
    asked = http.post(
        f"/v1/orders/{oid}/dispute/info-requests",
        headers=staff.headers,
        json={"party": "buyer", "question": question, "deadline_hours": 24},
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "awaiting_info"
    info = asked.json()["thread"][-1]
    assert (info["kind"], info["author_role"], info["author_id"], info["body"]) == (
        "info_request",
        "support",
        staff.user_id,
        question,
    )
    assert info["data"]["party"] == "buyer"
    for party in (buyer, seller):
        not_staff = http.post(
            f"/v1/orders/{oid}/dispute/info-requests",
            headers=party.headers,
            json={"party": "seller", "question": "why not?"},
        )
        assert (not_staff.status_code, error_code(not_staff)) == (403, "forbidden")

    answered = http.post(
        f"/v1/orders/{oid}/dispute/messages", headers=buyer.headers, json={"body": "photo attached"}
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "open"  # the buyer answered: no longer waiting

    for party in (buyer, seller):
        inbox_item(http, party, "dispute_opened", oid)

    resolved = act(http, oid, "resolve", staff, {"resolution": "partial_refund", "refund_amount": 10_000})
    assert (resolved["status"], resolved["status_reason"]) == ("completed", "dispute_partially_refunded")
    final = wait_until(
        lambda: (r := dispute(http, oid, buyer).json())["status"] == "resolved" and r, timeout=WAIT
    )
    assert (final["resolution"], final["refund_amount"]) == ("partial_refund", 10_000)
    assert final["resolved_at"] is not None
    for party in (buyer, seller):
        inbox_item(http, party, "dispute_resolved", oid)

    closed = http.post(f"/v1/orders/{oid}/dispute/messages", headers=buyer.headers, json={"body": "thanks"})
    assert (closed.status_code, error_code(closed)) == (409, "invalid_transition")
    # With the case as it stands, as an order action's 409 carries the order (found from outside: no details).
    assert closed.json()["error"]["details"]["dispute"]["status"] == final["status"], closed.text


def test_an_idempotency_key_names_one_dispute_step(http: httpx.Client, staff: Actor) -> None:
    """The same key and request again answers as the first (posted once); the same key with another request is
    refused (422 `idempotency_key_reused`), never dropped silently."""
    seller, buyer, order = fulfilled_order(http)
    oid = order["id"]
    act(http, oid, "dispute", buyer, {"reason_code": "damaged", "message": "dented"})
    wait_until(lambda: dispute(http, oid, buyer).status_code == 200, timeout=WAIT)

    for path, author, first, other in (
        ("messages", buyer, {"body": "dup"}, {"body": "dup2"}),
        ("messages", seller, {"body": "dup", "kind": "evidence"}, {"body": "dup", "kind": "message"}),
        (
            "info-requests",
            staff,
            {"party": "seller", "question": "Which carrier?"},
            {"party": "seller", "question": "Which box?"},
        ),
    ):
        keyed = {**author.headers, "Idempotency-Key": "K1"}  # keys are per author: the same K1 for each
        sent = http.post(f"/v1/orders/{oid}/dispute/{path}", headers=keyed, json=first)
        assert sent.status_code == 200, sent.text
        again = http.post(f"/v1/orders/{oid}/dispute/{path}", headers=keyed, json=first)
        assert (again.status_code, again.json()["thread"]) == (200, sent.json()["thread"])
        reused = http.post(f"/v1/orders/{oid}/dispute/{path}", headers=keyed, json=other)
        assert (reused.status_code, error_code(reused)) == (422, "idempotency_key_reused"), reused.text
        assert dispute(http, oid, author).json()["thread"] == sent.json()["thread"]  # nothing posted
    thread = dispute(http, oid, buyer).json()["thread"]
    assert [(m["author_role"], m["kind"], m["body"]) for m in thread][1:] == [
        ("buyer", "message", "dup"),
        ("seller", "evidence", "dup"),
        ("support", "info_request", "Which carrier?"),
    ]


# ---- notifications: inbox, preferences, email and unsubscribe --------------------------------------------


def test_inbox_preferences_email_and_one_click_unsubscribe(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = paid_order(http)
    oid = order["id"]
    title = order["listing_title"]

    # Preferences: everything on by default; the buyer turns off email for `order_accepted`.
    defaults = http.get("/v1/notifications/preferences", headers=buyer.headers)
    assert defaults.status_code == 200, defaults.text
    assert defaults.json() == {event: {"inbox": True, "email": True} for event in sorted(EVENT_TYPES)}
    opt_out = http.put(
        "/v1/notifications/preferences",
        headers=buyer.headers,
        json={"event_type": "order_accepted", "channel": "email", "enabled": False},
    )
    assert opt_out.status_code == 200, opt_out.text
    assert opt_out.json()["order_accepted"] == {"inbox": True, "email": False}
    assert opt_out.json()["order_shipped"] == {"inbox": True, "email": True}
    unknown = http.put(
        "/v1/notifications/preferences",
        headers=buyer.headers,
        json={"event_type": "no_such_event", "channel": "email", "enabled": False},
    )
    assert (unknown.status_code, error_code(unknown)) == (422, "validation_error")

    # Paid: the seller has it in the inbox (unread) and by email, with a one-click unsubscribe link.
    paid = inbox_item(http, seller, "order_paid", oid)
    assert paid["read"] is False and title in paid["subject"]
    assert all(i["event_type"] != "order_paid" for i in inbox(http, buyer)["items"])
    paid_mail = mail(stack, seller.email, f'New order for "{title}" - payment received')
    header = str(paid_mail["List-Unsubscribe"])
    match = re.fullmatch(r"<(\S+)>", header)
    assert match, header
    # As sent: the URL itself in angle brackets (a structured header), not RFC 2047 encoded-words that only a
    # decoder treating it as free text would read back.
    sent = {name: value for name, value in paid_mail.raw_items()}["List-Unsubscribe"]
    assert sent == header, sent
    link = match.group(1)
    assert link.startswith(f"{stack.public_base_url}/v1/notifications/unsubscribe?token=")
    assert paid_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = paid_mail.get_body(("plain",))
    assert body is not None and link in body.get_content()

    # Accepted, shipped, completed: the buyer gets `order_accepted` in the inbox but not by email.
    act(http, oid, "accept", seller)
    act(http, oid, "fulfil", seller, {"carrier": "DHL", "tracking_number": "JD0142"})
    inbox_item(http, buyer, "order_accepted", oid)
    assert deliveries(stack, f"order:{oid}:accepted", buyer) == {"inbox": "sent"}
    mail(stack, buyer.email, f'"{title}" is on its way')  # emails to the buyer do flow
    assert [m["Subject"] for m in mails_to(stack, buyer.email) if "accepted" in str(m["Subject"])] == []
    act(http, oid, "confirm-receipt", buyer)

    # The seller's inbox: order_paid, order_completed, review_invitation; mark one read, then all.
    inbox_item(http, seller, "order_completed", oid)
    inbox_item(http, seller, "review_invitation", oid)
    full = inbox(http, seller)
    assert [i["event_type"] for i in full["items"]] == ["review_invitation", "order_completed", "order_paid"]
    assert full["unread_count"] == 3 and full["next_cursor"] is None
    marked = http.post(f"/v1/notifications/{paid['id']}/read", headers=seller.headers)
    assert (marked.status_code, marked.json()) == (200, {"marked": 1})
    again = http.post(f"/v1/notifications/{paid['id']}/read", headers=seller.headers)
    assert (again.status_code, again.json()) == (200, {"marked": 0})  # idempotent
    after_one = inbox(http, seller)
    assert after_one["unread_count"] == 2
    assert {i["id"]: i["read"] for i in after_one["items"]}[paid["id"]] is True
    assert [i["event_type"] for i in inbox(http, seller, unread="true")["items"]] == [
        "review_invitation",
        "order_completed",
    ]
    page = inbox(http, seller, limit=2)
    assert len(page["items"]) == 2 and page["next_cursor"] == page["items"][-1]["id"]
    rest = inbox(http, seller, limit=2, before=page["next_cursor"])
    assert [i["id"] for i in rest["items"]] == [paid["id"]]
    others = http.post(f"/v1/notifications/{paid['id']}/read", headers=buyer.headers)
    assert (others.status_code, error_code(others)) == (404, "not_found")
    everything = http.post("/v1/notifications/read-all", headers=seller.headers)
    assert (everything.status_code, everything.json()) == (200, {"marked": 2})
    assert inbox(http, seller)["unread_count"] == 0
    assert inbox(http, seller, unread="true")["items"] == []

    # Opening the link (what a mail scanner's prefetch does too) only shows the button: nothing changes yet.
    opened = http.get(link.removeprefix(stack.public_base_url))
    assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/html"), opened.text
    assert "order paid (email)" in opened.text and '<form method=post action="?token=' in opened.text
    assert http.get("/v1/notifications/preferences", headers=seller.headers).json()["order_paid"]["email"]
    # One click (the button, or the mail client's RFC 8058 POST): that email is off for the seller, only it.
    clicked = http.post(link.removeprefix(stack.public_base_url))
    assert clicked.status_code == 200, clicked.text
    assert clicked.json() == {"status": "unsubscribed", "event_type": "order_paid", "channel": "email"}
    prefs = http.get("/v1/notifications/preferences", headers=seller.headers).json()
    assert prefs["order_paid"] == {"inbox": True, "email": False}
    assert prefs["order_completed"] == {"inbox": True, "email": True}

    token = link.partition("token=")[2]
    payload, _, signature = token.partition(".")
    forged_payload = base64.urlsafe_b64encode(f"{buyer.user_id}:order_paid:email".encode()).decode()
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    for tampered in (
        f"{payload}.{flipped}",  # signature changed
        f"{forged_payload}.{signature}",  # someone else's user id under the seller's signature
        "not-a-token",
    ):
        for method in ("GET", "POST"):
            refused = http.request(method, "/v1/notifications/unsubscribe", params={"token": tampered})
            assert (refused.status_code, error_code(refused)) == (400, "invalid_signature"), tampered
    assert http.get("/v1/notifications/preferences", headers=buyer.headers).json()["order_paid"]["email"]


# ---- dead letters ----------------------------------------------------------------------------------------


def test_dead_lettered_email_is_listed_replayed_and_delivered(
    http: httpx.Client, stack: Any, staff: Actor
) -> None:
    user = register(http, ["buyer"], "Lamp Buyer")
    event_key = f"test:dead-letter:{uuid.uuid4()}"
    email_id = asyncio.run(
        dead_letter(user, event_key, {"listing_title": "Dead letter lamp", "tracking": "none given"})
    )
    assert deliveries(stack, event_key, user) == {"inbox": "sent", "email": "dead"}
    [(attempts,)] = sql(stack, "SELECT attempts FROM notifications WHERE id = %s", email_id)
    assert attempts == 1

    before = metrics(http)
    assert before["bazaar_notification_dead_letters"] >= 1.0
    assert before['bazaar_notifications{channel="email",status="dead"}'] >= 1.0

    assert http.get("/v1/support/dead-letters", headers=user.headers).status_code == 403
    listed = http.get("/v1/support/dead-letters", headers=staff.headers)
    assert listed.status_code == 200, listed.text
    [dead] = [d for d in listed.json() if d["notification_id"] == email_id]
    assert (dead["event_type"], dead["channel"], dead["recipient_id"]) == (
        "order_shipped",
        "email",
        user.user_id,
    )
    assert "ConnectionRefusedError" in dead["error"]
    shipped_subject = '"Dead letter lamp" is on its way'
    assert mails_to(stack, user.email, shipped_subject) == []

    missing = http.post("/v1/support/dead-letters/999999999/replay", headers=staff.headers)
    assert (missing.status_code, error_code(missing)) == (404, "not_found")
    replay = http.post(f"/v1/support/dead-letters/{dead['id']}/replay", headers=staff.headers)
    assert replay.status_code == 202, replay.text
    # Back in the outbox at once (no workflow): pending again, with fresh attempts, for the worker's sender.
    assert replay.json() == {"notification_id": email_id, "status": "pending"}

    # The stack worker's sender delivers it through the working SMTP sink.
    delivered = mail(stack, user.email, shipped_subject)
    assert delivered["List-Unsubscribe"]
    # Stable per delivery, so a copy resent after a lost SMTP acknowledgement folds into the first.
    assert re.fullmatch(r"<notification-\d+@bazaar\.local>", str(delivered["Message-ID"]))
    wait_until(lambda: deliveries(stack, event_key, user)["email"] == "sent", timeout=WAIT)
    assert [
        d for d in http.get("/v1/support/dead-letters", headers=staff.headers).json() if d["id"] == dead["id"]
    ] == []
    # A second click sends nothing again.
    again = http.post(f"/v1/support/dead-letters/{dead['id']}/replay", headers=staff.headers)
    assert (again.status_code, again.json()) == (202, {"notification_id": email_id, "status": "sent"})
    assert len(mails_to(stack, user.email, shipped_subject)) == 1

    after = metrics(http)
    assert after["bazaar_notification_dead_letters"] == 0.0
    assert after['bazaar_notifications{channel="email",status="sent"}'] >= 1.0
    assert after.get('bazaar_notifications{channel="email",status="dead"}', 0.0) == 0.0
    assert after["bazaar_notification_outbox_overdue_seconds"] >= 0.0  # the sender-stalled alert's gauge


def test_ids_past_int64_are_invalid_not_server_errors(http: httpx.Client, staff: Actor) -> None:
    too_big = 2**63
    for method, path, params in (
        ("POST", f"/v1/notifications/{too_big}/read", {}),
        ("GET", "/v1/notifications", {"before": too_big}),
        ("POST", f"/v1/support/dead-letters/{too_big}/replay", {}),
    ):
        response = http.request(method, path, params=params, headers=staff.headers)
        assert response.status_code == 422, (path, response.text)
    largest = http.post(f"/v1/support/dead-letters/{too_big - 1}/replay", headers=staff.headers)
    assert (largest.status_code, error_code(largest)) == (404, "not_found")
