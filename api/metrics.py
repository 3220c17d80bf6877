"""Prometheus metrics. Business counts are read from PostgreSQL at scrape time, so they are true across
every process (the worker moves money, the API serves reads); latencies are measured in this process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from bazaar.models import Listing, Order, Payment
from bazaar.orders.types import STUCK_ORDERS_QUERY
from bazaar.payments.discrepancies import open_counts
from bazaar.search.outbox import outbox_backlog
from bazaar.trust.models import DeadLetter, Notification
from bazaar.trust.notifications import PENDING

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
NOTIFICATIONS = Gauge(
    "bazaar_notifications",
    "Notification deliveries by channel and status (sent, pending, dead = failed after the last attempt)",
    ["channel", "status"],
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "bazaar_notification_dead_letters",
    "Dead-lettered notifications still unsent (list and replay: /v1/support/dead-letters)",
    registry=REGISTRY,
)
# Deliveries that reached an outcome, ever (counts read from the outbox; every API replica reports the same:
# aggregate with max across instances): the notification delivery SLO's events (docs/slo.md).
DELIVERIES = "bazaar_notification_deliveries"
NOTIFICATION_OVERDUE = Gauge(
    "bazaar_notification_outbox_overdue_seconds",
    "How long the longest-waiting due notification has been waiting for a sender (0: none due)",
    registry=REGISTRY,
)
ORDERS_NEEDING_ATTENTION = Gauge(
    "bazaar_orders_needing_attention",
    "Running orders a person must look at: a step failing past its bound, or a refused payout "
    "(support's queue: /v1/support/stuck-orders; counted in Temporal's visibility)",
    registry=REGISTRY,
)
RECONCILIATION_OPEN = Gauge(
    "bazaar_reconciliation_open_discrepancies",
    "Open reconciliation discrepancies by category and object type (support's list: "
    "/v1/support/reconciliation; 0 once resolved or acknowledged)",
    ["category", "object_type"],
    registry=REGISTRY,
)
SEARCH_LATENCY = Histogram(
    "bazaar_search_latency_seconds",
    "Search endpoint latency",
    ["backend"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

SEARCH_REQUESTS = Counter(
    "bazaar_search_requests",
    "Searches answered, by backend (postgres = degraded mode)",
    ["backend"],
    registry=REGISTRY,
)
# Fed by search_sync's NOTIFY after each batch: outbox row written -> Meilisearch task succeeded.
CHANGE_TO_SEARCHABLE = Histogram(
    "bazaar_search_change_to_searchable_seconds",
    "Listing change committed to searchable in Meilisearch (measured by search_sync on the database clock)",
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


class _LiveStateCollector(Collector):
    """Counters kept by in-process components (hot-listing cache, view counter, search circuit breaker)."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.views: Any = None
        self.breaker: Any = None
        self.deliveries: dict[tuple[str, str], float] = {}  # (channel, outcome) -> count, set by `render`

    def collect(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            DELIVERIES,
            "Notifications that reached an outcome, ever: sent, or dead_lettered (failed after the last attempt; "
            "counted once, even when replayed)",
            labels=["channel", "outcome"],
        )
        for (channel, outcome), count in sorted(self.deliveries.items()):
            deliveries.add_metric([channel, outcome], count)
        yield deliveries
        if self.cache is not None:
            requests = CounterMetricFamily(
                "bazaar_listing_cache_requests", "Hot-listing cache lookups", labels=["result"]
            )
            requests.add_metric(["hit"], self.cache.hits)
            requests.add_metric(["miss"], self.cache.misses)
            yield requests
            yield GaugeMetricFamily(
                "bazaar_listing_cache_hit_ratio",
                "Hot-listing cache hits / lookups",
                value=self.cache.hit_ratio,
            )
            yield GaugeMetricFamily("bazaar_listing_cache_entries", "Listings cached", value=len(self.cache))
        if self.views is not None:
            yield CounterMetricFamily(
                "bazaar_listing_views_flushed",
                "Listing views written to popularity",
                value=self.views.flushed,
            )
        if self.breaker is not None:
            yield GaugeMetricFamily(
                "bazaar_search_degraded",
                "1 while the search circuit breaker is open (searches answered from PostgreSQL)",
                value=1.0 if self.breaker.is_open else 0.0,
            )


LIVE = _LiveStateCollector()
REGISTRY.register(LIVE)


def observe_synced(payload: str) -> None:
    """A `search_synced` NOTIFY: {"ms": [latency per outbox row]}."""
    for ms in json.loads(payload).get("ms", []):
        CHANGE_TO_SEARCHABLE.observe(float(ms) / 1000)


async def render(session: AsyncSession, temporal: Client) -> bytes:
    for gauge in (LISTINGS, ORDERS, PAYMENTS, NOTIFICATIONS, RECONCILIATION_OPEN):
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
    deliveries = await session.execute(
        select(Notification.channel, Notification.status, func.count()).group_by(
            Notification.channel, Notification.status
        )
    )
    outcomes: dict[tuple[str, str], float] = {}
    for channel, delivery_status, count in deliveries.all():
        NOTIFICATIONS.labels(channel.value, delivery_status).set(count)
        if delivery_status == "sent":
            outcomes[(channel.value, "sent")] = count
    buried = await session.execute(
        select(Notification.channel, func.count())
        .select_from(DeadLetter)
        .join(Notification, Notification.id == DeadLetter.notification_id)
        .group_by(Notification.channel)
    )
    for channel, count in buried.all():
        outcomes[(channel.value, "dead_lettered")] = count
    LIVE.deliveries = outcomes
    unsent = await session.scalar(
        select(func.count())
        .select_from(DeadLetter)
        .join(Notification, Notification.id == DeadLetter.notification_id)
        .where(Notification.status != "sent")
    )
    DEAD_LETTERS.set(unsent or 0)
    overdue = await session.scalar(
        select(
            func.coalesce(func.extract("epoch", func.now() - func.min(Notification.next_attempt_at)), 0)
        ).where(PENDING, Notification.next_attempt_at <= func.now())
    )
    NOTIFICATION_OVERDUE.set(float(overdue or 0))
    for category, object_type, count in await open_counts(session):
        RECONCILIATION_OPEN.labels(category, object_type).set(count)
    rows, age = await outbox_backlog(session)
    OUTBOX_ROWS.set(rows)
    OUTBOX_AGE.set(age)
    try:
        stuck = await temporal.count_workflows(STUCK_ORDERS_QUERY, rpc_timeout=timedelta(seconds=2))
        ORDERS_NEEDING_ATTENTION.set(stuck.count)
    except RPCError:
        ORDERS_NEEDING_ATTENTION.set(float("nan"))  # unknown while Temporal cannot be asked
    return generate_latest(REGISTRY)
