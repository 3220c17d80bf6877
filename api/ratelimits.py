"""Request limits as FastAPI dependencies (bazaar.ratelimit counts them in PostgreSQL, shared by every replica).

Over a limit a request is answered 429 `rate_limited` with `Retry-After`; every response of a limited route
carries the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy` (each tier's quota
`q` and window `w` in seconds) and `RateLimit` (what is left, `r`, and the seconds until the window ends, `t`).
Tiers of one limit are named `<policy>-<window>s` when there are several.

Detection (for the OpenAPI document, `api.openapi`): a dependency that limits requests has the attribute
`rate_limits`, a tuple of `RateLimitSpec` (`rate_limited` marks it); `route_rate_limits(route.dependant)` collects
them from a route's whole dependency tree. A route with any may answer 429 and sends the headers above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Session, limiter, verified_buyer
from api.errors import error_body
from api.security import add_response_headers, client_address
from bazaar.accounts import sessions
from bazaar.accounts.mail import MayMail
from bazaar.auth import Principal, authenticate, decode_token
from bazaar.db import get_counter_engine, transaction
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Base, User
from bazaar.ratelimit import Limiter, PostgresStorage, Verdict, WriteBehind
from bazaar.settings import get_settings

RATE_LIMITS_ATTRIBUTE = "rate_limits"
log = logging.getLogger("api")


@dataclass(frozen=True)
class RateLimitSpec:
    """One limit: its policy name (in the headers), the setting holding its tiers, what it counts per."""

    policy: str
    setting: str  # a field of bazaar.settings.Settings, in `limits` notation
    per: str  # what one counter belongs to: "client address", "account", "buyer", "user"
    description: str
    # On the read paths (searches, listing reads): decided in the process, counts written behind
    # (bazaar.ratelimit.WriteBehind: exact on one replica, within a lease of the limit across replicas).
    hot: bool = False

    def limit(self) -> str:
        return str(getattr(get_settings(), self.setting))


LOGIN_ADDRESS = RateLimitSpec(
    "login-address", "rate_limit_login_address", "client address", "logins and token refreshes"
)
LOGIN_ACCOUNT = RateLimitSpec(
    "login-account",
    "rate_limit_login_account",
    "account",
    "failed logins of one account; once a tier is used up, its logins are refused (even with the right "
    "password) until that tier's window ends",
)
REGISTER = RateLimitSpec("register", "rate_limit_register_address", "client address", "registrations")
ACCOUNT_LINKS = RateLimitSpec(
    "account-links",
    "rate_limit_account_links_address",
    "client address",
    "password reset requests and confirmations, email verifications and resends",
)
ORDERS = RateLimitSpec("orders", "rate_limit_orders_buyer", "buyer", "orders placed")
SEARCH_ANONYMOUS = RateLimitSpec(
    "search-anonymous",
    "rate_limit_search_anonymous",
    "client address",
    "searches without an access token",
    hot=True,
)
SEARCH_USER = RateLimitSpec(
    "search-user", "rate_limit_search_user", "user", "searches with an access token", hot=True
)
LISTING_READS = RateLimitSpec(
    "listing-reads", "rate_limit_listing_reads", "client address", "listing detail reads", hot=True
)


class RateLimited(DomainError):
    """Over a limit: 429 `rate_limited` with Retry-After (the handler below)."""

    def __init__(self, spec: RateLimitSpec, verdict: Verdict, message: str | None = None) -> None:
        super().__init__(
            ErrorCode.RATE_LIMITED,
            message or f"too many requests ({spec.description}): retry in {verdict.retry_after} s",
            {"policy": spec.policy, "retry_after": verdict.retry_after},
        )
        self.retry_after = verdict.retry_after


def _report(request: Request, spec: RateLimitSpec, verdict: Verdict) -> None:
    several = len(verdict.tiers) > 1
    names = [f"{spec.policy}-{t.window_seconds}s" if several else spec.policy for t in verdict.tiers]
    policy = ", ".join(
        f'"{n}";q={t.amount};w={t.window_seconds}' for n, t in zip(names, verdict.tiers, strict=True)
    )
    state = ", ".join(
        f'"{n}";r={t.remaining};t={t.reset_seconds}' for n, t in zip(names, verdict.tiers, strict=True)
    )
    add_response_headers(
        request, f"ratelimit:{spec.policy}", [("RateLimit-Policy", policy), ("RateLimit", state)]
    )


async def enforce(request: Request, spec: RateLimitSpec, *who: object) -> Verdict:
    """Count this request of `who` against `spec`; raise `RateLimited` when over it."""
    verdict = await _limiter(request).hit(spec.policy, spec.limit(), *who, hot=spec.hot)
    _report(request, spec, verdict)
    if not verdict.allowed:
        raise RateLimited(spec, verdict)
    return verdict


def _limiter(request: Request) -> Limiter:
    limits: Limiter = request.app.state.limiter
    return limits


F = TypeVar("F", bound=Callable[..., Any])


def rate_limited(*specs: RateLimitSpec) -> Callable[[F], F]:
    """Mark a dependency as enforcing `specs` (the attribute the OpenAPI post-processing looks for)."""

    def mark(dependency: F) -> F:
        setattr(dependency, RATE_LIMITS_ATTRIBUTE, specs)
        return dependency

    return mark


def route_rate_limits(dependant: Dependant) -> list[RateLimitSpec]:
    """Every limit a route enforces, from its whole dependency tree (`route.dependant`; in order, without
    repeats)."""
    found: list[RateLimitSpec] = []

    def walk(dependant: Dependant) -> None:
        for spec in getattr(dependant.call, RATE_LIMITS_ATTRIBUTE, ()):
            if spec not in found:
                found.append(spec)
        for sub in dependant.dependencies:
            walk(sub)

    walk(dependant)
    return found


def per_address(spec: RateLimitSpec) -> Callable[[Request], Awaitable[None]]:
    @rate_limited(spec)
    async def limit(request: Request) -> None:
        await enforce(request, spec, client_address(request))

    limit.__name__ = f"limit_{spec.policy.replace('-', '_')}"
    return limit


@rate_limited(SEARCH_ANONYMOUS, SEARCH_USER)
async def search_limit(request: Request) -> None:
    """Per user with an access token (its signature is enough to name whose budget it spends; the search
    itself needs no account, so a bad token searches as anonymous), per client address without one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    user = None
    if scheme.lower() == "bearer" and token:
        try:
            user = decode_token(token).user_id
        except DomainError:
            user = None  # a broken token searches as anonymous
    if user is not None:
        await enforce(request, SEARCH_USER, user)
    else:
        await enforce(request, SEARCH_ANONYMOUS, client_address(request))


def ordering_buyer(
    placed: type[Base], id_for: Callable[[Principal, str], uuid.UUID]
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """The buyer of a placement, counted against `ORDERS` unless the request's Idempotency-Key placed one already
    (a `placed` row of id `id_for(buyer, key)`): a retry with the same key is always safe (docs/api.md), so it
    places nothing and spends nothing of the limit (its answer still says where the limit stands)."""

    @rate_limited(ORDERS)
    async def order_limit(
        request: Request, buyer: Annotated[Principal, Depends(verified_buyer)], db: Session
    ) -> Principal:
        key = request.headers.get("Idempotency-Key")
        if key and await db.get(placed, id_for(buyer, key)) is not None:
            _report(
                request, ORDERS, await _limiter(request).test(ORDERS.policy, ORDERS.limit(), buyer.user_id)
            )
        else:
            await enforce(request, ORDERS, buyer.user_id)
        return buyer

    return order_limit


class LoginGuard:
    """The account side of login limits: `check` before verifying a password (refused while the account is
    locked), `failed` after a wrong one, `succeeded` after the right one (the failures are forgotten)."""

    def __init__(self, request: Request) -> None:
        self.request = request

    async def check(self, email: str) -> None:
        verdict = await _limiter(self.request).test(
            LOGIN_ACCOUNT.policy, LOGIN_ACCOUNT.limit(), email.lower()
        )
        _report(self.request, LOGIN_ACCOUNT, verdict)
        if not verdict.allowed:
            raise RateLimited(
                LOGIN_ACCOUNT,
                verdict,
                f"too many failed logins for this account: locked, retry in {verdict.retry_after} s",
            )

    async def failed(self, email: str) -> None:
        verdict = await _limiter(self.request).hit(LOGIN_ACCOUNT.policy, LOGIN_ACCOUNT.limit(), email.lower())
        _report(self.request, LOGIN_ACCOUNT, verdict)

    async def succeeded(self, email: str) -> None:
        await _limiter(self.request).clear(LOGIN_ACCOUNT.policy, LOGIN_ACCOUNT.limit(), email.lower())

    async def login(self, session: AsyncSession, email: str, password: str) -> User:
        """The account of a login (`bazaar.auth.authenticate`) with the lockout around it: `check`, then
        `failed` on a refusal (re-raised) or `succeeded`. The API's token route and the console's login."""
        await self.check(email)
        try:
            user = await authenticate(session, email, password)
        except DomainError:
            await self.failed(email)
            raise
        await self.succeeded(email)
        return user


@rate_limited(LOGIN_ADDRESS, LOGIN_ACCOUNT)
async def login_guard(request: Request) -> LoginGuard:
    await enforce(request, LOGIN_ADDRESS, client_address(request))
    return LoginGuard(request)


@rate_limited(LOGIN_ACCOUNT)
async def account_guard(request: Request) -> LoginGuard:
    """The account lockout alone (a password change: the caller is signed in, the address is not counted)."""
    return LoginGuard(request)


async def mail_budget(limits: Annotated[Limiter, Depends(limiter)]) -> MayMail:
    """Asks, before each account mail, whether its recipient may get one more (`RATE_LIMIT_ACCOUNT_MAIL`)."""

    async def may_mail(user_id: object) -> bool:
        return (await limits.hit("account-mail", get_settings().rate_limit_account_mail, user_id)).allowed

    return may_mail


def install(app: FastAPI) -> None:
    @app.exception_handler(RateLimited)
    async def rate_limited_error(_: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details),
            status_code=exc.status,
            headers={"Retry-After": str(exc.retry_after)},
        )


RegisterLimit = Annotated[None, Depends(per_address(REGISTER))]
AccountLinksLimit = Annotated[None, Depends(per_address(ACCOUNT_LINKS))]
RefreshLimit = Annotated[None, Depends(per_address(LOGIN_ADDRESS))]
ListingReadLimit = Annotated[None, Depends(per_address(LISTING_READS))]
SearchLimit = Annotated[None, Depends(search_limit)]
LoginLimits = Annotated[LoginGuard, Depends(login_guard)]
AccountLockout = Annotated[LoginGuard, Depends(account_guard)]
MailBudget = Annotated[MayMail, Depends(mail_budget)]


HOUSEKEEPING_SECONDS = 600.0


@contextlib.asynccontextmanager
async def runtime(app: FastAPI) -> AsyncIterator[None]:
    """The limiter on `app.state`, the writer of the hot limits' counts, and a background task that deletes ended
    windows and expired sessions and tokens every `HOUSEKEEPING_SECONDS` (any replica may: each delete is
    idempotent)."""
    storage = PostgresStorage(get_counter_engine())
    write_behind = WriteBehind(storage)
    app.state.limiter = Limiter(storage, write_behind)

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            try:
                await storage.purge_expired()
                async with transaction() as session:
                    await sessions.purge_expired(session)
            except Exception:
                log.warning("housekeeping of limits and sessions failed; next try later", exc_info=True)

    tasks = [
        asyncio.create_task(housekeeping(), name="limits-housekeeping"),
        asyncio.create_task(write_behind.run(), name="limits-write-behind"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await get_counter_engine().dispose()
