"""The order's money: the charge, refunds, the release of escrow and the payout, and chargebacks. Every call
carries an idempotency key built from the order and the operation (`bazaar.payments.keys`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import (
        LedgerPosting,
    )
    from activities.payments import (
        ChargebackMovement,
        ChargeRequest,
        PaymentActivities,
        RefundRequest,
        ReleaseReversalRequest,
    )
    from bazaar.errors import Rejection
    from bazaar.models import LedgerAccount, OrderStatus, PaymentState
    from bazaar.orders import rules
    from bazaar.orders.types import (
        ActionRequest,
        Actor,
        ChargebackNotice,
        ChargebackStatus,
        CheckoutShare,
        OrderEvent,
        OrderView,
        Party,
        still_held,
        view_lines,
    )
    from bazaar.payments.keys import MoneyOperation, money_key
    from bazaar.payments.money import platform_fee
    from bazaar.temporal import order_workflow_id
    from bazaar.trust.models import DisputeResolution, DisputeSource

from workflows.dispute import ChargebackJoined, DisputeWorkflow, Resolution
from workflows.failures import StepFailed
from workflows.failures import failure_text as _failure_text
from workflows.order_payout import OrderPayout
from workflows.order_steps import newly_refunded


class OrderMoney(OrderPayout):
    """Steps that move money (or book it), on top of the step runner."""

    # ---- steps ----------------------------------------------------------------------------------------
    async def _place_paid(self, share: CheckoutShare) -> None:
        """An order its checkout placed (stock reserved, the order stored as pending) and paid for: its share of
        the checkout's charge is in its escrow already (booked with the charge), so it moves straight to paid."""
        req = self._req
        self._view = OrderView(
            order_id=req.order_id,
            status=OrderStatus.PENDING,
            reason=None,
            buyer_id=req.buyer_id,
            listing_id=req.listing_id,
            quantity=req.quantity,
            seller_id=share.seller_id,
            listing_title=share.listing_title,
            amount=share.amount,
            currency=share.currency,
            payment_intent_id=share.payment_intent_id,
            lines=share.lines,
            checkout_id=share.checkout_id,
        )
        self._seq = 1  # the checkout's reservation wrote state 1 (pending) with the order row
        async with self._lock:
            await self._transition(
                OrderStatus.PAID,
                reason=None,
                payment_state=PaymentState.HELD_IN_ESCROW,
                party=Party.SYSTEM,
                actor=None,
                action=OrderEvent.PAID,
            )
        self._payment_settled = True

    async def _charge(self) -> None:
        req = self._req
        try:
            charge = await self._provider_step(
                "charge",
                PaymentActivities.charge,
                ChargeRequest(
                    order_id=req.order_id,
                    amount=self.view.amount,
                    currency=self.view.currency,
                    payment_method=req.payment_method,
                    idempotency_key=money_key(req.order_id, MoneyOperation.CHARGE, 1),
                    transfer_group=order_workflow_id(req.order_id),
                ),
            )
        except StepFailed as refused:
            # The provider refused the request itself (unknown payment method, an amount it cannot
            # charge): nothing was taken; the stock goes back.
            workflow.logger.warning("charge refused: %s", _failure_text(refused))
            await self._transition(
                OrderStatus.CANCELLED,
                reason="payment_rejected",
                payment_state=PaymentState.FAILED,
                party=Party.SYSTEM,
                actor=None,
                action=OrderEvent.PAYMENT_REJECTED,
                release_stock=True,
            )
            return
        self._view = replace(self.view, payment_intent_id=charge.payment_intent_id)
        if charge.succeeded:
            await self._transition(
                OrderStatus.PAID,
                reason=None,
                payment_state=PaymentState.HELD_IN_ESCROW,
                party=Party.SYSTEM,
                actor=None,
                action=OrderEvent.PAID,
            )
        else:
            await self._transition(
                OrderStatus.CANCELLED,
                reason="payment_failed",
                payment_state=PaymentState.FAILED,
                party=Party.SYSTEM,
                actor=None,
                action=OrderEvent.PAYMENT_FAILED,
                release_stock=True,
            )

    def _apply_provider_reports(self) -> None:
        """Compare the provider's reports with the charge we made (after our charge has an outcome)."""
        ours = self.view.payment_intent_id
        for intent, status in self._provider_reports.items():
            if intent == ours:
                self._view = replace(self.view, provider_payment_status=status)
            elif status == "succeeded" and intent not in self.view.unexpected_payment_intents:
                # Money taken that this order did not ask for: never charge or refund on a guess; it shows
                # in the order state and in reconciliation for an operator.
                workflow.logger.warning("unexpected PaymentIntent %s for this order", intent)
                self._view = replace(
                    self.view, unexpected_payment_intents=[*self.view.unexpected_payment_intents, intent]
                )

    async def _refund(self, amount: int, reason: str) -> None:
        """Give `amount` back to the buyer; a refusal is raised as `PaymentRejected` (nothing changed)."""
        assert self.view.payment_intent_id is not None
        self._refunds += 1
        try:
            await self._provider_step(
                "refund",
                PaymentActivities.refund,
                RefundRequest(
                    order_id=self.view.order_id,
                    payment_intent_id=self.view.payment_intent_id,
                    amount=amount,
                    currency=self.view.currency,
                    idempotency_key=money_key(self.view.order_id, MoneyOperation.REFUND, self._refunds),
                    reason=reason,
                ),
                local_first=True,
            )
        except StepFailed as refused:
            raise ApplicationError(
                f"the payment provider refused the refund: {_failure_text(refused)}",
                self.view,
                type=Rejection.PAYMENT_REJECTED,
            ) from None
        self._view = replace(self.view, refunded_amount=self.view.refunded_amount + amount)

    async def _cancel_with_refund(
        self, reason: str, party: Party, actor: Actor | None, note: str | None = None
    ) -> None:
        if self.view.payment_state == PaymentState.HELD_IN_ESCROW:
            await self._refund(self.view.amount - self.view.refunded_amount, reason)
        await self._transition(
            OrderStatus.CANCELLED,
            reason=reason,
            payment_state=PaymentState.REFUNDED,
            party=party,
            actor=actor,
            action=OrderEvent.CANCELLED,
            release_stock=True,
            note=note,
        )

    async def _complete(
        self,
        reason: str,
        party: Party,
        actor: Actor | None,
        fee: int | None = None,
        resolution: Resolution | None = None,
        note: str | None = None,
    ) -> None:
        """Release what is left in escrow: the fee to the platform, the rest transferred to the seller
        (`resolution`: support's, when this settles the order's dispute)."""
        gross = self._escrow_held()
        if fee is None:
            # Refunds give the fee back pro rata (it is charged on what the buyer still pays), or not (charged
            # on the whole order, out of what is left): the order's terms say which.
            basis = gross if self._terms.fee_refunded_pro_rata else gross + self.view.refunded_amount
            fee = min(gross, platform_fee(basis, self._terms.fee_bps, self._terms.fee_fixed))
        self._view = replace(self.view, platform_fee=fee)
        self._releases += 1
        # Booked with the completion itself (one transaction): escrow to the fee and the seller's payable.
        release = LedgerPosting(
            money_key(self.view.order_id, MoneyOperation.RELEASE, self._releases),
            {
                LedgerAccount.ESCROW: -gross,
                LedgerAccount.PLATFORM_FEES: fee,
                LedgerAccount.SELLER_PAYABLE: gross - fee,
            },
        )
        self._released = (gross, fee)
        # Runs started before PAYOUT_AFTER_ANSWER_PATCH pay out here, before the completion is saved; new ones after
        # its answer.
        pays = gross - fee > 0
        paid_before, pays_after = pays and not self._payout_after_answer, pays and self._payout_after_answer
        await self._transition(
            OrderStatus.COMPLETED,
            reason=reason,
            payment_state=await self._pay_out(gross - fee, release) if paid_before else PaymentState.RELEASED,
            party=party,
            actor=actor,
            action=OrderEvent.COMPLETED,
            ledger=[release],
            resolution=resolution,
            note=note,
            payout_follows=pays_after,
        )
        if pays_after:
            self._in_background(self._pay_out_released())

    async def _refund_asked(self, req: ActionRequest, party: Party) -> None:
        """A refund by amount or by lines: the whole of what the order holds ends it as refunded (the stock back if
        it was not shipped); after the release, the refund's share comes back from it."""
        amount, units = self._check_refund_amount(req)
        async with self._lines_claimed(req, units):
            await self._refund(amount, req.reason or f"{party}_refund")
        before = self.view.refunded_units
        if units is not None:
            self._view = replace(self.view, refunded_units=units)
        if self._released is not None:  # completed: the refund's share comes back from the release
            await self._take_back_release(amount)
        whole = self._escrow_held() == 0
        ended = "return_refunded" if req.return_id else f"{party}_refunded"
        # Units refunded by line before the order shipped will never ship: back on sale now (a release at the
        # order's end gives back the rest).
        restock = newly_refunded(units or {}, before)
        await self._transition(
            OrderStatus.REFUNDED if whole else self.view.status,
            reason=ended if whole else self.view.reason,
            payment_state=PaymentState.REFUNDED if whole else self.view.payment_state,
            party=party,
            actor=req.actor,
            action=OrderEvent.REFUNDED if whole else OrderEvent.PARTIALLY_REFUNDED,
            release_stock=whole and not self._shipped,
            note=req.reason,
            restock=None if self._shipped or whole else restock,
        )

    @asynccontextmanager
    async def _under_way(self, req: ActionRequest) -> AsyncIterator[None]:
        """A refund accepted and not yet made: what it will take is counted in `_refunding` until it is done, so a
        validator refuses at once a refund beyond what is left, rather than its handler after the client's 202 (two
        refunds sent together). A request the order cannot make counts nothing (it is refused anyway)."""
        try:
            asked = self._check_refund_amount(req)[0] if self._view is not None else 0
        except ApplicationError:
            asked = 0
        self._refunding += asked
        try:
            yield
        finally:
            self._refunding -= asked

    def _check_refund_amount(
        self, req: ActionRequest, under_way: int = 0
    ) -> tuple[int, dict[str, int] | None]:
        """The amount asked for, at least one minor unit and at most what the order still holds (in escrow, or
        released) less the refunds `under_way` (accepted, not yet made); by lines, their value (or
        `refund_amount`, when given, up to it) and the units refunded by line after it (else None)."""
        amount, units = req.refund_amount, None
        if req.refund_lines is not None:
            try:
                value, units = rules.lines_refund(
                    req.refund_lines, view_lines(self.view), self.view.refunded_units
                )
            except ApplicationError as refused:
                raise ApplicationError(refused.message, self._view, type=refused.type) from None
            if amount is not None and amount > value:
                raise ApplicationError(
                    f"the amount {amount} is more than the lines are worth ({value})",
                    self._view,
                    type=Rejection.INVALID_REQUEST,
                )
            amount = value if amount is None else amount
        held = self._escrow_held() - under_way
        if (
            held <= 0 < under_way
        ):  # not the request's fault: a move under way takes what is left (409, as after it)
            raise ApplicationError(
                "what the order holds is being refunded already",
                self._view,
                type=Rejection.INVALID_TRANSITION,
            )
        if amount is None or not 0 < amount <= held:
            asked = "these lines are worth" if req.refund_lines is not None else "the amount is"
            left = "what the order still holds" + (", less the refunds under way" if under_way else "")
            raise ApplicationError(
                f"{asked} {amount}: a refund is between 1 and {held} ({left})",
                self._view,
                type=Rejection.INVALID_REQUEST,
            )
        return amount, units

    def _check_resolution(self, req: ActionRequest) -> None:
        """Paying the seller (all or part) needs an item that was shipped."""
        if req.resolution != DisputeResolution.REFUND and not self._shipped:
            raise ApplicationError(
                "the order was never shipped: only a refund resolves it (its stock goes back on sale)",
                self._view,
                type=Rejection.INVALID_REQUEST,
            )

    def _escrow_held(self) -> int:
        """What this order holds in escrow (before release): charged, minus refunds, minus a chargeback."""
        return still_held(self.view)

    # ---- chargebacks --------------------------------------------------------------------------------
    async def _open_chargeback(self, notice: ChargebackNotice) -> None:
        """The network has withdrawn the money: book it against escrow and freeze the order."""
        self._before_chargeback = (self.view.status, self.view.reason, self.view.payment_state)
        if self.view.status == OrderStatus.COMPLETED:
            await self._claw_back()
        await self._book_chargeback(notice, reinstated=False)
        charged_back = replace(
            self.view,
            dispute_source=DisputeSource.CHARGEBACK,
            chargeback_id=notice.dispute_id,
            chargeback_status=ChargebackStatus.WITHDRAWN,
            chargeback_amount=notice.amount,
        )
        # The buyer's case is open: the chargeback joins it rather than opening a second one.
        joins_case = self._before_chargeback[0] == OrderStatus.DISPUTED
        await self._transition(
            OrderStatus.DISPUTED,
            reason="chargeback",
            payment_state=PaymentState.CHARGEBACK,
            party=Party.SYSTEM,
            actor=None,
            action=OrderEvent.CHARGEBACK,
            base=charged_back,
            opens_case=None if joins_case else DisputeSource.CHARGEBACK,
        )
        if joins_case:
            joined = ChargebackJoined(notice.dispute_id, notice.amount, self.view.currency)
            self._signal_dispute_case(DisputeWorkflow.chargeback_joined, joined)

    async def _claw_back(self) -> None:
        """Completed order: bring the seller's payout and the fee back into escrow, so the chargeback is
        booked like any other (the platform does not keep a fee on a charged-back order)."""
        if self._payout is not None:
            if not await self._reverse_payout(self._payout[1], "chargeback"):
                # The seller's account would not give it back: the release stands and the chargeback
                # overdraws this order's escrow, the platform's loss (docs/operations.md).
                workflow.logger.error("transfer reversal refused; chargeback booked as a platform loss")
                return
            self._payout = None
        assert self._released is not None
        gross, fee = self._released
        await self._db_step(
            "reverse_release",
            PaymentActivities.reverse_release,
            ReleaseReversalRequest(
                self.view.order_id,
                fee,
                gross - fee,
                self.view.currency,
                money_key(self.view.order_id, MoneyOperation.RELEASE_REVERSAL, self._releases),
            ),
            forever=True,
        )
        self._released = None
        self._clawed_back_fee = fee
        self._view = replace(self.view, platform_fee=0)

    async def _close_chargeback(self, notice: ChargebackNotice) -> None:
        """The network decided. Won: the money is back and the order resumes where it was. Lost: the buyer
        keeps it; the order is refunded (anything the dispute did not cover stays frozen for support)."""
        assert self._before_chargeback is not None
        status, reason, payment_state = self._before_chargeback
        if notice.status == "won":  # the provider's dispute status (ChargebackNotice)
            await self._book_chargeback(notice, reinstated=True)
            self._view = replace(self.view, chargeback_status=ChargebackStatus.WON)
            if status == OrderStatus.COMPLETED and self._released is None:
                # Released again on the terms of the first release (a reopened run has no order terms).
                await self._complete("chargeback_won", Party.SYSTEM, None, fee=self._clawed_back_fee)
            else:
                await self._transition(
                    status,
                    reason=reason,
                    payment_state=payment_state,
                    party=Party.SYSTEM,
                    actor=None,
                    action=OrderEvent.CHARGEBACK_WON,
                )
            if status != OrderStatus.DISPUTED:  # else the buyer's case it joined goes on, for support
                self._signal_dispute_case(DisputeWorkflow.resolved, Resolution(DisputeResolution.RELEASE))
            return
        self._view = replace(self.view, chargeback_status=ChargebackStatus.LOST)
        if self._escrow_held() > 0:
            # What the dispute did not cover stays frozen for support. An order never shipped never will be (every
            # resolution of it ends it): its stock goes back on sale now rather than wait for support.
            await self._transition(
                OrderStatus.DISPUTED,
                reason="chargeback_lost",
                payment_state=PaymentState.FROZEN,
                party=Party.SYSTEM,
                actor=None,
                action=OrderEvent.CHARGEBACK_LOST,
                release_stock=not self._shipped,
            )
            return
        await self._transition(
            OrderStatus.REFUNDED,
            reason="chargeback_lost",
            payment_state=PaymentState.CHARGED_BACK,
            party=Party.SYSTEM,
            actor=None,
            action=OrderEvent.CHARGEBACK_LOST,
            release_stock=not self._shipped,
        )
        self._signal_dispute_case(
            DisputeWorkflow.resolved, Resolution(DisputeResolution.REFUND, notice.amount)
        )

    async def _book_chargeback(self, notice: ChargebackNotice, reinstated: bool) -> None:
        operation = MoneyOperation.CHARGEBACK_REVERSAL if reinstated else MoneyOperation.CHARGEBACK
        await self._db_step(
            "record_chargeback",
            PaymentActivities.record_chargeback,
            ChargebackMovement(
                order_id=self.view.order_id,
                dispute_id=notice.dispute_id,
                amount=self.view.chargeback_amount if reinstated else notice.amount,
                currency=self.view.currency,
                reinstated=reinstated,
                key=money_key(self.view.order_id, operation, notice.dispute_id),
            ),
            forever=True,
        )
