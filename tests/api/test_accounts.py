"""Accounts on the real stack: registration that reveals no account, the password policy, email verification and
password reset through real mail in the SMTP sink (single-use, expiring tokens), refresh-token rotation and reuse
detection (with a grace for concurrent or retried refreshes), revocation that applies on the next request (logout, password reset and change, a removed role,
deactivation), the login lockout, and the security headers.

The stack's API relaxes the per-address limits (one test client registers everyone); the account lockout is real
here. tests/api/test_rate_limits.py runs an API with every limit as in production.
"""

from __future__ import annotations

import threading
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from api.routes.auth import RESET_ANSWER_SECONDS
from bazaar.accounts.links import digest
from bazaar.accounts.sessions import REUSE_GRACE
from tests.support.accounts import (
    bearer,
    body_of,
    client_address,
    from_address,
    login,
    mailed_token,
    mails_to,
    new_email,
)
from tests.support.http import (
    PASSWORD,
    published_listing,
    register,
    run_cli,
    seller_with_payout,
    support_user,
    wait_until,
)
from tests.support.money import sql

pytestmark = pytest.mark.integration

VERIFY_SUBJECT = "Confirm your email address"
RESET_SUBJECT = "Reset your Bazaar password"
ATTEMPT_SUBJECT = "Someone tried to register"


def sign_up(http: httpx.Client, address: str, password: str = PASSWORD, name: str = "Acct") -> httpx.Response:
    return http.post(
        "/v1/auth/register",
        json={"email": address, "password": password, "display_name": name, "roles": ["buyer"]},
    )


def tokens(http: httpx.Client, address: str, password: str = PASSWORD) -> dict[str, Any]:
    response = login(http, address, password)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return dict(response.json())


def me(http: httpx.Client, access_token: str) -> httpx.Response:
    return http.get("/v1/users/me", headers=bearer(access_token))


def field_error(response: httpx.Response) -> tuple[list[Any], str]:
    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert body["code"] == "validation_error"
    first = body["details"]["errors"][0]
    return first["loc"], first["type"]


# ---- registration ---------------------------------------------------------------------------------------------


def test_registration_does_not_reveal_an_existing_email(http: httpx.Client, stack: Any) -> None:
    address = new_email("owner")
    first = sign_up(http, address)
    assert first.status_code == 202, first.text
    again = sign_up(http, address, "another-strong-passphrase", name="Intruder")
    fresh = sign_up(http, new_email("fresh"))
    assert again.status_code == fresh.status_code == 202
    assert again.json() == first.json() == fresh.json()
    assert "id" not in again.json()
    # Nothing changed on the account: its own password works, the second one does not.
    assert login(http, address).status_code == 200
    assert login(http, address, "another-strong-passphrase").status_code == 401
    # The owner is told by mail (after the verification mail of the first registration).
    mail = wait_until(lambda: mails_to(stack, address, ATTEMPT_SUBJECT), timeout=20)
    assert "already has one" in body_of(mail[0])
    assert len(mails_to(stack, address, VERIFY_SUBJECT)) == 1  # no second account, so no second verification


# ---- the password policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "kind"),
    [
        ("aaaaaaaaaa", "weak_password"),  # a repeat
        ("password1234", "weak_password"),  # on every breached list
        ("qwertyuiop123", "weak_password"),  # a keyboard walk
        ("Summer2024!", "weak_password"),  # a word, a year, a symbol
        ("short", "string_too_short"),
        ("x7#" * 43, "string_too_long"),  # 129 characters
    ],
)
def test_registration_refuses_weak_or_overlong_passwords(
    http: httpx.Client, password: str, kind: str
) -> None:
    loc, found = field_error(sign_up(http, new_email("weak"), password))
    assert loc[-1] == "password"
    assert found == kind


def test_password_built_from_the_users_own_email_or_name_is_refused(http: httpx.Client) -> None:
    local = f"gwendolyn{uuid.uuid4().hex[:6]}"
    response = sign_up(http, f"{local}@example.com", f"{local}2024", name="Gwendolyn")
    assert field_error(response) == (["body", "password"], "weak_password")
    assert "too easy to guess" in response.json()["error"]["message"]


def test_login_caps_the_password_length(http: httpx.Client) -> None:
    loc, _ = field_error(login(http, new_email(), "y" * 129))
    assert loc[-1] == "password"


# ---- email verification ---------------------------------------------------------------------------------------


def test_email_verification_by_mail_single_use(http: httpx.Client, stack: Any) -> None:
    address = new_email("verify")
    assert sign_up(http, address).status_code == 202
    access = tokens(http, address)["access_token"]
    assert me(http, access).json()["email_verified"] is False
    token = mailed_token(stack, address, VERIFY_SUBJECT)

    page = http.get("/v1/auth/verify-email", params={"token": token})  # the link: a page, changes nothing
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert me(http, access).json()["email_verified"] is False

    assert http.post("/v1/auth/verify-email", json={"token": token}).status_code == 204
    assert me(http, access).json()["email_verified"] is True
    assert field_error(http.post("/v1/auth/verify-email", json={"token": token})) == (
        ["body", "token"],
        "invalid_token",
    )
    # Verified: a resend sends nothing more.
    resend = http.post("/v1/auth/verify-email/resend", headers=bearer(access))
    assert resend.status_code == 202 and "verified already" in resend.json()["message"]


@pytest.mark.parametrize(
    ("name", "mailed_as"),
    [
        ("josé-{n}@example.com", "josé-{n}@example.com"),  # a local part beyond ASCII: SMTPUTF8
        ("u-{n}@exämple.com", "u-{n}@xn--exmple-cua.com"),  # an internationalised domain: its ASCII form
    ],
)
def test_an_address_beyond_ascii_gets_its_mail_and_logs_in_as_typed(
    http: httpx.Client, stack: Any, name: str, mailed_as: str
) -> None:
    """Found from outside: such accounts were made (202, login worked) but their mail was dead-lettered by
    SMTPUTF8, so they could never verify or reset; and the address typed decomposed (e + a combining accent, as
    some keyboards send it) did not log in."""
    n = uuid.uuid4().hex[:8]
    address = name.format(n=n)
    assert sign_up(http, address).status_code == 202
    assert mailed_token(stack, mailed_as.format(n=n), VERIFY_SUBJECT)
    decomposed = unicodedata.normalize("NFD", address)
    assert decomposed != address
    assert login(http, decomposed).status_code == 200


def test_verification_token_expires(http: httpx.Client, stack: Any) -> None:
    user = register(http, ["buyer"], "Late")
    token = mailed_token(stack, user.email, VERIFY_SUBJECT)
    sql(
        stack,
        "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE user_id = %s",
        user.user_id,
    )
    assert field_error(http.post("/v1/auth/verify-email", json={"token": token}))[1] == "invalid_token"
    # A new link works.
    assert http.post("/v1/auth/verify-email/resend", headers=user.headers).status_code == 202
    fresh = mailed_token(stack, user.email, VERIFY_SUBJECT, nth=2)
    assert fresh != token
    assert http.post("/v1/auth/verify-email", json={"token": fresh}).status_code == 204


def test_account_mails_carry_no_unsubscribe(http: httpx.Client, stack: Any) -> None:
    """Account mails are transactional: nothing to opt out of, so no List-Unsubscribe and no "stop" link (the
    unsubscribe endpoint would refuse their event type)."""
    address = new_email("transactional")
    assert sign_up(http, address).status_code == 202
    assert sign_up(http, address, name="Again").status_code == 202
    assert http.post("/v1/auth/password-reset", json={"email": address}).status_code == 202
    for subject in (VERIFY_SUBJECT, ATTEMPT_SUBJECT, RESET_SUBJECT):
        [message] = wait_until(lambda s=subject: mails_to(stack, address, s), timeout=20)
        assert "List-Unsubscribe" not in message, subject
        assert "List-Unsubscribe-Post" not in message, subject
        assert "unsubscribe" not in body_of(message).lower(), subject


# ---- password reset -------------------------------------------------------------------------------------------


def test_password_reset_by_mail_revokes_every_session(http: httpx.Client, stack: Any) -> None:
    user = register(http, ["buyer"], "Forgetful")
    session = tokens(http, user.email)
    unknown = http.post("/v1/auth/password-reset", json={"email": new_email("nobody")})
    asked = http.post("/v1/auth/password-reset", json={"email": user.email})
    assert asked.status_code == unknown.status_code == 202
    assert asked.json() == unknown.json()  # reveals no account
    # Nor by its time (found from outside: 30 ms with an account, 16 without): both take the same least time.
    for answer in (unknown, asked):
        assert answer.elapsed.total_seconds() >= RESET_ANSWER_SECONDS, answer.elapsed
    token = mailed_token(stack, user.email, RESET_SUBJECT)
    assert http.get("/v1/auth/password-reset/confirm", params={"token": token}).status_code == 200

    weak = http.post("/v1/auth/password-reset/confirm", json={"token": token, "password": "password1234"})
    assert field_error(weak) == (["body", "password"], "weak_password")
    # The policy refusal rolled back: the token is still good.
    new_password = "tangerine-harbour-quietly-9"
    done = http.post("/v1/auth/password-reset/confirm", json={"token": token, "password": new_password})
    assert done.status_code == 204, done.text

    assert me(http, session["access_token"]).status_code == 401  # revoked on the next request
    assert me(http, user.headers["Authorization"].split()[1]).status_code == 401
    refreshed = http.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 401
    assert login(http, user.email).status_code == 401
    fresh = tokens(http, user.email, new_password)
    assert me(http, fresh["access_token"]).json()["email_verified"] is True  # the reset mail proved it
    again = http.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "another-long-passphrase-2"}
    )
    assert field_error(again)[1] == "invalid_token"  # single use


def test_password_reset_token_expires(http: httpx.Client, stack: Any) -> None:
    user = register(http, ["buyer"], "Slow")
    assert http.post("/v1/auth/password-reset", json={"email": user.email}).status_code == 202
    token = mailed_token(stack, user.email, RESET_SUBJECT)
    sql(
        stack,
        "UPDATE account_tokens SET expires_at = now() - interval '1 second'"
        " WHERE user_id = %s AND purpose = 'password_reset'",
        user.user_id,
    )
    late = http.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "orchid-lantern-voyage-3"}
    )
    assert field_error(late)[1] == "invalid_token"
    assert login(http, user.email).status_code == 200  # the password did not change


def test_password_change_ends_other_sessions(http: httpx.Client) -> None:
    user = register(http, ["buyer"], "Changer")
    other = tokens(http, user.email)
    wrong = http.post(
        "/v1/auth/password",
        json={"current_password": "not-my-password", "new_password": "velvet-compass-rainfall-4"},
        headers=user.headers,
    )
    assert field_error(wrong) == (["body", "current_password"], "invalid_password")
    changed = http.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "velvet-compass-rainfall-4"},
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text
    assert me(http, other["access_token"]).status_code == 401
    assert http.get("/v1/users/me", headers=user.headers).status_code == 401
    assert me(http, changed.json()["access_token"]).status_code == 200


def test_a_password_with_a_control_character_is_a_422_and_no_failed_login(http: httpx.Client) -> None:
    """Found from outside: a NUL in a login's password was a 401 counted toward the lockout, where the README says
    a NUL in any text is a 422 naming the field (registration refuses it too)."""
    user = register(http, ["buyer"], "Nul")
    for _ in range(6):  # more than the lockout allows in a row
        refused = login(http, user.email, "pass\x00word")
        assert refused.status_code == 422, refused.text
        assert field_error(refused)[0] == ["body", "password"]
    changed = http.post(
        "/v1/auth/password",
        json={"current_password": "x\x00", "new_password": "velvet-compass-rainfall-4"},
        headers=user.headers,
    )
    assert field_error(changed) == (["body", "current_password"], "control_character")
    assert login(http, user.email).status_code == 200  # none of them counted


def test_two_password_changes_sent_together_one_is_made_and_the_other_finds_its_session_ended(
    http: httpx.Client,
) -> None:
    """Found from outside: both answered 200 with a session each, one new password was lost, and the session of
    the change that was undone lived on (30 days of refresh) past the change that should have ended it."""
    for attempt in range(3):
        user = register(http, ["buyer"], f"Racer {attempt}")
        new_passwords = ["velvet-compass-rainfall-4", "orchid-lantern-voyage-3"]
        together = threading.Barrier(2)

        def change(
            new_password: str, user: Any = user, together: threading.Barrier = together
        ) -> httpx.Response:
            together.wait()
            return http.post(
                "/v1/auth/password",
                json={"current_password": PASSWORD, "new_password": new_password},
                headers=user.headers,
            )

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(change, new_passwords))
        assert sorted(a.status_code for a in answers) == [200, 401], [a.text for a in answers]
        made = next(p for p, a in zip(new_passwords, answers, strict=True) if a.status_code == 200)
        lost = next(p for p in new_passwords if p != made)
        assert login(http, user.email, made).status_code == 200
        assert login(http, user.email, lost).status_code == 401
        winner = next(a for a in answers if a.status_code == 200).json()
        assert me(http, winner["access_token"]).status_code == 200


def test_password_change_spends_outstanding_reset_links(http: httpx.Client, stack: Any) -> None:
    user = register(http, ["buyer"], "Remembered")
    assert http.post("/v1/auth/password-reset", json={"email": user.email}).status_code == 202
    token = mailed_token(stack, user.email, RESET_SUBJECT)
    new_password = "velvet-compass-rainfall-4"
    changed = http.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text
    # The link mailed before the change must not undo it.
    late = http.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "orchid-lantern-voyage-3"}
    )
    assert field_error(late) == (["body", "token"], "invalid_token")
    assert me(http, changed.json()["access_token"]).status_code == 200
    assert tokens(http, user.email, new_password)["access_token"]


def test_deactivation_spends_outstanding_reset_links(http: httpx.Client, stack: Any) -> None:
    user = register(http, ["buyer"], "Suspended")
    assert http.post("/v1/auth/password-reset", json={"email": user.email}).status_code == 202
    token = mailed_token(stack, user.email, RESET_SUBJECT)
    run_cli(stack, "deactivate-user", user.email)
    run_cli(stack, "activate-user", user.email)
    late = http.post(
        "/v1/auth/password-reset/confirm", json={"token": token, "password": "orchid-lantern-voyage-3"}
    )
    assert field_error(late)[1] == "invalid_token"
    assert login(http, user.email).status_code == 200  # the password did not change
    # A link asked for after the reactivation works.
    assert http.post("/v1/auth/password-reset", json={"email": user.email}).status_code == 202
    fresh = mailed_token(stack, user.email, RESET_SUBJECT, nth=2)
    done = http.post(
        "/v1/auth/password-reset/confirm", json={"token": fresh, "password": "orchid-lantern-voyage-3"}
    )
    assert done.status_code == 204, done.text


# ---- sessions: refresh, logout, revocation ----------------------------------------------------------------------


def spent_long_ago(stack: Any, refresh_token: str) -> None:
    """Move the spent token's use back past the grace for a concurrent or retried use."""
    sql(
        stack,
        "UPDATE refresh_tokens SET used_at = used_at - %s - interval '1 second' WHERE token_hash = %s",
        REUSE_GRACE,
        digest(refresh_token),
    )


def refresh(http: httpx.Client, refresh_token: str) -> httpx.Response:
    return http.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


def test_refresh_rotates_and_a_reused_token_ends_the_session(http: httpx.Client, stack: Any) -> None:
    user = register(http, ["buyer"], "Rotator")
    first = tokens(http, user.email)
    second = http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert me(http, pair["access_token"]).status_code == 200
    assert me(http, first["access_token"]).status_code == 200  # same session: still valid until it expires

    # The spent token again (a copy), later than the grace for a retry: refused, and the whole session ends, for
    # both holders.
    spent_long_ago(stack, first["refresh_token"])
    reused = http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401 and "already used" in reused.json()["error"]["message"]
    assert me(http, pair["access_token"]).status_code == 401
    assert http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    # Other sessions of the account are not touched.
    assert http.get("/v1/users/me", headers=user.headers).status_code == 200
    assert http.post("/v1/auth/refresh", json={"refresh_token": "not-a-token"}).status_code == 401


def test_concurrent_refreshes_with_one_token_keep_the_session(http: httpx.Client, stack: Any) -> None:
    """Two tabs refreshing at once, or a retry after a lost answer: the token that was just rotated, used again
    within the grace, gets another pair of the same session, and the winner's pair stays valid."""
    user = register(http, ["buyer"], "Tabs")
    first = tokens(http, user.email)
    start = threading.Barrier(2)

    def tab(_: int) -> httpx.Response:
        start.wait()
        return refresh(http, first["refresh_token"])

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(tab, range(2)))
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    retried = refresh(http, first["refresh_token"])  # a retry a moment later
    assert retried.status_code == 200, retried.text
    pairs = [a.json() for a in (*answers, retried)]
    assert len({p["refresh_token"] for p in pairs} | {first["refresh_token"]}) == 4
    for pair in pairs:
        assert me(http, pair["access_token"]).status_code == 200
    for pair in pairs:  # each holder's refresh token goes on rotating in the same live session
        assert refresh(http, pair["refresh_token"]).status_code == 200
    assert me(http, pairs[0]["access_token"]).status_code == 200

    # Past the grace, the same token is a copy again: the session ends for every holder.
    spent_long_ago(stack, first["refresh_token"])
    reused = refresh(http, first["refresh_token"])
    assert reused.status_code == 401 and "already used" in reused.json()["error"]["message"]
    for pair in pairs:
        assert me(http, pair["access_token"]).status_code == 401


def test_retried_refresh_of_an_ended_session_is_refused(http: httpx.Client) -> None:
    user = register(http, ["buyer"], "Retrier")
    first = tokens(http, user.email)
    pair = refresh(http, first["refresh_token"]).json()
    assert http.post("/v1/auth/logout", headers=bearer(pair["access_token"])).status_code == 204
    late = refresh(http, first["refresh_token"])  # within the grace, but the session is over
    assert late.status_code == 401 and "session has ended" in late.json()["error"]["message"]


def test_logout_ends_this_session_or_all(http: httpx.Client) -> None:
    user = register(http, ["buyer"], "Leaver")
    phone, laptop = tokens(http, user.email), tokens(http, user.email)
    assert http.post("/v1/auth/logout", headers=bearer(phone["access_token"])).status_code == 204
    assert me(http, phone["access_token"]).status_code == 401
    assert http.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}).status_code == 401
    assert me(http, laptop["access_token"]).status_code == 200
    everywhere = http.post(
        "/v1/auth/logout", json={"everywhere": True}, headers=bearer(laptop["access_token"])
    )
    assert everywhere.status_code == 204
    assert me(http, laptop["access_token"]).status_code == 401
    assert http.get("/v1/users/me", headers=user.headers).status_code == 401


def test_removed_role_and_deactivation_apply_on_the_next_request(http: httpx.Client, stack: Any) -> None:
    staff = support_user(http, stack)
    assert http.get("/v1/support/disputes", headers=staff.headers).status_code == 200
    run_cli(stack, "revoke-role", staff.email, "support")
    assert http.get("/v1/support/disputes", headers=staff.headers).status_code == 401  # its token is revoked
    again = bearer(tokens(http, staff.email)["access_token"])
    assert http.get("/v1/support/disputes", headers=again).status_code == 403  # and the role is gone

    run_cli(stack, "deactivate-user", staff.email)
    assert http.get("/v1/users/me", headers=again).status_code == 401
    assert login(http, staff.email).status_code == 401
    run_cli(stack, "activate-user", staff.email)
    assert login(http, staff.email).status_code == 200
    # Found from outside: an unknown address printed a traceback; it is one line, like every refusal.
    for command in ("grant-role", "revoke-role"):
        unknown = run_cli(stack, command, new_email("nobody"), "support", check=False)
        assert unknown.returncode == 1 and unknown.stderr.startswith("refused: no user with email"), unknown
        assert "Traceback" not in unknown.stderr


# ---- brute force ------------------------------------------------------------------------------------------------


def test_brute_force_locks_the_account_even_for_the_right_password(http: httpx.Client) -> None:
    user = register(http, ["buyer"], "Target")
    statuses = []
    for n in range(30):
        # From a new address each time: the lockout is the account's, not the address's.
        response = login(http, user.email, f"guess-number-{n}", **from_address(client_address()))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "rate_limited"
            assert '"login-account-60s";q=5;w=60' in response.headers["RateLimit-Policy"]
            assert '"login-account-60s";r=0;' in response.headers["RateLimit"]
    assert 429 in statuses[:10], statuses
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    right = login(http, user.email)
    assert right.status_code == 429, right.text  # the right password waits for the lock too
    assert http.get("/v1/users/me", headers=user.headers).status_code == 200  # sessions are not affected


# ---- security headers -------------------------------------------------------------------------------------------


# A fixed id of no listing: parameters are the same in every collection (pytest-xdist compares them).
@pytest.mark.parametrize(
    "path", ["/healthz", "/v1/listings/00000000-0000-4000-8000-000000000000", "/v1/users/me"]
)
def test_security_headers_on_every_response(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP
    over_tls = http.get(path, headers={"X-Forwarded-Proto": "https"})  # from the trusted proxy (loopback)
    assert over_tls.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_answers_to_a_caller_are_not_stored_and_listing_reads_vary_by_caller(http: httpx.Client) -> None:
    """Found from outside: a new API key's secret, the caller's profile and orders came without `Cache-Control`,
    and a listing read (drafts for their seller) without `Vary: Authorization`."""
    seller = seller_with_payout(http)
    for answer in (
        http.post("/v1/api-keys", json={"name": "shop"}, headers=seller.headers),
        http.get("/v1/users/me", headers=seller.headers),
        http.get("/v1/orders", headers=seller.headers),
    ):
        assert answer.status_code in (200, 201), answer.text
        assert answer.headers["Cache-Control"] == "no-store", answer.request.url
    listing = published_listing(http, seller)
    for headers in ({}, seller.headers):
        read = http.get(f"/v1/listings/{listing['id']}", headers=headers)
        assert read.headers["Vary"] == "Authorization"
    assert "Cache-Control" not in http.get(f"/v1/listings/{listing['id']}").headers  # anonymous: cacheable
    assert (
        http.get("/v1/categories", headers=seller.headers).headers["Cache-Control"] == "public, max-age=300"
    )
