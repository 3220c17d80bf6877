"""Database engine and sessions (SQLAlchemy 2 asyncio over psycopg 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

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
def get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(get_engine(), expire_on_commit=False)


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back on any error."""
    async with get_sessionmaker()() as session, session.begin():
        yield session
