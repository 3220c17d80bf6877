"""Bazaar in Temporal: the client (configured once for API, worker and CLI) and the names Bazaar gives
things there: task queues, workflow ids and search attributes. Every place that builds or reads one uses these."""

from __future__ import annotations

import functools
from typing import Any

import opentelemetry.trace
import temporalio.api.common.v1
import temporalio.worker
import temporalio.workflow
from pydantic import TypeAdapter
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.contrib.opentelemetry._context import attached_context
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.runtime import Runtime

from bazaar.settings import Settings
from bazaar.telemetry import recording

# Custom search attributes of the order workflows (name -> Temporal type): the one list that devstack
# registers on every embedded server, deploy/temporal/register-search-attributes.sh registers in production
# (a test compares the two), and bazaar.orders.types turns into typed keys.
ORDER_SEARCH_ATTRIBUTES: dict[str, str] = {
    "OrderStatus": "Keyword",
    "BuyerId": "Keyword",
    "SellerId": "Keyword",
    "ListingId": "Keyword",
    "OrderAmount": "Int",
    "PaymentState": "Keyword",
    "NeedsAttention": "Bool",
}


# The bounded contexts, each with a task queue of its own (docs/architecture.md, "Task queues"): every workflow
# runs on, and every normal activity is scheduled on, its owner's queue.
ORDERS = "orders"
PAYMENTS = "payments"  # every call to the payment provider
NOTIFICATIONS = "notifications"
TRUST = "trust"
RECONCILIATION = "reconciliation"
CONTEXTS: tuple[str, ...] = (ORDERS, PAYMENTS, NOTIFICATIONS, TRUST, RECONCILIATION)


@functools.lru_cache(maxsize=512)
def _adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


class _PydanticJSON(PydanticJSONPlainPayloadConverter):
    """The SDK's pydantic JSON converter with one cache of type adapters for the process: the worker makes a new
    payload converter for every workflow activation, and the stock converter's cache went with it (each
    Update rebuilt the schemas of its payloads' dataclasses)."""

    def from_payload(self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None) -> Any:
        hint = Any if type_hint is None else type_hint
        try:
            adapter = _adapter(hint)
        except TypeError:  # an unhashable hint (e.g. a parametrised Annotated): built for this call
            adapter = TypeAdapter(hint)
        return adapter.validate_json(payload.data)


_JSON = _PydanticJSON()


class PayloadConverter(CompositePayloadConverter):
    """The SDK's default payload converters, JSON through pydantic (`_PydanticJSON`)."""

    def __init__(self) -> None:
        super().__init__(
            *(
                _JSON if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


# Payloads (our dataclasses) as JSON through pydantic's compiled (de)serializers: the SDK's default converter
# resolves each dataclass's type hints on every call, which inside the workflow sandbox (it wraps `isinstance`)
# cost milliseconds of every Update's activation. The JSON holds the same fields and values, so what either
# converter wrote the other reads (tests/bazaar/test_temporal.py; test_replay.py replays older histories).
DATA_CONVERTER = DataConverter(payload_converter_class=PayloadConverter)


def task_queue(context: str, queue: str) -> str:
    """The task queue of `context` in the family `queue` belongs to.

    `queue` is any queue of the family: the setting `TEMPORAL_TASK_QUEUE` (the orders queue, `bazaar-orders`)
    where a workflow is started, or `workflow.info().task_queue` inside a workflow (which must never read the
    settings). A queue named `<stem>-<context>` belongs to the family `<stem>-orders`, `<stem>-payments`, ...;
    any other name (a test's `test-<uuid>`) is *single-queue mode*: that one queue serves every context."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r} (one of {', '.join(CONTEXTS)})")
    for member in CONTEXTS:
        stem = queue.removesuffix(f"-{member}")
        if stem != queue and stem:
            return f"{stem}-{context}"
    return queue


ORDER_WORKFLOW_PREFIX = "order-"


def order_workflow_id(order_id: str) -> str:
    """The order's workflow, also the `transfer_group` of its money at the provider."""
    return f"{ORDER_WORKFLOW_PREFIX}{order_id}"


def order_id_from_workflow_id(workflow_id: str) -> str:
    return workflow_id.removeprefix(ORDER_WORKFLOW_PREFIX)


def checkout_workflow_id(checkout_id: str) -> str:
    """The checkout's workflow, also the `transfer_group` of its one charge and its orders' payouts."""
    return f"checkout-{checkout_id}"


def return_workflow_id(return_id: str) -> str:
    return f"return-{return_id}"


def dispute_workflow_id(order_id: str) -> str:
    return f"dispute-{order_id}"


def reviews_workflow_id(order_id: str) -> str:
    """The review round of an order completed before the lean order path (legacy)."""
    return f"reviews-{order_id}"


def notify_workflow_id(event_key: str) -> str:
    """A notification workflow (legacy: events before the outbox)."""
    return f"notify-{event_key}"


def payout_account_workflow_id(user_id: str) -> str:
    return f"payout-account-{user_id}"


def money_workflow_id(order_id: str) -> str:
    """An order's money statement, read live from the provider (`OrderMoneyWorkflow`)."""
    return f"money-{order_id}"


# `_completed_span`'s outbound inputs other than a command's headers (Nexus): always the SDK's way.
_OTHER_OUTBOUNDS = ("add_to_outbound_str", "add_to_outbound_model")


class _UpdateTracedInbound(TracingWorkflowInboundInterceptor):
    """The SDK's workflow tracing, except that an Update's work continues the trace of the request that sent it:
    its handler's span, the activities it runs and what they do (the SQL, the provider call, the mail it queues),
    so an action's `X-Trace-Id` leads to all of it. The SDK parents an Update's spans on the workflow's start
    and only links the caller. Replay-safe like the SDK's: spans are made only outside replay, and the context
    only changes the headers of what the handler starts, which replay does not compare.

    While this process records no spans (`bazaar.telemetry.recording`: no exporter), the workflow makes none:
    what it starts still carries the current trace in its headers (the activity's log lines and the mail it
    queues keep the request's id), but the SDK's per-span work (a span made and ended through the workflow's
    extern call, its context serialized again, the workflow's start context rebuilt for every validator) is
    not paid on every Update's activation (measured: docs/benchmarks.md, twelfth session)."""

    def handle_update_validator(self, input: temporalio.worker.HandleUpdateInput) -> None:
        if recording():
            super().handle_update_validator(input)
        else:
            temporalio.worker.WorkflowInboundInterceptor.handle_update_validator(self, input)

    def _completed_span(self, span_name: str, *, add_to_outbound: Any = None, **options: Any) -> None:
        if recording() or any(options.get(key) is not None for key in _OTHER_OUTBOUNDS):
            super()._completed_span(span_name, add_to_outbound=add_to_outbound, **options)
        elif add_to_outbound is not None and not temporalio.workflow.unsafe.is_replaying():
            add_to_outbound.headers = self._context_to_headers(add_to_outbound.headers)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        header = input.headers.get(self.header_key)
        if header is None:
            return await super().handle_update_handler(input)
        carrier = self.payload_converter.from_payloads([header])[0]
        context = self._set_on_context(self.text_map_propagator.extract(carrier))
        with attached_context(context):
            self._completed_span(f"HandleUpdate:{input.update}", kind=opentelemetry.trace.SpanKind.SERVER)
            # The interceptor chain past the SDK's tracing (which would put it back under the start's trace).
            return await temporalio.worker.WorkflowInboundInterceptor.handle_update_handler(self, input)


class Tracing(TracingInterceptor):
    """The SDK's TracingInterceptor with `_UpdateTracedInbound` in workflows."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the externs the workflow side calls
        return _UpdateTracedInbound


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """`runtime`: e.g. the worker's, exporting SDK metrics to Prometheus.

    The tracing interceptor carries the caller's trace (an API request's) in the headers of every start,
    Update, Signal and Query, and a worker made from this client continues it in the workflow and its
    activities (replay-safe: workflow spans are made only outside replay). See bazaar/telemetry.py."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        runtime=runtime,
        interceptors=[Tracing()],
        data_converter=DATA_CONVERTER,
    )
