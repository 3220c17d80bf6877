"""The console tests' support user and cookie-keeping client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.http import Actor, support_user


@pytest.fixture(scope="module")
def staff(http: httpx.Client, stack: Any) -> Actor:
    return support_user(http, stack)


@pytest.fixture
def browser(stack: Any) -> Iterator[httpx.Client]:
    """A cookie-keeping client that does not follow redirects (so each answer can be checked)."""
    with httpx.Client(base_url=stack.api_url, timeout=30, follow_redirects=False) as client:
        yield client
