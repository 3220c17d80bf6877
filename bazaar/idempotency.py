"""Idempotency-Key requests: a digest of what a request asked for, so that the same key with another request is
told apart from a retry of the first (refused with 422 `idempotency_key_reused` rather than answered as it)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from typing import Any


def request_digest(value: Any) -> str:
    """What a request asked for (JSON values; dataclasses by their fields), as 32 hex digits."""
    plain = json.dumps(
        value,
        sort_keys=True,
        default=lambda o: asdict(o) if is_dataclass(o) and not isinstance(o, type) else str(o),
    )
    return hashlib.sha256(plain.encode()).hexdigest()[:32]
