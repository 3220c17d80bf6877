"""The support console without a browser: its cookie session (the API's accounts and sessions), CSRF on every
POST, the support role, and what it keeps out of the OpenAPI document. The pages and actions in a real browser:
test_console_browser.py."""

from __future__ import annotations

import hashlib
import shutil
from typing import Any

import httpx
import pytest

from api.console import HERE, HTMX_SHA256, HTMX_VERSION
from tests.support.console import disputed_order, log_in, page_csrf
from tests.support.http import PASSWORD, Actor, register, run_cli, support_user, wait_until
from tests.support.money import sql

pytestmark = pytest.mark.integration


def set_cookies(response: httpx.Response) -> dict[str, str]:
    return {v.split("=", 1)[0]: v for v in response.headers.get_list("set-cookie")}


def test_vendored_htmx_is_the_pinned_release() -> None:
    data = (HERE / "static" / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    notice = (HERE / "static" / "NOTICE.md").read_text(encoding="utf-8")
    assert f"version {HTMX_VERSION}" in notice and HTMX_SHA256 in notice


def test_console_is_not_in_the_openapi_document(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
    assert http.get("/console/static/htmx.min.js").status_code == 200


def test_pages_need_a_login(browser: httpx.Client) -> None:
    for path in ("/console/disputes", "/console/stuck-orders", "/console/dead-letters", "/console/users"):
        response = browser.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/console/login?next={path}"
    hx = browser.get("/console/trust-flags", headers={"HX-Request": "true"})
    assert (hx.status_code, hx.headers["HX-Redirect"]) == (204, "/console/login?next=/console/trust-flags")


def test_cookies_are_httponly_strict_and_secure_over_tls(browser: httpx.Client) -> None:
    plain = set_cookies(browser.get("/console/login"))["bazaar_console_login"]
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Path=/console" in plain
    assert "Secure" not in plain
    # Behind a TLS-terminating proxy (trusted by FORWARDED_ALLOW_IPS), the cookie is Secure.
    with httpx.Client(base_url=str(browser.base_url), timeout=30) as fresh:
        tls = fresh.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "; Secure" in set_cookies(tls)["bazaar_console_login"]


def test_login_is_for_support_staff_with_the_forms_token(
    browser: httpx.Client, http: httpx.Client, staff: Actor
) -> None:
    # No token from the login form: refused before any password is checked.
    forged = browser.post("/console/login", data={"email": staff.email, "password": PASSWORD})
    assert forged.status_code == 403
    wrong = log_in(browser, staff.email, "not-the-password")
    assert wrong.status_code == 401 and "incorrect email or password" in wrong.text
    buyer = register(http, ["buyer"], "Console Buyer")
    refused = log_in(browser, buyer.email)
    assert refused.status_code == 403 and "support role" in refused.text
    assert "bazaar_console" not in browser.cookies
    ok = log_in(browser, staff.email)
    assert (ok.status_code, ok.headers["location"]) == (303, "/console/disputes")
    cookies = set_cookies(ok)
    for name in ("bazaar_console", "bazaar_console_refresh"):
        assert "HttpOnly" in cookies[name] and "SameSite=Strict" in cookies[name], cookies[name]
    assert browser.get("/console/disputes").status_code == 200


def test_every_post_needs_the_sessions_csrf_token(browser: httpx.Client, staff: Actor, stack: Any) -> None:
    assert log_in(browser, staff.email).status_code == 303
    token = page_csrf(browser)
    path = "/console/dead-letters/999999999/replay"
    assert browser.post(path).status_code == 403
    assert browser.post(path, data={"csrf_token": "0" * 64}).status_code == 403
    before = sql(stack, "SELECT count(*) FROM audit_events WHERE actor_id = %s", staff.user_id)[0][0]
    done = browser.post(path, headers={"X-CSRF-Token": token})
    assert done.status_code == 303 and "error=dead+letter+not+found" in done.headers["location"]
    # Refused actions are audited too, with the acting support user.
    [(action, subject, data)] = sql(
        stack,
        "SELECT action, subject_id, data FROM audit_events WHERE actor_id = %s ORDER BY id DESC LIMIT 1",
        staff.user_id,
    )
    assert (action, subject, data["outcome"], data["code"]) == (
        "console.dead_letter_replayed",
        "dead_letter:999999999",
        "refused",
        "not_found",
    )
    assert (
        sql(stack, "SELECT count(*) FROM audit_events WHERE actor_id = %s", staff.user_id)[0][0] == before + 1
    )
    # The token of another session is no good.
    with httpx.Client(base_url=str(browser.base_url), timeout=30, follow_redirects=False) as other:
        assert log_in(other, staff.email).status_code == 303
        assert other.post(path, headers={"X-CSRF-Token": token}).status_code == 403


def test_sessions_end_like_the_apis(browser: httpx.Client, http: httpx.Client, stack: Any) -> None:
    staff = support_user(http, stack)
    assert log_in(browser, staff.email).status_code == 303
    # An expired access token is renewed with the refresh token (rotated, like POST /v1/auth/refresh).
    refresh = browser.cookies.get("bazaar_console_refresh", path="/console")
    browser.cookies.delete("bazaar_console", path="/console")
    renewed = browser.get("/console/disputes")
    assert renewed.status_code == 200
    assert browser.cookies.get("bazaar_console_refresh", path="/console") not in (None, refresh)
    # Taking the support role away ends the console session at once.
    run_cli(stack, "revoke-role", staff.email, "support")
    assert browser.get("/console/disputes").status_code == 303


def test_logout_ends_the_session(browser: httpx.Client, staff: Actor) -> None:
    assert log_in(browser, staff.email).status_code == 303
    access = browser.cookies.get("bazaar_console", path="/console")
    token = page_csrf(browser)
    out = browser.post("/console/logout", data={"csrf_token": token})
    assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    assert browser.get("/console/disputes").status_code == 303
    # The same session's access token no longer works anywhere (it was the API's session).
    assert access
    assert browser.get("/v1/users/me", headers={"Authorization": f"Bearer {access}"}).status_code == 401


def test_a_missing_chromium_fails_the_browser_tests_with_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support import console

    monkeypatch.setattr(console, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        console.chromium()


def test_asking_a_party_for_information_takes_the_forms_hours(
    browser: httpx.Client, http: httpx.Client, staff: Actor
) -> None:
    """Forms send text: the deadline field's '24' is 24 hours (the API's JSON body takes numbers only)."""
    _, _, order = disputed_order(http, "Console ask")
    case = f"/v1/orders/{order['id']}/dispute"
    wait_until(lambda: http.get(case, headers=staff.headers).status_code == 200, timeout=20)
    assert log_in(browser, staff.email).status_code == 303
    path = f"/console/disputes/{order['id']}/info-requests"
    token = page_csrf(browser, f"/console/disputes/{order['id']}")
    form = {"party": "buyer", "question": "Photos of the frame, please", "deadline_hours": "two days"}
    refused = browser.post(path, data=form, headers={"X-CSRF-Token": token})
    assert refused.status_code == 303 and "error=deadline" in refused.headers["location"], refused.text
    asked = browser.post(path, data={**form, "deadline_hours": "24"}, headers={"X-CSRF-Token": token})
    assert asked.status_code == 303 and "ok=" in asked.headers["location"], asked.headers
    thread = wait_until(
        lambda: (
            (t := http.get(case, headers=staff.headers).json()["thread"])[-1]["kind"] == "info_request" and t
        ),
        timeout=20,
    )
    assert (thread[-1]["body"], thread[-1]["data"]["party"]) == ("Photos of the frame, please", "buyer")


def test_the_stuck_queue_offers_cancel_only_where_support_may_cancel() -> None:
    """Found from outside: a completed order stuck on its payout was offered "Cancel and refund", which can only
    fail (support retries the payout, or refunds, instead)."""
    from datetime import UTC, datetime

    from starlette.requests import Request

    from api.console import templates
    from api.console.pages import SUPPORT_MAY_CANCEL
    from api.schemas import StuckOrderOut
    from bazaar.models import OrderStatus, PaymentState

    def item(order_id: str, status: OrderStatus) -> StuckOrderOut:
        return StuckOrderOut(
            order_id=order_id,
            workflow_id=f"order-{order_id}",
            status=status,
            payment_state=PaymentState.HELD_IN_ESCROW,
            attention="charge: provider down",
            started_at=datetime.now(UTC),
            temporal_ui="",
        )

    html = templates.get_template("stuck.html").render(
        stuck=[item("paid-one", OrderStatus.PAID), item("done-one", OrderStatus.COMPLETED)],
        orders={},
        cancellable=SUPPORT_MAY_CANCEL,
        csrf="token",
        page="stuck",
        request=Request(
            {"type": "http", "path": "/console/stuck-orders", "query_string": b"", "headers": []}
        ),
    )
    assert "/console/orders/paid-one/cancel" in html and "/console/orders/paid-one/retry" in html
    assert "/console/orders/done-one/cancel" not in html and "/console/orders/done-one/retry" in html
