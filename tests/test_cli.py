"""The operators' CLI (cli.py): what it takes on its command line."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

import cli


def test_a_reconciliation_bound_is_a_whole_second() -> None:
    """docs/operations.md: bounds are whole seconds. Found from outside: `--until ...T10:00:00.5` crashed with a
    traceback in the window's id, and `--since ...T08:00:00.5` ran as the whole second's window."""
    assert cli._moment("2026-11-28") == datetime(2026, 11, 28, tzinfo=UTC)
    assert cli._moment("2026-11-28T08:00:00+01:00").utcoffset() is not None
    with pytest.raises(argparse.ArgumentTypeError, match="whole seconds"):
        cli._moment("2026-11-28T08:00:00.5")
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        cli._moment("2026-13-45")
