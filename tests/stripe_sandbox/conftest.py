"""Fixtures for the Stripe sandbox tests: the sandbox runs as a real subprocess on a free port
(`SandboxProcess`, tests/support/sandbox.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from tests.support.sandbox import SandboxProcess


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxProcess]:
    proc = SandboxProcess().start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def sbx(sandbox: SandboxProcess) -> SandboxProcess:
    """The shared sandbox, reset to empty state with no faults for each test."""
    assert sandbox.control("POST", "/_sandbox/reset").status_code == 200
    return sandbox


@pytest.fixture
def client(sbx: SandboxProcess) -> stripe.StripeClient:
    return sbx.client()


@pytest.fixture(scope="session")
def stripe_fixtures() -> dict[str, dict[str, object]]:
    """Stripe's own example objects (MIT, see fixtures/LICENSE)."""
    import json

    path = Path(__file__).parent / "fixtures" / "stripe_fixtures.json"
    data: dict[str, dict[str, object]] = json.loads(path.read_text())
    return data
