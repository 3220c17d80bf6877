"""Prometheus metrics. Business counts are read from PostgreSQL at scrape time, so they are true across
every process (the worker moves money, the API serves reads); latencies are measured in this process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.models import Listing, Order, Payment
from search_sync.sync import outbox_backlog

REGISTRY = CollectorRegistry()
LISTINGS = Gauge("bazaar_listings", "Listings by status", ["status"], registry=REGISTRY)
ORDERS = Gauge("bazaar_orders_created", "Orders created, by current status", ["status"], registry=REGISTRY)
PAYMENTS = Gauge(
    "bazaar_payments", "Provider money calls by kind and outcome", ["kind", "outcome"], registry=REGISTRY
)
OUTBOX_ROWS = Gauge(
    "bazaar_search_outbox_rows", "Listing changes not yet in the search index", registry=REGISTRY
)
OUTBOX_AGE = Gauge(
    "bazaar_search_outbox_oldest_age_seconds", "Age of the oldest unsynced listing change", registry=REGISTRY
)
SEARCH_LATENCY = Histogram(
    "bazaar_search_latency_seconds",
    "Search endpoint latency",
    ["backend"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


async def render(session: AsyncSession) -> bytes:
    for gauge in (LISTINGS, ORDERS, PAYMENTS):
        gauge.clear()
    for status, count in (
        await session.execute(select(Listing.status, func.count()).group_by(Listing.status))
    ).all():
        LISTINGS.labels(status.value).set(count)
    for order_status, count in (
        await session.execute(select(Order.status, func.count()).group_by(Order.status))
    ).all():
        ORDERS.labels(order_status.value).set(count)
    payments = await session.execute(
        select(Payment.kind, Payment.outcome, func.count()).group_by(Payment.kind, Payment.outcome)
    )
    for kind, outcome, count in payments.all():
        PAYMENTS.labels(kind.value, outcome.value).set(count)
    rows, age = await outbox_backlog(session)
    OUTBOX_ROWS.set(rows)
    OUTBOX_AGE.set(age)
    return generate_latest(REGISTRY)
