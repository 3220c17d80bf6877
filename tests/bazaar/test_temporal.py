"""The payload converter every client and worker uses (`bazaar.temporal.DATA_CONVERTER`): our payloads round-trip
through it, what the SDK's default converter wrote (histories recorded before, a worker of the previous release)
reads back the same, and its type adapters are built once per process, not per workflow activation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from temporalio.converter import DataConverter

from activities.orders import LedgerPosting, OrderTransition
from bazaar.models import OrderStatus, PaymentState
from bazaar.orders.types import (
    ActionRequest,
    Actor,
    OrderAction,
    OrderEvent,
    OrderLineView,
    OrderView,
    Party,
    RefundLine,
)
from bazaar.temporal import DATA_CONVERTER, PayloadConverter, _adapter
from bazaar.trust.notifications import NotificationEvent

ORDER = str(uuid.uuid4())
VIEW = OrderView(
    order_id=ORDER,
    status=OrderStatus.FULFILLED,
    reason=None,
    buyer_id=str(uuid.uuid4()),
    listing_id=str(uuid.uuid4()),
    quantity=2,
    seller_id=str(uuid.uuid4()),
    listing_title="Lamp \u00e9clair",
    amount=5000,
    currency="EUR",
    payment_state=PaymentState.HELD_IN_ESCROW,
    tracking={"carrier": "DHL", "tracking_number": "42"},
    allowed_actions=[OrderAction.CONFIRM_RECEIPT, OrderAction.OPEN_DISPUTE],
    lines=[OrderLineView(str(uuid.uuid4()), "Lamp", 2, 2500)],
    refunded_units={"x": 1},
)
TRANSITION = OrderTransition(
    order_id=ORDER,
    seq=4,
    status=OrderStatus.COMPLETED,
    reason="buyer_confirmed",
    payment_state=PaymentState.RELEASED,
    actor_id=VIEW.buyer_id,
    actor_role=Party.BUYER,
    action=OrderEvent.COMPLETED,
    ledger=[
        LedgerPosting(f"{ORDER}:release:1", {"escrow": -5000, "platform_fees": 500, "seller_payable": 4500})
    ],
    notices=[
        NotificationEvent(f"order:{ORDER}:completed", "order_completed", [VIEW.seller_id], [], {"a": "b"})
    ],
    review_closes_at=datetime(2026, 12, 11, 9, 30, tzinfo=UTC),
)
REQUEST = ActionRequest(Actor(VIEW.buyer_id), refund_lines=[RefundLine("x", 1)], idempotency_key="k")
PAYLOADS = [VIEW, TRANSITION, REQUEST]


async def test_payloads_round_trip() -> None:
    for value in PAYLOADS:
        [decoded] = await DATA_CONVERTER.decode(await DATA_CONVERTER.encode([value]), [type(value)])
        assert decoded == value


async def test_what_the_sdks_default_converter_wrote_reads_the_same_both_ways() -> None:
    for value in PAYLOADS:
        old = await DataConverter.default.encode([value])
        assert (await DATA_CONVERTER.decode(old, [type(value)]))[0] == value
        new = await DATA_CONVERTER.encode([value])
        assert (await DataConverter.default.decode(new, [type(value)]))[0] == value


def test_type_adapters_outlive_the_converter_instance() -> None:
    """The worker makes a payload converter per activation: a new one must not build the schemas again."""
    [payload] = PayloadConverter().to_payloads([VIEW])
    PayloadConverter().from_payloads([payload], [OrderView])
    before = _adapter.cache_info()
    assert PayloadConverter().from_payloads([payload], [OrderView]) == [VIEW]
    after = _adapter.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
