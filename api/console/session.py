"""Who is using the support console: the API's own accounts and login sessions (bazaar.auth,
bazaar.accounts.sessions) carried in cookies instead of an Authorization header, and CSRF protection.

- Login starts an ordinary session (`sessions.start`, after the API's login limits and lockout) for a user with
  the support (or admin) role; its access token and refresh token live in two cookies, `HttpOnly`,
  `SameSite=Strict`, `Path=/console`, and `Secure` when the request came over TLS. Every request checks the
  access token against the database (`principal_for`): logout, a password reset, deactivation or a role removed
  end the console session at once, as for the API. An expired access token is rotated with the refresh token
  (`sessions.rotate`, its own transaction) and both cookies are replaced.
- CSRF: every POST carries a token (form field `csrf_token`, or the `X-CSRF-Token` header htmx sends), an HMAC of
  the login session's id under the JWT secret, so it is valid for that session only. The login form, which has
  no session yet, uses a random double-submit token: a cookie and the same value in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from api.deps import Session
from api.security import add_response_headers
from bazaar.accounts import sessions
from bazaar.auth import Principal, decode_token, principal_for
from bazaar.db import transaction
from bazaar.errors import DomainError
from bazaar.models import Role
from bazaar.settings import get_settings

PREFIX = "/console"
ACCESS_COOKIE = "bazaar_console"
REFRESH_COOKIE = "bazaar_console_refresh"
LOGIN_CSRF_COOKIE = "bazaar_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CONSOLE_ROLES = frozenset({Role.SUPPORT.value, Role.ADMIN.value})


class LoginRequired(Exception):
    """No valid console session: the handler installed by `api.console` redirects to the login page."""

    def __init__(self, next_path: str = "") -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRejected(Exception):
    """A POST without the token of its session."""


def cookie(request: Request, name: str, value: str, max_age: int) -> str:
    """A Set-Cookie value for the console: HttpOnly, SameSite=Strict, Path=/console, Secure over TLS."""
    parts = [f"{name}={value}", f"Path={PREFIX}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if request.url.scheme == "https":
        parts.append("Secure")
    return "; ".join(parts)


def set_cookies(request: Request, key: str, values: list[str]) -> None:
    """Put Set-Cookie headers on whatever response this request gets (api.security adds them)."""
    add_response_headers(request, f"console-cookie:{key}", [("Set-Cookie", v) for v in values])


def session_cookies(request: Request, tokens: sessions.Tokens) -> None:
    set_cookies(
        request,
        "session",
        [
            cookie(request, ACCESS_COOKIE, tokens.access_token, tokens.refresh_expires_in),
            cookie(request, REFRESH_COOKIE, tokens.refresh_token, tokens.refresh_expires_in),
        ],
    )


def clear_session_cookies(request: Request) -> None:
    set_cookies(
        request, "session", [cookie(request, ACCESS_COOKIE, "", 0), cookie(request, REFRESH_COOKIE, "", 0)]
    )


def csrf_token(session_id: uuid.UUID | None) -> str:
    """The CSRF token of one login session (HMAC, so nothing is stored)."""
    key = get_settings().require("jwt_secret").encode()
    return hmac.new(key, f"console-csrf:{session_id}".encode(), hashlib.sha256).hexdigest()


def login_csrf(request: Request) -> str:
    """The login form's double-submit token: the cookie's, or a new one set on the response."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
        set_cookies(request, "login-csrf", [cookie(request, LOGIN_CSRF_COOKIE, token, 3600)])
    return token


def check_login_csrf(request: Request, sent: str) -> None:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not expected or not hmac.compare_digest(expected, sent):
        raise CsrfRejected()


async def check_csrf(request: Request, staff: Principal) -> None:
    """Every console POST: the token of the caller's session, in the header (htmx) or the form."""
    sent = request.headers.get(CSRF_HEADER) or ""
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    if not sent or not hmac.compare_digest(csrf_token(staff.session_id), sent):
        raise CsrfRejected()


def _next_path(request: Request) -> str:
    if request.method != "GET":
        return ""
    query = f"?{request.url.query}" if request.url.query else ""
    return quote(f"{request.url.path}{query}", safe="/?=&")


async def _from_cookies(request: Request, db: Session) -> Principal:
    access = request.cookies.get(ACCESS_COOKIE)
    if access:
        try:
            return await principal_for(db, decode_token(access))
        except DomainError:
            pass  # expired (or revoked: the refresh below fails too)
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not refresh:
        raise LoginRequired(_next_path(request))
    try:
        tokens = await _rotate(refresh)
    except DomainError as exc:
        clear_session_cookies(request)
        raise LoginRequired(_next_path(request)) from exc
    session_cookies(request, tokens)
    return await principal_for(db, decode_token(tokens.access_token))


async def _rotate(refresh: str) -> sessions.Tokens:
    """Spend the refresh token in a transaction of its own (it sticks whatever this request does next); a reused
    one ends its session, and that end is committed too (as `POST /v1/auth/refresh` does)."""
    reused: sessions.RefreshTokenReused | None = None
    async with transaction() as own:
        try:
            return await sessions.rotate(own, refresh)
        except sessions.RefreshTokenReused as exc:
            reused = exc  # leave the block normally: the session's end commits
    assert reused is not None
    raise reused


async def console_staff(request: Request, db: Session) -> Principal:
    """The signed-in support user of a console request; POSTs must carry the session's CSRF token."""
    staff = await _from_cookies(request, db)
    if not staff.roles & CONSOLE_ROLES:
        clear_session_cookies(request)
        raise LoginRequired(_next_path(request))
    if request.method == "POST":
        await check_csrf(request, staff)
    request.state.console_csrf = csrf_token(staff.session_id)
    return staff


Staff = Annotated[Principal, Depends(console_staff)]
