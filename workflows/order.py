"""The order: one durable workflow per order (id `order-<order id>`), read top to bottom like the state table.

    (new)     -> pending    buyer places it; stock reserved atomically (activity)
    pending   -> paid       charge succeeded: funds held on the platform balance (escrow)
    pending   -> cancelled  charge declined (reason payment_failed); stock goes back
    paid      -> confirmed  seller accepts
    paid      -> cancelled  seller declines / buyer cancels / acceptance deadline passes: full refund
    confirmed -> fulfilled  seller ships (optional tracking)
    confirmed -> cancelled  seller cancels: full refund
    fulfilled -> completed  buyer confirms receipt, or the dispute window passes: escrow released
    fulfilled -> disputed   buyer opens a dispute within the window: escrow frozen
    disputed  -> completed  support resolves `release` (or `partial_refund`: refund part, release the rest)
    disputed  -> refunded   support resolves `refund`

Actor actions are Updates with validators: the caller gets the new state, or a rejection saying whether the
action is not allowed now (InvalidTransition) or not for this actor (Forbidden). Every money call carries an
idempotency key built here from the order and the operation (`<order>:<operation>:<n>`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import OrderActivities, OrderStateChange, ReserveStockInput
    from activities.payments import (
        ChargeRequest,
        PaymentActivities,
        RefundRequest,
        ReleaseRequest,
        TransferRequest,
    )
    from bazaar.money import platform_fee

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
TERMINAL = frozenset({"completed", "refunded", "cancelled", "rejected"})

# action -> {state it is allowed in: parties who may do it there}
RULES: dict[str, dict[str, frozenset[str]]] = {
    "accept": {"paid": frozenset({"seller"})},
    "decline": {"paid": frozenset({"seller"})},
    "cancel": {
        "pending": frozenset({"buyer"}),  # waits for the charge, then cancels (with a refund if it succeeded)
        "paid": frozenset({"buyer", "support"}),
        "confirmed": frozenset({"seller", "support"}),
    },
    "fulfil": {"confirmed": frozenset({"seller"})},
    "confirm_receipt": {"fulfilled": frozenset({"buyer"})},
    "open_dispute": {"fulfilled": frozenset({"buyer"})},
    "resolve_dispute": {"disputed": frozenset({"support"})},
}


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
    # Terms frozen at order time (settings may change while the order runs).
    acceptance_timeout_seconds: int = 48 * 3600
    dispute_window_seconds: int = 7 * 24 * 3600
    fee_bps: int = 1000
    fee_fixed: int = 30


@dataclass
class Actor:
    """Who asks: the authenticated user (the API vouches for it) and whether they are support staff."""

    user_id: str
    is_support: bool = False


@dataclass
class ActionRequest:
    actor: Actor
    reason: str | None = None  # free text for cancel/dispute
    tracking: dict[str, str] | None = None  # fulfil: carrier, tracking number, url
    resolution: str | None = None  # resolve_dispute: release | refund | partial_refund
    refund_amount: int | None = None  # partial_refund, minor units


@dataclass
class OrderView:
    """What buyer, seller and operators see of an order."""

    order_id: str
    status: str  # pending|paid|confirmed|fulfilled|completed|disputed|refunded|cancelled, or rejected
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
    refunded_amount: int = 0
    platform_fee: int = 0
    tracking: dict[str, str] | None = None
    allowed_actions: list[str] = field(default_factory=list)


@workflow.defn
class OrderWorkflow:
    def __init__(self) -> None:
        self._view: OrderView | None = None
        self._req: PlaceOrder | None = None
        self._seq = 0
        self._refunds = 0
        self._payment_settled = False
        self._lock = asyncio.Lock()  # one transition at a time (updates and timers)

    @workflow.run
    async def run(self, req: PlaceOrder) -> OrderView:
        self._req = req
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

        async with self._lock:
            await self._charge()
        self._payment_settled = True

        # Timers: the seller must accept in time; the buyer may dispute only within the window.
        while self.view.status not in TERMINAL:
            status = self.view.status
            deadline = {"paid": req.acceptance_timeout_seconds, "fulfilled": req.dispute_window_seconds}.get(
                status
            )
            try:
                await workflow.wait_condition(
                    lambda current=status: self.view.status != current,  # type: ignore[misc]
                    timeout=timedelta(seconds=deadline) if deadline else None,
                )
            except TimeoutError:
                async with self._lock:
                    if self.view.status == "paid":
                        await self._cancel_with_refund("acceptance_timeout", "system", None)
                    elif self.view.status == "fulfilled":
                        await self._complete("dispute_window_passed", "system", None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view

    @property
    def view(self) -> OrderView:
        assert self._view is not None
        return self._view

    # ---- reads -------------------------------------------------------------------------------------
    @workflow.query
    def state(self) -> OrderView | None:
        return self._view

    @workflow.update
    async def placement(self) -> OrderView | None:
        """Answer the create-order request: wait (briefly) until the charge has an outcome."""
        await workflow.wait_condition(lambda: self._payment_settled, timeout=PLACEMENT_WAIT)
        return self._view

    # ---- actor actions (Updates) ---------------------------------------------------------------------
    @workflow.update
    async def accept(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("accept", req.actor)
            await self._transition(
                "confirmed", None, self.view.payment_state, party, req.actor, "order.accepted"
            )
        return self.view

    @workflow.update
    async def decline(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("decline", req.actor)
            await self._cancel_with_refund("seller_declined", party, req.actor)
        return self.view

    @workflow.update
    async def cancel(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("cancel", req.actor)
            await self._cancel_with_refund(f"{party}_cancelled", party, req.actor)
        return self.view

    @workflow.update
    async def fulfil(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("fulfil", req.actor)
            self._view = replace(self.view, tracking=req.tracking)
            await self._transition(
                "fulfilled", None, self.view.payment_state, party, req.actor, "order.fulfilled"
            )
        return self.view

    @workflow.update
    async def confirm_receipt(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("confirm_receipt", req.actor)
            await self._complete("buyer_confirmed", party, req.actor)
        return self.view

    @workflow.update
    async def open_dispute(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("open_dispute", req.actor)
            await self._transition(
                "disputed", req.reason or "buyer_dispute", "frozen", party, req.actor, "order.disputed"
            )
        return self.view

    @workflow.update
    async def resolve_dispute(self, req: ActionRequest) -> OrderView:
        await workflow.wait_condition(lambda: self._payment_settled)
        async with self._lock:
            party = self._authorize("resolve_dispute", req.actor)
            remaining = self.view.amount - self.view.refunded_amount
            if req.resolution == "release":
                await self._complete("dispute_released", party, req.actor)
            elif req.resolution == "refund":
                # The item was shipped, so the stock does not come back automatically.
                await self._refund(remaining, "dispute_refund")
                await self._transition(
                    "refunded", "dispute_refunded", "refunded", party, req.actor, "order.refunded"
                )
            elif req.resolution == "partial_refund":
                if req.refund_amount is None or not 0 < req.refund_amount < remaining:
                    raise ApplicationError(
                        f"partial refund must be between 1 and {remaining - 1}", type="InvalidRequest"
                    )
                await self._refund(req.refund_amount, "dispute_partial_refund")
                await self._complete("dispute_partially_refunded", party, req.actor)
            else:
                raise ApplicationError(
                    "resolution must be release, refund or partial_refund", type="InvalidRequest"
                )
        return self.view

    @accept.validator
    def _validate_accept(self, req: ActionRequest) -> None:
        self._authorize("accept", req.actor)

    @decline.validator
    def _validate_decline(self, req: ActionRequest) -> None:
        self._authorize("decline", req.actor)

    @cancel.validator
    def _validate_cancel(self, req: ActionRequest) -> None:
        self._authorize("cancel", req.actor)

    @fulfil.validator
    def _validate_fulfil(self, req: ActionRequest) -> None:
        self._authorize("fulfil", req.actor)

    @confirm_receipt.validator
    def _validate_confirm_receipt(self, req: ActionRequest) -> None:
        self._authorize("confirm_receipt", req.actor)

    @open_dispute.validator
    def _validate_open_dispute(self, req: ActionRequest) -> None:
        self._authorize("open_dispute", req.actor)

    @resolve_dispute.validator
    def _validate_resolve_dispute(self, req: ActionRequest) -> None:
        self._authorize("resolve_dispute", req.actor)
        if req.resolution not in ("release", "refund", "partial_refund"):
            raise ApplicationError(
                "resolution must be release, refund or partial_refund", type="InvalidRequest"
            )

    # ---- rules ---------------------------------------------------------------------------------------
    def _parties(self, actor: Actor) -> set[str]:
        parties = set()
        if self._view is not None and actor.user_id == self._view.buyer_id:
            parties.add("buyer")
        if self._view is not None and actor.user_id == self._view.seller_id:
            parties.add("seller")
        if actor.is_support:
            parties.add("support")
        return parties

    def _authorize(self, action: str, actor: Actor) -> str:
        """The party acting, or a rejection: Forbidden (wrong actor) before InvalidTransition (wrong state)."""
        parties = self._parties(actor)
        if self._view is None:
            raise ApplicationError("the order is still being placed", type="InvalidTransition")
        rules = RULES[action]
        if not parties & frozenset().union(*rules.values()):
            raise ApplicationError(f"you may not {action} this order", self._view, type="Forbidden")
        allowed_now = rules.get(self._view.status)
        if allowed_now is None:
            raise ApplicationError(
                f"cannot {action} an order that is {self._view.status}", self._view, type="InvalidTransition"
            )
        acting = sorted(parties & allowed_now)
        if not acting:
            raise ApplicationError(f"you may not {action} this order now", self._view, type="Forbidden")
        return acting[0]

    def _allowed_actions(self, status: str) -> list[str]:
        return sorted(a for a, states in RULES.items() if status in states)

    # ---- steps ----------------------------------------------------------------------------------------
    async def _charge(self) -> None:
        req = self._req
        assert req is not None
        charge = await workflow.execute_activity_method(
            PaymentActivities.charge,
            ChargeRequest(
                order_id=req.order_id,
                amount=self.view.amount,
                currency=self.view.currency,
                payment_method=req.payment_method,
                idempotency_key=f"{req.order_id}:charge:1",
                transfer_group=order_workflow_id(req.order_id),
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        if charge.succeeded:
            self._view = replace(self.view, payment_intent_id=charge.payment_intent_id)
            await self._transition("paid", None, "held_in_escrow", "system", None, "order.paid")
        else:
            await self._release_stock()
            await self._transition(
                "cancelled", "payment_failed", "failed", "system", None, "order.payment_failed"
            )

    async def _refund(self, amount: int, reason: str) -> None:
        assert self.view.payment_intent_id is not None
        self._refunds += 1
        await workflow.execute_activity_method(
            PaymentActivities.refund,
            RefundRequest(
                order_id=self.view.order_id,
                payment_intent_id=self.view.payment_intent_id,
                amount=amount,
                currency=self.view.currency,
                idempotency_key=f"{self.view.order_id}:refund:{self._refunds}",
                reason=reason,
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        self._view = replace(self.view, refunded_amount=self.view.refunded_amount + amount)

    async def _release_stock(self) -> None:
        await workflow.execute_activity_method(
            OrderActivities.release_stock,
            self.view.order_id,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _cancel_with_refund(self, reason: str, party: str, actor: Actor | None) -> None:
        await self._refund(self.view.amount - self.view.refunded_amount, reason)
        await self._release_stock()
        await self._transition("cancelled", reason, "refunded", party, actor, "order.cancelled")

    async def _complete(self, reason: str, party: str, actor: Actor | None) -> None:
        """Release what is left in escrow: the fee to the platform, the rest transferred to the seller."""
        req = self._req
        assert req is not None
        gross = self.view.amount - self.view.refunded_amount
        fee = platform_fee(gross, req.fee_bps, req.fee_fixed)
        self._view = replace(self.view, platform_fee=fee)
        order_id = self.view.order_id
        await workflow.execute_activity_method(
            PaymentActivities.release_escrow,
            ReleaseRequest(
                order_id=order_id,
                gross=gross,
                fee=fee,
                currency=self.view.currency,
                txn=f"{order_id}:release:1",
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        payment_state = "released"
        if gross - fee > 0:
            try:
                await workflow.execute_activity_method(
                    PaymentActivities.transfer,
                    TransferRequest(
                        order_id=order_id,
                        amount=gross - fee,
                        currency=self.view.currency,
                        transfer_group=order_workflow_id(order_id),
                        idempotency_key=f"{order_id}:transfer:1",
                    ),
                    start_to_close_timeout=MONEY_TIMEOUT,
                    retry_policy=MONEY_RETRY,
                )
            except ActivityError:
                # Completed for both sides; the payout needs an operator (PaymentState="transfer_failed").
                payment_state = "transfer_failed"
        await self._transition("completed", reason, payment_state, party, actor, "order.completed")

    async def _transition(
        self,
        status: str,
        reason: str | None,
        payment_state: str,
        actor_role: str,
        actor: Actor | None,
        action: str,
    ) -> None:
        self._seq += 1
        self._view = replace(
            self.view,
            status=status,
            reason=reason,
            payment_state=payment_state,
            allowed_actions=self._allowed_actions(status),
        )
        self._publish_search_attributes()
        await workflow.execute_activity_method(
            OrderActivities.record_order_state,
            OrderStateChange(
                order_id=self.view.order_id,
                seq=self._seq,
                status=status,
                reason=reason,
                payment_state=payment_state,
                actor_id=actor.user_id if actor else None,
                actor_role=actor_role,
                action=action,
                tracking=self.view.tracking,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    def _publish_search_attributes(self) -> None:
        view = self.view
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
