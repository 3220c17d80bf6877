"""What support types into the console's forms: anything a REST route would refuse is refused on the page with
that route's message (never a 500, never the API's JSON), changes nothing, and is audited as refused."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.console import disputed_order, log_in, login_form, page_csrf
from tests.support.http import Actor, wait_until
from tests.support.money import sql

pytestmark = pytest.mark.integration


def flashed_error(answer: httpx.Response) -> str:
    """The one-line refusal a form's redirect carries back to its page."""
    assert answer.status_code == 303, (answer.status_code, answer.text)
    errors = parse_qs(urlsplit(answer.headers["location"]).query).get("error")
    assert errors, answer.headers["location"]
    return errors[0]


@pytest.fixture
def case(http: httpx.Client, staff: Actor, browser: httpx.Client) -> tuple[dict[str, Any], Actor, str]:
    """A disputed order whose case support has open in the console: (order, buyer, the page's CSRF token)."""
    _, buyer, order = disputed_order(http, "Console forms")
    wait_until(
        lambda: http.get(f"/v1/orders/{order['id']}/dispute", headers=staff.headers).status_code == 200,
        timeout=20,
    )
    assert log_in(browser, staff.email).status_code == 303
    return order, buyer, page_csrf(browser, f"/console/disputes/{order['id']}")


def test_text_no_rest_route_takes_is_refused_on_the_page_and_changes_nothing(
    browser: httpx.Client,
    http: httpx.Client,
    staff: Actor,
    stack: Any,
    case: tuple[dict[str, Any], Actor, str],
) -> None:
    order, buyer, token = case
    base = f"/console/disputes/{order['id']}"
    thread = http.get(f"/v1/orders/{order['id']}/dispute", headers=staff.headers).json()["thread"]
    forms: list[tuple[str, dict[str, str]]] = [
        (f"{base}/messages", {"body": "a\x00b"}),
        (f"{base}/messages", {"body": "x" * 5001}),
        (
            f"{base}/info-requests",
            {"party": "seller", "question": "Receipt\x00please", "deadline_hours": "24"},
        ),
        (f"{base}/resolve", {"resolution": "partial_refund", "refund": "12.34", "note": "bad\x00note"}),
        (f"/console/reviews/{uuid.uuid4()}/hide", {"reason": "ab\x00"}),
    ]
    for path, form in forms:
        problem = flashed_error(browser.post(path, data=form, headers={"X-CSRF-Token": token}))
        assert "character" in problem, (path, problem)
    after = http.get(f"/v1/orders/{order['id']}", headers=buyer.headers).json()
    assert (after["status"], after["payment_state"]) == ("disputed", "frozen")
    assert http.get(f"/v1/orders/{order['id']}/dispute", headers=staff.headers).json()["thread"] == thread
    # Each refusal is in the audit as typed, a NUL kept as U+FFFD (jsonb cannot hold U+0000).
    refused = sql(
        stack,
        "SELECT data->>'body', data->>'note' FROM audit_events WHERE actor_id = %s AND action IN "
        "('console.dispute_replied', 'console.dispute_resolved') AND data->>'outcome' = 'refused'",
        staff.user_id,
    )
    assert ("a\ufffdb", None) in refused and (None, "bad\ufffdnote") in refused, refused
    assert ("x" * 500, None) in refused, "the audit keeps the start of a long field"


# Found from outside: "1,000" refunded 1.00 EUR, full-width or Arabic-Indic digits were taken as digits, and
# Infinity was a 500.
ODD_AMOUNTS = [
    "Infinity",
    "NaN",
    "1e3",
    "-5",
    "12.5.0",
    "12 EUR",
    "0x10",
    "\uff15",
    "\u0663",
    "1,000",
    "9" * 5000,
]


def test_a_refund_amount_is_ascii_digits_with_at_most_the_currencys_decimals(
    browser: httpx.Client, http: httpx.Client, case: tuple[dict[str, Any], Actor, str]
) -> None:
    order, buyer, token = case
    path = f"/console/disputes/{order['id']}/resolve"
    for typed in ODD_AMOUNTS:
        form = {"resolution": "partial_refund", "refund": typed, "note": ""}
        answer = browser.post(path, data=form, headers={"X-CSRF-Token": token})
        assert len(answer.headers["location"]) < 1000, "the refusal travels in the URL: it stays short"
        problem = flashed_error(answer)
        shown = typed if len(typed) <= 20 else f"{typed[:20]}..."
        assert problem in (
            f"refund amount {shown!r} is not an amount such as 12.50",
            f"refund amount {shown!r} has more than 2 decimals, the most EUR has",
        ), problem
    assert http.get(f"/v1/orders/{order['id']}", headers=buyer.headers).json()["status"] == "disputed"


def test_an_amount_typed_with_a_release_is_refused_not_dropped(
    browser: httpx.Client, http: httpx.Client, case: tuple[dict[str, Any], Actor, str]
) -> None:
    """The REST route refuses a release with a refund_amount; the console, calling it, must not drop the amount
    and release everything (release is the form's first choice)."""
    order, buyer, token = case
    path = f"/console/disputes/{order['id']}/resolve"
    for resolution in ("release", "refund"):
        form = {"resolution": resolution, "refund": "10.00", "note": ""}
        problem = flashed_error(browser.post(path, data=form, headers={"X-CSRF-Token": token}))
        assert problem == f"refund is only for partial_refund, not {resolution}", problem
    # Found from outside: a refund beyond the order read "refund_amount: ... between 1 and 4999" (minor units, the
    # REST field), so support typed 4999 for 49.99. The refusal names the page's field and amounts as typed.
    total = order["total"]["amount"]
    beyond = {"resolution": "partial_refund", "refund": f"{total // 100 + 1}.00", "note": ""}
    problem = flashed_error(browser.post(path, data=beyond, headers={"X-CSRF-Token": token}))
    assert (
        "refund_amount" not in problem and f"{(total - 1) // 100}.{(total - 1) % 100:02d} EUR" in problem
    ), problem
    after = http.get(f"/v1/orders/{order['id']}", headers=buyer.headers).json()
    assert (after["status"], after["payment_state"]) == ("disputed", "frozen")
    # A comma is a decimal point, as support types it.
    partial = {"resolution": "partial_refund", "refund": "10,00", "note": "half the frame"}
    done = browser.post(path, data=partial, headers={"X-CSRF-Token": token})
    assert done.status_code == 303 and "ok=" in done.headers["location"], done.headers
    refunded = http.get(f"/v1/orders/{order['id']}", headers=buyer.headers).json()
    assert refunded["refunded"]["amount"] == 1000, refunded


def test_a_login_or_search_with_a_control_character_is_a_page_not_a_500(
    browser: httpx.Client, staff: Actor
) -> None:
    token = login_form(browser)
    form = {"email": f"{staff.email}\x00", "password": "x", "csrf_token": token, "next": ""}
    refused = browser.post("/console/login", data=form)
    assert refused.status_code == 422 and "text/html" in refused.headers["content-type"], refused.text
    assert "characters no login has" in refused.text
    long = browser.post("/console/login", data={**form, "email": "a" * 400 + "@example.com"})
    assert long.status_code in (401, 422) and "text/html" in long.headers["content-type"], long.text
    assert log_in(browser, staff.email).status_code == 303
    for q, says in (("\x00", "control characters"), ("x" * 321, "at most 320 characters")):
        found = browser.get("/console/users", params={"q": q})
        assert found.status_code == 422 and says in found.text, found.text
    found = browser.get("/console/users", params={"q": staff.email})
    assert found.status_code == 200 and staff.email in found.text
    # A wildcard typed is that character (found from outside: "%" listed every user).
    for wildcard in ("%", "%%"):
        none = browser.get("/console/users", params={"q": wildcard})
        assert none.status_code == 200 and "Nobody matches" in none.text, wildcard


def test_only_a_refund_amounts_refusal_is_given_in_the_orders_currency() -> None:
    """Found from outside: a note's refusal read "found U+0.00 EUR at index 0.01 EUR" (every number taken for an
    amount); only the REST refusal of `refund_amount` (minor units) is put as support typed it."""
    from api.console.actions import as_typed

    amount = "refund_amount: must be between 1 and 4999"
    assert as_typed(amount, "EUR") == "refund: must be between 0.01 EUR and 49.99 EUR"
    note = "note: control characters other than line breaks and tabs are not allowed; found U+0000 at index 1"
    assert as_typed(note, "EUR") == note
