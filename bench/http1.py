"""The benches' load-generator HTTP client: one keep-alive HTTP/1.1 connection on asyncio, just enough
protocol for our API, the Stripe sandbox and Meilisearch, so that on a 2-core machine the client's own
overhead stays small next to the servers it measures (one connection per closed-loop worker)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

# What a broken or closed connection raises: the connection is closed and the error passed on.
CONNECTION_ERRORS = (
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    TimeoutError,
    ValueError,
)


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Http1:
    """One keep-alive HTTP/1.1 connection to `url`'s host and port, opened on the first request and again
    after an error or a `Connection: close`. `timeout` (seconds, None: none) bounds each request."""

    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Response:
        """Send one request and read its whole answer; on any error the connection is closed first."""
        try:
            if self.timeout is None:
                return await self._request(method, target, body, headers)
            return await asyncio.wait_for(self._request(method, target, body, headers), self.timeout)
        except CONNECTION_ERRORS:
            await self.close()
            raise

    async def _request(
        self, method: str, target: str, body: bytes, headers: Mapping[str, str] | None
    ) -> Response:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept-Encoding: identity\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            payload = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(c[:-2] for c in chunks)
        else:
            payload = b""
        if fields.get("connection") == "close":
            await self.close()
        return Response(status, fields, payload)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None
