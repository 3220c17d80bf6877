"""Reconciliation workflows: one per time window (id `reconciliation-<window>`), the daily scheduled one, and
an order's money statement.

`ReconciliationWorkflow` reconciles one window (and re-checks the earlier windows still unsettled); running the
same window again (CLI or schedule) uses the same workflow id and updates the stored result, so it is
idempotent. `DailyReconciliationWorkflow` is what the Temporal Schedule `bazaar-reconciliation-daily` starts: it
reconciles the previous UTC day as a child. `OrderMoneyWorkflow` (id `money-<order id>`) reads one order's money
at the provider for `GET /v1/orders/{id}/money` (the API holds no provider key; the worker does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from workflows.queues import execute_activity, queue_of
from workflows.retries import (
    RECONCILE_BOUND,
    RECONCILE_RETRY,
    RECONCILE_TIMEOUT,
    STATEMENT_RETRY,
    STATEMENT_TIMEOUT,
)

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import (
        ReconcileWindow,
        ReconciliationActivities,
        ReconciliationSummary,
        reconciliation_workflow_id,
    )
    from bazaar.payments.reconcile import MoneyStatement
    from bazaar.temporal import RECONCILIATION

SCHEDULE_ID = "bazaar-reconciliation-daily"
# Set by Temporal on every scheduled run: the time it was due (catch-up runs start later than that).
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


def previous_day(now: datetime) -> ReconcileWindow:
    """The UTC day before `now`: [yesterday 00:00, today 00:00)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return ReconcileWindow(since=(today - timedelta(days=1)).isoformat(), until=today.isoformat())


@workflow.defn
class ReconciliationWorkflow:
    @workflow.run
    async def run(self, window: ReconcileWindow) -> ReconciliationSummary:
        return await execute_activity(
            ReconciliationActivities.reconcile,
            window,
            start_to_close_timeout=RECONCILE_TIMEOUT,
            schedule_to_close_timeout=RECONCILE_BOUND,
            heartbeat_timeout=RECONCILE_TIMEOUT / 2,
            retry_policy=RECONCILE_RETRY,
        )


@workflow.defn
class DailyReconciliationWorkflow:
    @workflow.run
    async def run(self) -> ReconciliationSummary | None:
        due = workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()
        window = previous_day(due)
        try:
            return await workflow.execute_child_workflow(
                ReconciliationWorkflow.run,
                window,
                id=reconciliation_workflow_id(window),
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                task_queue=queue_of(RECONCILIATION),
            )
        except WorkflowAlreadyStartedError:
            # Someone is reconciling this very window right now (CLI): that run stores the result.
            workflow.logger.info("window %s is already being reconciled", window)
            return None


@workflow.defn
class OrderMoneyWorkflow:
    @workflow.run
    async def run(self, order_id: str) -> MoneyStatement:
        return await execute_activity(
            ReconciliationActivities.order_money,
            order_id,
            start_to_close_timeout=STATEMENT_TIMEOUT,
            retry_policy=STATEMENT_RETRY,
        )
