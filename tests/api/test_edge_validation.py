"""The HTTP edge on the real stack: bad input is a 422 naming the field (never a 500, never silently
altered), an unreachable PostgreSQL or Temporal is a 503 with Retry-After, and an unexpected error is a 500
JSON body that leaves the client's keep-alive connection usable."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.service import RPCError, RPCStatusCode

from api import deps
from api.app import create_app
from api.errors import ErrorOut
from api.security import MAX_REQUEST_BODY_BYTES
from bazaar.payments.money import MAX_CHARGE
from devstack import services
from tests.support.accounts import second_api
from tests.support.http import Actor, assert_422, listing_body, register, seller_with_payout, support_user
from tests.support.money import act, paid_order, sql

pytestmark = pytest.mark.integration

TOO_BIG = str(2**63)  # one past PostgreSQL's bigint
WAY_TOO_BIG = str(2**64 + 12345)


@pytest.fixture(scope="module")
def seller(http: httpx.Client) -> Actor:
    return seller_with_payout(http)


@pytest.fixture(scope="module")
def buyer(http: httpx.Client) -> Actor:
    return register(http, ["buyer"], "Buyer")


# ---------------------------------------------------------------------------------- control characters


CONTROL = "control characters"


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"title": "Road bike\x00"}, ["body", "title"]),
        ({"title": "Road bike\r\nBcc: everyone@example.com"}, ["body", "title"]),
        ({"title": "Road\nbike"}, ["body", "title"]),
        ({"title": "Road\tbike"}, ["body", "title"]),
        ({"title": "\x1b[2JRoad bike"}, ["body", "title"]),
        ({"title": "Road bike\x85"}, ["body", "title"]),
        ({"title": "\x1fRoad bike"}, ["body", "title"]),  # str.strip() would have eaten it silently
        ({"description": "Fine frame\x00"}, ["body", "description"]),
        ({"description": "Bell\x07 included"}, ["body", "description"]),
        ({"description": "Old Mac\rline break"}, ["body", "description"]),
        ({"attributes": {"colour": "red\x00"}}, ["body", "attributes", "colour"]),
        ({"attributes": {"colour": "red\r\nblue"}}, ["body", "attributes", "colour"]),
        ({"attributes": {"col\nour": "red"}}, ["body", "attributes", "col\nour", "[key]"]),
        (
            {"location": {"lat": 52.5, "lng": 13.4, "city": "Ber\x00lin", "country": "DE"}},
            ["body", "location", "city"],
        ),
        ({"image_urls": ["https://example.com/a\tb.jpg"]}, ["body", "image_urls", 0]),
        ({"category": "bikes\x00"}, ["body", "category"]),
    ],
)
def test_control_characters_in_a_listing_are_422(
    http: httpx.Client, seller: Actor, overrides: dict[str, Any], loc: list[Any]
) -> None:
    created = http.post("/v1/listings", json=listing_body(**overrides), headers=seller.headers)
    assert_422(created, loc, CONTROL)
    listing = http.post("/v1/listings", json=listing_body(), headers=seller.headers).json()
    patched = http.patch(
        f"/v1/listings/{listing['id']}", json=overrides, headers={**seller.headers, "If-Match": "*"}
    )
    assert_422(patched, loc, CONTROL)


def test_a_description_keeps_its_line_breaks_and_tabs(http: httpx.Client, seller: Actor) -> None:
    description = "Carbon frame, 56 cm.\r\nServiced in May.\n\n\tNew chain\n\tNew tyres"
    created = http.post(
        "/v1/listings",
        json=listing_body(description=description, title="Bike, «日本語» 🚲"),
        headers=seller.headers,
    )
    assert created.status_code == 201, created.text
    again = http.get(f"/v1/listings/{created.json()['id']}", headers=seller.headers).json()
    assert again["description"] == description  # nothing lost or rewritten
    assert again["title"] == "Bike, «日本語» 🚲"


@pytest.mark.parametrize("q", ["bike\x00", "bike\r\nx", "bike\ttyre", "\x7f", "bike\x9b"])
def test_control_characters_in_search_are_422(http: httpx.Client, q: str) -> None:
    assert_422(http.get("/v1/search/listings", params={"q": q}), ["query", "q"], CONTROL)
    assert_422(http.get("/v1/search/listings", params={"category": f"bi{q}"}), ["query", "category", 0])


def test_control_characters_in_accounts_are_422(http: httpx.Client) -> None:
    for name in ("Bob\x00", "Bob\r\nSmith", "\x1b]0;pwned\x07"):
        response = http.post(
            "/v1/auth/register",
            json={
                "email": f"ctl-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct-horse-battery",
                "display_name": name,
            },
        )
        assert_422(response, ["body", "display_name"], CONTROL)
    # A NUL in the login form used to reach PostgreSQL (which refuses NUL in text): a 500.
    login = http.post("/v1/auth/token", data={"username": "a\x00@example.com", "password": "whatever-pass"})
    assert_422(login, ["body", "username"], CONTROL)
    login = http.post("/v1/auth/token", data={"username": "nobody@example.com", "password": "x" * 129})
    assert_422(login, ["body", "password"])


def test_control_characters_in_order_bodies_are_422_before_the_order_is_read(
    http: httpx.Client, buyer: Actor
) -> None:
    """Body validation runs before the handler: no order needs to exist to see the 422."""
    order = uuid.uuid4()
    cases: list[tuple[str, dict[str, Any], list[Any]]] = [
        ("dispute", {"reason_code": "other", "message": "It broke\x00"}, ["body", "message"]),
        ("dispute/messages", {"body": "see attached\x1b[0m"}, ["body", "body"]),
        ("reviews", {"rating": 5, "text": "great\x00"}, ["body", "text"]),
        ("cancel", {"reason": "changed my mind\x00"}, ["body", "reason"]),
        ("decline", {"reason": "\x08"}, ["body", "reason"]),
        ("fulfil", {"carrier": "DHL\r\n"}, ["body", "carrier"]),
        ("fulfil", {"tracking_url": "https://track.example/\n1"}, ["body", "tracking_url"]),
    ]
    for action, body, loc in cases:
        assert_422(http.post(f"/v1/orders/{order}/{action}", json=body, headers=buyer.headers), loc, CONTROL)
    # Line breaks are fine in prose: this one gets past validation (and then finds no such order).
    ok = http.post(
        f"/v1/orders/{order}/dispute",
        json={"reason_code": "other", "message": "Line one\nLine two"},
        headers=buyer.headers,
    )
    assert ok.status_code == 404, ok.text


def test_a_tracking_number_with_a_nul_never_reaches_the_workflow(http: httpx.Client, stack: Any) -> None:
    seller, buyer, order = paid_order(http)
    act(http, order["id"], "accept", seller)
    refused = http.post(
        f"/v1/orders/{order['id']}/fulfil",
        json={"carrier": "DHL", "tracking_number": "X\u0000Y"},
        headers=seller.headers,
    )
    assert_422(refused, ["body", "tracking_number"], CONTROL)
    still = http.get(f"/v1/orders/{order['id']}", headers=seller.headers).json()
    assert still["status"] == "confirmed" and not still["tracking"]
    assert "fulfilled" not in [e["action"] for e in still["timeline"]]
    shipped = act(http, order["id"], "fulfil", seller, {"carrier": "DHL", "tracking_number": " JD0146 "})
    assert shipped["status"] == "fulfilled"
    assert shipped["tracking"]["tracking_number"] == "JD0146"

    # A stored total above any input bound (an import, an old row) must still be readable: responses have
    # no upper bound on money (this used to make GET /v1/orders answer 500).
    sql(stack, "UPDATE orders SET amount = %s WHERE id = %s", 10**13, uuid.UUID(order["id"]))
    listed = http.get("/v1/orders", params={"role": "seller"}, headers=seller.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["total"] == {"amount": 10**13, "currency": "EUR"}
    assert http.get(f"/v1/orders/{order['id']}", headers=buyer.headers).status_code == 200


def test_support_bodies_are_validated(http: httpx.Client, stack: Any) -> None:
    staff = support_user(http, stack)
    order = uuid.uuid4()
    resolve = http.post(
        f"/v1/orders/{order}/resolve",
        json={"resolution": "partial_refund", "refund_amount": int(TOO_BIG)},
        headers=staff.headers,
    )
    assert_422(resolve, ["body", "refund_amount"])
    resolve = http.post(
        f"/v1/orders/{order}/resolve", json={"resolution": "refund", "note": "ok\x00"}, headers=staff.headers
    )
    assert_422(resolve, ["body", "note"], CONTROL)
    info = http.post(
        f"/v1/orders/{order}/dispute/info-requests",
        json={"party": "buyer", "question": "Photos?\x00"},
        headers=staff.headers,
    )
    assert_422(info, ["body", "question"], CONTROL)
    hide = http.post(f"/v1/support/reviews/{order}/hide", json={"reason": "abuse\x00"}, headers=staff.headers)
    assert_422(hide, ["body", "reason"], CONTROL)


# ------------------------------------------------------------------------------------------------ money


@pytest.mark.parametrize(
    ("price", "words"),
    [
        ({"amount": 1, "currency": "EUR"}, "below the minimum charge of 0.50 EUR"),
        ({"amount": 49, "currency": "USD"}, "below the minimum charge of 0.50 USD"),
        ({"amount": 299, "currency": "SEK"}, "below the minimum charge of 3.00 SEK"),
        ({"amount": 49, "currency": "JPY"}, "below the minimum charge of 50 JPY"),
        ({"amount": MAX_CHARGE + 1, "currency": "EUR"}, "99999999"),
        ({"amount": int(TOO_BIG), "currency": "EUR"}, "99999999"),
        ({"amount": int(WAY_TOO_BIG), "currency": "EUR"}, ""),
    ],
)
def test_a_price_the_provider_cannot_charge_is_422(
    http: httpx.Client, seller: Actor, price: dict[str, Any], words: str
) -> None:
    assert_422(
        http.post("/v1/listings", json=listing_body(price=price), headers=seller.headers),
        ["body", "price", "amount"],
        words,
    )
    listing = http.post("/v1/listings", json=listing_body(), headers=seller.headers).json()
    patched = http.patch(
        f"/v1/listings/{listing['id']}", json={"price": price}, headers={**seller.headers, "If-Match": "*"}
    )
    assert_422(patched, ["body", "price", "amount"], words)


def test_the_chargeable_bounds_themselves_are_accepted(http: httpx.Client, seller: Actor) -> None:
    for price in (
        {"amount": 50, "currency": "EUR"},
        {"amount": 300, "currency": "SEK"},
        {"amount": MAX_CHARGE, "currency": "EUR"},
    ):
        created = http.post("/v1/listings", json=listing_body(price=price), headers=seller.headers)
        assert created.status_code == 201, created.text
        assert created.json()["price"] == price


# ------------------------------------------------------------------------------------------ parameters


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(*parts: Any) -> str:
    return _b64(json.dumps(list(parts)).encode())


CRAFTED_CURSORS = [
    "!!!not-base64!!!",
    "é",
    _b64(b"not json at all"),
    _b64(b"\xff\xfe\x00"),
    _b64(b"{}"),
    _b64(b"5"),
    _b64(b"null"),
    _b64(b'{"a": 1, "b": 2, "c": 3}'),  # three keys unpack like a 3-list
    _cursor("newest", 5, str(uuid.uuid4())),
    _cursor("newest", "2026-01-01T00:00:00", str(uuid.uuid4())),  # no time zone
    _cursor("newest", "not a date", str(uuid.uuid4())),
    _cursor("newest", "2026-01-01T00:00:00+00:00", 5),  # id of the wrong type (was a 500)
    _cursor("newest", "2026-01-01T00:00:00+00:00", str(uuid.uuid4()) + "\x00"),
    _cursor("price_asc", "2026-01-01T00:00:00+00:00", str(uuid.uuid4())),  # another sort's cursor
    _cursor("newest", "2026-01-01T00:00:00+00:00", str(uuid.uuid4()), "extra"),
    _b64(b"[" * 300),
]
CRAFTED_PRICE_CURSORS = [
    _cursor("price_asc", "EUR", 10**30, str(uuid.uuid4())),  # past bigint
    _cursor("price_asc", "EUR", 2**63, str(uuid.uuid4())),
    _cursor("price_asc", "EUR", -1, str(uuid.uuid4())),
    _cursor("price_asc", "EUR", True, str(uuid.uuid4())),
    _cursor("price_asc", "EUR", 5.5, str(uuid.uuid4())),
    _cursor("price_asc", "EUR", "5", str(uuid.uuid4())),
    _cursor("price_asc", "XYZ", 5, str(uuid.uuid4())),  # no currency listings take
    _cursor("price_asc", 5, str(uuid.uuid4())),  # the shape before the currency was in it
    _b64(b'["price_asc", "EUR", 1e999, "00000000-0000-0000-0000-000000000000"]'),
    _b64(b'["price_asc", "EUR", NaN, "00000000-0000-0000-0000-000000000000"]'),
]


def test_crafted_cursors_are_422(http: httpx.Client, seller: Actor) -> None:
    for sort, cursors in (("newest", CRAFTED_CURSORS), ("price_asc", CRAFTED_PRICE_CURSORS)):
        for cursor in cursors:
            response = http.get(
                "/v1/me/listings", params={"sort": sort, "cursor": cursor}, headers=seller.headers
            )
            assert response.status_code == 422, (sort, cursor, response.text)
            assert response.json()["error"]["code"] == "validation_error", response.text
            # Named as the API's own validation names a field (details.errors), whatever is wrong with it.
            assert [e["loc"] for e in response.json()["error"]["details"]["errors"]] == [["query", "cursor"]]
    nul = http.get("/v1/me/listings", params={"cursor": "abc\x00"}, headers=seller.headers)
    assert_422(nul, ["query", "cursor"], CONTROL)
    # A genuine cursor of the same sort still pages.
    for _ in range(2):
        http.post("/v1/listings", json=listing_body(), headers=seller.headers)
    first = http.get("/v1/me/listings", params={"sort": "price_asc", "limit": 1}, headers=seller.headers)
    cursor = first.json()["next_cursor"]
    assert cursor
    second = http.get(
        "/v1/me/listings", params={"sort": "price_asc", "limit": 1, "cursor": cursor}, headers=seller.headers
    )
    assert second.status_code == 200, second.text


def test_a_cursor_that_names_no_row_is_422(http: httpx.Client, seller: Actor) -> None:
    """Found from outside: `GET /v1/orders?before=<a random id>` answered the first page, hiding the mistake."""
    _, owner, order = paid_order(http)
    for path in ("/v1/orders", "/v1/checkouts"):
        buyer = register(http, ["buyer"], "Cursor")
        response = http.get(path, params={"before": str(uuid.uuid4())}, headers=buyer.headers)
        assert_422(response, ["query", "before"], "not a cursor of this list")
        assert http.get(path, headers=buyer.headers).status_code == 200
    # Someone else's order is no cursor of mine either: the answer must not tell that it exists.
    theirs = http.get("/v1/orders", params={"before": order["id"]}, headers=buyer.headers)
    assert_422(theirs, ["query", "before"], "not a cursor of this list")
    # The owner's own cursor pages on even with a status filter the anchor no longer passes.
    own = http.get("/v1/orders", params={"before": order["id"], "status": "cancelled"}, headers=owner.headers)
    assert own.status_code == 200 and own.json()["items"] == [], own.text


def test_integers_past_int64_are_422(http: httpx.Client, stack: Any, seller: Actor) -> None:
    staff = support_user(http, stack)
    anyone = str(uuid.uuid4())
    cases: list[tuple[str, dict[str, Any], dict[str, str], list[Any]]] = [
        ("/v1/me/listings", {"limit": TOO_BIG}, seller.headers, ["query", "limit"]),
        ("/v1/search/listings", {"page": TOO_BIG}, {}, ["query", "page"]),
        ("/v1/search/listings", {"per_page": WAY_TOO_BIG}, {}, ["query", "per_page"]),
        ("/v1/search/listings", {"min_price": TOO_BIG, "currency": "EUR"}, {}, ["query", "min_price"]),
        ("/v1/search/listings", {"max_price": WAY_TOO_BIG, "currency": "EUR"}, {}, ["query", "max_price"]),
        ("/v1/search/listings", {"lat": "1e400", "lng": "0"}, {}, ["query", "lat"]),
        ("/v1/search/listings", {"radius_km": "nan", "lat": 0, "lng": 0}, {}, ["query", "radius_km"]),
        (f"/v1/users/{anyone}/reviews", {"limit": TOO_BIG}, {}, ["query", "limit"]),
        ("/v1/payout-account/balance", {"limit": WAY_TOO_BIG}, seller.headers, ["query", "limit"]),
        ("/v1/support/disputes", {"limit": TOO_BIG}, staff.headers, ["query", "limit"]),
        ("/v1/support/disputes", {"status": "nope"}, staff.headers, ["query", "status", 0]),
        ("/v1/support/trust-flags", {"limit": TOO_BIG}, staff.headers, ["query", "limit"]),
        ("/v1/me/listings", {"sort": "cheapest"}, seller.headers, ["query", "sort"]),
        ("/v1/me/listings", {"status": "deleted"}, seller.headers, ["query", "status"]),
        ("/v1/search/listings", {"currency": "XXX"}, {}, ["query", "currency"]),
    ]
    for path, params, headers, loc in cases:
        assert_422(http.get(path, params=params, headers=headers), loc)
    # The largest bound that is allowed reaches the search backends without overflowing anything.
    widest = http.get("/v1/search/listings", params={"max_price": str(2**63 - 1), "currency": "EUR"})
    assert widest.status_code == 200, widest.text
    bad_path = http.get(f"/v1/listings/{TOO_BIG}")
    assert_422(bad_path, ["path", "listing_id"])


# ------------------------------------------------------------------------------ JSON types and methods


def test_a_number_or_boolean_sent_as_another_json_type_is_422_not_converted(
    http: httpx.Client, seller: Actor, buyer: Actor
) -> None:
    """ "2" for a quantity, 0 for a boolean, false for a coordinate: each is a client's bug, refused by name
    rather than acted on as a value the client did not send."""
    body = listing_body(title="Typed bike")
    for field, sent in (("quantity", "2"), ("quantity", True)):
        assert_422(
            http.post("/v1/listings", json={**body, field: sent}, headers=seller.headers), ["body", field]
        )
    located = {**body, "location": {"city": "Berlin", "country": "DE", "lat": 52.52, "lng": False}}
    assert_422(http.post("/v1/listings", json=located, headers=seller.headers), ["body", "location", "lng"])
    priced = {**body, "price": {"amount": "45000", "currency": "EUR"}}
    assert_422(http.post("/v1/listings", json=priced, headers=seller.headers), ["body", "price", "amount"])
    ordered = http.post(
        "/v1/orders",
        json={"listing_id": str(uuid.uuid4()), "quantity": "1", "payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_422(ordered, ["body", "quantity"])
    webhook = {"url": "https://erp.example.com/hooks", "event_types": ["order.*"], "enabled": "yes"}
    assert_422(http.post("/v1/webhook-endpoints", json=webhook, headers=seller.headers), ["body", "enabled"])
    # A whole JSON number is an integer, as JSON Schema says: 2.0 is taken as 2.
    listed = http.post("/v1/listings", json={**body, "quantity": 2.0}, headers=seller.headers)
    assert listed.status_code == 201, listed.text
    assert listed.json()["quantity"] == 2


def test_a_method_the_path_does_not_have_is_405_naming_every_method_it_has(
    http: httpx.Client, seller: Actor
) -> None:
    for method, path, allowed in (
        ("OPTIONS", "/v1/cart", "DELETE, GET, HEAD"),
        ("PUT", "/v1/webhook-endpoints", "GET, HEAD, POST"),
        ("POST", f"/v1/listings/{uuid.uuid4()}", "DELETE, GET, HEAD, PATCH"),
        ("HEAD", "/v1/auth/register", "POST"),
    ):
        refused = http.request(method, path, headers=seller.headers)
        assert refused.status_code == 405, refused.text
        assert refused.headers["allow"] == allowed, (path, refused.headers)
        if method != "HEAD":
            assert refused.json()["error"]["code"] == "http_405"
            ErrorOut.model_validate(refused.json())  # its code is in the document's enum: a client parses it


def test_a_path_outside_the_document_is_404_even_with_a_trailing_slash(
    http: httpx.Client, seller: Actor
) -> None:
    """No 307 to the path without its slash: such a redirect is no status the document lists, and its Location
    echoed the request's Host header."""
    for method, path in (
        ("GET", "/v1/events/"),
        ("POST", "/v1/webhook-endpoints/"),
        ("GET", "/v1/nothing-here"),
    ):
        refused = http.request(method, path, headers={**seller.headers, "Host": "evil.example"})
        assert refused.status_code == 404, (path, refused.status_code, refused.headers)
        assert "location" not in refused.headers
        assert refused.json()["error"]["code"] == "not_found"


def test_a_body_that_is_not_json_is_the_bodys_error_with_where_it_broke(
    http: httpx.Client, seller: Actor
) -> None:
    for body, at in ((b'{"title":', 9), (b"{'title': 1}", 1), (b"nope", 0)):
        refused = http.post(
            "/v1/listings", content=body, headers={**seller.headers, "Content-Type": "application/json"}
        )
        error = assert_422(refused, ["body"], f"not valid JSON at character {at}")
        assert error["message"].startswith("body: "), error


def test_a_body_over_the_limit_is_413_before_it_is_parsed(http: httpx.Client, seller: Actor) -> None:
    too_big = b'{"title": "' + b"x" * (MAX_REQUEST_BODY_BYTES + 1) + b'"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(too_big), 1 << 16):
            yield too_big[start : start + (1 << 16)]

    for body in (too_big, chunks()):
        refused = http.post(
            "/v1/listings", content=body, headers={**seller.headers, "Content-Type": "application/json"}
        )
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["code"] == "payload_too_large"
        assert refused.json()["error"]["trace_id"] == refused.headers["x-trace-id"]
    # Just under it is read and judged on its content.
    fits = b'{"title": "' + b"x" * (MAX_REQUEST_BODY_BYTES - 100) + b'"}'
    judged = http.post(
        "/v1/listings", content=fits, headers={**seller.headers, "Content-Type": "application/json"}
    )
    assert judged.status_code == 422, judged.text


def test_head_is_the_get_without_its_body(http: httpx.Client, seller: Actor) -> None:
    listing = http.post("/v1/listings", json=listing_body(), headers=seller.headers).json()
    for path, headers in ((f"/v1/listings/{listing['id']}", seller.headers), ("/healthz", {})):
        got = http.get(path, headers=headers)
        head = http.head(path, headers=headers)
        assert (head.status_code, got.status_code) == (200, 200), (path, head.status_code)
        assert head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["content-type"] == got.headers["content-type"]
    assert http.head(f"/v1/listings/{listing['id']}").status_code == 404  # a draft: the GET's answer


# -------------------------------------------------------------------------------------- a second API


class InProcessApi:
    """The real app (create_app) under uvicorn in a thread on a free port, with dependency overrides; no
    lifespan, so it opens no connections of its own."""

    def __init__(self, overrides: dict[Any, Any]) -> None:
        self.app = create_app()
        self.app.dependency_overrides.update(overrides)
        [self.port] = services.free_ports(1)
        config = uvicorn.Config(
            self.app, host=services.LOOPBACK, port=self.port, lifespan="off", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="in-process-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{services.LOOPBACK}:{self.port}"

    def __enter__(self) -> InProcessApi:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "in-process API did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def _local_port(response: httpx.Response) -> int:
    """The client-side port the response came in on: the same port means the same TCP connection."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_a_500_keeps_the_keep_alive_connection_usable(stack: Any) -> None:
    def broken() -> None:
        raise RuntimeError("a bug somewhere below the route")

    with (
        InProcessApi({deps.principal: broken}) as api,
        httpx.Client(base_url=api.url, timeout=10, limits=httpx.Limits(max_connections=1)) as client,
    ):
        for _ in range(3):  # several 500s in a row on one connection, each followed by a normal request
            failed = client.get("/v1/users/me")
            assert failed.status_code == 500, failed.text
            assert failed.json() == {
                "error": {
                    "code": "internal_error",
                    "message": "internal error",
                    "details": {},
                    "trace_id": failed.headers["x-trace-id"],  # what support finds the request by
                }
            }
            ErrorOut.model_validate(failed.json())  # its code is in the document's enum: a client parses it
            assert failed.headers.get("connection", "").lower() != "close"
            ok = client.get("/healthz")
            assert ok.status_code == 200, ok.text
            assert _local_port(ok) == _local_port(failed)  # the very same connection answered


def test_temporal_unreachable_is_503(http: httpx.Client) -> None:
    def unreachable() -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    def timed_out() -> None:
        raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")

    seller = register(http, ["seller"], "Seller").headers  # the in-process app shares the JWT secret
    for failure in (unreachable, timed_out):
        with InProcessApi({deps.temporal: failure}) as api, httpx.Client(base_url=api.url, timeout=10) as c:
            response = c.post("/v1/payout-account", json={"country": "DE"}, headers=seller)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            assert response.headers["Retry-After"] == "5"


@pytest.fixture(scope="module")
def api_without_database(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second API process whose DATABASE_URL points at a closed port (everything else is the stack's)."""
    dead_db, port = services.free_ports(2)
    dead = {"DATABASE_URL": f"postgresql+psycopg://bazaar@{services.LOOPBACK}:{dead_db}/bazaar"}
    with second_api(stack, tmp_path_factory.mktemp("api-without-database"), dead, port) as url:
        yield url


def test_database_down_is_503_with_retry_after(http: httpx.Client, api_without_database: str) -> None:
    buyer = register(http, ["buyer"], "Buyer")  # on the healthy API
    with httpx.Client(base_url=api_without_database, timeout=30) as down:
        requests: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/v1/listings/{uuid.uuid4()}", {}),
            ("GET", "/v1/orders", {"headers": buyer.headers}),
            ("GET", "/v1/users/me", {"headers": buyer.headers}),
            ("POST", "/v1/auth/token", {"data": {"username": buyer.email, "password": "whatever-pass"}}),
            ("GET", "/v1/categories", {}),
        ]
        for method, path, kwargs in requests:
            response = down.request(method, path, **kwargs)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "service_unavailable", response.text
            assert response.headers["Retry-After"] == "5"
        assert down.get("/healthz").status_code == 200  # the process itself is fine: liveness holds
        ready = down.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["postgres"] is False


def test_an_unknown_enum_value_names_the_values_the_way_a_client_sends_them(
    http: httpx.Client, seller: Actor
) -> None:
    wrong = http.get("/v1/orders", params={"role": "support"}, headers=seller.headers)
    assert wrong.status_code == 422, wrong.text
    message = json.dumps(wrong.json()["error"])
    assert "'buyer'" in message and "'seller'" in message and "Role." not in message, message
