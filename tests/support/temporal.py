"""What the workflow tests' Temporal dev server registers (tests/workflows/conftest.py starts it, and
tests/workflows/record_histories.py too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributeKey

from bazaar.orders.types import SEARCH_ATTRIBUTE_KEYS

# Every order search attribute, NeedsAttention included (the lean order upserts it on each transition).
SEARCH_ATTRIBUTES: list[SearchAttributeKey[Any]] = list(SEARCH_ATTRIBUTE_KEYS)
V = TypeVar("V")


async def query_when(
    handle: WorkflowHandle[Any, Any], query: Any, check: Callable[[V], bool], seconds: float
) -> V:
    """Poll a workflow's state `query` until `check` holds (None answers, e.g. while a reopened run loads, are
    waited out): what a Signal or a deadline changes happens in the workflow's own time."""
    deadline = time.monotonic() + seconds
    while True:
        view = await handle.query(query)
        if (view is not None and check(view)) or time.monotonic() > deadline:
            assert view is not None and check(view), view
            return cast(V, view)
        await asyncio.sleep(0.05)
