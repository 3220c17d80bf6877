"""Alembic environment: migrations run synchronously over psycopg 3, URL from the settings object."""

from alembic import context
from sqlalchemy import create_engine, pool

from bazaar.checkout import models as checkout_models  # noqa: F401 - registers the cart table on Base.metadata
from bazaar.integrations import models as integration_models  # noqa: F401 - registers the integrations tables
from bazaar.models import Base
from bazaar.returns import models as return_models  # noqa: F401 - registers the returns tables
from bazaar.settings import get_settings
from bazaar.trust import models as trust_models  # noqa: F401 - registers the trust tables on Base.metadata

target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = context.config.attributes.get("url") or get_settings().database_url
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
