"""The operators' CLI (cli.py): what it takes on its command line."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

import cli


def test_a_reconciliation_window_is_whole_seconds() -> None:
    """docs/operations.md: bounds are whole seconds. Found from outside: `--until ...T10:00:00.5` crashed with a
    traceback in the window's id, and `--since ...T08:00:00.5` ran under the whole second's window id. The
    window is the whole seconds that hold the instants given."""
    at = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC)
    half = at + timedelta(milliseconds=500)
    assert cli.whole_seconds(half, half + timedelta(seconds=2)) == (at, at + timedelta(seconds=3))
    assert cli.whole_seconds(at, at + timedelta(hours=1)) == (at, at + timedelta(hours=1))
    assert cli.whole_seconds(at, half) == (at, at + timedelta(seconds=1))  # a window, not a crash
    assert cli.whole_seconds(None, None) == (None, None)
    assert cli._moment("2026-11-28") == datetime(2026, 11, 28, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        cli._moment("2026-13-45")


def test_a_reconciliation_item_takes_what_the_api_takes() -> None:
    """Found from outside: the CLI resolved an item with an empty note, and listed nothing for `--limit 0`, where
    the API answers 422."""
    assert cli._note("  booked a correction  ") == "booked a correction"
    for blank in ("", "   ", "a\x00b"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._note(blank)
    assert cli._page_size("500") == 500
    for bad in ("0", "501", "-1", "ten"):
        with pytest.raises(argparse.ArgumentTypeError, match="1 to 500"):
            cli._page_size(bad)
