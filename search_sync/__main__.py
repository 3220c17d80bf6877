"""`python -m search_sync`: the search sync process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvloop

from bazaar.settings import get_settings
from bazaar.telemetry import configure_logging, instrument_http_clients, setup_tracing
from search_sync.sync import run


async def main() -> None:
    configure_logging()  # the other processes' log format; a line logged inside a batch ends with its trace id
    settings = get_settings()
    setup_tracing("search-sync", settings)  # each batch continues the trace stored with its outbox rows
    instrument_http_clients()  # Meilisearch writes as child spans of the batch
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    task = asyncio.create_task(run(settings, stop))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # an unexpected error ends the process loudly, so the supervisor sees it
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    uvloop.run(main())
