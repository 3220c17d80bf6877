"""Session fixtures for tests that need real services.

Both fixtures are lazy: a test run that requests neither starts nothing, so unit tests need no
services. Everything binds free loopback ports in a fresh temp dir (never the dev stack's ports or
`.data/`), Temporal is in memory, and every process is stopped at session end, even on failure.

- `infra`: PostgreSQL + Temporal + Meilisearch + Stripe sandbox + SMTP sink, no app processes (for
  tests that run workers in-process: give them their own task queue, since `stack` shares this infra).
- `stack`: `infra` plus migrations, worker, search sync and API (no demo data).
- `http`: an httpx client of the stack's API, per test module.
- `outbox_url`, `db`: a migrated database of the test module's own on `infra`'s PostgreSQL (so no other
  notification sender, like the stack's worker, drains its rows), and async sessions on it.

Both yield a `devstack.stack.Stack`: `api_url`, `database_url`, `temporal_address`, `meili_url`,
`meili_master_key`, `meili_search_key`, `stripe_api_base`, `stripe_secret_key`,
`stripe_webhook_secret`, `jwt_secret`, `smtp_port`, `mail_dir`, `env` (dict of settings env vars).
While they are active, `os.environ` carries `env` (and `get_settings()` is reset), so in-process code
reads the test services' settings. Only variables set in the real environment (not `.env`) make
the fixtures use an existing service instead of an embedded one. BAZAAR_KEEP_TEST_DATA=1 keeps the
temp dir (logs in `<dir>/logs/`).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bazaar.settings import Settings, get_settings
from devstack.stack import Ports, Stack
from tests.support.databases import migrated_database
from tests.support.outbox import Sessions

# Hypothesis profiles. `default` bounds the stateful order test for `make test`; `long` is the nightly-style
# run (`make test-long`, or `pytest --hypothesis-profile=long`). Steps run real workflows, so no per-example
# deadline. Under CI (Hypothesis detects `CI=true`) both build on Hypothesis's `ci` profile, so they are also
# derandomized (the same examples every run) and print a reproduction blob. Failing examples are kept under
# .pytest_cache (ignored by git) and replayed first on the next run.
settings.register_profile(
    "default",
    # 15 examples took 60-100 s of `make test` (random examples: their length varies); 7 keep the suite, which
    # grew, under its 15 minutes, and `long` searches 300.
    max_examples=7,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=DirectoryBasedExampleDatabase(
        str(Path(__file__).parent.parent / ".pytest_cache" / "hypothesis")
    ),
)
settings.register_profile("long", settings.get_profile("default"), max_examples=300, stateful_step_count=40)
settings.load_profile("default")  # the plugin loads `--hypothesis-profile` after this, when given


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@pytest.fixture(scope="session")
def infra() -> Iterator[Stack]:
    """Embedded services only, on free ports in a temp dir; stopped at session end."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        # A SIGTERM'd test run unwinds through fixture teardown instead of orphaning servers.
        signal.signal(signal.SIGTERM, _interrupt)
    base = Path(tempfile.mkdtemp(prefix="bazaar-test-"))
    base.chmod(0o755)  # the `postgres` OS user (we may be root) must traverse it
    saved_env = dict(os.environ)
    stack = Stack(base, Ports.free(), persistent=False, settings=Settings(_env_file=None))
    try:
        stack.start_infra()
        os.environ.update(stack.env)
        get_settings.cache_clear()
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        get_settings.cache_clear()
        if not os.environ.get("BAZAAR_KEEP_TEST_DATA"):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(infra: Stack) -> Iterator[Stack]:
    """`infra` plus migrations, worker, search sync and API (no demo data)."""
    try:
        infra.start_apps(demo_data=False)
        os.environ.update(infra.env)
        get_settings.cache_clear()
        yield infra
    finally:
        infra.stop_apps()


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the test stack's API (one per test module)."""
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        yield client


# ---- the notification outbox's own database (tests/activities/test_notification_sender.py and
# tests/bazaar/trust/test_notifications.py) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def outbox_url(infra: Stack) -> Iterator[str]:
    """A migrated database of this module's own on the test PostgreSQL."""
    with migrated_database(infra.database_url, "outbox") as url:
        yield url


@pytest.fixture(scope="module")
async def db(outbox_url: str) -> AsyncIterator[Sessions]:
    engine = create_async_engine(outbox_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()
