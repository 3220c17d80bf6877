"""A reconciliation run that keeps failing ends, visibly, instead of retrying until it blocks the next day's run
(time-skipping server: the bound of hours passes in moments)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.reconciliation import ReconcileWindow, ReconciliationSummary
from workflows.reconciliation import ReconciliationWorkflow

WINDOW = ReconcileWindow(since="2026-11-25T00:00:00+00:00", until="2026-11-26T00:00:00+00:00")


def failing_reconcile(error: Callable[[], Exception], calls: list[int]) -> Callable[..., object]:
    @activity.defn(name="reconcile")
    async def reconcile(window: ReconcileWindow) -> ReconciliationSummary:
        calls.append(activity.info().attempt)
        raise error()

    return reconcile


@pytest.mark.parametrize(
    ("error", "permanent"),
    [(lambda: RuntimeError("the provider is down"), False), (lambda: ValueError("not a window"), True)],
)
async def test_a_failing_run_fails_in_bounded_time(
    time_skipping_env: WorkflowEnvironment, error: Callable[[], Exception], permanent: bool
) -> None:
    calls: list[int] = []
    queue = f"reconcile-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[ReconciliationWorkflow],
        activities=[failing_reconcile(error, calls)],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await time_skipping_env.client.execute_workflow(
                ReconciliationWorkflow.run, WINDOW, id=f"reconcile-{uuid.uuid4()}", task_queue=queue
            )
    assert isinstance(failed.value.cause, ActivityError)
    cause = failed.value.cause.cause
    if permanent:
        assert calls == [1]  # a window it cannot read is not retried
        assert isinstance(cause, ApplicationError) and cause.type == "ValueError"
    else:
        assert len(calls) > 1  # transient: retried with backoff, then given up at the bound
