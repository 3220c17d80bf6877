"""A local SMTP sink: accepts every message and writes it to a directory as a .eml file.

Dev and tests send real SMTP (the same code path as production) but nothing leaves the machine;
humans open the .eml files, tests read them. Run: `python -m devstack.mailsink --port 1025 --dir DIR`.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


class EmlWriter:
    """aiosmtpd handler: one atomically written .eml per message (readers never see half a file)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or b""
        # Names sort in arrival order (nanoseconds within the second), so readers can tell first from second.
        now = time.time_ns()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now // 1_000_000_000))
        name = f"{stamp}-{now % 1_000_000_000:09d}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, self.directory / name)
        subject = email.message_from_bytes(content, policy=email.policy.default).get("Subject", "")
        print(
            f"mail from {envelope.mail_from} to {', '.join(envelope.rcpt_tos)}: {subject!r} -> {name}",
            flush=True,
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, directory: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = EmlWriter(directory)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bazaar-mailsink", enable_SMTPUTF8=True), host, port
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"SMTP sink on {host}:{port}, writing to {directory}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.dir))


if __name__ == "__main__":
    main()
