"""A webhook receiver for tests: a small local HTTP server (a thread) that records every request and answers
each path with the statuses it is told to (then 200), and verifies signatures with the Standard Webhooks
reference verifier (`standardwebhooks.Webhook(secret).verify`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    def verifies(self, secret: str) -> bool:
        """Whether the reference verifier accepts this request with `secret` (also checks the timestamp)."""
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: dict[str, deque[int]] = defaultdict(deque)
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                        )
                    )
                    queued = receiver._answers[self.path]
                    status = queued.popleft() if queued else 200
                    delay = receiver._delays.get(self.path, 0.0)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver says no")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer(self, path: str, *statuses: int) -> None:
        """Answer the next requests to `path` with these statuses, in order (then 200)."""
        with self._lock:
            self._answers[path].extend(statuses)

    def slow(self, path: str, seconds: float) -> None:
        """Take `seconds` to answer each request to `path`."""
        with self._lock:
            self._delays[path] = seconds

    def recover(self, path: str) -> None:
        """Forget the statuses still queued for `path`: 200 from now on."""
        with self._lock:
            self._answers[path].clear()

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Block until `check()` is truthy (sync tests); its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert value, f"the receiver did not see it within {timeout}s: {[r.path for r in self.received]}"
        return value

    async def until(self, check: Callable[[], Any], within: float = 30.0) -> Any:
        """`wait` for async tests: the event loop (and a sender on it) goes on meanwhile."""
        deadline = time.monotonic() + within
        while True:
            value = check()
            if value or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert value, f"the receiver did not see it within {within}s: {[r.path for r in self.received]}"
        return value


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
