"""Which task queue each workflow and activity runs on: its owner context's (docs/architecture.md, "Task queues").

Workflow code picks a queue from the queue its run is on (`workflow.info().task_queue`), never from the settings
(the environment is not part of a workflow's history): the rule is `bazaar.temporal.task_queue`'s, so a run on
`bazaar-trust` schedules provider calls on `bazaar-payments`, and a test's worker on a queue of its own
(single-queue mode) gets everything on that queue. Replay does not compare the task queue of a scheduled activity
or a child's start (only their type and id), so routing needed no patch (docs/workflow-versioning.md).

Local activities have no queue: they run in the worker of the workflow that runs them, which registers them
(`worker.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.checkout import CheckoutActivities
    from activities.disputes import DisputeActivities
    from activities.notifications import NotificationActivities
    from activities.orders import OrderActivities
    from activities.payments import PaymentActivities
    from activities.reconciliation import ReconciliationActivities
    from activities.returns import ReturnActivities
    from activities.trust import TrustActivities
    from bazaar.temporal import (
        NOTIFICATIONS,
        ORDERS,
        PAYMENTS,
        RECONCILIATION,
        TRUST,
        task_queue,
    )

T = TypeVar("T")

# Activity classes -> owner. Every call to the payment provider is the payments context's, the reconciliation's
# provider reads included: that queue's rate limit covers them all but the orders worker's local-first calls, which
# spend a share of the provider's limit of their own (docs/architecture.md).
ACTIVITY_OWNERS: dict[str, str] = {
    cls.__name__: owner
    for cls, owner in (
        (OrderActivities, ORDERS),
        (CheckoutActivities, ORDERS),
        (ReturnActivities, ORDERS),
        (PaymentActivities, PAYMENTS),
        (ReconciliationActivities, PAYMENTS),
        (TrustActivities, TRUST),
        (DisputeActivities, TRUST),
        (NotificationActivities, NOTIFICATIONS),
    )
}
# Workflow classes -> owner (by class name: the workflow modules import this one).
WORKFLOW_OWNERS: dict[str, str] = {
    "OrderWorkflow": ORDERS,
    "CheckoutWorkflow": ORDERS,
    "ReturnWorkflow": ORDERS,
    "LegacyOrderWorkflow": ORDERS,
    "PayoutAccountWorkflow": PAYMENTS,
    "OnboardingLinkWorkflow": PAYMENTS,
    "ReconciliationWorkflow": RECONCILIATION,
    "DailyReconciliationWorkflow": RECONCILIATION,
    "OrderMoneyWorkflow": RECONCILIATION,
    "DisputeWorkflow": TRUST,
    "ReviewWorkflow": TRUST,
    "RevealDueReviewsWorkflow": TRUST,
    "NotificationWorkflow": NOTIFICATIONS,
}


def _owner_class(method: Callable[..., Any]) -> str:
    """`PaymentActivities.charge` (or a bound `payments.charge`) -> "PaymentActivities"."""
    return method.__qualname__.split(".", 1)[0]


def activity_owner(activity: Callable[..., Any]) -> str:
    return ACTIVITY_OWNERS[_owner_class(activity)]


def workflow_owner(workflow_class_or_run: Any) -> str:
    """The owner of a workflow class, or of the workflow of a run method (`DisputeWorkflow.run`)."""
    if isinstance(workflow_class_or_run, type):
        return WORKFLOW_OWNERS[workflow_class_or_run.__name__]
    return WORKFLOW_OWNERS[_owner_class(workflow_class_or_run)]


def queue_of(context: str) -> str:
    """In workflow code: the task queue of `context` in the family of the queue this run is on."""
    return task_queue(context, workflow.info().task_queue)


def execute_activity(activity: Callable[..., Awaitable[T]], *arg: Any, **options: Any) -> Awaitable[T]:
    """`workflow.execute_activity_method` (same arguments: the activity, its argument if any, the options)
    scheduled on the task queue of the activity's owner."""
    return workflow.execute_activity_method(
        activity, *arg, task_queue=queue_of(activity_owner(activity)), **options
    )
