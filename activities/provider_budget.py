"""The provider's request limit, as far as the orders worker's local-first calls go (refund, transfer, reversal on
an Update's path): a share per second counted in PostgreSQL, which a call spends before it is made."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from bazaar.db import get_engine
from bazaar.ratelimit import Limiter, PostgresStorage

# A local-first call found the local share of the provider's request limit spent: not a failure of the step,
# which the workflow runs on the payments queue instead (a non-retryable local attempt is not retried locally).
LOCAL_BUDGET_SPENT = "LocalProviderBudgetSpent"


class LocalProviderBudget:
    """The provider requests per second that local-first calls may make (`PAYMENT_LOCAL_REQUESTS_PER_SECOND`),
    counted in PostgreSQL with the API's request limits (bazaar.ratelimit), so all orders workers share one count.
    0: none (every provider call goes through the payments queue)."""

    def __init__(self, per_second: int, engine: AsyncEngine | None = None) -> None:
        self.limit = f"{per_second}/second" if per_second > 0 else None
        self._engine = engine  # where the count is kept; None: the process's database
        self._limiter: Limiter | None = None

    async def spend(self) -> bool:
        """Take one request from this second's share; False: the share is spent, make no call."""
        if self.limit is None:
            return False
        if self._limiter is None:
            self._limiter = Limiter(PostgresStorage(self._engine or get_engine()))
        return (await self._limiter.hit("provider", self.limit, "local-first")).allowed
