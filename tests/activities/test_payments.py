"""Money-call rules that need no services: who retries what."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from temporalio.exceptions import ApplicationError

from activities import payments
from bazaar.models import PaymentOutcome
from bazaar.settings import Settings
from workflows.retries import MONEY_RETRY


def test_the_sdk_never_retries_by_itself() -> None:
    """Temporal retries (with the same idempotency key); an SDK retry inside an attempt would hide the
    attempt from Temporal and stretch it past the activity timeout."""
    client = payments.make_stripe_client(Settings(_env_file=None, stripe_secret_key="sk_test_x"))
    assert client._requestor._options.max_network_retries == 0


def test_provider_refusals_are_final_and_the_rest_is_retried() -> None:
    assert MONEY_RETRY.non_retryable_error_types == ["PaymentRejected"]
    assert MONEY_RETRY.maximum_attempts == 0  # transient errors: until the provider answers


async def test_a_key_still_in_flight_is_retried_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """409 idempotency_key_in_use: a previous attempt (e.g. of a worker that died) is still running at the
    provider. Recording it as failed would end the order; retrying later gets that attempt's result."""
    recorded: list[Any] = []

    async def record(*args: Any, **kwargs: Any) -> None:
        recorded.append(args)

    monkeypatch.setattr(payments, "_record_outcome", record)
    in_use = stripe.IdempotencyError("There is currently another in-progress request", http_status=409)
    with pytest.raises(ApplicationError) as raised:
        await payments._reject("o:charge:1", in_use)
    assert (raised.value.type, raised.value.non_retryable) == ("IdempotencyKeyInUse", False)
    assert recorded == []

    reused = stripe.IdempotencyError(
        "Keys for idempotent requests can only be used with the same parameters", http_status=400
    )
    declined = stripe.InvalidRequestError(  # type: ignore[no-untyped-call]  # the SDK leaves it untyped
        "No such destination", param="destination", http_status=400
    )
    for refusal in (reused, declined):
        with pytest.raises(ApplicationError) as raised:
            await payments._reject("o:transfer:1", refusal)
        assert (raised.value.type, raised.value.non_retryable) == ("PaymentRejected", True)
    assert [(key, outcome) for key, outcome, *_ in recorded] == [
        ("o:transfer:1", PaymentOutcome.FAILED),
        ("o:transfer:1", PaymentOutcome.FAILED),
    ]
