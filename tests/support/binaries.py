"""Find the CLI binaries installed into the virtualenv (its bin/ may not be on PATH)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def venv_binary(name: str) -> str:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    assert found, f"{name} not found; run `make bootstrap`"
    return found
