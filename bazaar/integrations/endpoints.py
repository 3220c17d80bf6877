"""Webhook endpoints: where an app wants which events, in its scope, and the secrets that sign what it gets.

Signing follows the Standard Webhooks specification with its reference library (`standardwebhooks`): a secret is
`whsec_` and 32 random bytes in base64; each delivery carries `webhook-id`, `webhook-timestamp` and
`webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256>`. Rotating a secret keeps the old one
signing too for `WEBHOOK_SECRET_OVERLAP_SECONDS`, so a receiver can switch secrets without losing a delivery.

A secret is shown when it is made (creation, rotation) and stored as is: the sender must sign with it (an HMAC
key cannot be hashed), and whoever can read the database can already read every event it would sign.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from bazaar.errors import DomainError, ErrorCode, field_error
from bazaar.integrations.events import EventGroup, EventType
from bazaar.integrations.models import WebhookEndpoint
from bazaar.integrations.scope import Scope

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MAX_ENDPOINTS = 50  # per scope: each one multiplies every event's deliveries


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one during its overlap."""
    found = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        found.append(endpoint.previous_secret)
    return found


def signature(secrets_: Iterable[str], message_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,...` per secret, space-separated (Standard Webhooks)."""
    return " ".join(Webhook(secret).sign(message_id, timestamp, body) for secret in secrets_)


# ----------------------------------------------------------------------------------------------- input


def url_problem(url: str, allow_local: bool) -> str | None:
    """Why an endpoint may not be `url` (None: it may). https to a public host; with `allow_local` (dev, tests)
    also http, and loopback or private addresses. A name that resolves to a private address is not caught here:
    in production, let the sender reach the internet only (an egress proxy or network policy)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        return "must be an http(s) URL with a host"
    if allow_local:
        return None
    if parts.scheme != "https":
        return "must be https"
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return "must be a public host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name
    return None if address.is_global else "must be a public address"


# A checkout is the platform's (a seller hears of its own order by `order.paid`): never a seller's events.
PLATFORM_ONLY = frozenset({EventType.CHECKOUT_PAID, EventType.CHECKOUT_PAYMENT_FAILED, EventGroup.CHECKOUT})


def normalized_types(patterns: Iterable[str], scope: Scope) -> list[str]:
    """The event types and groups an endpoint of `scope` asked for, each once, in a stable order (checked at the
    edge): a seller's endpoint may ask only for the types a seller's feed has."""
    known = {t.value for t in EventType} | {g.value for g in EventGroup}
    platform_only = {str(t) for t in PLATFORM_ONLY} if scope.seller_id is not None else set()
    chosen = sorted(set(patterns))
    unknown = [p for p in chosen if p not in known]
    theirs = [p for p in chosen if p in platform_only]
    if unknown:
        problem = f"unknown event types {unknown}"
    elif theirs:
        problem = f"{theirs} are the platform's events, not a seller's (a seller hears of its own order by order.paid)"
    elif not chosen:
        problem = "choose at least one event type"
    else:
        return chosen
    raise field_error("event_types", problem, "value_error", event_types=sorted(known - platform_only))


# ---------------------------------------------------------------------------------------------- actions


def _owned(scope: Scope) -> ColumnElement[bool]:
    if scope.seller_id is None:
        return WebhookEndpoint.seller_id.is_(None)
    return WebhookEndpoint.seller_id == scope.seller_id


async def create(
    session: AsyncSession,
    scope: Scope,
    url: str,
    event_types: list[str],
    description: str,
    enabled: bool,
) -> WebhookEndpoint:
    """A new endpoint of the scope with a new secret (the returned row's `secret`: show it now)."""
    count = await session.scalar(select(WebhookEndpoint.id).where(_owned(scope)).offset(MAX_ENDPOINTS - 1))
    if count is not None:
        raise DomainError(
            ErrorCode.WEBHOOK_ENDPOINTS_FULL,
            f"at most {MAX_ENDPOINTS} webhook endpoints per scope: delete one first",
            {"limit": MAX_ENDPOINTS},
        )
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        seller_id=scope.seller_id,
        created_by=scope.user_id,
        url=url,
        description=description,
        event_types=normalized_types(event_types, scope),
        enabled=enabled,
        disabled_reason=None if enabled else "disabled by its owner",
        secret=new_secret(),
    )
    session.add(endpoint)
    await session.flush()
    await session.refresh(endpoint)
    return endpoint


async def list_endpoints(session: AsyncSession, scope: Scope) -> list[WebhookEndpoint]:
    found = await session.scalars(
        select(WebhookEndpoint).where(_owned(scope)).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(found.all())


async def get(
    session: AsyncSession, scope: Scope, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    """An endpoint of the scope (another scope's is not found)."""
    statement = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, _owned(scope))
    endpoint = await session.scalar(statement.with_for_update() if lock else statement)
    if endpoint is None:
        raise DomainError(ErrorCode.NOT_FOUND, "webhook endpoint not found")
    return endpoint


async def update(
    session: AsyncSession,
    scope: Scope,
    endpoint_id: uuid.UUID,
    *,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given. Enabling a disabled endpoint (e.g. after its deliveries failed for days) resumes
    its pending deliveries; disabling one holds them."""
    endpoint = await get(session, scope, endpoint_id, lock=True)
    if url is not None:
        endpoint.url = url
    if event_types is not None:
        endpoint.event_types = normalized_types(event_types, scope)
    if description is not None:
        endpoint.description = description
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        endpoint.disabled_reason = None if enabled else "disabled by its owner"
    await session.flush()
    await session.refresh(endpoint)
    return endpoint


async def rotate_secret(
    session: AsyncSession, scope: Scope, endpoint_id: uuid.UUID, overlap: timedelta
) -> WebhookEndpoint:
    """A new secret; the current one keeps signing too for `overlap` (one previous secret is kept: rotating
    again within the overlap ends the older one's)."""
    endpoint = await get(session, scope, endpoint_id, lock=True)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = datetime.now(UTC) + overlap
    endpoint.secret = new_secret()
    await session.flush()
    await session.refresh(endpoint)
    return endpoint


async def delete(session: AsyncSession, scope: Scope, endpoint_id: uuid.UUID) -> None:
    """Delete the endpoint with its deliveries and their log (the outcome of a delivery being sent is dropped)."""
    endpoint = await get(session, scope, endpoint_id)
    await session.delete(endpoint)
    await session.flush()
