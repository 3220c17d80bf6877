"""Database transactions for activities, with their errors classified for Temporal's retries.

A lost connection, a restart or a lock timeout is transient: the activity fails and Temporal retries it
(bounded by the caller's timeouts). A value the database refuses (a NUL byte in text, a number out of
range, a broken constraint) fails the same way on every attempt: it is raised as a non-retryable
`DataError`, so the workflow compensates or asks support instead of retrying it forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from bazaar.db import transaction

DATA_ERROR = "DataError"


def is_data_error(exc: BaseException) -> bool:
    if isinstance(exc, DataError | IntegrityError | ProgrammingError):
        return True
    # The driver refused to send the value at all (e.g. psycopg: text cannot contain NUL bytes).
    return isinstance(exc, StatementError) and isinstance(exc.orig, ValueError | TypeError)


@asynccontextmanager
async def activity_transaction() -> AsyncIterator[AsyncSession]:
    """`bazaar.db.transaction()` for activities: data errors become non-retryable `DataError`s."""
    try:
        async with transaction() as session:
            yield session
    except StatementError as exc:
        if not is_data_error(exc):
            raise
        raise ApplicationError(
            f"the database refused the data: {exc.orig or exc}", type=DATA_ERROR, non_retryable=True
        ) from exc
