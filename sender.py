"""The notification sender process: drains the notification outbox (the rows each order transition writes in
its own transaction) and mails them, with retries, backoff and dead letters (activities/notifications.py).

Its own process, beside the worker, so mail work never competes with workflow tasks for the worker's event loop
(measured: about 5 ms on every order action). Any number may run: each row is claimed with
`FOR UPDATE SKIP LOCKED` and sent at most once.
"""

from __future__ import annotations

import asyncio
import signal

from activities.notifications import NotificationSender
from bazaar.telemetry import configure_logging, setup_tracing


async def main() -> None:
    from bazaar.settings import get_settings

    configure_logging()  # a delivery's log lines carry the trace id of the request that queued it
    settings = get_settings()
    setup_tracing("sender", settings)  # each delivery continues the trace stored with its row
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await NotificationSender(settings).run(stop)


if __name__ == "__main__":
    asyncio.run(main())
