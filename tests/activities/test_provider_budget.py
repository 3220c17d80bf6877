"""The provider's request limit split between the local-first money calls and the payments queue
(docs/architecture.md): the local share is counted in PostgreSQL by every orders worker together, and a call
it refuses is not made (the workflow then runs the step on the payments queue)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import payments
from activities.provider_budget import LOCAL_BUDGET_SPENT, LocalProviderBudget
from bazaar.models import Payment, PaymentKind, PaymentOutcome
from bazaar.settings import Settings


def test_the_queue_gets_what_the_local_share_leaves_in_any_second() -> None:
    settings = Settings(_env_file=None, payment_requests_per_second=25, payment_local_requests_per_second=3)
    assert (
        settings.payment_queue_requests_per_second == 19
    )  # a fixed window admits its quota twice at its edge
    everything_queued = Settings(_env_file=None, payment_local_requests_per_second=0)
    assert (
        everything_queued.payment_queue_requests_per_second == everything_queued.payment_requests_per_second
    )
    with pytest.raises(ValidationError, match="PAYMENT_LOCAL_REQUESTS_PER_SECOND"):
        Settings(_env_file=None, payment_requests_per_second=6, payment_local_requests_per_second=3)


async def test_a_zero_share_refuses_every_local_call_without_counting() -> None:
    assert await LocalProviderBudget(0).spend() is False  # no database touched: none is configured here


@pytest.fixture
async def engine(outbox_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(outbox_url, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.mark.integration
async def test_workers_share_one_count_per_second(engine: AsyncEngine) -> None:
    """Two orders workers (two budgets on one database): a burst of 12 calls gets the share, 3, between them;
    the next second has a share again."""
    workers = [LocalProviderBudget(3, engine), LocalProviderBudget(3, engine)]
    granted = await asyncio.gather(*(workers[i % 2].spend() for i in range(12)))
    assert granted.count(True) == 3
    await asyncio.sleep(1.1)
    assert await workers[1].spend() is True


class _SpentBudget(LocalProviderBudget):
    def __init__(self) -> None:
        super().__init__(1)
        self.asked = 0

    async def spend(self) -> bool:
        self.asked += 1
        return False


async def _move(monkeypatch: pytest.MonkeyPatch, is_local: bool, calls: list[str]) -> _SpentBudget:
    """`_move_money` with a spent budget, run as a local or a normal activity; the provider calls it makes go
    to `calls`."""

    async def begin(*args: Any) -> Any:
        return Payment(outcome=PaymentOutcome.PENDING, provider_id=None)

    async def record(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(payments, "_begin_attempt", begin)
    monkeypatch.setattr(payments, "_record_outcome", record)
    budget = _SpentBudget()

    async def call() -> Any:
        calls.append("transfer")
        return stripe.StripeObject.construct_from({"id": "tr_1"}, "sk_test")

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=is_local)
    await env.run(
        payments._move_money, "o1", PaymentKind.TRANSFER, "o1:transfer:1", 100, "EUR", call, {}, budget
    )
    return budget


async def test_a_local_call_the_budget_refuses_is_not_made(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    with pytest.raises(ApplicationError) as refused:
        await _move(monkeypatch, is_local=True, calls=calls)
    assert (refused.value.type, refused.value.non_retryable) == (LOCAL_BUDGET_SPENT, True)
    assert calls == []


async def test_a_queued_call_does_not_spend_the_local_share(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    budget = await _move(monkeypatch, is_local=False, calls=calls)
    assert (calls, budget.asked) == (["transfer"], 0)
