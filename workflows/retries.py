"""Retry policies and timeouts of the workflows' steps: one home, so a workflow's failure rule reads the same
everywhere (docs/failure-rules.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.database import DATA_ERROR
    from bazaar.errors import Rejection

T = TypeVar("T")

# Database steps of the order: short transactions, retried quickly; data the database refuses is final.
DB_ATTEMPT = timedelta(seconds=10)
DB_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=[DATA_ERROR],
)
# Database steps of the order's children (dispute cases, legacy review rounds) and of the legacy order:
# retried until the database answers.
DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
# Provider calls: bounded by the SDK timeout; transient errors retried, refusals are final. An attempt is the
# SDK's timeout (STRIPE_TIMEOUT_SECONDS, 10 s) plus the attempt's own rows; it is also how long an order waits when
# the worker running its provider call dies (the failover test: 30 s when this was 30 s). A longer SDK timeout
# only costs a retry under the same idempotency key.
MONEY_ATTEMPT = timedelta(seconds=15)
MONEY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[Rejection.PAYMENT_REJECTED],
)
# A local activity waits for a retry inside its workflow task only up to this backoff; longer ones become timers.
# Kept short because sdk-core drops a local activity's schedule-to-close bound when it fires during an
# in-task backoff (seen with temporalio 1.35): a step failing fast would otherwise retry forever, unflagged.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)
# A provider call on an Update's path first runs locally, for at most this long (a couple of attempts); a
# slower or failing provider then gets a normal activity (retried by the server, visible as pending).
LOCAL_MONEY_BUDGET = timedelta(seconds=15)
# Reconciliation: listing a busy day at the provider takes a while (the activity heartbeats after listing).
RECONCILE_TIMEOUT = timedelta(minutes=30)
RECONCILE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=["ValueError", "DataError"],  # a window it cannot read, a row it cannot store
)
# A day's run that keeps failing stops within this and fails visibly in its Schedule (docs/failure-rules.md)
# instead of retrying until it blocks the next day's run (the Schedule skips overlapping runs).
RECONCILE_BOUND = timedelta(hours=6)
# An order's money statement is read while someone waits (the API answers 503 after ORDER_WAIT_SECONDS): a few
# quick tries.
STATEMENT_TIMEOUT = timedelta(seconds=30)
STATEMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_attempts=3, non_retryable_error_types=["NotFound"]
)


def local_db_step(activity: Callable[..., Awaitable[T]], arg: Any, step_timeout_seconds: int) -> Awaitable[T]:
    """One run of a database step as a local activity, its attempts retried within the step's bound (the failure
    rule's `step_timeout_seconds`): how the order and the dispute case run theirs."""
    return workflow.execute_local_activity_method(
        activity,
        arg,
        start_to_close_timeout=DB_ATTEMPT,
        schedule_to_close_timeout=timedelta(seconds=step_timeout_seconds),
        retry_policy=DB_STEP_RETRY,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
    )


def db_step_until_answered(activity: Callable[..., Awaitable[T]], arg: Any) -> Awaitable[T]:
    """A database step as a local activity, retried until the database answers (its data errors are final): how the
    checkout and the return run theirs."""
    return workflow.execute_local_activity_method(
        activity,
        arg,
        start_to_close_timeout=DB_ATTEMPT,
        retry_policy=DB_RETRY,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
    )
