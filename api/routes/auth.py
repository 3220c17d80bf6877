"""Accounts: registration, OAuth2 password-flow login, refresh and logout, email verification, password reset
and change, who am I. README.md ("Accounts") says what each answers and why."""

from __future__ import annotations

import asyncio
import html
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, Query, Response
from fastapi.responses import HTMLResponse

from api.account_schemas import (
    Accepted,
    AccountOut,
    LogoutIn,
    MailedToken,
    PasswordChangeIn,
    PasswordResetConfirmIn,
    PasswordResetIn,
    RefreshIn,
    TokenIn,
    TokenPairOut,
)
from api.deps import Caller, Session
from api.openapi import errors, header, merge
from api.ratelimits import (
    AccountLinksLimit,
    AccountLockout,
    LoginLimits,
    MailBudget,
    RefreshLimit,
    RegisterLimit,
)
from api.schemas import RegisterIn, TokenForm
from bazaar import auth
from bazaar.accounts import registration, sessions
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Role, User

router = APIRouter(prefix="/v1", tags=["auth"])

REGISTERED = (
    "registration received: if the address can be registered, the account exists now and a message to "
    "confirm the address is on its way; log in with POST /v1/auth/token"
)
RESET_REQUESTED = "if an account has this address, a message with a link to reset its password is on its way"
# The least a reset request takes, whether the address has an account or not (found from outside: 30 ms with an
# account, 16 without, told them apart). Well above what storing the link and its mail takes.
RESET_ANSWER_SECONDS = 0.25
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 5.1: token responses
TOKENS: dict[int | str, dict[str, Any]] = {
    200: {"description": "the token pair", "headers": {"Pragma": header("`no-cache` (RFC 6749 5.1)")}}
}


def _pair(tokens: sessions.Tokens, response: Response) -> TokenPairOut:
    response.headers.update(NO_STORE)
    return TokenPairOut(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        refresh_expires_in=tokens.refresh_expires_in,
    )


@router.post("/auth/register", status_code=202, response_model=Accepted)
async def register(body: RegisterIn, session: Session, _: RegisterLimit, may_mail: MailBudget) -> Accepted:
    """Create an account. The answer is the same for an address that has an account already (whose owner is
    told by mail instead), so it reveals no account. The password must pass the policy (422 otherwise)."""
    await registration.register(
        session, body.email, body.password, body.display_name, [Role(r) for r in body.roles], may_mail
    )
    return Accepted(message=REGISTERED)


@router.post(
    "/auth/token", response_model=TokenPairOut, responses=merge(TOKENS, errors(ErrorCode.INVALID_CREDENTIALS))
)
async def token(
    form: Annotated[TokenForm, Form()], session: Session, guard: LoginLimits, response: Response
) -> TokenPairOut:
    """OAuth2 password flow: `username` (the email) and `password` as a form. Failed logins lock the account
    for a while (429 with Retry-After, even with the right password), longer as they go on."""
    user = await guard.login(session, form.username, form.password)
    return _pair(await sessions.start(session, user), response)


# A refresh token that is unknown, expired, of an ended session, or spent (which ends its session) is a 401.
@router.post(
    "/auth/refresh", response_model=TokenPairOut, responses=merge(TOKENS, errors(ErrorCode.NOT_AUTHENTICATED))
)
async def refresh(body: RefreshIn, session: Session, _: RefreshLimit, response: Response) -> TokenPairOut:
    """The next token pair of a session. Each refresh token works once: presenting a used one again ends its
    session (someone copied it), and both pairs stop working. Within a few seconds of its use it is taken for the
    same client (two tabs at once, a retry after a lost answer) and gets another pair of the same session."""
    try:
        tokens = await sessions.rotate(session, body.refresh_token)
    except sessions.RefreshTokenReused:
        await session.commit()  # the session's end must stick although the answer is an error
        raise
    return _pair(tokens, response)


# Optional: no body, `{}` or `{"everywhere": true}` (docs/api.md: optional bodies are a model, never "or null").
LogoutBody = Annotated[LogoutIn, Body(description="optional: end every session of the account")]


@router.post("/auth/logout", status_code=204, response_class=Response)
async def logout(caller: Caller, session: Session, body: LogoutBody = LogoutIn()) -> None:
    """End this session (its access and refresh tokens stop working at once), or every session of the account."""
    if body.everywhere:
        await auth.end_all_sessions(session, caller.user_id)
    elif caller.session_id is not None:
        await sessions.end(session, caller.session_id)


@router.post("/auth/verify-email", status_code=204, response_class=Response)
async def verify_email(body: TokenIn, session: Session, _: AccountLinksLimit) -> None:
    """Confirm the account's email address with the token mailed to it (single use; 422 when unknown, expired or
    used)."""
    await registration.verify_email(session, body.token)


@router.post("/auth/verify-email/resend", status_code=202, response_model=Accepted)
async def resend_verification(
    caller: Caller, session: Session, _: AccountLinksLimit, may_mail: MailBudget
) -> Accepted:
    """Mail a new confirmation link to your address (202), unless it is verified already."""
    user = await _me(session, caller.user_id)
    if user.email_verified_at is not None:
        return Accepted(message="the email address is verified already")
    await registration.send_verification(session, user, may_mail)
    return Accepted(message="a new confirmation message is on its way")


@router.post("/auth/password-reset", status_code=202, response_model=Accepted)
async def request_password_reset(
    body: PasswordResetIn, session: Session, _: AccountLinksLimit, may_mail: MailBudget
) -> Accepted:
    """Mail a reset link to the address if it has an account; the answer is the same either way, and takes the
    same time (at least `RESET_ANSWER_SECONDS`: storing the link and its mail must not tell an account exists)."""
    started = asyncio.get_running_loop().time()
    await registration.request_password_reset(session, body.email, may_mail)
    await session.commit()
    await asyncio.sleep(max(0.0, started + RESET_ANSWER_SECONDS - asyncio.get_running_loop().time()))
    return Accepted(message=RESET_REQUESTED)


@router.post("/auth/password-reset/confirm", status_code=204, response_class=Response)
async def confirm_password_reset(
    body: PasswordResetConfirmIn, session: Session, _: AccountLinksLimit
) -> None:
    """Set a new password with the mailed token (single use): every session of the account ends."""
    await registration.reset_password(session, body.token, body.password)


@router.post("/auth/password", response_model=TokenPairOut, responses=TOKENS)
async def change_password(
    body: PasswordChangeIn, caller: Caller, session: Session, guard: AccountLockout, response: Response
) -> TokenPairOut:
    """Change the password (the current one must match): every session ends, and this answer is a new one's
    tokens. Wrong current passwords count toward the account's login lockout."""
    user = await _me(session, caller.user_id)
    await guard.check(user.email)
    try:
        tokens = await registration.change_password(
            session, user.id, caller.session_id, body.current_password, body.new_password
        )
    except DomainError as exc:
        if _wrong_current_password(exc):  # (a refused new password is not counted)
            await guard.failed(user.email)
        raise
    return _pair(tokens, response)


def _wrong_current_password(exc: DomainError) -> bool:
    """Whether the domain refused the current password (its 422 names `current_password`)."""
    errors = exc.details.get("errors") or [{}]
    return bool(errors[0].get("loc") == ["body", "current_password"])


@router.get("/users/me", response_model=AccountOut)
async def me(caller: Caller, session: Session) -> AccountOut:
    """Your own account: email, display name, roles and whether the email address is verified."""
    user = await _me(session, caller.user_id)
    return AccountOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        roles=[Role(r) for r in user.roles],
        created_at=user.created_at,
        email_verified=user.email_verified_at is not None,
    )


async def _me(session: Session, user_id: object) -> User:
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "account no longer exists")
    return user


# ---- the pages the mailed links open: a GET changes nothing (mail scanners fetch every link); the page's
# button sends the POST above.

TokenQuery = Annotated[MailedToken, Query(description="from the link in the email")]


def _page(title: str, intro: str, action: str, token: str, with_password: bool) -> HTMLResponse:
    password = (
        "<p><label>New password <input id=password type=password minlength=10 maxlength=128 required "
        "autocomplete=new-password></label></p>"
        if with_password
        else ""
    )
    script = (
        "document.getElementById('f').onsubmit=async e=>{e.preventDefault();"
        f"const body={{token:{json.dumps(token)}}};"
        "const p=document.getElementById('password');if(p)body.password=p.value;"
        f"const r=await fetch({json.dumps(action)},{{method:'POST',headers:{{'Content-Type':'application/json'}},"
        "body:JSON.stringify(body)});const out=document.getElementById('out');"
        "out.textContent=r.ok?'Done.':((await r.json()).error||{}).message||('Error '+r.status);};"
    ).replace("<", "\\u003c")
    return HTMLResponse(
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>"
        f"<form id=f>{password}<button type=submit>{html.escape(title)}</button></form><p id=out></p>"
        f"<script>{script}</script>",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/auth/verify-email", response_class=HTMLResponse)
async def verify_email_page(token: TokenQuery) -> HTMLResponse:
    """The link in the confirmation mail: a page whose button POSTs the token to `/v1/auth/verify-email`
    (a GET changes nothing: mail scanners fetch every link)."""
    return _page(
        "Confirm email address", "Confirm that this address is yours.", "/v1/auth/verify-email", token, False
    )


@router.get("/auth/password-reset/confirm", response_class=HTMLResponse)
async def password_reset_page(token: TokenQuery) -> HTMLResponse:
    """The link in the reset mail: a page with a new-password form that POSTs to
    `/v1/auth/password-reset/confirm` (a GET changes nothing)."""
    return _page(
        "Reset password",
        "Choose a new password (at least 10 characters, hard to guess). You will be logged out everywhere.",
        "/v1/auth/password-reset/confirm",
        token,
        True,
    )
