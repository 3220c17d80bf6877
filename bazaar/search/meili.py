"""Meilisearch over its REST API, on keep-alive connections.

Two transports. Writes and admin calls go through httpx. Searches and task polls, the two calls on a
latency path (a buyer waiting; a change waiting to become searchable), go through `FastPath`, a minimal
HTTP/1.1 keep-alive pool on asyncio streams: measured on 2 cores, httpx added ~1.5 ms to every call
(2.6-2.8 ms vs 1.2 ms for the same search), more than Meilisearch's own time (docs/benchmarks.md).

JSON through orjson: decoding a search's ~19 KB answer took 28 us instead of 82 us with `json` (docs/benchmarks.md).
`Accept-Encoding: identity`: with gzip each search took ~44 ms instead of ~1.5 ms (see docs/benchmarks.md).
Errors are split in two: `MeiliUnavailable` (cannot reach it, timeout, 5xx: worth a fallback and a retry)
and plain `MeiliError` (it answered 4xx: a request or state problem that retrying will not fix).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind


class MeiliError(Exception):
    """Meilisearch refused a request (4xx) or a task failed."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # Meilisearch's error code, e.g. "index_not_found"


class MeiliUnavailable(MeiliError):
    """Meilisearch could not be reached, timed out, or answered 5xx."""


_TRACER = trace.get_tracer("bazaar.search")
_MAX_HEADER_BYTES = 64 * 1024
# A connection that died or spoke something unexpected: drop it (and retry once if it was a reused one).
_BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


class FastPath:
    """Just enough HTTP/1.1 for Meilisearch's JSON API: keep-alive, Content-Length or chunked bodies.

    A connection goes back to the pool only after a complete, well-formed exchange; anything else
    (timeout, cancellation, a parse surprise) closes it. A request on a reused connection that finds it
    closed by the server (idle keep-alive expiry) is retried once on a new one; the calls made through
    here (searches, task reads) are safe to repeat.
    """

    def __init__(
        self, url: str, headers: dict[str, str], timeout: float, connect_timeout: float, max_idle: int = 64
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError("FastPath speaks plain http only; use httpx for https")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._closed = False

    async def request(self, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        reused = bool(self._idle)
        try:
            return await self._attempt(method, target, body)
        except _BROKEN as exc:
            if not reused:
                raise MeiliUnavailable(f"meilisearch unreachable: {exc!r}") from exc
        try:
            return await self._attempt(method, target, body, fresh=True)
        except _BROKEN as exc:
            raise MeiliUnavailable(f"meilisearch unreachable: {exc!r}") from exc

    async def _attempt(self, method: str, target: str, body: bytes, fresh: bool = False) -> tuple[int, bytes]:
        conn = None if fresh or not self._idle else self._idle.pop()
        try:
            if conn is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port, limit=_MAX_HEADER_BYTES),
                        self.connect_timeout,
                    )
                except (OSError, TimeoutError) as exc:
                    raise MeiliUnavailable(f"meilisearch unreachable: {exc!r}") from exc
                conn = _Connection(reader, writer)
            async with asyncio.timeout(self.timeout):  # no extra task, unlike wait_for
                status, payload, keep = await self._exchange(conn, method, target, body)
        except TimeoutError as exc:
            if conn is not None:
                conn.close()
            raise MeiliUnavailable(
                f"meilisearch {method} {target}: no answer within {self.timeout}s"
            ) from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if keep and not self._closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return status, payload

    async def _exchange(
        self, conn: _Connection, method: str, target: str, body: bytes
    ) -> tuple[int, bytes, bool]:
        conn.writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._head}"
            f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
            + body
        )
        await conn.writer.drain()
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            payload = await conn.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await conn.reader.readexactly(size))
                await conn.reader.readexactly(2)
            await conn.reader.readuntil(b"\r\n")  # no trailers from Meilisearch: the final CRLF
            payload = b"".join(parts)
        else:
            raise ConnectionError("response without a length")
        return status, payload, fields.get("connection", "").lower() != "close"

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


class Meili:
    def __init__(
        self, url: str, api_key: str | None, timeout: float = 5.0, connect_timeout: float | None = None
    ) -> None:
        headers = {"Accept-Encoding": "identity", "Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = url
        self.http = httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout or timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.fast = (
            FastPath(url, headers, timeout, connect_timeout or timeout) if url.startswith("http://") else None
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.fast is not None:
            await self.fast.aclose()

    async def fast_request(
        self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """Like `request`, on the lean transport when the URL allows it (plain http). Traced as a client span
        of the request it serves (httpx, the other transport, is traced by its instrumentation)."""
        if self.fast is None:
            return await self.request(method, path, json=json, params=params)
        target = f"{path}?{urlencode(params)}" if params else path
        body = orjson.dumps(json) if json is not None else b""
        with _TRACER.start_as_current_span(
            f"meilisearch {method} {path}",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": method, "url.path": path, "server.port": self.fast.port},
        ) as span:
            status, payload = await self.fast.request(method, target, body)
            span.set_attribute("http.response.status_code", status)
        return _answer(method, path, status, payload)

    async def request(
        self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            response = await self.http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise MeiliUnavailable(f"meilisearch unreachable: {exc!r}") from exc
        return _answer(method, path, response.status_code, response.content)

    async def healthy(self) -> bool:
        try:
            return bool((await self.request("GET", "/health")).get("status") == "available")
        except MeiliError:
            return False

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.fast_request("POST", f"/indexes/{index}/search", json=body)
        return result

    async def get_index(self, index: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.request("GET", f"/indexes/{index}")
        except MeiliError as exc:
            if exc.code == "index_not_found":
                return None
            raise
        return found

    async def enqueue(self, method: str, path: str, json: Any = None) -> int:
        """Send a write; Meilisearch answers at once with the uid of the task that will apply it."""
        enqueued = await self.request(method, path, json=json)
        return int(enqueued["taskUid"])

    async def wait_task(self, task_uid: int, max_wait: float = 60.0) -> dict[str, Any]:
        """Block until a task ends; raise if it failed.

        Polls every 2 ms at first (a small document task takes ~5-20 ms, and this wait is part of the
        change-to-searchable latency), then backs off to 50 ms for long tasks.
        """
        deadline = time.monotonic() + max_wait
        delay = 0.002
        while True:
            task: dict[str, Any] = await self.fast_request("GET", f"/tasks/{task_uid}")
            if task["status"] == "succeeded":
                return task
            if task["status"] in ("failed", "canceled"):
                error = task.get("error") or {}
                raise MeiliError(f"task {task_uid} {task['status']}: {error}", code=error.get("code"))
            if time.monotonic() > deadline:
                raise MeiliUnavailable(f"task {task_uid} still {task['status']} after {max_wait}s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.25, 0.05)

    async def wait_tasks(self, task_uids: list[int], max_wait: float = 60.0) -> None:
        """Wait for several tasks (oldest first: Meilisearch applies them in uid order)."""
        for uid in sorted(task_uids):
            await self.wait_task(uid, max_wait)

    async def run_task(
        self, method: str, path: str, json: Any = None, max_wait: float = 60.0
    ) -> dict[str, Any]:
        return await self.wait_task(await self.enqueue(method, path, json=json), max_wait)


def _answer(method: str, path: str, status: int, payload: bytes) -> Any:
    """The decoded body of a 2xx; MeiliUnavailable for 5xx, MeiliError (with Meilisearch's code) for 4xx."""
    if status >= 500:
        raise MeiliUnavailable(
            f"meilisearch {method} {path}: {status} {payload[:300].decode(errors='replace')}", status=status
        )
    if status >= 400:
        code = None
        try:
            code = jsonlib.loads(payload).get("code")
        except ValueError:
            pass
        raise MeiliError(
            f"meilisearch {method} {path}: {status} {payload[:500].decode(errors='replace')}",
            status=status,
            code=code,
        )
    return orjson.loads(payload) if payload else None
