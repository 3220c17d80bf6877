"""Request dependencies: database session, the caller, role checks, and the app's shared clients and
in-process services (set up by the lifespan on `app.state`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request, params
from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.listing_runtime import ListingCache
from api.security import client_address
from bazaar.auth import Principal, decode_token, principal_for
from bazaar.db import get_sessionmaker
from bazaar.errors import DomainError, ErrorCode
from bazaar.integrations import keys
from bazaar.integrations.scope import Scope
from bazaar.integrations.scope import for_user as scope_for_user
from bazaar.listings.popularity import ViewCounter
from bazaar.models import Role
from bazaar.ratelimit import Limiter
from bazaar.search.meili import Meili
from bazaar.search.service import SearchService
from bazaar.settings import get_settings

log = logging.getLogger("api")

oauth2 = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def session() -> AsyncIterator[AsyncSession]:
    """Committed when the handler returns, rolled back on error. A handler may commit early (before it
    waits on a workflow) and keep reading: the session begins a new transaction on next use."""
    async with get_sessionmaker()() as s:
        try:
            yield s
            await s.commit()
        except BaseException:
            await s.rollback()
            raise


def _fields(dependant: Dependant, kind: str) -> Iterator[Any]:
    """The operation's parameters of one kind (`query_params`, `header_params`), its dependencies' included."""
    yield from getattr(dependant, kind)
    for sub in dependant.dependencies:
        yield from _fields(sub, kind)


async def one_value_each(request: Request) -> None:
    """A query parameter an operation takes one value of, sent more than once, is a 422 naming it (found from
    outside: the last one won silently, so `sort=zzz&sort=newest` answered 200 where `sort=newest&sort=zzz` was a
    422, and a proxy or filter reading the first value saw another request than the API). So is a header it
    takes, and a form field, sent twice (every form field here takes one value: `username=a&username=b` logged in
    as b)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    errors: list[dict[str, Any]] = []
    repeated = _repeated(request.query_params.multi_items())
    if repeated:
        errors += [
            {"type": "repeated", "loc": ("query", field.alias), "msg": "give it once (it takes one value)"}
            for field in _fields(dependant, "query_params")
            if field.alias in repeated and not field_annotation_is_sequence(field.field_info.annotation)
        ]
    # A header it takes one value of, too (found from outside: a second Idempotency-Key was ignored).
    errors += [
        {"type": "repeated", "loc": ("header", field.alias), "msg": "give it once (it takes one value)"}
        for field in _fields(dependant, "header_params")
        if len(request.headers.getlist(field.alias)) > 1
        and not field_annotation_is_sequence(field.field_info.annotation)
    ]
    if any(isinstance(field.field_info, params.Form) for field in dependant.body_params):
        # FastAPI read the form before the dependencies run: this is the parsed form it keeps.
        errors += [
            {"type": "repeated", "loc": ("body", name), "msg": "give it once (it takes one value)"}
            for name in sorted(_repeated((await request.form()).multi_items()))
        ]
    if errors:
        raise RequestValidationError(errors)


def _repeated(items: list[tuple[str, Any]]) -> set[str]:
    return {name for name, n in Counter(name for name, _ in items).items() if n > 1}


async def optional_principal(
    token: Annotated[str | None, Depends(oauth2)],
    db: Annotated[AsyncSession, Depends(session, scope="function")],
) -> Principal | None:
    return await principal_for(db, decode_token(token)) if token else None


async def principal(
    token: Annotated[str | None, Depends(oauth2)],
    db: Annotated[AsyncSession, Depends(session, scope="function")],
) -> Principal:
    """The caller of a valid access token whose session is live (checked in the database on every request, so
    logout, password resets, deactivation and role changes apply at once)."""
    if not token:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "missing bearer token")
    return await principal_for(db, decode_token(token))


async def integrator(
    request: Request, db: Annotated[AsyncSession, Depends(session, scope="function")]
) -> Scope:
    """The caller of an integration route (`api.routes.integrations`) and its scope: an API key
    (`Bearer bzk_...`, good for these routes only: every other route reads the token as an access token and
    refuses a key), or a user's access token acting for their own scope (`bazaar.integrations.scope.for_user`).

    The header is read here rather than through `oauth2`: both are bearer tokens, and the document declares the
    bearer scheme on these routes as required (their `openapi_extra`), not as the optional token a route with the
    scheme but without `principal` would be documented with (api/openapi.py)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "missing bearer token (an access token or an API key)")
    if token.startswith(keys.PREFIX):
        return await keys.authenticate(db, token)
    return scope_for_user(await principal_for(db, decode_token(token)))


def require_role(role: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if not caller.has(role):
            raise DomainError(ErrorCode.FORBIDDEN, f"this needs the {role.value} role")
        return caller

    return check


def _verified(caller: Principal) -> Principal:
    """With REQUIRE_VERIFIED_EMAIL on, placing orders and publishing listings need a verified email (everything
    else an unverified account may do)."""
    if get_settings().require_verified_email and not caller.email_verified:
        raise DomainError(
            ErrorCode.FORBIDDEN,
            "verify your email address first (POST /v1/auth/verify-email/resend mails a new link)",
            {"reason": "email_not_verified"},
        )
    return caller


_seller, _buyer = require_role(Role.SELLER), require_role(Role.BUYER)


async def verified_seller(caller: Annotated[Principal, Depends(_seller)]) -> Principal:
    return _verified(caller)


async def verified_buyer(caller: Annotated[Principal, Depends(_buyer)]) -> Principal:
    return _verified(caller)


async def temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def meili(request: Request) -> Meili:
    client: Meili = request.app.state.meili
    return client


async def search_service(request: Request) -> SearchService:
    service: SearchService = request.app.state.search
    return service


async def listing_cache(request: Request) -> ListingCache:
    cache: ListingCache = request.app.state.listing_cache
    return cache


async def limiter(request: Request) -> Limiter:
    limits: Limiter = request.app.state.limiter
    return limits


class AddressViews:
    """The view counter as a listing read sees it: a view counts at most `RATE_LIMIT_VIEW_COUNT` times per client
    address and listing (views rank search, so reloading must not inflate them). The check runs after the
    response, off its path; a view whose check fails is not counted."""

    _pending: set[asyncio.Task[None]] = set()

    def __init__(self, counter: ViewCounter, limits: Limiter, address: str) -> None:
        self.counter, self.limits, self.address = counter, limits, address

    def add(self, listing_id: uuid.UUID) -> None:
        task = asyncio.get_running_loop().create_task(self._count(listing_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _count(self, listing_id: uuid.UUID) -> None:
        try:
            verdict = await self.limits.hit(
                "view-count", get_settings().rate_limit_view_count, self.address, listing_id
            )
        except Exception:
            log.warning("view not counted: the view limit could not be checked", exc_info=True)
            return
        if verdict.allowed:
            self.counter.add(listing_id)


async def view_counter(request: Request) -> AddressViews:
    views: ViewCounter = request.app.state.views
    return AddressViews(views, request.app.state.limiter, client_address(request))


# scope="function": commit before the response is sent, so a client never reads its own write as missing
# and a failed commit becomes this request's error.
Session = Annotated[AsyncSession, Depends(session, scope="function")]
Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]
Seller = Annotated[Principal, Depends(_seller)]
Buyer = Annotated[Principal, Depends(_buyer)]
VerifiedSeller = Annotated[Principal, Depends(verified_seller)]
VerifiedBuyer = Annotated[Principal, Depends(verified_buyer)]
Support = Annotated[Principal, Depends(require_role(Role.SUPPORT))]
Temporal = Annotated[Client, Depends(temporal)]
MeiliClient = Annotated[Meili, Depends(meili)]
Search = Annotated[SearchService, Depends(search_service)]
Cache = Annotated[ListingCache, Depends(listing_cache)]
Views = Annotated[AddressViews, Depends(view_counter)]
Limits = Annotated[Limiter, Depends(limiter)]
Integrator = Annotated[Scope, Depends(integrator)]
