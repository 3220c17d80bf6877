"""The seller's payout: the transfer after a release (once the Update that released it has answered), a held or
refused one paid again, and what a refund or a chargeback after it takes back (transfer reversals). Every call
carries an idempotency key built from the order and the operation (`bazaar.payments.keys`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.orders import LedgerPosting
    from activities.payments import (
        PaymentActivities,
        ReleaseReversalRequest,
        TransferRequest,
        TransferReversalRequest,
    )
    from bazaar.models import OrderStatus, PaymentState
    from bazaar.orders.types import PAYOUT_OUTCOMES, OrderEvent, Party
    from bazaar.payments.keys import MoneyOperation, money_key
    from bazaar.temporal import checkout_workflow_id, order_workflow_id

from workflows.failures import StepFailed
from workflows.order_steps import OrderSteps, _payouts_disabled

# How often a payout on hold checks the seller's account again when no `payouts_enabled` Signal came.
PAYOUT_HOLD_RECHECK = timedelta(days=1)
# A release answers its Update once booked (the seller's balance shows it `available`); the transfer follows as an
# activity, its outcome a transition of its own. Neither side waits for it: it was most of confirm-receipt's time.
# Decided at the run's start, so runs started before pay out before answering, as they did.
PAYOUT_AFTER_ANSWER_PATCH = "payout-after-the-answer"


class OrderPayout(OrderSteps):
    """The seller's transfer and its reversals, on top of the step runner."""

    @property
    def _transfer_group(self) -> str:
        """Where the order's payouts are grouped at the provider: with the charge that paid for it."""
        share, placed_by = self._req.checkout, self.view.checkout_id  # a reopened run has only the latter
        if share is not None:
            return share.transfer_group
        return checkout_workflow_id(placed_by) if placed_by else order_workflow_id(self._req.order_id)

    async def _pay_out_released(self) -> None:
        """The transfer after a release, once the Update that released it has answered: the seller's share of
        what is released then (a refund meanwhile took its share from the release, a chargeback all of it)."""
        async with self._lock:
            if self._released is None or self._payout is not None:
                return  # a chargeback took the release back meanwhile
            gross, fee = self._released
            if self.view.payment_state != PaymentState.RELEASED or gross - fee <= 0:
                return  # refunded (or charged back) meanwhile: nothing is left to pay out
            self._waiting = replace(self._waiting, paying_out=True)
            self._show()
            try:
                state = await self._pay_out(gross - fee, local_first=False)
            finally:
                self._waiting = replace(self._waiting, paying_out=False)
            await self._transition(
                self.view.status,
                reason=self.view.reason,
                payment_state=state,
                party=Party.SYSTEM,
                actor=None,
                action=PAYOUT_OUTCOMES[state],
            )

    async def _pay_out(
        self, amount: int, release: LedgerPosting | None = None, *, local_first: bool = True
    ) -> PaymentState:
        """Transfer the seller's share (booking `release`, the escrow's release it pays, first); the resulting
        PaymentState (released; transfer_failed or payout_on_hold if it did not go). `local_first`: False after the Update answered (a local
        activity would hold the answer until it ends)."""
        order_id = self.view.order_id
        self._transfers += 1
        transfer = TransferRequest(
            order_id=order_id,
            amount=amount,
            currency=self.view.currency,
            transfer_group=self._transfer_group,
            idempotency_key=money_key(order_id, MoneyOperation.TRANSFER, self._transfers),
            release=release,
        )
        try:
            # A provider that is slow or down is retried under this same key (past the bound the order
            # needs attention): its outcome may be unknown, so a new key could pay the seller twice.
            result = await self._provider_step(
                "transfer", PaymentActivities.transfer, transfer, local_first=local_first
            )
        except StepFailed as refused:
            if _payouts_disabled(refused):
                # Nothing was sent: the payout waits for the provider to enable the seller's payouts (the
                # `payouts_enabled` Signal, or the daily re-check), then goes out under the next key.
                workflow.logger.warning("seller's payouts disabled at the provider; payout on hold")
                return PaymentState.PAYOUT_ON_HOLD
            # Refused for good (no usable connected account, balance): completed for both sides; the
            # payout needs support (PaymentState transfer_failed, then `retry_transfer` with a new key,
            # which is safe because the refused attempt moved nothing). The order stays open until then.
            workflow.logger.error("payout refused; waiting for support", exc_info=True)
            return PaymentState.TRANSFER_FAILED
        self._payout = (result.transfer_id, amount)
        return PaymentState.RELEASED

    async def _take_back_release(self, amount: int) -> None:
        """After a refund of `amount` on a released order: take its share back from the release. The fee comes back
        pro rata (or, by the order's terms, only what the seller's share cannot cover), the seller's share by a
        partial reversal of their transfer. A reversal the provider refuses leaves the seller owing it (their
        payable goes negative, the platform's receivable) rather than the refund unbooked."""
        assert self._released is not None
        gross, fee = self._released
        if self._terms.fee_refunded_pro_rata:
            fee_back = fee * amount // gross
        else:
            fee_back = max(0, amount - (gross - fee))
        seller_back = amount - fee_back
        if seller_back > 0 and self._payout is not None:
            if not await self._reverse_payout(min(seller_back, self._payout[1]), "refund"):
                workflow.logger.error("transfer reversal refused; the seller owes the refund's share")
        await self._db_step(
            "reverse_release",
            PaymentActivities.reverse_release,
            ReleaseReversalRequest(
                self.view.order_id,
                fee_back,
                seller_back,
                self.view.currency,
                # `<release>.<refund>`: part of release n (load_order reads these back as such).
                money_key(
                    self.view.order_id, MoneyOperation.RELEASE_REVERSAL, f"{self._releases}.{self._refunds}"
                ),
            ),
            forever=True,
        )
        self._released = (gross - amount, fee - fee_back)
        self._view = replace(self.view, platform_fee=fee - fee_back)

    async def _release_held_payout(self) -> None:
        """A payout on hold: wait for the provider to enable the seller's payouts (the `payouts_enabled` Signal, or
        the daily re-check if that webhook was missed), then pay out; still disabled, it stays on hold."""
        try:
            await workflow.wait_condition(
                lambda: self._payouts_enabled or self.view.payment_state != PaymentState.PAYOUT_ON_HOLD,
                timeout=PAYOUT_HOLD_RECHECK,
            )
        except TimeoutError:
            pass
        self._payouts_enabled = False
        async with self._lock:
            if self.view.payment_state != PaymentState.PAYOUT_ON_HOLD:
                return  # support's retry_transfer paid it meanwhile
            assert self._released is not None
            gross, fee = self._released
            state = await self._pay_out(gross - fee)
            if state == PaymentState.PAYOUT_ON_HOLD:
                return  # nothing was sent: no transition, the history stays small
            await self._transition(
                OrderStatus.COMPLETED,
                reason=self.view.reason,
                payment_state=state,
                party=Party.SYSTEM,
                actor=None,
                action=OrderEvent.PAYOUT_RETRIED
                if state == PaymentState.RELEASED
                else OrderEvent.PAYOUT_RETRY_FAILED,
            )

    async def _reverse_payout(self, amount: int, reason: str) -> bool:
        """Take `amount` back from the seller's payout (a transfer reversal); False if the provider refused."""
        assert self._payout is not None
        transfer_id, paid = self._payout
        self._reversals += 1
        try:
            await self._provider_step(
                "reverse_transfer",
                PaymentActivities.reverse_transfer,
                TransferReversalRequest(
                    order_id=self.view.order_id,
                    transfer_id=transfer_id,
                    amount=amount,
                    currency=self.view.currency,
                    idempotency_key=money_key(
                        self.view.order_id, MoneyOperation.TRANSFER_REVERSAL, self._reversals
                    ),
                    reason=reason,
                ),
                local_first=True,
            )
        except StepFailed:
            return False
        self._payout = (transfer_id, paid - amount)
        return True
