"""API keys: an app's credential, `Authorization: Bearer bzk_...`, good for the integration routes only.

A key is 32 random bytes (256 bits), shown once when it is created. At rest it is an HMAC-SHA256 of the key under
a server secret (`API_KEY_SECRET`: compose and devstack always set it; a bare setup without it uses the JWT
secret), not a slow password hash: a password hash is slow to make guessing a low-entropy secret expensive, and
nobody can guess 256 random bits, so a fast hash loses nothing, and it lets every request find its key by an index
lookup. The server secret adds that a copy of the table alone cannot even be used to check a leaked key. A key
works while it is not revoked and its creator is active and still holds the role of its scope (seller, or support
for the platform's).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.errors import DomainError, ErrorCode
from bazaar.integrations.models import ApiKey
from bazaar.integrations.scope import Scope
from bazaar.models import Role, User
from bazaar.settings import get_settings

PREFIX = "bzk_"
SHOWN_PREFIX = 12  # characters of a key kept to tell keys apart in lists ("bzk_" and 8 more)
# `last_used_at` is written at most this often per key: a busy app must not turn its reads into writes.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    secret = get_settings().api_key_hash_secret()
    return hmac.new(b"api-key:" + secret.encode(), key.encode(), hashlib.sha256).hexdigest()


async def create(session: AsyncSession, scope: Scope, name: str) -> tuple[ApiKey, str]:
    """A new key of `scope`, created by its user; returns it and the key itself (never stored)."""
    key = new_key()
    row = ApiKey(
        id=uuid.uuid4(),
        seller_id=scope.seller_id,
        created_by=scope.user_id,
        name=name,
        prefix=key[:SHOWN_PREFIX],
        key_hash=key_hash(key),
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, key


async def list_keys(session: AsyncSession, scopes: list[Scope]) -> list[ApiKey]:
    """The live keys of these scopes, newest first (a revoked key is deleted for its owner: its row stays for
    the audit trail)."""
    found = await session.scalars(
        select(ApiKey)
        .where(_owned(scopes), ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
        .limit(200)  # far more than an app needs; a seller with more has a problem to look at
    )
    return list(found.all())


async def get(session: AsyncSession, scopes: list[Scope], key_id: uuid.UUID) -> ApiKey:
    """A live key of one of these scopes (another scope's is not found; a revoked one neither)."""
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, _owned(scopes)))
    if row is None or row.revoked_at is not None:
        raise DomainError(ErrorCode.NOT_FOUND, "API key not found")
    return row


async def revoke(session: AsyncSession, scopes: list[Scope], key_id: uuid.UUID) -> ApiKey:
    """Revoke a key of these scopes (at once: each request looks its key up). A revoked key is gone: revoking it
    again is a 404, as for any deleted resource."""
    row = await get(session, scopes, key_id)
    row.revoked_at = datetime.now(UTC)
    return row


def _owned(scopes: list[Scope]) -> ColumnElement[bool]:
    return or_(
        *(
            ApiKey.seller_id.is_(None) if s.seller_id is None else ApiKey.seller_id == s.seller_id
            for s in scopes
        )
    )


async def authenticate(session: AsyncSession, key: str) -> Scope:
    """The scope of a live key, or 401 (unknown, revoked, or its creator inactive or without the role)."""
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.seller_id, ApiKey.created_by, ApiKey.last_used_at, User.roles)
            .join(User, User.id == ApiKey.created_by)
            .where(ApiKey.key_hash == key_hash(key), ApiKey.revoked_at.is_(None), User.is_active)
        )
    ).one_or_none()
    roles = set(row.roles) if row is not None else set()
    if row is None or not (
        Role.SELLER.value in roles
        if row.seller_id is not None
        else roles & {Role.SUPPORT.value, Role.ADMIN.value}
    ):
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "invalid or revoked API key")
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return Scope(seller_id=row.seller_id, user_id=row.created_by, api_key_id=row.id)
