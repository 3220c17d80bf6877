"""The checkout: one payment for a cart of listings from several sellers (id `checkout-<checkout id>`, type
`Checkout`).

    reserve   every line's stock and one order per seller, in one transaction (all or nothing): a line that
              sold out, left sale or changed price refuses the whole checkout, nothing taken
    charge    once, for the whole cart (one PaymentIntent, `transfer_group` = this workflow's id); each order's
              share is booked into its own escrow with the charge
    paid      each seller's order starts as a child `Order` workflow, already paid (`CheckoutShare`), and runs on
              its own: acceptance, shipping, escrow release, fee and transfer are that order's; a seller declining
              refunds that order's share of the charge only
    failed    a declined or refused charge cancels the orders and gives the stock back; the cart keeps its lines

Failure rule (docs/failure-rules.md): the reservation is a database step whose data errors refuse the checkout
with nothing taken; the charge is retried under one idempotency key within `provider_timeout_seconds`, then
flagged (`attention` in the view and the memo) and retried every `attention_retry_seconds`: its outcome may be
unknown, so the stock stays reserved until the provider answers.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.checkout import CheckoutActivities, CheckoutOutcome
    from activities.payments import ChargeRequest, ChargeResult, PaymentActivities
    from bazaar.checkout.types import CheckoutPlacement, CheckoutView, Reservation, StartCheckout
    from bazaar.errors import Rejection
    from bazaar.models import CheckoutStatus
    from bazaar.orders import details
    from bazaar.orders.types import CheckoutShare, PlaceOrder, initial_search_attributes
    from bazaar.payments.keys import MoneyOperation, money_key
    from bazaar.temporal import ORDERS, order_workflow_id

from workflows.failures import StepFailed, failure_text, is_permanent
from workflows.order import OrderWorkflow
from workflows.queues import execute_activity, queue_of
from workflows.retries import MONEY_ATTEMPT, MONEY_RETRY, db_step_until_answered


@workflow.defn(name="Checkout")
class CheckoutWorkflow:
    @workflow.init
    def __init__(self, req: StartCheckout) -> None:
        self._req = req
        self._view = CheckoutView(
            checkout_id=req.checkout_id, buyer_id=req.buyer_id, status=CheckoutStatus.PENDING
        )
        self._settled = False

    @workflow.run
    async def run(self, req: StartCheckout) -> CheckoutView:
        reservation = await self._reserve()
        if not reservation.ok:
            self._finish(
                replace(self._view, status=None, reason=reservation.reason, refusals=reservation.refusals)
            )
            return self._view
        self._view = replace(
            self._view, amount=reservation.amount, currency=reservation.currency, orders=reservation.orders
        )
        charge = await self._charge(reservation)
        intent = charge.payment_intent_id if charge else None
        if charge is None or not charge.succeeded or intent is None:
            reason = "payment_rejected" if charge is None else "payment_failed"
            await self._settle(CheckoutOutcome(req.checkout_id, False, reason, intent))
            self._finish(
                replace(
                    self._view, status=CheckoutStatus.PAYMENT_FAILED, reason=reason, payment_intent_id=intent
                )
            )
            return self._view
        await self._settle(CheckoutOutcome(req.checkout_id, True, None, intent))
        for order in reservation.orders:
            share = CheckoutShare(
                checkout_id=req.checkout_id,
                payment_intent_id=intent,
                transfer_group=workflow.info().workflow_id,
                seller_id=order.seller_id,
                listing_title=order.lines[0].listing_title,
                amount=order.amount,
                currency=reservation.currency,
                lines=order.lines,
            )
            placed = PlaceOrder(
                order_id=order.order_id,
                buyer_id=req.buyer_id,
                listing_id=order.lines[0].listing_id,
                quantity=order.lines[0].quantity,
                payment_method=req.payment_method,
                idempotency_key=f"checkout:{req.checkout_id}:{order.seller_id}",
                checkout=share,
                **req.terms,  # type: ignore[arg-type]
            )
            # The orders outlive the checkout: each runs on its own once started.
            await workflow.start_child_workflow(
                OrderWorkflow.run,
                placed,
                id=order_workflow_id(order.order_id),
                task_queue=queue_of(ORDERS),
                parent_close_policy=ParentClosePolicy.ABANDON,
                search_attributes=initial_search_attributes(placed, order.seller_id, order.amount),
                # For operators, as a single order has them (user metadata and memo: not compared on replay).
                memo=details.memo(
                    share.listing_title, order.amount, share.currency, sum(x.quantity for x in order.lines)
                ),
                static_summary=details.checkout_summary(
                    order.amount, share.currency, share.listing_title, len(order.lines), req.checkout_id
                ),
                static_details=details.static_details(
                    order.order_id, placed.listing_id, placed.quantity, order.seller_id, req.buyer_id
                ),
            )
        self._finish(replace(self._view, status=CheckoutStatus.PAID, payment_intent_id=intent))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view

    def _finish(self, view: CheckoutView) -> None:
        self._view = view
        self._settled = True

    @workflow.query
    def state(self) -> CheckoutView:
        return self._view

    @workflow.update
    async def placement(self, request: CheckoutPlacement) -> CheckoutView:
        """Answer the create-checkout request once the payment has an outcome (the API bounds its wait)."""
        await workflow.wait_condition(lambda: self._settled)
        return self._view

    @placement.validator
    def _validate_placement(self, request: CheckoutPlacement) -> None:
        if request.payment_method != self._req.payment_method:
            raise ApplicationError(
                "this Idempotency-Key was used for a different checkout",
                self._view,
                type=Rejection.IDEMPOTENCY_KEY_REUSED,
            )

    async def _reserve(self) -> Reservation:
        try:
            return await db_step_until_answered(CheckoutActivities.reserve_checkout, self._req)
        except StepFailed as refused:  # the database refused the checkout's data: nothing was taken
            workflow.logger.error("checkout reservation refused: %s", failure_text(refused))
            return Reservation(ok=False, reason="invalid_request")

    async def _settle(self, outcome: CheckoutOutcome) -> None:
        """Record the payment's outcome. It must happen (money moved, or the stock must come back): a failure the
        retries do not cure (data the database refuses) flags the checkout and is tried again later."""
        while True:
            try:
                await db_step_until_answered(CheckoutActivities.settle_checkout, outcome)
            except StepFailed as failure:
                await self._needs_attention(f"settle: {failure_text(failure)}")
                continue
            self._clear_attention()
            return

    async def _needs_attention(self, attention: str) -> None:
        """Show support what keeps failing (view and memo), then wait before the next try."""
        workflow.logger.error("checkout %s: %s", self._req.checkout_id, attention)
        self._view = replace(self._view, attention=attention)
        workflow.upsert_memo({"attention": attention})
        await workflow.sleep(timedelta(seconds=int(self._req.terms.get("attention_retry_seconds", 600))))

    def _clear_attention(self) -> None:
        if self._view.attention is not None:
            self._view = replace(self._view, attention=None)
            workflow.upsert_memo({"attention": None})

    async def _charge(self, reservation: Reservation) -> ChargeResult | None:
        """The one charge; None if the provider refused it (nothing was taken)."""
        req = self._req
        charge = ChargeRequest(
            order_id="",
            amount=reservation.amount,
            currency=reservation.currency,
            payment_method=req.payment_method,
            idempotency_key=money_key(f"checkout-{req.checkout_id}", MoneyOperation.CHARGE, 1),
            transfer_group=workflow.info().workflow_id,
            checkout_id=req.checkout_id,
        )
        bound = timedelta(seconds=int(req.terms.get("provider_timeout_seconds", 600)))
        while True:
            try:
                result = await execute_activity(
                    PaymentActivities.charge,
                    charge,
                    start_to_close_timeout=MONEY_ATTEMPT,
                    schedule_to_close_timeout=bound,
                    retry_policy=MONEY_RETRY,
                )
            except StepFailed as failure:
                if is_permanent(failure):
                    workflow.logger.warning("checkout charge refused: %s", failure_text(failure))
                    return None
                # Past the bound the outcome may be unknown: keep the stock, flag it, retry under the same key.
                await self._needs_attention(f"charge: {failure_text(failure)}")
                continue
            self._clear_attention()
            return result
