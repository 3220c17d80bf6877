"""Request dependencies: database session, the caller, role checks, and the app's shared clients and
in-process services (set up by the lifespan on `app.state`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.listing_runtime import ListingCache
from bazaar.auth import Principal, decode_token
from bazaar.db import get_sessionmaker
from bazaar.errors import DomainError, ErrorCode
from bazaar.listings.popularity import ViewCounter
from bazaar.models import Role
from bazaar.search.meili import Meili
from bazaar.search.query import SearchService

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


async def optional_principal(token: Annotated[str | None, Depends(oauth2)]) -> Principal | None:
    return decode_token(token) if token else None


async def principal(token: Annotated[str | None, Depends(oauth2)]) -> Principal:
    if not token:
        raise DomainError(ErrorCode.NOT_AUTHENTICATED, "missing bearer token")
    return decode_token(token)


def require_role(role: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        if not caller.has(role):
            raise DomainError(ErrorCode.FORBIDDEN, f"this needs the {role.value} role")
        return caller

    return check


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


async def view_counter(request: Request) -> ViewCounter:
    views: ViewCounter = request.app.state.views
    return views


# scope="function": commit before the response is sent, so a client never reads its own write as missing
# and a failed commit becomes this request's error.
Session = Annotated[AsyncSession, Depends(session, scope="function")]
Caller = Annotated[Principal, Depends(principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]
Seller = Annotated[Principal, Depends(require_role(Role.SELLER))]
Buyer = Annotated[Principal, Depends(require_role(Role.BUYER))]
Support = Annotated[Principal, Depends(require_role(Role.SUPPORT))]
Temporal = Annotated[Client, Depends(temporal)]
MeiliClient = Annotated[Meili, Depends(meili)]
Search = Annotated[SearchService, Depends(search_service)]
Cache = Annotated[ListingCache, Depends(listing_cache)]
Views = Annotated[ViewCounter, Depends(view_counter)]
