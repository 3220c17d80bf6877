"""Deliver one business event's notifications, off the critical path of whatever caused it.

Started as an abandoned child (or on its own) with id `notify-<event key>`, so one event notifies once.
Each delivery retries with backoff; after the last attempt it lands in the dead-letter table, from where
operators replay it (the same workflow, given the notification ids).

Legacy: new code writes notifications into the outbox with the step that causes them. Only workflows started
before that start this one: orders on `OrderWorkflow` (workflows/legacy_order*.py), their review rounds, and
dispute cases without `BOUNDED_PATCH` (workflows/dispute.py). It stays registered, and their histories replay
against it, until none of those runs is left (docs/workflow-versioning.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.children import start_detached
from workflows.queues import execute_activity

with workflow.unsafe.imports_passed_through():
    from activities.notifications import DeadLetterRequest, NotificationActivities
    from bazaar.temporal import notify_workflow_id as notify_workflow_id
    from bazaar.trust.notifications import NotificationEvent


@dataclass
class NotifyRequest:
    event: NotificationEvent | None = None  # a new event, or
    notification_ids: list[int] = field(default_factory=list)  # deliveries to replay
    max_attempts: int = 6
    first_retry_seconds: float = 1.0


async def notify_in_background(event: NotificationEvent, max_attempts: int) -> None:
    """From another workflow: deliver the event's notifications in a child of their own, started once per
    event; the parent never waits for the mail server."""
    await start_detached(
        NotificationWorkflow.run,
        NotifyRequest(event=event, max_attempts=max_attempts),
        notify_workflow_id(event.event_key),
        once=True,
    )


@workflow.defn
class NotificationWorkflow:
    @workflow.run
    async def run(self, req: NotifyRequest) -> dict[int, str]:
        ids = list(req.notification_ids)
        if req.event is not None:
            ids += await execute_activity(
                NotificationActivities.prepare_notifications,
                req.event,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
        outcomes = await asyncio.gather(*(self._deliver(i, req) for i in ids))
        return dict(zip(ids, outcomes, strict=True))

    async def _deliver(self, notification_id: int, req: NotifyRequest) -> str:
        try:
            status: str = await execute_activity(
                NotificationActivities.deliver_notification,
                notification_id,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=req.first_retry_seconds),
                    backoff_coefficient=2.0,
                    maximum_attempts=req.max_attempts,
                ),
            )
            return status
        except ActivityError as failure:
            cause = failure.cause
            await execute_activity(
                NotificationActivities.dead_letter_notification,
                DeadLetterRequest(notification_id, str(cause or failure)),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            return "dead"
