"""The search outbox under failure, on the private stack: a SIGKILLed search_sync and a SIGKILLed
Meilisearch lose no update and never let an older version overwrite a newer one; settings are idempotent."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from bazaar.auth import Principal
from bazaar.listings import lifecycle as listings
from bazaar.search.index import INDEX_SETTINGS, apply_index_settings
from bazaar.search.meili import Meili
from tests.support.search import MASTER_KEY, PrivateSearch, churn, listing_fields

pytestmark = pytest.mark.integration


async def published(private: PrivateSearch, seller: Principal, count: int, **fields: Any) -> list[uuid.UUID]:
    async with private.session() as s:
        made = [await listings.create(s, seller, listing_fields(**fields)) for _ in range(count)]
    async with private.session() as s:
        for listing in made:
            await listings.publish(s, listing.id, seller, None)
    return [x.id for x in made]


class VersionWatcher(threading.Thread):
    """Polls the index for some documents and records every version it sees, in order."""

    def __init__(self, private: PrivateSearch, ids: list[uuid.UUID]) -> None:
        super().__init__(daemon=True)
        self.private, self.ids = private, [str(i) for i in ids]
        self.seen: dict[str, list[int]] = {i: [] for i in self.ids}
        self.stop = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for doc_id, doc in self.private.documents(self.ids).items():
                    if not self.seen[doc_id] or self.seen[doc_id][-1] != doc["version"]:
                        self.seen[doc_id].append(doc["version"])
            except httpx.HTTPError:
                self.errors += 1  # Meilisearch may be down on purpose
            time.sleep(0.01)

    def assert_never_went_back(self) -> None:
        for doc_id, versions in self.seen.items():
            assert versions == sorted(versions), f"{doc_id} went back in the index: {versions}"


async def test_killed_sync_loses_no_update_and_never_goes_back(private: PrivateSearch) -> None:
    seller = await private.seller()
    ids = await published(private, seller, 30)
    await private.wait_drained()
    watcher = VersionWatcher(private, ids[:10])
    watcher.start()
    rng = random.Random(1)
    writer = asyncio.create_task(churn(private, seller, ids, 400, rng))
    # Kill the syncer mid-stream, keep writing while it is dead, then restart it.
    await asyncio.sleep(0.5)
    assert not writer.done(), "the writer should still be running when the syncer dies"
    private.kill_sync()
    await asyncio.sleep(0.3)
    assert await private.outbox_rows() > 0  # changes pile up, nothing is lost
    private.start_sync()
    created = await writer
    await private.wait_drained()
    watcher.stop.set()
    watcher.join()
    await private.assert_index_matches_db(ids + created)
    watcher.assert_never_went_back()
    assert sum(len(v) for v in watcher.seen.values()) > 10  # the watcher did see changes go by


async def test_meilisearch_outage_loses_no_update(private: PrivateSearch) -> None:
    seller = await private.seller()
    ids = await published(private, seller, 20)
    await private.wait_drained()
    rng = random.Random(2)
    writer = asyncio.create_task(churn(private, seller, ids, 200, rng))
    await asyncio.sleep(0.2)
    private.kill_meili()  # mid-batch, tasks possibly enqueued but not applied
    created = await writer
    created += await churn(private, seller, ids, 50, rng)  # and more while it is down
    await asyncio.sleep(1.0)  # search_sync retries with backoff meanwhile
    backlog = await private.outbox_rows()
    assert backlog > 0
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{private.api_url}/metrics")).text
    age = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("bazaar_search_outbox_oldest_age_seconds ")
    )
    assert age >= 0.9  # the freshness gauge shows the stall
    private.start_meili()
    await private.wait_drained(within=30)
    await private.assert_index_matches_db(ids + created)
    assert private.sync is not None and private.sync.alive()  # it rode out the outage


async def test_deleted_listing_leaves_the_index(private: PrivateSearch) -> None:
    seller = await private.seller()
    [listing_id] = await published(private, seller, 1)
    await private.wait_drained()
    assert str(listing_id) in private.documents([str(listing_id)])
    async with private.session() as s:
        assert await listings.delete(s, listing_id, seller, None) is None
    await private.wait_drained()
    assert private.documents([str(listing_id)]) == {}


async def test_index_settings_are_applied_idempotently(private: PrivateSearch) -> None:
    meili = Meili(private.meili_url, MASTER_KEY)
    index = f"{private.index}_settings"
    try:
        assert await apply_index_settings(meili, index) is True  # created and configured
        assert await apply_index_settings(meili, index) is False  # nothing to do: no task at all
        tasks_before = (await meili.request("GET", "/tasks", params={"indexUids": index}))["total"]
        assert await apply_index_settings(meili, index) is False
        assert (await meili.request("GET", "/tasks", params={"indexUids": index}))["total"] == tasks_before
        # Drift (someone edited the index by hand) is corrected.
        await meili.run_task("PUT", f"/indexes/{index}/settings/ranking-rules", json=["words", "typo"])
        assert await apply_index_settings(meili, index) is True
        current = await meili.request("GET", f"/indexes/{index}/settings")
        assert current["rankingRules"] == INDEX_SETTINGS["rankingRules"]
        assert sorted(current["filterableAttributes"]) == sorted(INDEX_SETTINGS["filterableAttributes"])
    finally:
        await meili.run_task("DELETE", f"/indexes/{index}")
        await meili.aclose()
