"""Background webhook delivery signed exactly like Stripe's ``Stripe-Signature`` header."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

log = logging.getLogger("stripe_sandbox.webhooks")


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256(secret, "t.payload")>``, what ``stripe.Webhook`` verifies."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


class WebhookDispatcher:
    """Posts each event to one endpoint in its own task, retrying with exponential backoff.

    Delivery never blocks the API response; failures are retried ``max_attempts``
    times (0.5 s doubling) and then given up, like Stripe's (much longer) schedule.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        max_attempts: int = 8,
        initial_delay: float = 0.5,
        max_delay: float = 8.0,
    ) -> None:
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self.delivered = 0
        self.failed = 0

    def dispatch(self, event: dict[str, Any]) -> None:
        """Schedule delivery of one event (must be called on the running loop)."""
        task = asyncio.get_running_loop().create_task(self._deliver(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Deliveries still in flight (exposed on ``/_sandbox/health``)."""
        return len(self._tasks)

    async def _deliver(self, event: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        payload = json.dumps(event, indent=2)
        delay = self.initial_delay
        for attempt in range(1, self.max_attempts + 1):
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(payload, self.secret),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            try:
                resp = await self._client.post(self.url, content=payload.encode(), headers=headers)
                if 200 <= resp.status_code < 300:
                    self.delivered += 1
                    return
                log.info("webhook %s attempt %d: HTTP %d", event["id"], attempt, resp.status_code)
            except httpx.HTTPError as exc:
                log.info("webhook %s attempt %d: %s", event["id"], attempt, exc)
            if attempt < self.max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
        self.failed += 1
        log.warning("webhook %s: giving up after %d attempts", event["id"], self.max_attempts)

    async def aclose(self) -> None:
        """Cancel outstanding deliveries and close the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
