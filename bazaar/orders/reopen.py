"""A new run for an order whose workflow has ended: what the API (support acting on a completed order, a late
chargeback's webhook) and a return's refund start it with."""

from __future__ import annotations

from typing import Any

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from bazaar.models import Order
from bazaar.orders.types import OrderView, PlaceOrder
from bazaar.settings import get_settings


def reopened_order(order: Order) -> PlaceOrder:
    """The start of a new run for an order whose workflow has ended (a late chargeback, support's refund after
    the release): it loads the order's state and money positions, and never charges."""
    return PlaceOrder(
        order_id=str(order.id),
        buyer_id=str(order.buyer_id),
        listing_id=str(order.listing_id),
        quantity=order.quantity,
        payment_method="",
        idempotency_key=order.idempotency_key,
        reopen=True,
        **get_settings().order_terms(),
    )


def reopen_operation(order: Order) -> WithStartWorkflowOperation[Any, OrderView]:
    """The start that goes with an Update to an order whose run may have ended (update-with-start): a running run
    just gets the Update; an ended one gets a reopened run (`reopened_order`) that takes it."""
    return WithStartWorkflowOperation(
        "Order",
        reopened_order(order),
        id=order.workflow_id,
        task_queue=get_settings().temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        result_type=OrderView,
    )
