"""A long-lived LISTEN connection that dispatches NOTIFY payloads to callbacks and reconnects by itself.

`on_state(True)` is called once LISTEN is in place, `on_state(False)` when the connection is lost: a consumer
that must not miss a message (the hot-listing cache) turns itself off in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

log = logging.getLogger("pg_listen")


def libpq_url(database_url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg://...) as a libpq connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def connect(database_url: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """An autocommit connection with TCP keepalives, so a silently dead peer is noticed within ~25 s."""
    return await psycopg.AsyncConnection.connect(
        libpq_url(database_url),
        autocommit=True,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )


async def listen_forever(
    database_url: str,
    handlers: Mapping[str, Callable[[str], None]],
    on_state: Callable[[bool], None] = lambda up: None,
    retry_seconds: float = 1.0,
) -> None:
    """Run until cancelled."""
    while True:
        try:
            async with await connect(database_url) as conn:
                for channel in handlers:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                on_state(True)
                async for notify in conn.notifies():
                    handler = handlers.get(notify.channel)
                    if handler is not None:
                        try:
                            handler(notify.payload)
                        except Exception:
                            log.exception("handler for %s failed", notify.channel)
        except asyncio.CancelledError:
            on_state(False)
            raise
        except Exception as exc:
            log.warning("LISTEN connection lost (%r); retrying in %.1fs", exc, retry_seconds)
        on_state(False)
        await asyncio.sleep(retry_seconds)
