"""What the workflow tests' Temporal dev server registers (tests/workflows/conftest.py starts it, and
tests/workflows/record_histories.py too)."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

from bazaar.orders.types import SEARCH_ATTRIBUTE_KEYS

# Every order search attribute, NeedsAttention included (the lean order upserts it on each transition).
SEARCH_ATTRIBUTES: list[SearchAttributeKey[Any]] = list(SEARCH_ATTRIBUTE_KEYS)
