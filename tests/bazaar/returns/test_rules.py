"""The return's pure rules (`bazaar.returns.rules`): what each caller may do to a return now."""

from __future__ import annotations

import pytest

from bazaar.orders.types import Actor
from bazaar.returns.models import ReturnStatus
from bazaar.returns.rules import allowed_to

BUYER, SELLER, SUPPORT, STRANGER = Actor("b"), Actor("s"), Actor("staff", True), Actor("x")


@pytest.mark.parametrize(
    ("status", "actor", "moves"),
    [
        (ReturnStatus.REQUESTED, BUYER, ["cancel"]),
        (ReturnStatus.REQUESTED, SELLER, ["approve", "reject"]),
        (ReturnStatus.REQUESTED, SUPPORT, ["approve", "reject"]),
        (ReturnStatus.REQUESTED, STRANGER, []),
        (ReturnStatus.APPROVED, BUYER, ["cancel", "ship"]),
        (ReturnStatus.APPROVED, SELLER, []),
        (ReturnStatus.SHIPPED, SELLER, ["receive"]),
        (ReturnStatus.ESCALATED, SUPPORT, ["resolve"]),
        (ReturnStatus.ESCALATED, SELLER, []),
        # Support staff who bought the order: the buyer's moves only.
        (ReturnStatus.REQUESTED, Actor("b", True), ["cancel"]),
        (ReturnStatus.ESCALATED, Actor("s", True), []),
        (ReturnStatus.REFUNDED, SUPPORT, []),
    ],
)
def test_a_caller_is_offered_their_own_moves(status: ReturnStatus, actor: Actor, moves: list[str]) -> None:
    assert allowed_to(status, actor, "b", "s") == moves
