"""The notification sender process: drains the notification outbox (the rows each order transition writes in
its own transaction) and mails them, with retries, backoff and dead letters (activities/notifications.py).

Its own process, beside the worker, so mail work never competes with workflow tasks for the worker's event loop
(measured: about 5 ms on every order action). Any number may run: each row is claimed with
`FOR UPDATE SKIP LOCKED` and sent at most once.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from activities.notifications import NotificationSender


async def main() -> None:
    from bazaar.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await NotificationSender(get_settings()).run(stop)


if __name__ == "__main__":
    asyncio.run(main())
