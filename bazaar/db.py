"""Database engine and sessions (SQLAlchemy 2 asyncio over psycopg 3)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bazaar.errors import field_error
from bazaar.settings import get_settings
from bazaar.telemetry import instrument_engine


@lru_cache
def get_engine() -> AsyncEngine:
    settings = get_settings()
    engine = create_async_engine(
        settings.database_url, pool_size=settings.database_pool_size, pool_pre_ping=True
    )
    instrument_engine(engine)  # SQL statements as spans of the request or activity that runs them
    return engine


@lru_cache
def get_counter_engine() -> AsyncEngine:
    """The rate limiter's pool, apart from the requests' (an API process's limiter only). A request counts its hits
    while its session holds a connection: from one shared pool, a burst of requests each holding one would all wait
    for a second that none gives back, until the pool's timeout answered every one 503 (measured: 87 orders at
    once, 30 s). A counter's statement holds its connection for a millisecond, so a small pool keeps up."""
    settings = get_settings()
    size = max(1, settings.database_pool_size // 2)
    engine = create_async_engine(settings.database_url, pool_size=size, max_overflow=size, pool_pre_ping=True)
    instrument_engine(engine)
    return engine


@lru_cache
def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(get_engine(), expire_on_commit=False)


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any error."""
    async with get_sessionmaker()() as session, session.begin():
        yield session


M = TypeVar("M")


async def newest_first(
    session: AsyncSession,
    model: type[M],
    owned: ColumnElement[bool],
    before: uuid.UUID | None,
    limit: int,
    *filters: ColumnElement[bool],
) -> tuple[list[M], uuid.UUID | None]:
    """A page of `model`'s rows that are the caller's (`owned`) and pass `filters`, newest first (by `created_at`,
    then `id`), after the row `before` (the previous page's cursor: a row id), and the next page's cursor (None on
    the last page). A cursor that names none of the caller's rows is a 422 naming `query.before` (a row of someone
    else's is none of theirs: the answer must not tell it exists); a filter does not judge it, so a row that left
    the filter since its page was read still pages on."""
    mapped: Any = model  # its mapped columns, read off the class
    stmt = select(model).where(owned, *filters)
    if before is not None:
        anchor: Any = await session.scalar(select(model).where(owned, mapped.id == before))
        if anchor is None:  # not a page's cursor: its first page instead would hide the client's mistake
            raise field_error(
                "before", "not a cursor of this list: pass a page's next_cursor", "value_error", "query"
            )
        stmt = stmt.where(tuple_(mapped.created_at, mapped.id) < tuple_(anchor.created_at, anchor.id))
    rows = (
        await session.scalars(stmt.order_by(mapped.created_at.desc(), mapped.id.desc()).limit(limit + 1))
    ).all()
    page = list(rows[:limit])
    last: Any = page[-1] if page else None
    return page, last.id if len(rows) > limit else None
