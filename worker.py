"""The worker process: runs every workflow and activity of the task queue, and keeps the schedules in place."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.disputes import DisputeActivities
from activities.metrics import ORDER_STATE_SECONDS, STATE_SECONDS_BUCKETS
from activities.notifications import NotificationActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities, make_stripe_client
from activities.reconciliation import ReconciliationActivities
from activities.trust import TrustActivities
from bazaar.settings import Settings
from bazaar.telemetry import configure_logging, instrument_http_clients, setup_tracing
from bazaar.temporal import connect
from workflows.dispute import DisputeWorkflow
from workflows.legacy_order import LegacyOrderWorkflow
from workflows.notification import NotificationWorkflow
from workflows.order import OrderWorkflow
from workflows.payout_account import OnboardingLinkWorkflow, PayoutAccountWorkflow
from workflows.reconciliation import (
    SCHEDULE_ID,
    DailyReconciliationWorkflow,
    OrderMoneyWorkflow,
    ReconciliationWorkflow,
)
from workflows.reviews import REVEAL_SCHEDULE_ID, RevealDueReviewsWorkflow, ReviewWorkflow

WORKFLOWS = [
    OrderWorkflow,
    LegacyOrderWorkflow,  # orders started before the lean order path (type `OrderWorkflow`)
    PayoutAccountWorkflow,
    OnboardingLinkWorkflow,
    ReconciliationWorkflow,
    DailyReconciliationWorkflow,
    OrderMoneyWorkflow,
    NotificationWorkflow,
    ReviewWorkflow,
    RevealDueReviewsWorkflow,
    DisputeWorkflow,
]


def trust_activities(notifications: NotificationActivities) -> list[Callable[..., Any]]:
    """Reviews, reputation, disputes and notifications."""
    trust, disputes = TrustActivities(), DisputeActivities()
    return [
        trust.open_review_window,
        trust.reveal_reviews,
        trust.reveal_due_reviews,
        trust.record_order_outcome,
        disputes.open_dispute_case,
        disputes.append_dispute_thread,
        disputes.set_dispute_status,
        notifications.prepare_notifications,
        notifications.deliver_notification,
        notifications.dead_letter_notification,
    ]


def activities_for(
    orders: OrderActivities,
    payments: PaymentActivities,
    reconciliation: ReconciliationActivities | None = None,
) -> list[Callable[..., Any]]:
    found: list[Callable[..., Any]] = [
        orders.reserve_stock,
        orders.release_stock,
        orders.record_order_state,
        orders.save_transition,
        orders.report_attention,
        orders.load_order,
        payments.charge,
        payments.refund,
        payments.release_escrow,
        payments.transfer,
        payments.reverse_transfer,
        payments.reverse_release,
        payments.record_chargeback,
        payments.create_payout_account,
        payments.create_onboarding_link,
    ]
    if reconciliation is not None:
        found += [reconciliation.reconcile, reconciliation.order_money]
    return found


def reconciliation_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DailyReconciliationWorkflow.run,
            id="reconciliation-daily",  # Temporal appends the scheduled time: one run per day
            task_queue=settings.temporal_task_queue,
        ),
        spec=ScheduleSpec(cron_expressions=[settings.reconciliation_cron]),
        # A day missed while Temporal was down still runs when it is back (within a day); never two at once.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


def review_sweep_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RevealDueReviewsWorkflow.run, id="reveal-due-reviews", task_queue=settings.temporal_task_queue
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.review_sweep_seconds))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the schedules, or bring existing ones in line with the settings (every worker start;
    idempotent, so any number of workers may race on it)."""
    for schedule_id, schedule in (
        (SCHEDULE_ID, reconciliation_schedule(settings)),
        (REVEAL_SCHEDULE_ID, review_sweep_schedule(settings)),
    ):
        try:
            await client.create_schedule(schedule_id, schedule)
            logging.info("created schedule %s", schedule_id)
        except ScheduleAlreadyRunningError:
            await client.get_schedule_handle(schedule_id).update(
                lambda _, wanted=schedule: ScheduleUpdate(schedule=wanted)  # type: ignore[misc]
            )


def runtime_for(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting metrics to Prometheus, when an address is configured: the SDK's (task
    latencies and schedule-to-start in seconds, slots, polls, failures) and ours (`activities.metrics`)."""
    if not settings.worker_metrics_bind_address:
        return None
    prometheus = PrometheusConfig(
        bind_address=settings.worker_metrics_bind_address,
        durations_as_seconds=True,
        histogram_bucket_overrides={ORDER_STATE_SECONDS: list(STATE_SECONDS_BUCKETS)},
    )
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


# Workflow code is imported once and shared by every run (each run still gets the sandbox's runtime checks
# against non-deterministic calls): re-importing the workflow modules per run cost most of the worker's memory
# per open order and CPU per new order. Safe because our workflow modules do nothing at import but define
# (docs/workflow-versioning.md, "Determinism").
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
)


async def main() -> None:
    from bazaar.settings import get_settings

    configure_logging()  # log lines carry the trace id of the request that caused them
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    setup_tracing("worker", settings)  # workflow, activity, SQL and Stripe spans (bazaar/telemetry.py)
    instrument_http_clients()
    client = await connect(settings, runtime_for(settings))
    stripe_client = make_stripe_client(settings)  # one connection pool for payments and reconciliation
    await ensure_schedules(client, settings)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        max_cached_workflows=settings.worker_cached_workflows,
        activities=[
            *activities_for(
                OrderActivities(settings),
                PaymentActivities(stripe_client),
                ReconciliationActivities(stripe_client),
            ),
            *trust_activities(NotificationActivities(settings)),
        ],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        logging.info("worker polling task queue %s", settings.temporal_task_queue)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
