"""Idempotency keys of an order's money: `<order id>:<operation>:<n>`, built from the order and the operation,
never from an attempt, so a retried call replays at the provider instead of moving money twice. The same keys
name the ledger movements (`txn`) booked without a provider call. Built by the order workflows, read back by
`activities.orders.load_order` when a reopened order needs its counters."""

from __future__ import annotations

import enum
import re


class MoneyOperation(enum.StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    RELEASE = "release"  # ledger only: escrow to the platform fee and the seller's payable
    RELEASE_REVERSAL = "release_reversal"  # ledger only
    TRANSFER = "transfer"
    TRANSFER_REVERSAL = "transfer_reversal"
    CHARGEBACK = "chargeback"  # ledger only; <n> is the provider's dispute id
    CHARGEBACK_REVERSAL = "chargeback_reversal"


def money_key(order_id: str, operation: MoneyOperation, n: int | str) -> str:
    return f"{order_id}:{operation.value}:{n}"


def key_prefix(order_id: str, operation: MoneyOperation) -> str:
    return f"{order_id}:{operation.value}:"


_KEY = re.compile(r"^(?P<order>[^:]+):(?P<operation>[a-z_]+):(?P<n>.+)$")


def key_operation(key: str) -> str | None:
    """The <operation> of a key (None if `key` is not one of these keys)."""
    match = _KEY.match(key)
    return match["operation"] if match else None


def key_number(key: str) -> int:
    """The <n> of a key (0 if it has no number, e.g. a chargeback's, named by its dispute id)."""
    match = re.search(r":(\d+)$", key)
    return int(match.group(1)) if match else 0
