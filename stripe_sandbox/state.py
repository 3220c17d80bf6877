"""In-memory sandbox state with optional atomic JSON persistence.

Everything the sandbox knows lives in one JSON-able dict so a restart with
``--state-file`` reproduces exactly what the SDK saw before.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

OBJECT_TYPES = (
    "payment_intent",
    "charge",
    "refund",
    "account",
    "transfer",
    "transfer_reversal",
    "balance_transaction",
    "event",
    "dispute",
)

ID_PREFIXES = {
    "payment_intent": "pi",
    "charge": "ch",
    "refund": "re",
    "account": "acct",
    "transfer": "tr",
    "transfer_reversal": "trr",
    "balance_transaction": "txn",
    "event": "evt",
    "dispute": "dp",
    "request": "req",
}

PREFIX_TO_TYPE = {prefix: kind for kind, prefix in ID_PREFIXES.items()}

IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60


def new_id(kind: str) -> str:
    """Random Stripe-looking id, e.g. ``pi_3f9c...``."""
    return f"{ID_PREFIXES[kind]}_{secrets.token_hex(12)}"


def now() -> int:
    """Unix seconds, the unit of Stripe's ``created``."""
    return int(time.time())


def empty_state() -> dict[str, Any]:
    """A fresh state document."""
    return {
        "version": 1,
        "objects": {kind: {} for kind in OBJECT_TYPES},
        # (api_key, idempotency key) -> saved response; key is "api_key\x00idem_key".
        "idempotency": {},
        # performed (non-replayed) mutating requests per path
        "requests": {},
        # account link token -> its account, URLs, expiry and whether it was visited (links have no id)
        "account_links": {},
    }


class Store:
    """Owns the state dict and its persistence."""

    def __init__(self, state_file: str | None) -> None:
        self.path = Path(state_file) if state_file else None
        self.data = empty_state()
        if self.path is not None and self.path.exists():
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            base = empty_state()
            base.update(loaded)
            for kind in OBJECT_TYPES:
                base["objects"].setdefault(kind, {})
            self.data = base

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """Objects of one type in creation order."""
        result: dict[str, dict[str, Any]] = self.data["objects"][kind]
        return result

    def get(self, kind: str, obj_id: str) -> dict[str, Any] | None:
        """Look up one object by id."""
        return self.objects(kind).get(obj_id)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace an object (keyed by its ``object`` and ``id``)."""
        self.objects(obj["object"])[obj["id"]] = obj
        return obj

    def find(self, obj_id: str) -> dict[str, Any] | None:
        """Find an object of any type from its id prefix (used by ``expand``)."""
        kind = PREFIX_TO_TYPE.get(obj_id.split("_", 1)[0])
        return self.get(kind, obj_id) if kind else None

    def reset(self) -> None:
        """Forget everything (``POST /_sandbox/reset``)."""
        self.data = empty_state()

    def prune_idempotency(self) -> None:
        """Drop idempotency records older than Stripe's 24 h retention."""
        cutoff = time.time() - IDEMPOTENCY_TTL_SECONDS
        records: dict[str, dict[str, Any]] = self.data["idempotency"]
        for key in [k for k, v in records.items() if v["created"] < cutoff]:
            del records[key]

    def save(self) -> None:
        """Write the state atomically (temp file + fsync + rename) if persistence is on."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".stripe-sandbox-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.data, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
