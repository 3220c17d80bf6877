"""A fake world with real semantics for the order workflow's activities: a listing's stock, the orders table,
the payments table and the ledger (as `activities.orders` / `activities.payments` write them), and a payment
provider that keeps every idempotent request's answer and each order's balances.

Unlike `workflow_fakes.py` (which records what the workflow asked), this model *does* what the real
activities do, with the same rules, so that a property test can compare the three views of one order (the workflow's, the
database's and the provider's) after any interleaving of actions, webhooks, faults and timers:

- stock: `reserve_stock` takes it under the listing's lock, `release_stock`/`save_transition(release_stock)`
  gives it back once per order (`stock_reserved`), a listing at 0 is sold out;
- provider: one stored answer per idempotency key (the same key replays it, the same key with a different
  request is an error, as at Stripe), balances per order (charged, refunded, transferred, reversed,
  charged back), and the checks a real provider makes (never refund more than was captured, no refund on a
  disputed charge, never reverse more than was transferred);
- payments table and ledger: the stored-outcome rule of `activities.payments` (a stored success is returned as
  is; attempt recorded, provider called, outcome and ledger movement stored together), ledger movements
  balanced and idempotent on their txn;
- faults: each provider call's key follows a `Script` chosen when its first attempt arrives (see `OUTCOMES`):
  a decline, a refusal (non-retryable `PaymentRejected`), transient failures before the provider is reached,
  and dropped responses (the provider did it and stored it under the key; the activity fails and its retry
  must get the stored answer).

Every activity runs on the worker's event loop; read a `World` only from that loop. A world is picked by the
order id of each activity's input (`Router`), so the workflows of an earlier example never touch a later one.
The world's state (tables, provider, ledger, faults) is `WorldState` (order_world.py); `World` here adds what
each activity does with it; the Temporal activities themselves are `Router`'s (order_activities.py).
Anything the model itself finds wrong (a key reused for a different request, an overdraw the provider would
refuse, a ledger txn reused with another movement, a transition the table silently drops) is appended to
`World.violations` for the test to assert on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from activities.orders import (
    OrderSnapshot,
    OrderStateChange,
    OrderTransition,
    ReserveStockInput,
    ReserveStockResult,
)
from activities.payments import (
    ChargebackMovement,
    ChargeRequest,
    ChargeResult,
    RefundRequest,
    RefundResult,
    ReleaseRequest,
    ReleaseReversalRequest,
    TransferRequest,
    TransferResult,
    TransferReversalRequest,
    TransferReversalResult,
)
from bazaar.models import OrderStatus, PaymentState
from bazaar.orders.types import ChargebackStatus
from tests.support.order_world import (
    BUYER_PAYMENTS,
    CHARGEBACKS,
    CURRENCY,
    ESCROW,
    PLATFORM_FEES,
    REFUNDS,
    SELLER_ID,
    SELLER_PAYABLE,
    SELLER_PAYOUTS,
    UNIT_PRICE,
    OrderRow,
    PaymentRow,
    ProviderRefusal,
    WorldState,
)


class World(WorldState):
    """One Hypothesis example's database and provider (see the module docstring)."""

    # ---- activities: orders -------------------------------------------------------------------------------
    def reserve_stock(self, req: ReserveStockInput) -> ReserveStockResult:
        existing = self.orders.get(req.order_id)
        if existing is not None:
            return self._reserved(existing)
        listing = self.listing
        if req.listing_id != listing.listing_id:
            return ReserveStockResult(ok=False, reason="listing_not_available")
        if req.buyer_id == SELLER_ID:
            return ReserveStockResult(ok=False, reason="own_listing")
        if listing.status == "sold" or listing.quantity < req.quantity:
            return ReserveStockResult(ok=False, reason="sold_out")
        listing.quantity -= req.quantity
        if listing.quantity == 0:
            listing.status = "sold"
        row = OrderRow(
            order_id=req.order_id,
            buyer_id=req.buyer_id,
            seller_id=SELLER_ID,
            listing_id=listing.listing_id,
            quantity=req.quantity,
            amount=UNIT_PRICE * req.quantity,
            currency=CURRENCY,
            status="pending",
            reason=None,
            payment_state="none",
            seq=1,
            idempotency_key=req.idempotency_key,
            payment_method=req.payment_method or None,
            workflow_id=req.workflow_id,
        )
        row.history[1] = ("pending", None, "none", "order.placed")
        self.orders[req.order_id] = row
        return self._reserved(row)

    @staticmethod
    def _reserved(row: OrderRow) -> ReserveStockResult:
        return ReserveStockResult(
            ok=True,
            seller_id=row.seller_id,
            listing_title="Road bike",
            unit_amount=UNIT_PRICE,
            amount=row.amount,
            currency=row.currency,
        )

    def release_stock(self, order_id: str) -> bool:
        row = self.orders.get(order_id)
        if row is None or not row.stock_reserved:
            return False
        self.listing.quantity += row.quantity
        if self.listing.status == "sold":
            self.listing.status = "active"
        row.stock_reserved = False
        return True

    def project(self, change: OrderStateChange) -> bool:
        """`activities.orders._project`: apply if newer, else nothing (a retry); a *different* transition
        under a seq the table already has would be dropped silently: that is a violation."""
        row = self.orders.get(change.order_id)
        if row is None:
            self.violations.append(f"transition {change.action} for order {change.order_id} without a row")
            return False
        content = (change.status, change.reason, change.payment_state, change.action)
        if change.seq <= row.seq:
            seen = row.history.get(change.seq)
            if seen is not None and seen != content:
                self.violations.append(
                    f"order {change.order_id}: transition seq {change.seq} {content} dropped, the table "
                    f"has {seen} under that seq (current seq {row.seq})"
                )
            return False
        row.status, row.reason, row.payment_state = change.status, change.reason, change.payment_state
        row.seq, row.tracking = change.seq, change.tracking
        row.history[change.seq] = content
        if change.status == "fulfilled":
            row.shipped = True
        return True

    def save_transition(self, change: OrderTransition) -> bool:
        """`activities.orders.save_transition`: the projection, the ledger postings booked with it (e.g. the
        escrow release of a completion) and the stock going back, in one transaction."""
        if not self.project(change):
            return False
        for posting in change.ledger:
            self.post(posting.txn, change.order_id, dict(posting.entries))
        if change.release_stock:
            self.release_stock(change.order_id)
        return True

    def load_order(self, order_id: str) -> OrderSnapshot:
        """`activities.orders.load_order` over this world's tables (the same derivation)."""
        order = self.orders.get(order_id)
        if order is None:
            raise LookupError(f"order {order_id} not found")
        payments = [p for p in self.payments.values() if p.order_id == order_id]
        txns = sorted({txn for (txn, _), (owner, _) in self.ledger.items() if owner == order_id})

        def done(kind: str) -> list[PaymentRow]:
            rows = [p for p in payments if p.kind == kind and p.outcome == "succeeded"]
            return sorted(rows, key=lambda p: _key_number(p.key))

        def highest(operation: str, keys: list[str]) -> int:
            return max((_key_number(k) for k in keys if k.startswith(f"{order_id}:{operation}:")), default=0)

        payment_keys = [p.key for p in payments]
        charges = done("charge")
        transfers, reversals = done("transfer"), done("transfer_reversal")
        chargebacks, reinstated = done("chargeback"), done("chargeback_reversal")
        releases = highest("release", txns)
        release = self.txns.get(f"{order_id}:release:{releases}", (order_id, {}))[1]
        released = releases > 0 and f"{order_id}:release_reversal:{releases}" not in txns
        payout = transfers[-1] if len(transfers) > len(reversals) else None
        chargeback = chargebacks[-1] if chargebacks else None
        status: ChargebackStatus | None = None
        if chargeback is not None:
            # As the timeline recorded the network's decision (`order.chargeback_lost`).
            lost = any(action == "order.chargeback_lost" for *_, action in order.history.values())
            status = (
                ChargebackStatus.WON
                if reinstated
                else ChargebackStatus.LOST
                if lost
                else ChargebackStatus.WITHDRAWN
            )
        return OrderSnapshot(
            order_id=order_id,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            listing_id=order.listing_id,
            listing_title="Road bike",
            quantity=order.quantity,
            amount=order.amount,
            currency=order.currency,
            status=OrderStatus(order.status),
            reason=order.reason,
            payment_state=PaymentState(order.payment_state),
            tracking=order.tracking,
            seq=order.seq,
            payment_intent_id=charges[-1].provider_id if charges else None,
            refunded_amount=sum(p.amount for p in done("refund")),
            refunds=highest("refund", payment_keys),
            releases=releases,
            transfers=highest("transfer", payment_keys),
            reversals=highest("transfer_reversal", payment_keys),
            released=released,
            released_gross=-release.get(ESCROW, 0),
            released_fee=release.get(PLATFORM_FEES, 0),
            payout_transfer_id=payout.provider_id if payout else None,
            payout_amount=payout.amount if payout else 0,
            chargeback_id=chargeback.provider_id if chargeback else None,
            chargeback_status=status,
            chargeback_amount=chargeback.amount if chargeback else 0,
        )

    # ---- activities: payments ---------------------------------------------------------------------------
    def charge(self, req: ChargeRequest) -> ChargeResult:
        key = req.idempotency_key
        stored_row = self.payments.get(key)
        if stored_row is not None and stored_row.outcome != "pending":
            return ChargeResult(
                succeeded=stored_row.outcome == "succeeded",
                payment_intent_id=stored_row.provider_id,
                failure_code=stored_row.failure_code,
            )
        self._record_attempt(req.order_id, "charge", key, req.amount, req.currency)
        request = ("charge", req.amount, req.currency, req.payment_method, req.transfer_group)

        def act() -> str:
            if req.amount <= 0:
                raise ProviderRefusal(f"cannot charge {req.amount}")
            self.balance(req.order_id).charged += req.amount
            return self._new_id("pi")

        stored = self._provider(req.order_id, "charge", key, request, act)
        if stored.declined:
            declined = self._new_id("pi_declined")
            self._record_outcome(key, "failed", declined, "card_declined")
            return ChargeResult(succeeded=False, payment_intent_id=declined, failure_code="card_declined")
        if stored.error is not None:
            raise self._reject(key, stored.error)
        intent = str(stored.result)
        self._record_outcome(
            key, "succeeded", intent, movement={ESCROW: req.amount, BUYER_PAYMENTS: -req.amount}
        )
        return ChargeResult(succeeded=True, payment_intent_id=intent)

    def _move_money(
        self,
        order_id: str,
        kind: str,
        key: str,
        amount: int,
        currency: str,
        request: tuple[Any, ...],
        act: Callable[[], str],
        movement: dict[str, int],
    ) -> str:
        """`activities.payments._move_money`: at most once per key; a stored success is returned as is."""
        stored_row = self.payments.get(key)
        if stored_row is not None and stored_row.outcome == "succeeded" and stored_row.provider_id:
            return stored_row.provider_id
        self._record_attempt(order_id, kind, key, amount, currency)
        stored = self._provider(order_id, kind, key, request, act)
        if stored.error is not None:
            raise self._reject(key, stored.error)
        provider_id = str(stored.result)
        self._record_outcome(key, "succeeded", provider_id, movement=movement)
        return provider_id

    def refund(self, req: RefundRequest) -> RefundResult:
        request = ("refund", req.payment_intent_id, req.amount, req.reason)

        def act() -> str:
            balance = self.balance(req.order_id)
            if req.payment_intent_id != self.charge_intent(req.order_id):
                self.violations.append(
                    f"refund {req.idempotency_key} of unknown intent {req.payment_intent_id}"
                )
                raise ProviderRefusal("no such payment intent")
            dispute = self.disputes.get(req.order_id)
            if dispute is not None and dispute.status != "won":
                # A disputed charge cannot be refunded (the network decides, or has decided, that money).
                self.refused_refunds_disputed += 1
                raise ProviderRefusal("charge_disputed: the charge has a dispute")
            if not 0 < req.amount <= balance.charged - balance.refunded:
                self.violations.append(
                    f"refund {req.idempotency_key} of {req.amount} with {balance.charged - balance.refunded} "
                    "left on the charge"
                )
                raise ProviderRefusal("amount exceeds what is left on the charge")
            balance.refunded += req.amount
            return self._new_id("re")

        refund_id = self._move_money(
            req.order_id,
            "refund",
            req.idempotency_key,
            req.amount,
            req.currency,
            request,
            act,
            {ESCROW: -req.amount, REFUNDS: req.amount},
        )
        return RefundResult(refund_id, req.amount)

    def release_escrow(self, req: ReleaseRequest) -> None:
        self.post(
            req.txn,
            req.order_id,
            {ESCROW: -req.gross, PLATFORM_FEES: req.fee, SELLER_PAYABLE: req.gross - req.fee},
        )

    def transfer(self, req: TransferRequest) -> TransferResult:
        request = ("transfer", req.amount, req.currency, req.transfer_group)

        def act() -> str:
            if req.amount <= 0:
                self.violations.append(f"transfer {req.idempotency_key} of {req.amount}")
                raise ProviderRefusal(f"cannot transfer {req.amount}")
            self.balance(req.order_id).transferred += req.amount
            transfer_id = self._new_id("tr")
            self.transfers[transfer_id] = (req.order_id, req.amount, 0)
            return transfer_id

        transfer_id = self._move_money(
            req.order_id,
            "transfer",
            req.idempotency_key,
            req.amount,
            req.currency,
            request,
            act,
            {SELLER_PAYABLE: -req.amount, SELLER_PAYOUTS: req.amount},
        )
        return TransferResult(transfer_id, "acct_seller")

    def reverse_transfer(self, req: TransferReversalRequest) -> TransferReversalResult:
        request = ("transfer_reversal", req.transfer_id, req.amount, req.reason)

        def act() -> str:
            found = self.transfers.get(req.transfer_id)
            if found is None or found[0] != req.order_id or not 0 < req.amount <= found[1] - found[2]:
                self.violations.append(f"reversal {req.idempotency_key} of {req.amount} from {found}")
                raise ProviderRefusal("cannot reverse that much of this transfer")
            self.transfers[req.transfer_id] = (found[0], found[1], found[2] + req.amount)
            self.balance(req.order_id).reversed += req.amount
            return self._new_id("trr")

        reversal_id = self._move_money(
            req.order_id,
            "transfer_reversal",
            req.idempotency_key,
            req.amount,
            req.currency,
            request,
            act,
            {SELLER_PAYOUTS: -req.amount, SELLER_PAYABLE: req.amount},
        )
        return TransferReversalResult(reversal_id, req.amount)

    def reverse_release(self, req: ReleaseReversalRequest) -> None:
        self.post(
            req.txn,
            req.order_id,
            {ESCROW: req.fee + req.seller_share, PLATFORM_FEES: -req.fee, SELLER_PAYABLE: -req.seller_share},
        )

    def record_chargeback(self, req: ChargebackMovement) -> None:
        kind = "chargeback_reversal" if req.reinstated else "chargeback"
        self.payments.setdefault(
            req.key,
            PaymentRow(req.order_id, kind, req.key, req.amount, req.currency, "succeeded", req.dispute_id),
        )
        sign = -1 if req.reinstated else 1
        self.post(req.key, req.order_id, {CHARGEBACKS: sign * req.amount, ESCROW: -sign * req.amount})


def _key_number(key: str) -> int:
    match = re.search(r":(\d+)$", key)
    return int(match.group(1)) if match else 0
