"""Notification delivery: retries, then the dead-letter table; a replay delivers again."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notifications import DeadLetterRequest
from bazaar.trust.notifications import NotificationEvent
from workflows.notification import NotificationWorkflow, NotifyRequest


@dataclass
class FakeMail:
    failing: bool = False
    attempts: dict[int, int] = field(default_factory=dict)
    dead: list[DeadLetterRequest] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        mail = self

        @activity.defn(name="prepare_notifications")
        async def prepare(req: NotificationEvent) -> list[int]:
            return [1, 2] if req.recipient_ids else []

        @activity.defn(name="deliver_notification")
        async def deliver(notification_id: int) -> str:
            mail.attempts[notification_id] = mail.attempts.get(notification_id, 0) + 1
            if mail.failing and notification_id == 2:
                raise ConnectionRefusedError("SMTP server is down")
            return "sent"

        @activity.defn(name="dead_letter_notification")
        async def dead_letter(req: DeadLetterRequest) -> None:
            mail.dead.append(req)

        return [prepare, deliver, dead_letter]


async def run(env: WorkflowEnvironment, mail: FakeMail, request: NotifyRequest) -> dict[int, str]:
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=queue, workflows=[NotificationWorkflow], activities=mail.activities()
    ):
        result: dict[int, str] = await env.client.execute_workflow(
            NotificationWorkflow.run, request, id=f"notify-test-{uuid.uuid4()}", task_queue=queue
        )
        return {int(k): v for k, v in result.items()}


EVENT = NotificationEvent(event_key="order:1:paid", event_type="order_paid", recipient_ids=["u1"])


async def test_delivers_every_prepared_notification(workflow_env: WorkflowEnvironment) -> None:
    mail = FakeMail()
    assert await run(workflow_env, mail, NotifyRequest(event=EVENT)) == {1: "sent", 2: "sent"}
    assert mail.attempts == {1: 1, 2: 1}
    assert mail.dead == []


async def test_a_dead_smtp_server_ends_in_the_dead_letter_table(workflow_env: WorkflowEnvironment) -> None:
    mail = FakeMail(failing=True)
    outcome = await run(
        workflow_env, mail, NotifyRequest(event=EVENT, max_attempts=3, first_retry_seconds=0.05)
    )
    assert outcome == {1: "sent", 2: "dead"}
    assert mail.attempts[2] == 3
    assert [d.notification_id for d in mail.dead] == [2]
    assert "SMTP server is down" in mail.dead[0].error
    # Replay once the server is back: the same workflow delivers just that notification.
    mail.failing = False
    assert await run(workflow_env, mail, NotifyRequest(notification_ids=[2])) == {2: "sent"}
