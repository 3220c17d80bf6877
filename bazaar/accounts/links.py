"""Single-use tokens mailed to an account (verify the email, reset the password): 256 random bits, stored only as
their SHA-256, expiring, and spent by their first use (one atomic UPDATE, so two uses at once cannot both win)."""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.errors import DomainError, field_error
from bazaar.models import AccountToken


class Purpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose, not a password


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(session: AsyncSession, user_id: uuid.UUID, purpose: Purpose, ttl_seconds: int) -> str:
    """A new token for `user_id` (stored hashed in the caller's transaction); older ones stay valid until used."""
    token = secrets.token_urlsafe(32)
    session.add(
        AccountToken(
            user_id=user_id,
            purpose=purpose.value,
            token_hash=digest(token),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds),
        )
    )
    await session.flush()
    return token


def invalid_token(field: str = "token") -> DomainError:
    return field_error(field, "invalid, expired or already used: ask for a new link", "invalid_token")


async def redeem(session: AsyncSession, token: str, purpose: Purpose) -> uuid.UUID:
    """Spend the token and return its user; 422 when it is unknown, expired or spent."""
    user_id = await session.scalar(
        update(AccountToken)
        .where(
            AccountToken.token_hash == digest(token),
            AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > func.now(),
        )
        .values(used_at=func.now())
        .returning(AccountToken.user_id)
        .execution_options(synchronize_session=False)
    )
    if user_id is None:
        raise invalid_token()
    return user_id


async def spend_all(session: AsyncSession, user_id: uuid.UUID, purpose: Purpose) -> None:
    """Spend every unused token of the user for `purpose` (a reset makes the other reset links useless)."""
    await session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=func.now())
        .execution_options(synchronize_session=False)
    )
