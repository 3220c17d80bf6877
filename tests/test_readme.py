"""The README's curl walk-through works verbatim against a running stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- walkthrough:start -->\n```sh\n(.*?)```\n<!-- walkthrough:end -->", re.S)

pytestmark = pytest.mark.integration


def test_walkthrough_runs_verbatim(stack: Any) -> None:
    match = BLOCK.search((ROOT / "README.md").read_text())
    assert match, "README.md lost its walk-through block"
    env = {
        **os.environ,
        "API": stack.api_url,
        "TEMPORAL_ADDRESS": stack.temporal_address,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", "-c", match.group(1)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert '"status":"completed"' in out
    assert '"paid_out":40470' in out  # 45000 - (10 % + 30)
    assert '"code":"invalid_transition"' in out
    assert '"status_reason":"payment_failed"' in out
    assert re.search(r"Completed\s+order-", out)
    # The two-seller checkout (the bike's last unit and two lamps, one charge) and the lamp's return.
    assert '"total":{"amount":50000,"currency":"EUR"}' in out
    assert '"status":"refunded"' in out and '"restocked":true' in out
    assert '"refunded":{"amount":2500,"currency":"EUR"}' in out
