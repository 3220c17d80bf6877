"""Credentials and who is calling: argon2 password hashes, short signed access tokens checked against the
database on every request, roles, and the token version that ends every session of a user at once.

An access token (JWT, `ACCESS_TOKEN_TTL_SECONDS`) names its user (`sub`), its login session (`sid`) and the
user's token version when it was issued (`ver`). `principal_for` reads the user and the session on each request:
a token is refused once its session was ended (logout, a reused refresh token) or the user's version moved on
(password change or reset, deactivation, a role granted or removed). Roles come from the database, never from the
token. Sessions and refresh tokens: bazaar.accounts.sessions.
"""

from __future__ import annotations

import time
import unicodedata
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.accounts import links
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import AuditEvent, AuthSession, Order, PaymentState, Role, User
from bazaar.orders.types import Actor, Party
from bazaar.settings import get_settings
from bazaar.trust.reputation import reindex_seller_listings

_hasher = PasswordHasher()
# Verified against when the email is unknown, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
TOKEN_ALGORITHM = "HS256"  # noqa: S105 - an algorithm name, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: a valid access token whose session and user were checked in the database."""

    user_id: uuid.UUID
    roles: frozenset[str]
    session_id: uuid.UUID | None = None
    email_verified: bool = True

    def has(self, role: Role) -> bool:
        return role.value in self.roles or Role.ADMIN.value in self.roles


@dataclass(frozen=True)
class AccessClaims:
    """What a well-signed, unexpired access token says (not yet checked against the database)."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    version: int


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one hashed; with no hash, a dummy is checked so the time is the same."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, InvalidHashError):
        return False


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    """The account of an address as typed: case aside, and in Unicode's composed form (NFC), the form
    registration stores it in, so a keyboard that sends `é` as `e` + a combining accent finds it too."""
    typed = unicodedata.normalize("NFC", email).lower()
    return await session.scalar(select(User).where(func.lower(User.email) == typed))


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    user = await user_by_email(session, email)
    if (
        not password_matches(user.password_hash if user else None, password)
        or user is None
        or not user.is_active
    ):
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, "incorrect email or password")
    return user


def issue_token(user: User, session_id: uuid.UUID) -> tuple[str, int]:
    """An access token of `user`'s login session `session_id`, and its lifetime in seconds."""
    settings = get_settings()
    ttl = settings.access_token_ttl_seconds
    now = int(time.time())
    claims = {
        "sub": str(user.id),
        "sid": str(session_id),
        "ver": user.token_version,
        "roles": list(user.roles),  # informational: each request reads the roles from the database
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, settings.require("jwt_secret"), algorithm=TOKEN_ALGORITHM), ttl


def decode_token(token: str) -> AccessClaims:
    """The claims of a well-signed, unexpired access token (`principal_for` then checks them)."""
    try:
        claims = jwt.decode(
            token,
            get_settings().require("jwt_secret"),
            algorithms=[TOKEN_ALGORITHM],
            options={"require": ["exp", "sub", "sid", "ver"]},
        )
        return AccessClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]), int(claims["ver"]))
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "invalid or expired access token") from exc


async def principal_for(session: AsyncSession, claims: AccessClaims) -> Principal:
    """The caller of a decoded token, if its session is live and its user active at the same token version."""
    row = (
        await session.execute(
            select(
                User.roles, User.is_active, User.token_version, User.email_verified_at, AuthSession.revoked_at
            )
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(User.id == claims.user_id, AuthSession.id == claims.session_id)
        )
    ).one_or_none()
    if row is None or not row.is_active or row.token_version != claims.version or row.revoked_at is not None:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "this access token was revoked: log in again")
    return Principal(
        user_id=claims.user_id,
        roles=frozenset(row.roles),
        session_id=claims.session_id,
        email_verified=row.email_verified_at is not None,
    )


async def end_all_sessions(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Bump the user's token version: every access token and session issued before is refused from now on."""
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(token_version=User.token_version + 1)
        .execution_options(synchronize_session=False)
    )


async def _user_or_404(session: AsyncSession, email: str) -> User:
    user = await user_by_email(session, email)
    if user is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"no user with email {email}")
    return user


def _audit(user: User, action: str, data: dict[str, str]) -> AuditEvent:
    return AuditEvent(
        actor_id=None,
        actor_role="cli",
        subject_type="user",
        subject_id=str(user.id),
        action=action,
        data=data,
    )


async def grant_role(session: AsyncSession, email: str, role: Role) -> User:
    """Give `email` the role; the user's sessions end (their next login carries it, as every token now)."""
    user = await _user_or_404(session, email)
    user.roles = sorted({*user.roles, role.value})
    user.token_version += 1
    session.add(_audit(user, "user.role_granted", {"role": role.value}))
    return user


async def revoke_role(session: AsyncSession, email: str, role: Role) -> User:
    """Take the role from `email`; the user's sessions end at once."""
    user = await _user_or_404(session, email)
    user.roles = sorted(set(user.roles) - {role.value})
    user.token_version += 1
    session.add(_audit(user, "user.role_revoked", {"role": role.value}))
    return user


async def set_active(session: AsyncSession, email: str, active: bool) -> User:
    """Deactivate (or reactivate) an account; deactivation ends its sessions and reset links at once and refuses
    logins."""
    user = await _user_or_404(session, email)
    user.is_active = active
    user.token_version += 1
    if not active:  # a reset link mailed before must not work again once the account is reactivated
        await links.spend_all(session, user.id, links.Purpose.PASSWORD_RESET)
    # A deactivated seller's listings are not for sale (Listing.seller_can_sell): their search documents say so.
    await reindex_seller_listings(session, user.id)
    session.add(_audit(user, "user.activated" if active else "user.deactivated", {}))
    return user


def actor_of(caller: Principal) -> Actor:
    """The caller as the order's and the return's workflows know an actor (support staff by their role)."""
    return Actor(user_id=str(caller.user_id), is_support=caller.has(Role.SUPPORT))


def order_party(order: Order, caller: Principal) -> Party | None:
    """The caller's side of an order: buyer, seller, support (staff may see every order), or None."""
    if caller.user_id == order.buyer_id:
        return Party.BUYER
    if caller.user_id == order.seller_id:
        return Party.SELLER
    return Party.SUPPORT if caller.has(Role.SUPPORT) else None


# A charge still running, declined or refused: the order is the buyer's alone until it is paid.
NEVER_PAID = frozenset({PaymentState.NONE, PaymentState.FAILED})


def seen_by_seller(order: Order) -> bool:
    """A seller sees an order once it is paid: one whose charge is running, was declined or refused was answered
    to the buyer's request, and nobody else ever saw it (a 404 for the seller, and not in their list)."""
    return order.payment_state not in NEVER_PAID
