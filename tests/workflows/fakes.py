"""Fake activities for workflow tests: same names and payloads as the real ones, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity

from activities.orders import OrderStateChange, ReserveStockInput, ReserveStockResult
from activities.payments import (
    ChargeRequest,
    ChargeResult,
    RefundRequest,
    RefundResult,
    ReleaseRequest,
    TransferRequest,
    TransferResult,
)


@dataclass
class FakeWorld:
    """What the fake activities saw and will answer."""

    stock: int = 1
    decline: bool = False
    charges: list[ChargeRequest] = field(default_factory=list)
    states: list[OrderStateChange] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    refunds: list[RefundRequest] = field(default_factory=list)
    escrow_releases: list[ReleaseRequest] = field(default_factory=list)
    transfers: list[TransferRequest] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        world = self

        @activity.defn(name="reserve_stock")
        async def reserve_stock(req: ReserveStockInput) -> ReserveStockResult:
            if world.stock < req.quantity:
                return ReserveStockResult(ok=False, reason="sold_out")
            world.stock -= req.quantity
            return ReserveStockResult(
                ok=True,
                seller_id="seller-1",
                listing_title="Road bike",
                unit_amount=45_000,
                amount=45_000 * req.quantity,
                currency="EUR",
            )

        @activity.defn(name="release_stock")
        async def release_stock(order_id: str) -> bool:
            world.released.append(order_id)
            return True

        @activity.defn(name="record_order_state")
        async def record_order_state(change: OrderStateChange) -> None:
            world.states.append(change)

        @activity.defn(name="charge")
        async def charge(req: ChargeRequest) -> ChargeResult:
            world.charges.append(req)
            if world.decline:
                return ChargeResult(succeeded=False, failure_code="card_declined")
            return ChargeResult(succeeded=True, payment_intent_id="pi_fake")

        @activity.defn(name="refund")
        async def refund(req: RefundRequest) -> RefundResult:
            world.refunds.append(req)
            return RefundResult(refund_id=f"re_{len(world.refunds)}", amount=req.amount)

        @activity.defn(name="release_escrow")
        async def release_escrow(req: ReleaseRequest) -> None:
            world.escrow_releases.append(req)

        @activity.defn(name="transfer")
        async def transfer(req: TransferRequest) -> TransferResult:
            world.transfers.append(req)
            return TransferResult(transfer_id="tr_fake", destination="acct_fake")

        return [reserve_stock, release_stock, record_order_state, charge, refund, release_escrow, transfer]
