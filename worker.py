"""The worker process: runs the workflows and activities of the task queues it is given, and keeps their schedules.

`python worker.py` serves every context's queue (one `Worker` per queue on one client: what `make run` and the tests
run); `python worker.py --queues payments` (or `orders,trust`, ...) serves only those, so each context's worker
can be started, scaled and stopped alone (docs/architecture.md, "Task queues"; docs/production.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Collection, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import uvloop
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
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.checkout import CheckoutActivities
from activities.disputes import DisputeActivities
from activities.metrics import ORDER_STATE_SECONDS, STATE_SECONDS_BUCKETS
from activities.notifications import NotificationActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities, make_stripe_client
from activities.reconciliation import ReconciliationActivities
from activities.returns import ReturnActivities
from activities.trust import TrustActivities
from bazaar.settings import Settings
from bazaar.telemetry import configure_logging, instrument_http_clients, setup_tracing
from bazaar.temporal import CONTEXTS, ORDERS, PAYMENTS, RECONCILIATION, TRUST, connect, task_queue
from workflows.checkout import CheckoutWorkflow
from workflows.dispute import DisputeWorkflow
from workflows.legacy_order import LegacyOrderWorkflow
from workflows.notification import NotificationWorkflow
from workflows.order import OrderWorkflow
from workflows.payout_account import OnboardingLinkWorkflow, PayoutAccountWorkflow
from workflows.queues import activity_owner, workflow_owner
from workflows.reconciliation import (
    SCHEDULE_ID,
    DailyReconciliationWorkflow,
    OrderMoneyWorkflow,
    ReconciliationWorkflow,
)
from workflows.returns import ReturnWorkflow
from workflows.reviews import REVEAL_SCHEDULE_ID, RevealDueReviewsWorkflow, ReviewWorkflow

WORKFLOWS = [
    OrderWorkflow,
    CheckoutWorkflow,
    ReturnWorkflow,
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
    payments: PaymentActivities | None,
    reconciliation: ReconciliationActivities | None = None,
) -> list[Callable[..., Any]]:
    checkout, returns = CheckoutActivities(), ReturnActivities(orders.settings)
    found: list[Callable[..., Any]] = [
        orders.reserve_stock,
        orders.release_stock,
        orders.record_order_state,
        orders.save_transition,
        orders.claim_refund_lines,
        orders.report_attention,
        orders.load_order,
        checkout.reserve_checkout,
        checkout.settle_checkout,
        returns.open_return,
        returns.save_return,
        returns.refund_return,
        returns.refundable,
    ]
    if payments is not None:
        found += [
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


# Local activities run in the worker of the workflow that runs them (Temporal gives them no task queue), so that
# worker registers them too: the order runs its database steps (its own) and its provider calls on an Update's
# path (refund, transfer, transfer reversal: local first, `workflows/order_steps.py`) in the orders worker.
LOCAL_ACTIVITY_OWNERS: dict[str, frozenset[str]] = {ORDERS: frozenset({PAYMENTS})}
# The orders queue (TEMPORAL_TASK_QUEUE) is the one every workflow and activity ran on before the contexts got
# queues of their own. A run keeps its queue for life (dispute cases and review rounds live for days) and a task
# scheduled before a deploy is delivered where it was scheduled, so the orders worker keeps every type
# registered: runs started there finish there, their new activities and children go to the owners' queues.
PRE_SPLIT_QUEUE = ORDERS


def workflows_for(contexts: Collection[str]) -> list[type]:
    """The workflow types a worker of `contexts` registers: their own (every type on the orders queue)."""
    if PRE_SPLIT_QUEUE in contexts:
        return list(WORKFLOWS)
    return [w for w in WORKFLOWS if workflow_owner(w) in contexts]


def activities_serving(
    contexts: Collection[str], activities: Sequence[Callable[..., Any]]
) -> list[Callable[..., Any]]:
    """Of `activities` (every activity, bound), those a worker of `contexts` registers: their own, and the
    local activities of their workflows (every one on the orders queue)."""
    if PRE_SPLIT_QUEUE in contexts:
        return list(activities)
    owners = set(contexts).union(*(LOCAL_ACTIVITY_OWNERS.get(c, frozenset()) for c in contexts))
    return [a for a in activities if activity_owner(a) in owners]


def reconciliation_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DailyReconciliationWorkflow.run,
            id="reconciliation-daily",  # Temporal appends the scheduled time: one run per day
            task_queue=task_queue(RECONCILIATION, settings.temporal_task_queue),
        ),
        spec=ScheduleSpec(cron_expressions=[settings.reconciliation_cron]),
        # A day missed while Temporal was down still runs when it is back (within a day); never two at once.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


def review_sweep_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RevealDueReviewsWorkflow.run,
            id="reveal-due-reviews",
            task_queue=task_queue(TRUST, settings.temporal_task_queue),
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.review_sweep_seconds))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, settings: Settings, contexts: Collection[str] = CONTEXTS) -> None:
    """Create the schedules of the workflows `contexts` own, or bring existing ones in line with the settings
    (every start of such a worker; idempotent, so any number of workers may race on it). Only the owner's
    workers keep a schedule, so a worker without the schedule's settings never resets it to the defaults."""
    owned = [
        (schedule_id, make(settings))
        for context, schedule_id, make in (
            (RECONCILIATION, SCHEDULE_ID, reconciliation_schedule),
            (TRUST, REVEAL_SCHEDULE_ID, review_sweep_schedule),
        )
        if context in contexts
    ]
    for schedule_id, schedule in owned:
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


# Workflows run unsandboxed. Temporal's sandbox re-imports the workflow modules for every run (most of the
# worker's memory per open order and CPU per new order), so this worker passed every module through it: then the
# sandbox checked nothing in our modules (their own imports, `datetime` included, are the real ones: a clock read
# in a workflow went through, tests/workflows/test_determinism.py) and still cost 3-5 ms an action, entering it on
# every activation and for every payload (docs/benchmarks.md, twelfth session). Determinism is checked where it
# can be: the workflow tests' workers run Temporal's strict sandbox (the SDK's default runner, which imports our
# modules afresh and refuses a clock, randomness or I/O), a static check reads every workflow module, and every
# stored history replays (docs/workflow-versioning.md, "Determinism").
WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()


def queues_served(settings: Settings, contexts: Collection[str]) -> dict[str, list[str]]:
    """Task queue -> the contexts it serves, for a worker of `contexts`: one queue per context, or one queue
    for all of them in single-queue mode (a TEMPORAL_TASK_QUEUE not named `<stem>-orders`, bazaar.temporal)."""
    queues: dict[str, list[str]] = {}
    for context in CONTEXTS:
        if context in contexts:
            queues.setdefault(task_queue(context, settings.temporal_task_queue), []).append(context)
    return queues


def all_activities(settings: Settings, contexts: Collection[str]) -> list[Callable[..., Any]]:
    """Every activity a worker of `contexts` may register, bound. The provider's client (it needs the Stripe
    key) only where provider calls run: the payments queue, and the orders worker's local-first calls."""
    payments = reconciliation = None
    if {ORDERS, PAYMENTS} & set(contexts):
        stripe_client = make_stripe_client(settings)  # one connection pool for payments and reconciliation
        payments = PaymentActivities(stripe_client, settings.payment_local_requests_per_second)
        reconciliation = ReconciliationActivities(stripe_client)
    return [
        *activities_for(OrderActivities(settings), payments, reconciliation),
        *trust_activities(NotificationActivities(settings)),
    ]


def make_workers(client: Client, settings: Settings, contexts: Collection[str]) -> list[Worker]:
    """One `Worker` per task queue of `contexts`, all on `client`. The payments queue's obeys its share of the
    provider's request limit (`Settings.payment_queue_requests_per_second`): the server hands out at most that many
    of its activity tasks per second, whatever the number of workers (in single-queue mode: every activity of the
    one queue). The local-first calls spend their own share (`activities.provider_budget.LocalProviderBudget`)."""
    activities = all_activities(settings, contexts)
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=workflows_for(served),
            activities=activities_serving(served, activities),
            workflow_runner=WORKFLOW_RUNNER,
            max_cached_workflows=settings.worker_cached_workflows,
            max_task_queue_activities_per_second=settings.payment_queue_requests_per_second
            if PAYMENTS in served
            else None,
        )
        for queue, served in queues_served(settings, contexts).items()
    ]


def parse_queues(text: str) -> list[str]:
    """`orders,payments` -> the contexts named (`all`: every one)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(CONTEXTS)
    unknown = [name for name in names if name not in CONTEXTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown queue {', '.join(unknown) or text!r}: name some of {', '.join(CONTEXTS)} (or all)"
        )
    return [context for context in CONTEXTS if context in names]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--queues",
        type=parse_queues,
        default=list(CONTEXTS),
        help=f"comma-separated contexts whose task queues this process serves: {', '.join(CONTEXTS)} "
        "(default: all)",
    )
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> None:
    from bazaar.settings import get_settings

    contexts: list[str] = parse_args(argv).queues
    configure_logging()  # log lines carry the trace id of the request that caused them
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    setup_tracing("worker", settings)  # workflow, activity, SQL and Stripe spans (bazaar/telemetry.py)
    instrument_http_clients()
    client = await connect(settings, runtime_for(settings))
    await ensure_schedules(client, settings, contexts)
    workers = make_workers(client, settings, contexts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        for queue, served in queues_served(settings, contexts).items():
            logging.info("worker polling task queue %s (%s)", queue, ", ".join(served))
        await stop.wait()


if __name__ == "__main__":
    # uvloop: an order action's round trip through the worker is about a fifth shorter than on asyncio's loop
    # (docs/benchmarks.md, tenth session).
    uvloop.run(main())
