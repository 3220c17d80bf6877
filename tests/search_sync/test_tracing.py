"""A listing change's trace reaches the search sync: the batch that indexed it is a span of service
`bazaar-search-sync` under the API request that changed the listing, with its Meilisearch writes as children.

On the private search stack (tests/support/search.py), with an API and a search sync of this module's own that
write their spans as JSON lines to a temp dir (`TRACES_DIR`, as `make run` does), read back the way
`python -m cli trace <X-Trace-Id>` reads them. The private stack's own sync is paused meanwhile, so every batch is
this module's.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from bazaar.telemetry import batch_parent, format_trace, read_trace
from devstack import services
from devstack.process import ManagedProcess, wait_until
from tests.support.http import listing_body
from tests.support.search import ROOT, PrivateSearch, token_for

pytestmark = pytest.mark.integration

# Spans are exported in batches; a short delay keeps the test quick (the default is 5 s).
EXPORT_EVERY_MS = "100"


class Traced:
    def __init__(self, private: PrivateSearch, traces: Path) -> None:
        self.private = private
        self.traces = traces
        self.api_url = ""
        self.procs: list[ManagedProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        return self.private.env(TRACES_DIR=str(self.traces), OTEL_BSP_SCHEDULE_DELAY=EXPORT_EVERY_MS, **extra)

    def start(self) -> None:
        sync = self.private.sup.spawn(
            "search-sync-traced", [sys.executable, "-m", "search_sync"], env=self.env(), cwd=ROOT
        )
        [port] = services.free_ports(1)
        env = self.env(MEILI_SEARCH_KEY=self.private.search_key, API_PORT=str(port))
        env.pop("MEILI_MASTER_KEY")
        argv = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", services.LOOPBACK]
        api = self.private.sup.spawn("api-traced", [*argv, "--port", str(port)], env=env, cwd=ROOT)
        self.procs = [sync, api]
        self.api_url = f"http://{services.LOOPBACK}:{port}"
        wait_until(
            "traced api",
            lambda: httpx.get(f"{self.api_url}/healthz").status_code == 200,
            timeout=60,
            proc=api,
            interval=0.1,
        )

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    async def spans(self, trace_id: str, wanted: str, within: float = 20.0) -> list[dict[str, Any]]:
        """The trace's spans once one of them is named `wanted` and its parent is written too.

        Each process exports on its own schedule (every 100 ms here, later on a busy machine), so the sync's batch
        can be on disk before the API request it hangs under.
        """
        deadline = time.monotonic() + within
        while True:
            found = read_trace(self.traces, trace_id)
            ids = {span["span_id"] for span in found}
            if any(span["name"] == wanted and span["parent_id"] in ids for span in found):
                return found
            if time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def traced(private: PrivateSearch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    assert private.sync is not None
    private.sync.stop()  # every batch while this module runs is the traced sync's
    traced = Traced(private, tmp_path_factory.mktemp("traces"))
    try:
        traced.start()
        yield traced
    finally:
        traced.stop()
        private.start_sync()


async def test_a_listing_change_is_traced_into_the_search_sync_batch_and_its_meilisearch_writes(
    private: PrivateSearch, traced: Traced
) -> None:
    seller = await private.seller()
    auth = await token_for(private, seller.user_id)
    # Like a client that starts the trace: this process's httpx may be instrumented (another test module imported
    # api.app), and its client span, never sampled here, would make the API leave the request unsampled too.
    with suppress_http_instrumentation():
        async with httpx.AsyncClient(base_url=traced.api_url, timeout=30) as api:
            created = await api.post("/v1/listings", json=listing_body(), headers=auth)
            assert created.status_code == 201, created.text
            # The draft's own batch first: a batch is traced under its first row's change, so one change a batch.
            await private.wait_drained()
            published = await api.post(f"/v1/listings/{created.json()['id']}/publish", headers=auth)
            assert published.status_code == 200, published.text
    trace_id = published.headers["x-trace-id"]
    await private.wait_drained()

    spans = await traced.spans(trace_id, "search-sync batch")
    by_id = {span["span_id"]: span for span in spans}
    batches = [span for span in spans if span["name"] == "search-sync batch"]
    assert [b["service"] for b in batches] == ["bazaar-search-sync"], (
        format_trace(spans) or f"no span of {trace_id}"
    )
    [batch] = batches
    parent = by_id.get(batch["parent_id"])
    assert parent is not None and parent["service"] == "bazaar-api", parent
    assert parent["name"] == "POST /v1/listings/{listing_id}/publish", parent
    assert batch["attributes"]["bazaar.search_sync.upserts"] == 1, batch

    def url(span: dict[str, Any]) -> str:  # the httpx instrumentation's attribute (old or new conventions)
        return str(span["attributes"].get("url.full") or span["attributes"].get("http.url") or "")

    children = [span for span in spans if span["parent_id"] == batch["span_id"]]
    writes = [s for s in children if f"/indexes/{private.index}/documents" in url(s)]
    assert len(writes) == 1, [(s["name"], url(s)) for s in children]
    names = [s["name"] for s in children]
    assert any(name.startswith("meilisearch GET /tasks/") for name in names), names  # waiting for the write
    assert any(s["attributes"].get("db.system") == "postgresql" for s in children), names

    # What an operator runs: the tree shows the batch under the request, with its process named.
    cli = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "cli", "trace", trace_id, "--dir", str(traced.traces)],
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(cli.communicate(), timeout=60)
    shown = out.decode()
    assert cli.returncode == 0, shown
    assert "bazaar-search-sync" in shown and "search-sync batch" in shown, shown


def test_a_batch_joins_its_first_rows_trace_and_links_the_others() -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    stored = [
        None,  # a row queued outside any request (the view counts' flush)
        "garbage",
        f"00-{first}-{'1' * 16}-01",
        f"00-{second}-{'2' * 16}-01",
        f"00-{first}-{'3' * 16}-01",  # the same request's second row
    ]
    parent, links = batch_parent(stored)
    assert parent is not None
    assert f"{trace.get_current_span(parent).get_span_context().trace_id:032x}" == first
    assert [f"{link.context.trace_id:032x}" for link in links] == [second]
    assert batch_parent([None, None]) == (None, [])
