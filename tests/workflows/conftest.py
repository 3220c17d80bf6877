"""A Temporal dev server with our search attributes (the time-skipping server rejects custom ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from bazaar.temporal import DATA_CONVERTER
from tests.support.binaries import venv_binary
from tests.support.temporal import SEARCH_ATTRIBUTES


@pytest.fixture(scope="session")
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    temporal = venv_binary("temporal")
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--headless"],
        data_converter=DATA_CONVERTER,
    ) as env:
        yield env


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server: a 14-day timer fires in milliseconds (no custom attributes).

    One per test module: after the dispute tests, a server shared with the review tests stopped skipping
    time for them (their 14-day wait then hung), so modules do not share one."""
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"),
        data_converter=DATA_CONVERTER,
    ) as env:
        yield env
