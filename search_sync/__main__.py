"""`python -m search_sync`: the search sync process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bazaar.settings import get_settings
from search_sync.sync import run


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    task = asyncio.create_task(run(get_settings(), stop))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # an unexpected error ends the process loudly, so the supervisor sees it
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    asyncio.run(main())
