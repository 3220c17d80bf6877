"""The `Return` workflow's fake activities (`FakeWorld.returns`): same names and payloads as the real ones
(activities/returns.py), no I/O.

`open_return` stores a return at `prices` (a listing not there is not the order's: refused `invalid_lines`) or
refuses every return with `refusal`; `save_return` saves each move once per seq (like the real `state_seq`) with
its notification, and a refunded return that is restocked puts its lines back on the world's listings;
`refundable` answers what the order still holds (`held`, less the returns it refunded; plenty by default);
`refund_return` stands for the order's refund Update: it records each request and refuses the next
`refuse_refunds` of them with the non-retryable `RefundRefused` the real activity raises. The world's faults and
delays apply (`open_return`, `save_return` or `save_return:<status>`, `refund_return`), and the notifications land
in the world's `events`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.returns import REFUND_REFUSED
from bazaar.orders.types import OrderLineView
from bazaar.returns.models import ReturnStatus
from bazaar.returns.types import ReturnOpened, ReturnRefund, ReturnTransition, StartReturn
from bazaar.trust.notifications import NotificationEvent

if TYPE_CHECKING:
    from tests.support.workflow_fakes import FakeWorld


@dataclass
class FakeReturns:
    """What the return's fake activities saw and will answer."""

    prices: dict[str, int] = field(default_factory=lambda: {"listing-1": 45_000})  # listing -> unit price
    refusal: str | None = None  # e.g. "return_window_closed": every return refused at its opening
    refuse_refunds: int = 0  # how many refund_return calls the order refuses (RefundRefused)
    held: int | None = None  # what the order still holds for refunds (`refundable`); None: all a return asks
    # What it holds once it has refused a refund (another refund took part of it meanwhile); None: unchanged.
    held_after_refusal: int | None = None
    requests: list[StartReturn] = field(default_factory=list)  # every open_return call
    opened: dict[str, ReturnOpened] = field(default_factory=dict)  # return -> what was stored
    moves: list[ReturnTransition] = field(default_factory=list)  # what save_return saved, in order
    refund_requests: list[ReturnRefund] = field(default_factory=list)  # every refund_return call
    refunds: list[ReturnRefund] = field(default_factory=list)  # the ones the order made
    restocked: list[tuple[str, int]] = field(default_factory=list)  # (listing, quantity) back on sale
    _parties: dict[str, tuple[str, str]] = field(default_factory=dict)  # return -> (buyer, seller)

    def statuses(self, return_id: str | None = None) -> list[str]:
        """The statuses `save_return` saved (of one return, or of all), in order."""
        return [m.status.value for m in self.moves if return_id in (None, m.return_id)]

    def _open(self, world: FakeWorld, req: StartReturn) -> ReturnOpened:
        """Store the return (the seller told), or refuse it with nothing stored (like
        `bazaar.returns.returns.open_return`)."""
        if req.return_id in self.opened:  # a retry after the commit: what was stored
            return self.opened[req.return_id]
        if self.refusal is not None:
            return ReturnOpened(ok=False, refusal=self.refusal, detail=f"refused: {self.refusal}")
        lines = []
        for wanted in req.lines:
            price = self.prices.get(wanted.listing_id)
            if price is None or wanted.quantity <= 0:
                detail = f"listing {wanted.listing_id}: 0 of it can be returned"
                return ReturnOpened(ok=False, refusal="invalid_lines", detail=detail)
            listing = world.listings.get(wanted.listing_id)
            title = listing.title if listing else "Road bike"
            lines.append(OrderLineView(wanted.listing_id, title, wanted.quantity, price))
        first = world.listings.get(req.lines[0].listing_id) if req.lines else None
        seller_id = first.seller_id if first else "seller-1"
        opened = ReturnOpened(
            ok=True,
            seller_id=seller_id,
            amount=sum(line.unit_amount * line.quantity for line in lines),
            currency="EUR",
            lines=lines,
            seq=1,
        )
        self.opened[req.return_id] = opened
        self._parties[req.return_id] = (req.buyer_id, seller_id)
        world._prepare(
            NotificationEvent(f"return:{req.return_id}:1", "return_requested", recipient_ids=[seller_id])
        )
        return opened

    def _save(self, world: FakeWorld, move: ReturnTransition) -> bool:
        """The move with its notification, once per seq (a seq at or below the saved one writes nothing, like
        `bazaar.returns.returns.save`); a refunded return that is restocked puts its lines back on sale."""
        opened = self.opened[move.return_id]
        if move.seq <= max([opened.seq, *(m.seq for m in self.moves if m.return_id == move.return_id)]):
            return False
        self.moves.append(move)
        if move.status == ReturnStatus.REFUNDED and move.restocked:
            for line in opened.lines:
                self.restocked.append((line.listing_id, line.quantity))
                if line.listing_id in world.listings:
                    world.listings[line.listing_id].stock += line.quantity
        if move.event_type:
            buyer_id, seller_id = self._parties[move.return_id]
            ids = [buyer_id if p == "buyer" else seller_id for p in move.notify if p != "support"]
            roles = ["support"] if "support" in move.notify else []
            key = f"return:{move.return_id}:{move.seq}"
            world._prepare(NotificationEvent(key, move.event_type, ids, roles))
        return True

    def activities(self, world: FakeWorld) -> list[Callable[..., Any]]:
        returns = self

        # open_return and save_return run as local activities of the `Return` workflow.
        @activity.defn(name="open_return")
        async def open_return(req: StartReturn) -> ReturnOpened:
            await world._step("open_return")
            returns.requests.append(req)
            return returns._open(world, req)

        @activity.defn(name="save_return")
        async def save_return(move: ReturnTransition) -> bool:
            await world._step("save_return", move.status.value)
            return returns._save(world, move)

        @activity.defn(name="refund_return")
        async def refund_return(req: ReturnRefund) -> int:
            """The order's refund for the return: what the order has refunded for returns in all, or its
            refusal (non-retryable, like the real activity's)."""
            await world._step("refund_return")
            returns.refund_requests.append(req)
            if returns.refuse_refunds > 0:
                returns.refuse_refunds -= 1
                if returns.held_after_refusal is not None:
                    returns.held = returns.held_after_refusal
                raise ApplicationError(
                    "the order refused the refund: charge_disputed", type=REFUND_REFUSED, non_retryable=True
                )
            returns.refunds.append(req)
            return sum(r.amount for r in returns.refunds if r.order_id == req.order_id)

        @activity.defn(name="refundable")
        async def refundable(order_id: str) -> int:
            """What the order still holds: `held`, less the returns refunded since."""
            await world._step("refundable")
            if returns.held is None:
                return 10**9
            return returns.held - sum(r.amount for r in returns.refunds if r.order_id == order_id)

        return [open_return, save_return, refund_return, refundable]
