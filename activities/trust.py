"""Trust side effects: review windows, revealing reviews, reputation updates from order outcomes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity

from bazaar.db import transaction
from bazaar.models import Order
from bazaar.trust import reputation, reviews


@dataclass
class ReviewWindowRequest:
    order_id: str
    window_seconds: int


@dataclass
class OrderOutcome:
    order_id: str
    outcome: str  # completed | cancelled | disputed


class TrustActivities:
    @activity.defn
    async def open_review_window(self, req: ReviewWindowRequest) -> str:
        """Returns when the window closes (ISO 8601), for the invitation text."""
        async with transaction() as session:
            window = await reviews.open_window(
                session, uuid.UUID(req.order_id), timedelta(seconds=req.window_seconds)
            )
            return window.closes_at.isoformat(timespec="minutes")

    @activity.defn
    async def reveal_due_reviews(self) -> int:
        """Reveal every review window that closed unrevealed (the scheduled sweep); how many windows."""
        async with transaction() as session:
            return await reviews.reveal_due(session)

    @activity.defn
    async def reveal_reviews(self, order_id: str) -> int:
        async with transaction() as session:
            return len(await reviews.reveal(session, uuid.UUID(order_id)))

    @activity.defn
    async def record_order_outcome(self, req: OrderOutcome) -> None:
        async with transaction() as session:
            order = await session.get(Order, uuid.UUID(req.order_id))
            if order is None:
                raise LookupError(f"order {req.order_id} not found")
            await reputation.apply_order_outcome(session, order.id, order.seller_id, req.outcome)
