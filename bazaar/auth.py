"""Accounts and credentials: argon2 password hashes, expiring signed access tokens, roles."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.errors import DomainError, ErrorCode
from bazaar.models import AuditEvent, Order, Role, User
from bazaar.orders.types import Party
from bazaar.settings import get_settings

_hasher = PasswordHasher()
# Verified against when the email is unknown, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
TOKEN_ALGORITHM = "HS256"  # noqa: S105 - an algorithm name, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: decoded from a valid access token."""

    user_id: uuid.UUID
    roles: frozenset[str]

    def has(self, role: Role) -> bool:
        return role.value in self.roles or Role.ADMIN.value in self.roles


async def register(
    session: AsyncSession, email: str, password: str, display_name: str, roles: list[Role]
) -> User:
    user = User(
        email=email.lower(),
        password_hash=_hasher.hash(password),
        display_name=display_name,
        roles=sorted({r.value for r in roles}),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DomainError(ErrorCode.EMAIL_TAKEN, "an account with this email already exists") from exc
    session.add(
        AuditEvent(
            actor_id=user.id,
            actor_role="user",
            subject_type="user",
            subject_id=str(user.id),
            action="user.registered",
            data={"roles": user.roles},
        )
    )
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User:
    user = await session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, InvalidHashError):
        user = None
    if user is None or not user.is_active:
        raise DomainError(ErrorCode.INVALID_CREDENTIALS, "incorrect email or password")
    return user


def issue_token(user: User) -> tuple[str, int]:
    settings = get_settings()
    ttl = settings.access_token_ttl_seconds
    now = int(time.time())
    claims = {"sub": str(user.id), "roles": list(user.roles), "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings.require("jwt_secret"), algorithm=TOKEN_ALGORITHM), ttl


def decode_token(token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            get_settings().require("jwt_secret"),
            algorithms=[TOKEN_ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
        return Principal(user_id=uuid.UUID(claims["sub"]), roles=frozenset(claims.get("roles", [])))
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "invalid or expired access token") from exc


async def grant_role(session: AsyncSession, email: str, role: Role) -> User:
    user = await session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    if user is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"no user with email {email}")
    user.roles = sorted({*user.roles, role.value})
    session.add(
        AuditEvent(
            actor_id=None,
            actor_role="cli",
            subject_type="user",
            subject_id=str(user.id),
            action="user.role_granted",
            data={"role": role.value},
        )
    )
    return user


def order_party(order: Order, caller: Principal) -> Party | None:
    """The caller's side of an order: buyer, seller, support (staff may see every order), or None."""
    if caller.user_id == order.buyer_id:
        return Party.BUYER
    if caller.user_id == order.seller_id:
        return Party.SELLER
    return Party.SUPPORT if caller.has(Role.SUPPORT) else None
