"""An Update's work continues the trace of the request that sent it (`bazaar.temporal.Tracing`), whether this
process records spans or not: the activity the Update runs sees the request's trace id (its log lines and the
mail it queues carry it). With spans recorded, the workflow's spans are made too; without, none is made."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bazaar import telemetry
from bazaar.settings import get_settings
from bazaar.temporal import Tracing
from worker import WORKFLOW_RUNNER

pytestmark = pytest.mark.integration


@activity.defn
async def current_traceparent() -> str | None:
    return telemetry.traceparent()


@workflow.defn
class TracedUpdate:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update
    async def act(self) -> str | None:
        return await workflow.execute_local_activity(
            current_traceparent, start_to_close_timeout=timedelta(seconds=10)
        )

    @act.validator
    def _validate_act(self) -> None:
        pass

    @workflow.signal
    def finish(self) -> None:
        self.done = True


@pytest.fixture
def recording_state() -> Iterator[None]:
    """This process's tracer provider, and whether it records spans as it was before the test."""
    telemetry.setup_tracing("test", get_settings())
    assert isinstance(trace.get_tracer_provider(), TracerProvider)
    was = telemetry.recording()
    yield
    telemetry._STATE.switch.on = was


async def trace_of_update(env: WorkflowEnvironment) -> tuple[str, str | None]:
    """The request's trace id, and the `traceparent` the Update's local activity saw."""
    config = env.client.config()
    config["interceptors"] = [Tracing()]
    client = Client(**config)
    queue = f"tracing-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[TracedUpdate],
        activities=[current_traceparent],
        workflow_runner=WORKFLOW_RUNNER,
    ):
        handle = await client.start_workflow(TracedUpdate.run, id=f"traced-{uuid.uuid4()}", task_queue=queue)
        with trace.get_tracer("test").start_as_current_span("POST /v1/orders/{order_id}/accept") as request:
            seen = await handle.execute_update(TracedUpdate.act)
            request_trace = f"{request.get_span_context().trace_id:032x}"
        await handle.signal(TracedUpdate.finish)
        await handle.result()
    return request_trace, seen


@pytest.mark.usefixtures("recording_state")
async def test_without_recorded_spans_the_updates_activity_still_has_the_requests_trace(
    workflow_env: WorkflowEnvironment,
) -> None:
    telemetry.stop_recording()
    request_trace, seen = await trace_of_update(workflow_env)
    assert seen is not None and seen.split("-")[1] == request_trace


@pytest.mark.usefixtures("recording_state")
async def test_with_recorded_spans_the_update_and_its_activity_are_spans_of_the_request(
    workflow_env: WorkflowEnvironment,
) -> None:
    exporter = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exporter))
    request_trace, seen = await trace_of_update(workflow_env)
    assert seen is not None and seen.split("-")[1] == request_trace
    names = {
        span.name
        for span in exporter.get_finished_spans()
        if span.context is not None and f"{span.context.trace_id:032x}" == request_trace
    }
    assert {
        "HandleUpdate:act",
        "StartActivity:current_traceparent",
        "RunActivity:current_traceparent",
    } <= names
