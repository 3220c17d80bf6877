"""Accounts: register, OAuth2 password-flow token, who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from api.deps import Caller, Session
from api.schemas import RegisterIn, TokenForm, TokenOut, UserOut
from bazaar import auth
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Role, User

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post("/auth/register", status_code=201, response_model=UserOut)
async def register(body: RegisterIn, session: Session) -> User:
    return await auth.register(
        session, body.email, body.password, body.display_name, [Role(r) for r in body.roles]
    )


@router.post("/auth/token", response_model=TokenOut)
async def token(form: Annotated[TokenForm, Form()], session: Session) -> TokenOut:
    """OAuth2 password flow: `username` (the email) and `password` as a form."""
    user = await auth.authenticate(session, form.username, form.password)
    access_token, ttl = auth.issue_token(user)
    return TokenOut(access_token=access_token, expires_in=ttl)


@router.get("/users/me", response_model=UserOut)
async def me(caller: Caller, session: Session) -> User:
    user = await session.get(User, caller.user_id)
    if user is None or not user.is_active:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "account no longer exists")
    return user
