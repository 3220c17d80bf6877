"""The Temporal client, configured once for API, worker and CLI."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime

from bazaar.settings import Settings


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """`runtime`: e.g. the worker's, exporting SDK metrics to Prometheus."""
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, runtime=runtime
    )
