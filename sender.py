"""The sender process: drains the notification outbox (the rows each order transition writes in its own
transaction) and mails them, with retries, backoff and dead letters; and delivers webhooks to integrators' endpoints,
signed, retried for days, logged (both in activities/notifications.py; bazaar/integrations/delivery.py).

Its own process, beside the worker, so mail and webhook work never competes with workflow tasks for the worker's
event loop (measured: about 5 ms on every order action). Any number may run: each notification is claimed with
`FOR UPDATE SKIP LOCKED` and sent at most once; each webhook delivery is claimed for a lease.
"""

from __future__ import annotations

import asyncio
import signal

import uvloop

from activities.notifications import NotificationSender, WebhookSender
from bazaar.telemetry import configure_logging, setup_tracing


async def main() -> None:
    from bazaar.settings import get_settings

    configure_logging()  # a delivery's log lines carry the trace id of the request that queued it
    settings = get_settings()
    setup_tracing("sender", settings)  # each mail continues the trace stored with its row
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(NotificationSender(settings).run(stop), WebhookSender(settings).run(stop))


if __name__ == "__main__":
    uvloop.run(main())
