"""Security headers on every response, headers that dependencies add to whatever response follows (rate limits),
and who the client is.

Headers: `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'` (never framed),
`Referrer-Policy: no-referrer` (links in our pages carry tokens), `Cache-Control: no-store` on answers to requests
with credentials (unless the route set its own), and `Strict-Transport-Security` on requests that came over TLS
(`HSTS_MAX_AGE_SECONDS`). Whether a request came over TLS, and its client address, are what uvicorn
says: it believes X-Forwarded-Proto and X-Forwarded-For only from `FORWARDED_ALLOW_IPS` (a proxy in front).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bazaar.settings import get_settings

# Headers a dependency wants on the response whatever the handler returns (a handler may build its own
# Response, which ignores the injected one): scope["state"][RESPONSE_HEADERS][key] = [(name, value), ...].
RESPONSE_HEADERS = "response_headers"

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


def add_response_headers(request: Request, key: str, headers: list[tuple[str, str]]) -> None:
    """Put `headers` on this request's response (replacing what was added under `key` before)."""
    extra = request.scope.setdefault("state", {}).setdefault(RESPONSE_HEADERS, {})
    extra[key] = headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, hsts_max_age_seconds: int) -> None:
        self.app = app
        self.hsts = (
            f"max-age={hsts_max_age_seconds}; includeSubDomains".encode() if hsts_max_age_seconds else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # shared with the app's request.state from here on

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in _ALWAYS if name not in present]
                if b"cache-control" not in present and _credentialed(scope):
                    # What answers a caller (their keys, secrets, orders, profile) is kept by no cache.
                    headers.append((b"cache-control", b"no-store"))
                if self.hsts is not None and scope.get("scheme") == "https":
                    headers.append((b"strict-transport-security", self.hsts))
                for extra in state.get(RESPONSE_HEADERS, {}).values():
                    headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in extra]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _credentialed(scope: Scope) -> bool:
    """The request carries credentials: a bearer token or API key, or cookies (the console's session)."""
    return any(name in (b"authorization", b"cookie") for name, _ in scope.get("headers", ()))


def client_address(request: Request) -> str:
    """The client's address as the per-address limits count it: an IPv6 address by its /64 (what one host
    usually gets), IPv4 as it is."""
    return _limited_address(request.client.host if request.client else "unknown")


@lru_cache(maxsize=4096)  # on every search and listing read: parsing an address costs more than the lookup
def _limited_address(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def install(app: FastAPI) -> None:
    app.add_middleware(SecurityHeadersMiddleware, hsts_max_age_seconds=get_settings().hsts_max_age_seconds)


# The largest request body the API reads: a listing is a few kB, a payment provider's webhook tens.
MAX_REQUEST_BODY_BYTES = 1 << 20


class BodyLimitMiddleware:
    """Refuse a request body past `MAX_REQUEST_BODY_BYTES` where it is read: a declared length over it at the
    first read, else once the bytes received pass it (chunked). An HTTPException, which the body parsing passes
    on as it is and the API's handler answers as 413 `payload_too_large` with the usual error body (FastAPI's own
    `max_body_size` answers from outside the API's middleware: plain text, no trace id). A route that never
    reads the body (a 401 first) is not concerned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        received = int(declared) if declared.isdigit() else 0  # counted from there when undeclared

        async def limited() -> Message:
            nonlocal received
            if received <= MAX_REQUEST_BODY_BYTES:  # a declared length over it: refused before reading
                message = await receive()
                if not declared:
                    received += len(message.get("body", b""))
                if received <= MAX_REQUEST_BODY_BYTES:
                    return message
            raise HTTPException(413, f"the request body is over {MAX_REQUEST_BODY_BYTES} bytes")

        await self.app(scope, limited, send)


def limit_bodies(app: FastAPI) -> None:
    app.add_middleware(BodyLimitMiddleware)
