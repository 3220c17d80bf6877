"""Registration that does not reveal which emails have accounts, email verification, and password reset and
change. Every answer about an email address is the same whether it has an account or not; the address's owner
learns what happened by mail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar import auth
from bazaar.accounts import links, mail, sessions
from bazaar.accounts.links import Purpose
from bazaar.accounts.mail import MayMail
from bazaar.accounts.passwords import check_new_password
from bazaar.errors import DomainError, ErrorCode, field_error
from bazaar.models import AuditEvent, Role, User
from bazaar.settings import get_settings


def _audit(user_id: uuid.UUID, action: str, data: dict[str, object] | None = None) -> AuditEvent:
    return AuditEvent(
        actor_id=user_id,
        actor_role="user",
        subject_type="user",
        subject_id=str(user_id),
        action=action,
        data=data or {},
    )


def _links() -> dict[str, str]:
    return {"api": get_settings().public_base_url}


async def register(
    session: AsyncSession,
    email: str,
    password: str,
    display_name: str,
    roles: list[Role],
    may_mail: MayMail,
) -> uuid.UUID | None:
    """Create the account and mail its verification link; for an address that has an account already, change
    nothing and mail its owner instead. The caller answers both the same way. Returns the new user's id, or None
    (for the caller's logs only)."""
    check_new_password(password, user_inputs=[email, display_name])
    password_hash = auth.hash_password(password)  # hashed either way: the time does not tell either
    existing = await auth.user_by_email(session, email)
    if existing is None:
        user = User(
            email=email.lower(),
            password_hash=password_hash,
            display_name=display_name,
            roles=sorted({r.value for r in roles}),
            token_version=0,
        )
        try:
            async with session.begin_nested():
                session.add(user)
                await session.flush()
        except IntegrityError:  # registered a moment ago by a concurrent request
            existing = await auth.user_by_email(session, email)
        else:
            session.add(_audit(user.id, "user.registered", {"roles": user.roles}))
            await send_verification(session, user, may_mail)
            return user.id
    if existing is not None and existing.is_active and await may_mail(existing.id):
        await mail.send(session, existing, "registration_attempt", _links())
    return None


async def send_verification(session: AsyncSession, user: User, may_mail: MayMail) -> bool:
    """Mail a new verification link unless the email is verified already (or too many mails went out)."""
    if user.email_verified_at is not None or not await may_mail(user.id):
        return False
    ttl = get_settings().email_verification_ttl_seconds
    await _mail_link(
        session, user, Purpose.VERIFY_EMAIL, ttl, "/v1/auth/verify-email", {"hours": str(ttl // 3600)}
    )
    return True


async def _mail_link(
    session: AsyncSession, user: User, purpose: Purpose, ttl: int, page: str, data: dict[str, str]
) -> None:
    """Mail `user` a new single-use link of `purpose` to `page` (its template is named after the purpose)."""
    token = await links.issue(session, user.id, purpose, ttl)
    link = f"{get_settings().public_base_url}{page}?token={token}"
    await mail.send(session, user, purpose.value, {**_links(), **data, "token": token, "link": link})


async def verify_email(session: AsyncSession, token: str) -> User:
    user = await session.get(User, await links.redeem(session, token, Purpose.VERIFY_EMAIL))
    if user is None or not user.is_active:
        raise links.invalid_token()
    if user.email_verified_at is None:
        user.email_verified_at = datetime.now(UTC)
        session.add(_audit(user.id, "user.email_verified"))
    return user


async def request_password_reset(session: AsyncSession, email: str, may_mail: MayMail) -> None:
    """Mail a reset link if `email` has an active account; nothing otherwise (the caller answers the same)."""
    user = await auth.user_by_email(session, email)
    if user is None or not user.is_active or not await may_mail(user.id):
        return
    ttl = get_settings().password_reset_ttl_seconds
    await _mail_link(
        session,
        user,
        Purpose.PASSWORD_RESET,
        ttl,
        "/v1/auth/password-reset/confirm",
        {"minutes": str(ttl // 60)},
    )


async def reset_password(session: AsyncSession, token: str, new_password: str) -> User:
    """Set the password of the token's account; every session and other reset link of it ends, and its email
    counts as verified (the link was read in that mailbox)."""
    user = await _locked(session, await links.redeem(session, token, Purpose.PASSWORD_RESET))
    if user is None or not user.is_active:
        raise links.invalid_token()
    check_new_password(new_password, user_inputs=[user.email, user.display_name])
    await _set_password(session, user, new_password)
    if user.email_verified_at is None:
        user.email_verified_at = datetime.now(UTC)
    session.add(_audit(user.id, "user.password_reset"))
    return user


async def change_password(
    session: AsyncSession,
    user_id: uuid.UUID,
    session_id: uuid.UUID | None,
    current_password: str,
    new_password: str,
) -> sessions.Tokens:
    """Change the caller's password (the current one must match): every session and reset link ends, and the
    caller gets a new session (returned). Changes of one account are taken one at a time: a second one sent with
    the first finds the caller's session ended by it (401), so no change is answered as made and then lost."""
    user = await _locked(session, user_id)
    if user is None or not user.is_active:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "account no longer exists")
    if session_id is not None and not await sessions.is_current(session, session_id, user):
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "this session has ended: log in again")
    if not auth.password_matches(user.password_hash, current_password):
        raise field_error("current_password", "incorrect", "invalid_password")
    check_new_password(new_password, user_inputs=[user.email, user.display_name], field="new_password")
    await _set_password(session, user, new_password)
    session.add(_audit(user.id, "user.password_changed"))
    return await sessions.start(session, user)


async def _locked(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The account, read afresh and locked until the transaction ends: password changes and resets of one
    account wait for each other, so each sees the password and token version the one before it left."""
    return await session.get(User, user_id, with_for_update=True, populate_existing=True)


async def _set_password(session: AsyncSession, user: User, password: str) -> None:
    user.password_hash = auth.hash_password(password)
    user.token_version += 1  # every access token and session issued before ends
    # A reset link mailed before would undo the new password: each one is spent (by a reset or a change alike).
    await links.spend_all(session, user.id, Purpose.PASSWORD_RESET)
    await session.flush()
