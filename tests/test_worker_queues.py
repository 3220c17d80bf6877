"""Task queues per context (docs/architecture.md, "Task queues"): the queue rule, which context owns each workflow
and activity, what each context's worker registers and which schedules it keeps, the compose services that run
them, and why routing needed no patch: replay does not compare an activity's or a child's task queue.

No services: the processes themselves are started on the test stack in tests/devstack/test_worker_queues.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartActivityInput,
    StartChildWorkflowInput,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

import worker
from bazaar.settings import Settings
from bazaar.temporal import (
    CONTEXTS,
    DATA_CONVERTER,
    NOTIFICATIONS,
    ORDERS,
    PAYMENTS,
    RECONCILIATION,
    TRUST,
    task_queue,
)
from tests.support.compose import (
    SETTINGS_ENV_NAMES,
    WORKER_SERVICES,
    depends_on_of,
    environment_of,
    full_env,
    load_compose,
    resolved_app_env,
    services_of,
)
from workflows.queues import ACTIVITY_OWNERS, activity_owner, workflow_owner
from workflows.reconciliation import SCHEDULE_ID
from workflows.reviews import REVEAL_SCHEDULE_ID

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def settings(queue: str = "bazaar-orders") -> Settings:
    return Settings(_env_file=None, temporal_task_queue=queue, stripe_secret_key=SecretStr("sk_test_queues"))


def names(found: list[Callable[..., Any]]) -> set[str]:
    return {a.__name__ for a in found}


def type_names(found: list[type]) -> set[str]:
    return {getattr(w, "__temporal_workflow_definition").name for w in found}


ALL_ACTIVITIES = worker.all_activities(settings(), CONTEXTS)


# --- the rule ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", [f"bazaar-{context}" for context in CONTEXTS])
def test_any_queue_of_a_family_names_every_other(member: str) -> None:
    """The setting (the orders queue) where the API starts workflows, or the queue a workflow runs on: the same
    family either way."""
    assert [task_queue(context, member) for context in CONTEXTS] == [f"bazaar-{c}" for c in CONTEXTS]
    assert task_queue(PAYMENTS, "eu-west-bazaar-trust") == "eu-west-bazaar-payments"


@pytest.mark.parametrize(
    "queue",
    [
        "test-1e92511f-7671-4d5d-b92b-34aa541aaf43",
        "telemetry-0a1b2c3d",
        "reconcile-9f8e7d6c",
        "solo",
        "orders",
    ],
)
def test_any_other_name_is_one_queue_for_everything(queue: str) -> None:
    """What every test worker on a queue of its own relies on (tests/support/orders.py, workers.py, ...)."""
    assert {task_queue(context, queue) for context in CONTEXTS} == {queue}


def test_an_unknown_context_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown context"):
        task_queue("search", "bazaar-orders")


# --- owners ------------------------------------------------------------------------------------------------


OWNED_ACTIVITIES = {
    ORDERS: {
        "reserve_stock",
        "release_stock",
        "record_order_state",
        "save_transition",
        "claim_refund_lines",
        "report_attention",
        "load_order",
        "reserve_checkout",
        "settle_checkout",
        "open_return",
        "save_return",
        "refund_return",
        "refundable",
    },
    PAYMENTS: {
        "charge",
        "refund",
        "release_escrow",
        "transfer",
        "reverse_transfer",
        "reverse_release",
        "record_chargeback",
        "create_payout_account",
        "create_onboarding_link",
        "reconcile",  # reconciliation's provider reads: every provider call is on the payments queue
        "order_money",
    },
    TRUST: {
        "open_review_window",
        "reveal_reviews",
        "reveal_due_reviews",
        "record_order_outcome",
        "open_dispute_case",
        "append_dispute_thread",
        "set_dispute_status",
    },
    NOTIFICATIONS: {"prepare_notifications", "deliver_notification", "dead_letter_notification"},
    RECONCILIATION: set(),
}
OWNED_WORKFLOWS = {
    ORDERS: {"Order", "OrderWorkflow", "Checkout", "Return"},
    PAYMENTS: {"PayoutAccountWorkflow", "OnboardingLinkWorkflow"},
    TRUST: {"DisputeWorkflow", "ReviewWorkflow", "RevealDueReviewsWorkflow"},
    NOTIFICATIONS: {"NotificationWorkflow"},
    RECONCILIATION: {"ReconciliationWorkflow", "DailyReconciliationWorkflow", "OrderMoneyWorkflow"},
}


def test_every_workflow_and_activity_has_one_owner() -> None:
    assert {n for context in CONTEXTS for n in OWNED_ACTIVITIES[context]} == names(ALL_ACTIVITIES)
    for activity in ALL_ACTIVITIES:
        assert activity.__name__ in OWNED_ACTIVITIES[activity_owner(activity)], activity
    assert set(ACTIVITY_OWNERS.values()) <= set(CONTEXTS)
    assert {n for context in CONTEXTS for n in OWNED_WORKFLOWS[context]} == type_names(worker.WORKFLOWS)
    for defn in worker.WORKFLOWS:
        assert type_names([defn]) <= OWNED_WORKFLOWS[workflow_owner(defn)], defn
        assert workflow_owner(vars(defn)["run"]) == workflow_owner(defn)


@pytest.mark.parametrize("context", [c for c in CONTEXTS if c != ORDERS])
def test_a_contexts_worker_registers_its_own_workflows_and_activities(context: str) -> None:
    assert type_names(worker.workflows_for([context])) == OWNED_WORKFLOWS[context]
    assert names(worker.activities_serving([context], ALL_ACTIVITIES)) == OWNED_ACTIVITIES[context]


def test_the_orders_worker_registers_every_type_for_runs_started_before_the_split() -> None:
    """The orders queue is the one queue of before: runs started there (dispute cases, review rounds) keep it for
    life, and tasks scheduled there before a deploy are delivered there."""
    assert worker.workflows_for([ORDERS]) == worker.WORKFLOWS
    assert worker.activities_serving([ORDERS], ALL_ACTIVITIES) == ALL_ACTIVITIES


def _local_activities(path: Path) -> set[str]:
    found = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes", {})
        if marker.get("markerName") == "core_local_activity":
            [payload] = marker["details"]["data"]["payloads"]
            found.add(json.loads(base64.b64decode(payload["data"]))["activity_type"])
    return found


def _workflow_type(path: Path) -> str:
    first = json.loads(path.read_text())["events"][0]
    return str(first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def test_local_activities_are_registered_by_the_worker_of_the_workflow_that_runs_them() -> None:
    """Temporal gives a local activity no queue: it runs in the worker that runs the workflow. Every local activity
    in a recorded history is owned by that workflow's context or listed in `LOCAL_ACTIVITY_OWNERS` for it (the
    order's local-first provider calls), whatever the pre-split registrations."""
    by_type = {name: context for context, types in OWNED_WORKFLOWS.items() for name in types}
    by_name = {name: context for context, found in OWNED_ACTIVITIES.items() for name in found}
    seen: dict[str, set[str]] = {}
    for path in HISTORIES:
        seen.setdefault(by_type[_workflow_type(path)], set()).update(_local_activities(path))
    assert {"save_transition", "refund", "transfer"} <= seen[
        ORDERS
    ]  # the order's steps and local-first calls
    assert seen[TRUST]  # the dispute case's bounded steps
    for context, local in seen.items():
        allowed = {context, *worker.LOCAL_ACTIVITY_OWNERS.get(context, frozenset())}
        assert {by_name[name] for name in local} <= allowed, (context, local)


# --- the process -------------------------------------------------------------------------------------------


def test_queues_argument() -> None:
    assert worker.parse_args([]).queues == list(CONTEXTS)
    assert worker.parse_args(["--queues", "all"]).queues == list(CONTEXTS)
    assert worker.parse_args(["--queues", "payments"]).queues == [PAYMENTS]
    assert worker.parse_args(["--queues", "trust, orders"]).queues == [ORDERS, TRUST]
    for bad in ("search", "orders,nope", ","):
        with pytest.raises(SystemExit):
            worker.parse_args(["--queues", bad])


def test_one_worker_per_queue_or_one_for_everything() -> None:
    assert worker.queues_served(settings(), CONTEXTS) == {f"bazaar-{c}": [c] for c in CONTEXTS}
    assert worker.queues_served(settings(), [PAYMENTS]) == {"bazaar-payments": [PAYMENTS]}
    assert worker.queues_served(settings("eu-payments"), [TRUST, ORDERS]) == {
        "eu-orders": [ORDERS],
        "eu-trust": [TRUST],
    }
    assert worker.queues_served(settings("solo"), CONTEXTS) == {"solo": list(CONTEXTS)}


def test_the_provider_client_only_where_provider_calls_run() -> None:
    """A trust, notifications or reconciliation worker starts without the Stripe key (compose gives it none)."""
    keyless = Settings(_env_file=None, stripe_secret_key=None)
    for context in (TRUST, NOTIFICATIONS, RECONCILIATION):
        assert "charge" not in names(worker.all_activities(keyless, [context]))
    for context in (ORDERS, PAYMENTS):
        with pytest.raises(RuntimeError, match="STRIPE_SECRET_KEY is not set"):
            worker.all_activities(keyless, [context])


class _Schedules:
    def __init__(self) -> None:
        self.created: dict[str, Any] = {}

    async def create_schedule(self, schedule_id: str, schedule: Any) -> None:
        self.created[schedule_id] = schedule


@pytest.mark.parametrize(
    ("contexts", "expected"),
    [
        ([PAYMENTS], {}),
        ([ORDERS, NOTIFICATIONS], {}),
        ([TRUST], {REVEAL_SCHEDULE_ID: "bazaar-trust"}),
        ([RECONCILIATION], {SCHEDULE_ID: "bazaar-reconciliation"}),
        (list(CONTEXTS), {REVEAL_SCHEDULE_ID: "bazaar-trust", SCHEDULE_ID: "bazaar-reconciliation"}),
    ],
)
async def test_a_schedule_is_kept_by_its_owners_workers_and_starts_on_its_queue(
    contexts: list[str], expected: dict[str, str]
) -> None:
    schedules = _Schedules()
    await worker.ensure_schedules(schedules, settings(), contexts)  # type: ignore[arg-type]
    assert {k: s.action.task_queue for k, s in schedules.created.items()} == expected


# --- compose -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.mark.parametrize("service", sorted(WORKER_SERVICES))
def test_each_context_has_a_worker_service_with_replicas(compose: dict[str, Any], service: str) -> None:
    spec = services_of(compose)[service]
    api = services_of(compose)["api"]
    assert spec["command"] == WORKER_SERVICES[service]
    assert (spec["image"], spec["build"]) == (api["image"], api["build"])
    assert isinstance(spec["deploy"]["replicas"], int) and spec["deploy"]["replicas"] >= 1
    assert depends_on_of(spec) == depends_on_of(api)
    assert "profiles" not in spec and "env_file" not in spec
    env = environment_of(spec)
    assert set(env) <= SETTINGS_ENV_NAMES, set(env) - SETTINGS_ENV_NAMES
    # The same settings as the all-queues worker (of the same names and values), never more.
    assert env.items() <= environment_of(services_of(compose)["worker"]).items()
    resolved = resolved_app_env(compose, service, full_env())
    Settings(_env_file=None, **{k.lower(): v for k, v in resolved.items()})  # type: ignore[arg-type]


def test_the_all_queues_worker_runs_only_when_asked_for(compose: dict[str, Any]) -> None:
    spec = services_of(compose)["worker"]
    assert spec["command"] == ["python", "worker.py"] and spec["profiles"] == ["single-worker"]


def test_each_worker_gets_only_the_secrets_and_schedules_of_its_context(compose: dict[str, Any]) -> None:
    workers = ["worker", *WORKER_SERVICES]
    env = {service: set(environment_of(services_of(compose)[service])) for service in workers}

    def holders(name: str) -> set[str]:
        return {service for service in workers if name in env[service]}

    # The provider key: the payments queue and the orders worker (local-first calls, pre-split tasks).
    assert holders("STRIPE_SECRET_KEY") == {"worker", "worker-orders", "worker-payments"}
    # Mail of legacy notification workflows (and pre-split tasks on the orders queue).
    for name in ("SMTP_PASSWORD", "UNSUBSCRIBE_SECRET"):
        assert holders(name) == {"worker", "worker-orders", "worker-notifications"}, name
    for name in (
        "JWT_SECRET",
        "STRIPE_WEBHOOK_SECRET",
        "MEILI_MASTER_KEY",
        "MEILI_SEARCH_KEY",
        "METRICS_TOKEN",
    ):
        assert holders(name) == set(), name
    # A schedule's settings only where it is kept (another worker would reset it to the defaults).
    assert holders("REVIEW_SWEEP_SECONDS") == {"worker", "worker-trust"}
    assert holders("RECONCILIATION_CRON") == {"worker", "worker-reconciliation"}
    assert holders("PAYMENT_REQUESTS_PER_SECOND") == {"worker", "worker-payments"}
    # The local-first share: the orders workers spend it, the payments worker leaves it out of its queue's rate.
    assert holders("PAYMENT_LOCAL_REQUESTS_PER_SECOND") == {"worker", "worker-orders", "worker-payments"}
    assert holders("RECONCILIATION_SETTLE_SECONDS") == {"worker", "worker-orders", "worker-payments"}


def test_the_production_doc_names_each_worker_and_the_rate_limit() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "production.md").read_text(encoding="utf-8")
    for service, command in WORKER_SERVICES.items():
        assert re.search(rf"^\| `{service}` \| ours \| `{' '.join(command)}`", doc, re.M), service
    assert "PAYMENT_REQUESTS_PER_SECOND" in doc


# --- replay: routing changed no command that replay compares ---------------------------------------------------


class _Routes(Interceptor):
    """Records the task queue of every activity and child the workflow code schedules (replayed, unsandboxed)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (kind, type, task queue)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        seen = self.seen

        class Outbound(WorkflowOutboundInterceptor):
            def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
                seen.append(("activity", input.activity, str(input.task_queue)))
                return super().start_activity(input)

            async def start_child_workflow(
                self, input: StartChildWorkflowInput
            ) -> workflow.ChildWorkflowHandle[Any, Any]:
                seen.append(("child", input.workflow, str(input.task_queue)))
                return await super().start_child_workflow(input)

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound))

        return Inbound


def _rehomed(path: Path, queue: str) -> str:
    """The history as if recorded in production before the split: every task queue in it named `queue`."""
    data = json.loads(path.read_text())
    for event in data["events"]:
        for attributes in event.values():
            if isinstance(attributes, dict) and isinstance(attributes.get("taskQueue"), dict):
                attributes["taskQueue"]["name"] = queue
    return json.dumps(data)


async def test_histories_recorded_on_one_queue_replay_against_code_that_routes_to_the_owners(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every stored history, its queues renamed `bazaar-orders` (a production run from before the split), replays
    against the routing code, although that code now schedules the charge on `bazaar-payments`, starts dispute
    cases on `bazaar-trust`, ...: the recorded events keep `bazaar-orders`. So adding `task_queue=` needed no
    `workflow.patched` (docs/workflow-versioning.md). The Replayer runs workflows on a queue of its own
    (`replay-...`, single-queue mode): the code is shown `bazaar-orders`, as the orders worker replaying such a run
    after a deploy shows it."""
    real_info = workflow.info
    monkeypatch.setattr(
        workflow, "info", lambda: dataclasses.replace(real_info(), task_queue="bazaar-orders")
    )
    routes = _Routes()
    replayer = Replayer(
        workflows=worker.WORKFLOWS,
        interceptors=[routes],
        workflow_runner=UnsandboxedWorkflowRunner(),
        data_converter=DATA_CONVERTER,
    )
    for path in HISTORIES:
        history = WorkflowHistory.from_json(f"rehomed-{path.stem}", _rehomed(path, "bazaar-orders"))
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (path.stem, result.replay_failure)
    by_name = {name: context for context, found in OWNED_ACTIVITIES.items() for name in found}
    by_type = {name: context for context, types in OWNED_WORKFLOWS.items() for name in types}
    queues = set()
    for kind, name, queue in routes.seen:
        owner = by_name[name] if kind == "activity" else by_type[name]
        assert queue == f"bazaar-{owner}", (kind, name, queue)
        queues.add(queue)
    assert {"bazaar-payments", "bazaar-trust", "bazaar-notifications", "bazaar-orders"} <= queues
    # The same replay does compare what it should: the activity's type.
    renamed = json.loads(_rehomed(HISTORIES[0].with_name("lean_order_completed.json"), "bazaar-orders"))
    scheduled = [e for e in renamed["events"] if "activityTaskScheduledEventAttributes" in e]
    scheduled[0]["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "renamed"
    history = WorkflowHistory.from_json("renamed", json.dumps(renamed))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert "Nondeterminism" in str(result.replay_failure)
