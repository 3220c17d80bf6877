"""The order: one durable workflow per order (id `order-<order id>`), read top to bottom like the state table.

(new) -> pending: stock reserved atomically (activity) -> charge with an idempotency key derived from the
order -> paid, or cancelled with reason `payment_failed` and the stock given back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities, OrderStateChange, ReserveStockInput
    from activities.payments import ChargeRequest, PaymentActivities

ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
BUYER_ID = SearchAttributeKey.for_keyword("BuyerId")
SELLER_ID = SearchAttributeKey.for_keyword("SellerId")
LISTING_ID = SearchAttributeKey.for_keyword("ListingId")
ORDER_AMOUNT = SearchAttributeKey.for_int("OrderAmount")
PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")

# Database activities: short, retried until they succeed (the database comes back).
DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
# Provider calls: bounded by the SDK timeout; transient errors retried, declines are results not errors.
MONEY_TIMEOUT = timedelta(seconds=30)
MONEY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["PaymentRejected"],
)
PLACEMENT_WAIT = timedelta(seconds=10)


def order_workflow_id(order_id: str) -> str:
    return f"order-{order_id}"


@dataclass
class PlaceOrder:
    order_id: str
    buyer_id: str
    listing_id: str
    quantity: int
    payment_method: str
    idempotency_key: str


@dataclass
class OrderView:
    """What buyer, seller and operators see of an order."""

    order_id: str
    status: str  # pending|paid|...|cancelled, or `rejected` when it could not be placed at all
    reason: str | None
    buyer_id: str
    listing_id: str
    quantity: int
    seller_id: str = ""
    listing_title: str = ""
    amount: int = 0
    currency: str = ""
    payment_state: str = "none"
    payment_intent_id: str | None = None


@workflow.defn
class OrderWorkflow:
    def __init__(self) -> None:
        self._view: OrderView | None = None
        self._seq = 0
        self._payment_settled = False

    @workflow.run
    async def run(self, req: PlaceOrder) -> OrderView:
        view = OrderView(
            order_id=req.order_id,
            status="pending",
            reason=None,
            buyer_id=req.buyer_id,
            listing_id=req.listing_id,
            quantity=req.quantity,
        )
        reservation = await workflow.execute_activity_method(
            OrderActivities.reserve_stock,
            ReserveStockInput(
                order_id=req.order_id,
                buyer_id=req.buyer_id,
                listing_id=req.listing_id,
                quantity=req.quantity,
                idempotency_key=req.idempotency_key,
                workflow_id=workflow.info().workflow_id,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if not reservation.ok:
            self._view = replace(view, status="rejected", reason=reservation.reason)
            self._payment_settled = True
            return self._view
        self._seq = 1  # reserve_stock wrote state 1 (pending) with the order row
        self._view = replace(
            view,
            seller_id=reservation.seller_id,
            listing_title=reservation.listing_title,
            amount=reservation.amount,
            currency=reservation.currency,
        )
        self._publish_search_attributes()
        workflow.upsert_memo(
            {
                "listing_title": reservation.listing_title,
                "amount": reservation.amount,
                "currency": reservation.currency,
                "quantity": req.quantity,
            }
        )

        await self._transition("pending", None, "processing", "system", "order.payment_started")
        charge = await workflow.execute_activity_method(
            PaymentActivities.charge,
            ChargeRequest(
                order_id=req.order_id,
                amount=reservation.amount,
                currency=reservation.currency,
                payment_method=req.payment_method,
                idempotency_key=f"{req.order_id}:charge:1",
                transfer_group=order_workflow_id(req.order_id),
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        if charge.succeeded:
            self._view = replace(self._view, payment_intent_id=charge.payment_intent_id)
            await self._transition("paid", None, "held_in_escrow", "system", "order.paid")
        else:
            await workflow.execute_activity_method(
                OrderActivities.release_stock,
                req.order_id,
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            await self._transition("cancelled", "payment_failed", "failed", "system", "order.payment_failed")
        self._payment_settled = True
        return self._view

    @workflow.query
    def state(self) -> OrderView | None:
        return self._view

    @workflow.update
    async def placement(self) -> OrderView | None:
        """Answer the create-order request: wait (briefly) until the charge has an outcome."""
        await workflow.wait_condition(lambda: self._payment_settled, timeout=PLACEMENT_WAIT)
        return self._view

    async def _transition(
        self,
        status: str,
        reason: str | None,
        payment_state: str,
        actor_role: str,
        action: str,
        actor_id: str | None = None,
    ) -> None:
        assert self._view is not None
        self._seq += 1
        self._view = replace(self._view, status=status, reason=reason, payment_state=payment_state)
        self._publish_search_attributes()
        await workflow.execute_activity_method(
            OrderActivities.record_order_state,
            OrderStateChange(
                order_id=self._view.order_id,
                seq=self._seq,
                status=status,
                reason=reason,
                payment_state=payment_state,
                actor_id=actor_id,
                actor_role=actor_role,
                action=action,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    def _publish_search_attributes(self) -> None:
        view = self._view
        assert view is not None
        workflow.upsert_search_attributes(
            [
                ORDER_STATUS.value_set(view.status),
                BUYER_ID.value_set(view.buyer_id),
                SELLER_ID.value_set(view.seller_id),
                LISTING_ID.value_set(view.listing_id),
                ORDER_AMOUNT.value_set(view.amount),
                PAYMENT_STATE.value_set(view.payment_state),
            ]
        )
