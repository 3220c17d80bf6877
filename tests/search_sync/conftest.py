"""The private search stack (tests/support/search.py), shared by this directory's tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from devstack.process import Supervisor
from devstack.stack import Stack
from tests.support.search import PrivateSearch, create_private


@pytest.fixture(scope="session")
def _private_processes(infra: Stack) -> Iterator[PrivateSearch]:
    base = Path(tempfile.mkdtemp(prefix="bazaar-search-test-"))
    base.chmod(0o755)
    sup = Supervisor(log_dir=base / "logs")
    try:
        yield create_private(infra, base, sup)
    finally:
        sup.stop_all()
        if not os.environ.get("BAZAAR_KEEP_TEST_DATA"):
            shutil.rmtree(base, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def private(_private_processes: PrivateSearch) -> AsyncIterator[PrivateSearch]:
    yield _private_processes
    await _private_processes.dispose()  # the engine lives on the session's event loop
