"""Databases of a test module's own on the test PostgreSQL (so no process of the shared stack touches them)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ProgrammingError

from bazaar.migrate import upgrade


@contextmanager
def migrated_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new database named `<prefix>_<random>` on the server of `server_url`, migrated to head; dropped on exit.
    Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        drop_database(admin, name)
        admin.dispose()


def drop_database(admin: Engine, name: str) -> None:
    """DROP ... WITH (FORCE), retried: an autovacuum worker busy on the fresh tables cannot be terminated by a
    role that is not a superuser, and it is done in a moment."""
    for attempt in range(20):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError:
            if attempt == 19:
                raise
            time.sleep(0.25)
