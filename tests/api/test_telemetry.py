"""One request, one trace: the API's HTTP span, the Temporal Update-with-start, the order workflow, every activity
it ran, their SQL statements, the Stripe call and the email the order's transition queued all share the trace id
the response names (`X-Trace-Id`, and `error.trace_id` in error bodies). A search's trace holds its Meilisearch
call. The request metrics count by route template (never an id).

In process, on the real services of `infra` (PostgreSQL, Temporal dev server, Stripe sandbox, Meilisearch, SMTP
sink): the app from `create_app()` (with its lifespan), a worker on a task queue of its own made like
`worker.py`'s, and the notification sender, all exporting to one in-memory span exporter. The database is this
module's own (`outbox_url`), so the test stack's sender, if it runs, cannot deliver our mail first.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from activities.notifications import NotificationActivities, NotificationSender
from activities.orders import OrderActivities
from activities.payments import PaymentActivities, make_stripe_client
from api.app import create_app
from api.telemetry import HTTP_DURATION
from bazaar import db, telemetry
from bazaar.settings import get_settings
from bazaar.temporal import connect
from tests.support.http import listing_body
from worker import WORKFLOW_RUNNER, WORKFLOWS, activities_for, trust_activities

pytestmark = pytest.mark.integration

PASSWORD = "telemetry-password-1"


@dataclass
class Traced:
    api: httpx.AsyncClient
    spans: InMemorySpanExporter
    sender: NotificationSender
    temporal: Client

    def trace(self, trace_id: str) -> list[ReadableSpan]:
        return [
            span
            for span in self.spans.get_finished_spans()
            if span.context is not None and f"{span.context.trace_id:032x}" == trace_id
        ]


@pytest.fixture(scope="module")
async def traced(outbox_url: str) -> AsyncIterator[Traced]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "DATABASE_URL": outbox_url,
            "TEMPORAL_TASK_QUEUE": f"telemetry-{uuid.uuid4().hex[:8]}",
            "ORDER_WAIT_SECONDS": "20",
        }
    )
    for cached in (get_settings, db.get_engine, db.get_sessionmaker):
        cached.cache_clear()
    settings = get_settings()
    app = create_app()  # installs this process's tracer provider (a first call) and the API's instrumentation
    exporter = InMemorySpanExporter()
    telemetry.add_span_processor(SimpleSpanProcessor(exporter))
    client = await connect(settings)
    stripe_client = make_stripe_client(settings)
    worker = Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            *activities_for(
                OrderActivities(settings),
                PaymentActivities(stripe_client, settings.payment_local_requests_per_second),
            ),
            *trust_activities(NotificationActivities(settings)),
        ],
    )
    sender = NotificationSender(settings)
    try:
        async with (
            worker,
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=30
            ) as api,
        ):
            yield Traced(api, exporter, sender, client)
    finally:
        await sender.engine.dispose()
        await db.get_engine().dispose()
        telemetry.stop_recording()
        HTTPXClientInstrumentor().uninstrument()
        os.environ.clear()
        os.environ.update(saved)
        for cached in (get_settings, db.get_engine, db.get_sessionmaker):
            cached.cache_clear()


async def _user(api: httpx.AsyncClient, role: str) -> dict[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    created = await api.post(
        "/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": role, "roles": [role]},
    )
    assert created.status_code == 202, created.text
    token = await api.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _tree_problems(spans: list[ReadableSpan], root_name: str) -> list[str]:
    """One tree: a single root (the HTTP span), every other span's parent in the trace."""
    ids = {span.context.span_id for span in spans if span.context is not None}
    roots = [span.name for span in spans if span.parent is None or span.parent.span_id not in ids]
    return [] if roots == [root_name] else [f"roots {roots}, expected only {root_name!r}"]


async def _activity_types(temporal: Client, workflow_id: str) -> set[str]:
    """Every activity the workflow ran (scheduled ones and local ones, which history records as markers)."""
    found: set[str] = set()
    async for event in temporal.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            found.add(event.activity_task_scheduled_event_attributes.activity_type.name)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "data" in details:
                data = temporal.data_converter.payload_converter.from_payloads(details["data"].payloads)[0]
                found.add(data["activity_type"])
    return found


async def test_one_order_request_is_one_trace_through_workflow_activities_and_providers(
    traced: Traced,
) -> None:
    api = traced.api
    seller = await _user(api, "seller")
    payout = await api.post(
        "/v1/payout-account", json={"country": "DE", "default_currency": "EUR"}, headers=seller
    )
    assert payout.status_code == 201, payout.text
    listing = await api.post(
        "/v1/listings",
        json=listing_body(
            title=f"Traced road bike {uuid.uuid4().hex[:6]}", description="Carbon frame, 56 cm"
        ),
        headers=seller,
    )
    assert listing.status_code == 201, listing.text
    published = await api.post(f"/v1/listings/{listing.json()['id']}/publish", headers=seller)
    assert published.status_code == 200, published.text
    buyer = await _user(api, "buyer")
    while await traced.sender.deliver_next() is not None:  # the sign-up mails: not this request's
        pass

    placed = await api.post(
        "/v1/orders",
        json={"listing_id": listing.json()["id"], "payment_method": "pm_card_visa"},
        headers={**buyer, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "paid", placed.text
    trace_id = placed.headers["x-trace-id"]
    delivered = 0
    while (outcome := await traced.sender.deliver_next()) is not None:  # the "order paid" mail to the seller
        assert outcome.status == "sent", outcome
        delivered += 1
    assert delivered >= 1

    spans = traced.trace(trace_id)
    names = [span.name for span in spans]
    assert "POST /v1/orders" in names, names
    assert _tree_problems(spans, "POST /v1/orders") == []
    assert "StartUpdateWithStartWorkflow:Order" in names, names
    assert "RunWorkflow:Order" in names, names
    assert "HandleUpdate:placement" in names, names
    ran = await _activity_types(traced.temporal, placed.json()["workflow_id"])
    assert {"reserve_stock", "charge", "save_transition"} <= ran, ran
    for activity in ran:  # every activity the workflow ran, scheduled and run under this trace
        assert f"StartActivity:{activity}" in names, (activity, names)
        assert f"RunActivity:{activity}" in names, (activity, names)

    by_id = {span.context.span_id: span for span in spans if span.context is not None}

    def under(span: ReadableSpan) -> list[str]:
        chain = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            chain.append(span.name)
        return chain

    def url(span: ReadableSpan) -> str:  # the httpx instrumentation's attribute (old or new conventions)
        attributes = span.attributes or {}
        return str(attributes.get("url.full") or attributes.get("http.url") or "")

    stripe = [s for s in spans if url(s).endswith("/v1/payment_intents")]
    assert len(stripe) == 1, names
    assert "RunActivity:charge" in under(stripe[0])
    sql = [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]
    assert {"RunActivity:reserve_stock", "RunActivity:save_transition"} <= {
        name for span in sql for name in under(span)[:1]
    }, [(s.name, under(s)[:1]) for s in sql]
    smtp = [s for s in spans if s.name == "smtp send"]
    assert len(smtp) == delivered, names
    assert "RunActivity:save_transition" in under(smtp[0])  # the transition that queued the mail

    # A later action is a trace of its own request, through the workflow's Update to what it did.
    accepted = await api.post(f"/v1/orders/{placed.json()['id']}/accept", headers=seller)
    assert accepted.status_code == 200, accepted.text
    while (outcome := await traced.sender.deliver_next()) is not None:  # "order accepted", to the buyer
        assert outcome.status == "sent", outcome
    action = traced.trace(accepted.headers["x-trace-id"])
    action_names = [span.name for span in action]
    assert {"HandleUpdate:accept", "RunActivity:save_transition", "smtp send"} <= set(action_names), (
        action_names
    )
    assert _tree_problems(action, "POST /v1/orders/{order_id}/accept") == [], action_names
    assert "HandleUpdate:accept" not in [s.name for s in traced.trace(trace_id)]  # not the first request's

    # The request metrics: one sample more for the route template, no id in any label.
    samples = {
        tuple(sorted(s.labels.items()))
        for metric in HTTP_DURATION.collect()
        for s in metric.samples
        if s.name.endswith("_count")
    }
    assert (("method", "POST"), ("route", "/v1/orders"), ("status", "201")) in samples
    assert not [labels for labels in samples if any(listing.json()["id"] in v for _, v in labels)]


async def test_errors_and_searches_carry_their_trace(traced: Traced) -> None:
    buyer = await _user(traced.api, "buyer")
    missing = await traced.api.post(f"/v1/orders/{uuid.uuid4()}/cancel", headers=buyer)
    assert missing.status_code == 404, missing.text
    trace_id = missing.headers["x-trace-id"]
    assert missing.json()["error"]["trace_id"] == trace_id
    assert [s.name for s in traced.trace(trace_id)][-1:] == ["POST /v1/orders/{order_id}/cancel"]

    found = await traced.api.get("/v1/search/listings", params={"q": "road bike"})
    assert found.status_code == 200, found.text
    names = [span.name for span in traced.trace(found.headers["x-trace-id"])]
    assert "GET /v1/search/listings" in names, names
    assert any(name.startswith("meilisearch POST /indexes/") for name in names), names
    # Another method on the search's path (answered by the app, not the search's fast path) is traced too.
    wrong = await traced.api.post("/v1/search/listings")
    assert wrong.status_code == 405, wrong.text
    assert wrong.json()["error"]["trace_id"] == wrong.headers["x-trace-id"]
    assert [s.name for s in traced.trace(wrong.headers["x-trace-id"])][-1:] == ["POST /v1/search/listings"]

    # Probes record no span, but their answers still name a trace id to quote (a fresh one each time).
    probes = [await traced.api.get(path) for path in ("/healthz", "/readyz", "/healthz")]
    ids = [probe.headers.get("x-trace-id") for probe in probes]
    assert all(i is not None and len(i) == 32 and int(i, 16) for i in ids) and len(set(ids)) == 3, ids
    assert all(traced.trace(i) == [] for i in ids if i is not None)
