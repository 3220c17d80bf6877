"""Login sessions: an access token plus a refresh token per login. Refresh tokens are 256 random bits stored as
their SHA-256, rotated on every use (the spent one is kept until it expires); presenting a spent one again means
it was copied, so the whole session (the rotation family) ends, for the thief and the owner alike (RFC 9700
4.14.2). Except within `REUSE_GRACE` of its rotation: that is the same client again (a second tab refreshing at
once, a retry after a lost answer), which gets another pair of the same session rather than ending it.
Logout ends one session; bazaar.auth.end_all_sessions ends them all."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar import auth
from bazaar.accounts.links import digest
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import AccountToken, AuthSession, RefreshToken, User
from bazaar.settings import get_settings

# How long after its rotation a spent refresh token still gets a pair instead of ending its session. Short: a
# copy presented this soon after the owner's refresh goes unnoticed (a thief would have to race the owner).
REUSE_GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: uuid.UUID


class RefreshTokenReused(DomainError):
    """A spent refresh token came back: its session was ended in the caller's transaction, which the caller
    must commit before answering (the answer itself is a 401)."""

    def __init__(self) -> None:
        super().__init__(
            ErrorCode.NOT_AUTHENTICATED,
            "this refresh token was already used: the session is ended, log in again",
        )


def _tokens(session: AsyncSession, user: User, session_id: uuid.UUID, expires: datetime) -> Tokens:
    """The session's next tokens; its refresh token expires at `expires`, as the session must then."""
    refresh = secrets.token_urlsafe(32)
    session.add(RefreshToken(session_id=session_id, token_hash=digest(refresh), expires_at=expires))
    access, access_ttl = auth.issue_token(user, session_id)
    return Tokens(access, access_ttl, refresh, get_settings().refresh_token_ttl_seconds, session_id)


def _refresh_expiry() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=get_settings().refresh_token_ttl_seconds)


async def start(session: AsyncSession, user: User) -> Tokens:
    """A new login session of `user` (authenticated by the caller) and its first tokens."""
    session_id, expires = uuid.uuid4(), _refresh_expiry()
    session.add(
        AuthSession(id=session_id, user_id=user.id, token_version=user.token_version, expires_at=expires)
    )
    await session.flush()
    return _tokens(session, user, session_id, expires)


async def rotate(session: AsyncSession, refresh_token: str) -> Tokens:
    """Spend `refresh_token` and issue the next pair of its session. 401 when it is unknown or expired, or its
    session or user is no longer valid; `RefreshTokenReused` (after ending the session) when it was spent more
    than `REUSE_GRACE` ago. Spent less than that ago, it gets another pair of its session (the winner's stays
    valid)."""
    found = (
        await session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(User, User.id == AuthSession.user_id)
            .where(RefreshToken.token_hash == digest(refresh_token))
            .with_for_update(of=RefreshToken)
        )
    ).one_or_none()
    if found is None:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "invalid refresh token")
    token, login, user = found
    now = datetime.now(UTC)
    # A second use at the same moment waits on the row lock, then finds the token spent by the first: spent this
    # recently, it is the same client again (another tab, a retry), not a copy.
    if token.used_at is not None and now - token.used_at > REUSE_GRACE:
        if login.revoked_at is None:
            login.revoked_at = now
            login.revoked_reason = "refresh_reuse"
        raise RefreshTokenReused()
    if token.expires_at <= now or not _live(login, user) or not user.is_active:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "this session has ended: log in again")
    if token.used_at is None:  # (spent already: its time stays, so repeated uses do not stretch the grace)
        token.used_at = now
    expires = _refresh_expiry()
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == login.id)
        .values(expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    return _tokens(session, user, login.id, expires)


def _live(login: AuthSession, user: User) -> bool:
    """Whether a login session still stands: not ended, and issued at the user's current token version."""
    return login.revoked_at is None and login.token_version == user.token_version


async def is_current(session: AsyncSession, session_id: uuid.UUID, user: User) -> bool:
    """Whether the login session is still live at the user's token version (as read by the caller)."""
    login = await session.get(AuthSession, session_id)
    return login is not None and _live(login, user)


async def end(session: AsyncSession, session_id: uuid.UUID, reason: str = "logout") -> None:
    """End one login session: its access and refresh tokens are refused from now on."""
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


async def purge_expired(session: AsyncSession) -> int:
    """Delete what can no longer be used: sessions past their last refresh token's expiry (with their refresh
    tokens), expired refresh tokens, and expired mailed tokens. Returns how many rows went."""
    gone = 0
    for statement in (
        delete(AuthSession).where(AuthSession.expires_at < func.now()),
        delete(RefreshToken).where(RefreshToken.expires_at < func.now()),
        delete(AccountToken).where(AccountToken.expires_at < func.now()),
    ):
        result = await session.execute(statement.execution_options(synchronize_session=False))
        gone += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return gone
