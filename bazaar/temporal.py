"""The Temporal client, configured once for API, worker and CLI."""

from __future__ import annotations

from temporalio.client import Client

from bazaar.settings import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
