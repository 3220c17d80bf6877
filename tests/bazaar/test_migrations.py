"""Migrations build exactly the schema the models declare, and downgrade cleanly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bazaar.checkout import models as checkout_models  # noqa: F401 - registers the cart table
from bazaar.integrations import models as integration_models  # noqa: F401 - registers the integrations tables
from bazaar.migrate import alembic_config
from bazaar.models import Base
from bazaar.returns import models as return_models  # noqa: F401 - registers the returns tables
from bazaar.trust import models as trust_models  # noqa: F401 - registers the trust tables
from tests.support.databases import drop_database

pytestmark = pytest.mark.integration


def test_upgrade_matches_models_and_downgrade_round_trips(infra: Any) -> None:
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(infra.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(infra.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        config = alembic_config(url)
        command.upgrade(config, "head")
        engine = create_engine(url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        command.downgrade(config, "base")
        with engine.connect() as conn:
            tables = (
                conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
                .scalars()
                .all()
            )
        assert set(tables) <= {"alembic_version"}
        command.upgrade(config, "head")
        engine.dispose()
    finally:
        drop_database(admin, name)
        admin.dispose()
