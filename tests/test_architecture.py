"""The house rules that a change can break without any behaviour changing (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Generated or vendored text, and the Stripe sandbox (a stand-in for a third-party service), are exempt.
EXEMPT = ("bazaar/migrations/", "stripe_sandbox/", "tests/histories/", "tests/fixtures/")
MAX_LINES = 600


def test_imports_follow_the_layers() -> None:
    """api -> workflows -> activities -> bazaar; search_sync -> bazaar; the sandbox stands alone
    (contracts in pyproject.toml, checked by import-linter)."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_source_file_is_longer_than_a_reader_can_hold() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    too_long = {
        name: lines
        for name in tracked
        if not name.startswith(EXEMPT)
        and (ROOT / name).exists()
        and (lines := len((ROOT / name).read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these along their seams (at most {MAX_LINES} lines): {too_long}"
