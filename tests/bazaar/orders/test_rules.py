"""The order's pure rules (`bazaar.orders.rules`), without a Temporal server: who may do what in which
state (every action x state x party), the race rule, attention blocking, `allowed_actions`, and the checks
of request text. The expectations are written out here, not derived from `RULES`."""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import pytest
from temporalio.exceptions import ApplicationError

from bazaar.errors import Rejection
from bazaar.models import OrderStatus, PaymentState
from bazaar.orders import rules
from bazaar.orders.types import Actor, OrderAction, OrderView, Party

BUYER, SELLER, SUPPORT, STRANGER = Actor("buyer-1"), Actor("seller-1"), Actor("staff-1", True), Actor("x-1")
ACTORS = {"buyer": BUYER, "seller": SELLER, "support": SUPPORT, "stranger": STRANGER}
STATES = (
    "pending",
    "paid",
    "confirmed",
    "fulfilled",
    "completed",
    "disputed",
    "refunded",
    "cancelled",
    "rejected",
)
# The payment state an order typically has in each status.
PAYMENT = {
    "pending": "none",
    "paid": "held_in_escrow",
    "confirmed": "held_in_escrow",
    "fulfilled": "held_in_escrow",
    "completed": "released",
    "disputed": "frozen",
    "refunded": "refunded",
    "cancelled": "refunded",
    "rejected": "none",
}
# action -> {state where it is allowed: the parties who may do it there}
ALLOWED: dict[str, dict[str, set[str]]] = {
    "accept": {"paid": {"seller"}},
    "decline": {"paid": {"seller"}},
    "cancel": {
        "pending": {"buyer", "support"},
        "paid": {"buyer", "support"},
        "confirmed": {"seller", "support"},
    },
    "fulfil": {"confirmed": {"seller"}},
    "confirm_receipt": {"fulfilled": {"buyer"}},
    "open_dispute": {"fulfilled": {"buyer"}},
    "resolve_dispute": {"disputed": {"support"}},
    "retry_transfer": {"completed": {"support"}},
    "retry": {s: {"support"} for s in ("pending", "paid", "confirmed", "fulfilled", "completed", "disputed")},
    "refund": {
        **{s: {"seller", "support"} for s in ("paid", "confirmed", "fulfilled")},
        "completed": {"support"},
    },
}


def view(status: str, **changes: object) -> OrderView:
    base = OrderView(
        order_id="order-1",
        status=OrderStatus(status),
        reason=None,
        buyer_id=BUYER.user_id,
        listing_id="listing-1",
        quantity=1,
        seller_id=SELLER.user_id,
        amount=45_000,
        currency="EUR",
        payment_state=PaymentState(PAYMENT[status]),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def ready_for(action: str, status: str) -> OrderView:
    """An order in `status` meeting the action's other preconditions (a failed payout to retry, a stuck
    step to retry)."""
    if action == "retry_transfer":
        return view(status, payment_state="transfer_failed")
    if action == "retry":
        return view(status, attention="save_transition: database unavailable")
    return view(status)


def refusal(action: str, actor: Actor, order: OrderView | None) -> str:
    with pytest.raises(ApplicationError) as refused:
        rules.authorize(OrderAction(action), actor, order)
    return str(refused.value.type)


@pytest.mark.parametrize(
    ("action", "status", "party"),
    list(product(ALLOWED, STATES, ACTORS)),
    ids=lambda v: str(v),
)
def test_every_action_in_every_state_for_every_party(action: str, status: str, party: str) -> None:
    order = ready_for(action, status)
    actor = ACTORS[party]
    ever = set().union(*ALLOWED[action].values())
    if party not in ever:
        assert refusal(action, actor, order) == "Forbidden"
    elif party in ALLOWED[action].get(status, set()):
        assert rules.authorize(OrderAction(action), actor, order) == party
    else:
        assert refusal(action, actor, order) == "InvalidTransition"


def test_forbidden_comes_before_the_state() -> None:
    """Someone who may never do it hears so, whatever the state (no information about the order)."""
    assert refusal("accept", BUYER, view("cancelled")) == "Forbidden"
    assert refusal("cancel", STRANGER, view("paid", attention="charge: timeout")) == "Forbidden"
    assert refusal("retry", SELLER, view("paid", attention="charge: timeout")) == "Forbidden"


def test_an_order_still_being_placed_refuses_everything() -> None:
    for action in ALLOWED:
        assert refusal(action, SUPPORT, None) == "InvalidTransition", action


def test_the_buyers_cancel_after_the_seller_accepted_lost_a_race() -> None:
    """Not Forbidden (403): the buyer may cancel, just not any more (409)."""
    assert refusal("cancel", BUYER, view("confirmed")) == "InvalidTransition"
    assert refusal("cancel", BUYER, view("fulfilled")) == "InvalidTransition"
    # And the other way round: the seller's accept after the buyer cancelled.
    assert refusal("accept", SELLER, view("cancelled")) == "InvalidTransition"
    assert refusal("decline", SELLER, view("confirmed")) == "InvalidTransition"


def test_someone_in_two_roles_acts_in_the_first_role_the_state_allows() -> None:
    buyer_and_staff = Actor(BUYER.user_id, is_support=True)
    seller_and_staff = Actor(SELLER.user_id, is_support=True)
    assert rules.authorize(OrderAction.CANCEL, buyer_and_staff, view("paid")) == "buyer"
    assert rules.authorize(OrderAction.CANCEL, seller_and_staff, view("confirmed")) == "seller"
    assert rules.authorize(OrderAction.RESOLVE_DISPUTE, buyer_and_staff, view("disputed")) == "support"


def test_no_seller_until_the_reservation_named_one() -> None:
    placing = view("pending", seller_id="")
    assert rules.parties(Actor(""), placing.buyer_id, placing.seller_id) == set()
    assert rules.parties(SELLER, placing.buyer_id, placing.seller_id) == set()
    assert rules.parties(BUYER, placing.buyer_id, placing.seller_id) == {"buyer"}
    assert rules.parties(SUPPORT, None, None) == {"support"}


def test_who_may_ever_act_decides_forbidden_in_every_state() -> None:
    assert not rules.may_ever(OrderAction.ACCEPT, {Party.BUYER})
    assert rules.may_ever(OrderAction.ACCEPT, {Party.SELLER})
    assert rules.may_ever(OrderAction.REFUND, {Party.SUPPORT})
    assert not rules.may_ever(OrderAction.CONFIRM_RECEIPT, {Party.SELLER, Party.SUPPORT})
    assert not rules.may_ever(OrderAction.RESOLVE_DISPUTE, set())


@pytest.mark.parametrize("status", ["pending", "paid", "confirmed", "fulfilled", "completed", "disputed"])
def test_a_stuck_step_blocks_every_action_but_retry_and_cancel(status: str) -> None:
    stuck = view(status, attention="save_transition: database unavailable")
    for action, states in ALLOWED.items():
        for party in set().union(*states.values()):
            actor = ACTORS[party]
            if action == "retry":
                assert rules.authorize(OrderAction(action), actor, stuck) == "support"
            elif action == "cancel":
                # A cancel may still come (it waits for the step): refused only by the state, as usual.
                if party in states.get(status, set()):
                    assert rules.authorize(OrderAction(action), actor, stuck) == party
                else:
                    assert refusal(action, actor, stuck) == "InvalidTransition"
            else:
                assert refusal(action, actor, stuck) == "NeedsAttention", (action, party)


def test_nothing_to_retry_without_a_stuck_step() -> None:
    assert refusal("retry", SUPPORT, view("paid")) == "InvalidTransition"


def test_money_conditions() -> None:
    # The card network decides a chargeback: support waits for it.
    assert refusal("resolve_dispute", SUPPORT, view("disputed", payment_state="chargeback")) == (
        "InvalidTransition"
    )
    assert (
        rules.authorize(OrderAction.RESOLVE_DISPUTE, SUPPORT, view("disputed", payment_state="frozen"))
        == "support"
    )
    # Only a failed payout can be retried.
    assert refusal("retry_transfer", SUPPORT, view("completed")) == "InvalidTransition"
    assert (
        rules.authorize(
            OrderAction.RETRY_TRANSFER, SUPPORT, view("completed", payment_state="transfer_failed")
        )
        == "support"
    )


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (view("pending"), ["cancel"]),
        (view("paid"), ["accept", "cancel", "decline", "refund"]),
        (view("confirmed"), ["cancel", "fulfil", "refund"]),
        (view("fulfilled"), ["confirm_receipt", "open_dispute", "refund"]),
        (view("fulfilled", payment_state="chargeback"), ["confirm_receipt", "open_dispute"]),
        (view("completed"), ["refund"]),
        (view("completed", payment_state="transfer_failed"), ["refund", "retry_transfer"]),
        (view("completed", payment_state="payout_on_hold"), ["refund", "retry_transfer"]),
        (view("completed", payment_state="charged_back"), []),
        (view("disputed"), ["resolve_dispute"]),
        (view("disputed", payment_state="chargeback"), []),
        (view("refunded"), []),
        (view("cancelled"), []),
        (view("rejected"), []),
        (view("pending", attention="charge: timeout"), ["cancel", "retry"]),
        (view("paid", attention="refund: timeout"), ["cancel", "retry"]),
        (view("fulfilled", attention="release_escrow: timeout"), ["retry"]),
        (view("completed", payment_state="transfer_failed", attention="save_transition: x"), ["retry"]),
        (view("disputed", attention="record_chargeback: x"), ["retry"]),
    ],
    ids=lambda v: (
        f"{v.status}-{v.payment_state}-{'stuck' if v.attention else 'ok'}" if isinstance(v, OrderView) else ""
    ),
)
def test_allowed_actions(order: OrderView, expected: list[str]) -> None:
    assert rules.allowed_actions(order) == expected


def test_allowed_actions_agree_with_authorize() -> None:
    """What the view offers is exactly what authorize lets some party do (here one person in every role)."""
    everyone = Actor("everyone", is_support=True)
    for status, payment, attention in product(
        STATES,
        ("none", "held_in_escrow", "frozen", "chargeback", "released", "transfer_failed", "payout_on_hold"),
        (None, "x"),
    ):
        order = view(
            status, buyer_id="everyone", seller_id="everyone", payment_state=payment, attention=attention
        )
        possible = []
        for action in ALLOWED:
            try:
                rules.authorize(OrderAction(action), everyone, order)
            except ApplicationError:
                continue
            possible.append(action)
        assert rules.allowed_actions(order) == sorted(possible), (status, payment, attention)


@pytest.mark.parametrize(
    ("text", "multiline"),
    [
        ("DHL\x00", False),
        ("line\nbreak", False),
        ("tab\there", False),
        ("carriage\rreturn", False),
        ("del\x7f", False),
        ("c1\x85", False),
        ("nul\x00", True),
        ("escape\x1b[31m", True),
        ("lone\rcarriage return", True),
        ("bell\x07", True),
    ],
)
def test_control_characters_are_refused(text: str, multiline: bool) -> None:
    name = "message" if multiline else "reason"
    with pytest.raises(ApplicationError) as refused:
        rules.check_request(OrderAction.OPEN_DISPUTE, {name: text})
    assert refused.value.type == "InvalidRequest"
    assert refused.value.message.startswith(f"open_dispute: {name} ")
    assert "U+" in refused.value.message


def test_what_text_may_contain() -> None:
    rules.check_request(
        OrderAction.OPEN_DISPUTE, {"reason": "not as described", "message": "bent\r\nframe\tcracked\n"}
    )
    rules.check_request(OrderAction.FULFIL, {"carrier": "DHL Express", "tracking_number": "JJD0001 ü €"})
    rules.check_request(OrderAction.CANCEL, {"reason": None})
    rules.check_request(OrderAction.CANCEL, {"reason": "x" * rules.TEXT_LIMIT})
    with pytest.raises(ApplicationError, match="longer than 5000 characters") as refused:
        rules.check_request(OrderAction.CANCEL, {"reason": "x" * (rules.TEXT_LIMIT + 1)})
    assert refused.value.type == "InvalidRequest"


def test_resolutions() -> None:
    for resolution in ("release", "refund", "partial_refund"):
        rules.check_resolution(resolution)
    for bad in (None, "split", "", "Refund"):
        with pytest.raises(ApplicationError) as refused:
            rules.check_resolution(bad)
        assert refused.value.type == "InvalidRequest"


@pytest.mark.parametrize(
    ("party", "user", "refused"),
    [
        (Party.SUPPORT, "b", True),
        (Party.SUPPORT, "s", True),
        (Party.SUPPORT, "x", False),
        (Party.BUYER, "b", False),
        (Party.SELLER, "s", False),
    ],
)
def test_support_acts_on_an_order_of_their_own_as_its_party_only(
    party: Party, user: str, refused: bool
) -> None:
    """A support user who is the order's buyer ("b") or seller ("s") may not act as support on it (403)."""
    if refused:
        with pytest.raises(ApplicationError, match="not as support") as raised:
            rules.refuse_support_on_own_order(party, user, "b", "s")
        assert raised.value.type == Rejection.FORBIDDEN
    else:
        rules.refuse_support_on_own_order(party, user, "b", "s")


def test_allowed_to_lists_the_callers_own_moves_only() -> None:
    paid = rules.allowed_for(OrderStatus.PAID, PaymentState.HELD_IN_ESCROW)
    assert paid == ["accept", "cancel", "decline", "refund"]
    status = OrderStatus.PAID
    assert rules.allowed_to(paid, status, BUYER, "buyer-1", "seller-1") == ["cancel"]
    assert rules.allowed_to(paid, status, SELLER, "buyer-1", "seller-1") == ["accept", "decline", "refund"]
    assert rules.allowed_to(paid, status, SUPPORT, "buyer-1", "seller-1") == ["cancel", "refund"]
    assert rules.allowed_to(paid, status, STRANGER, "buyer-1", "seller-1") == []
    # Support staff who bought it: the buyer's moves only.
    staff_buyer = Actor("buyer-1", True)
    assert rules.allowed_to(paid, status, staff_buyer, "buyer-1", "seller-1") == ["cancel"]
