"""The Temporal client, configured once for API, worker and CLI."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime

from bazaar.settings import Settings

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


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """`runtime`: e.g. the worker's, exporting SDK metrics to Prometheus."""
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, runtime=runtime
    )
