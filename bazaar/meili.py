"""Meilisearch over its REST API with our one HTTP client (httpx), on keep-alive connections.

`Accept-Encoding: identity`: with gzip each search took ~44 ms instead of ~1.5 ms (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


class MeiliError(Exception):
    """Meilisearch answered with an error, failed a task, or could not be reached."""


class Meili:
    def __init__(self, url: str, api_key: str | None, timeout: float = 5.0) -> None:
        headers = {"Accept-Encoding": "identity", "Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            response = await self.http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise MeiliError(f"meilisearch unreachable: {exc!r}") from exc
        if response.status_code >= 400:
            raise MeiliError(f"meilisearch {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    async def healthy(self) -> bool:
        try:
            return bool((await self.request("GET", "/health")).get("status") == "available")
        except MeiliError:
            return False

    async def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("POST", f"/indexes/{index}/search", json=body)
        return result

    async def wait_task(self, task_uid: int, max_wait: float = 60.0) -> dict[str, Any]:
        """Block until a task ends; raise if it failed. Polls quickly first: most tasks end in milliseconds."""
        deadline = time.monotonic() + max_wait
        delay = 0.005
        while True:
            task: dict[str, Any] = await self.request("GET", f"/tasks/{task_uid}")
            if task["status"] == "succeeded":
                return task
            if task["status"] in ("failed", "canceled"):
                raise MeiliError(f"task {task_uid} {task['status']}: {task.get('error')}")
            if time.monotonic() > deadline:
                raise MeiliError(f"task {task_uid} still {task['status']} after {max_wait}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def run_task(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        enqueued = await self.request(method, path, json=json)
        return await self.wait_task(enqueued["taskUid"])
