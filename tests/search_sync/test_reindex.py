"""Reindex on the private stack while searches and writes go on: zero failed searches, never an empty
result in between, every write made during the rebuild ends up in the new index."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid

import httpx
import pytest

from bazaar.listings import lifecycle as listings
from search_sync.reindex import ReindexBusy, reindex
from tests.support.search import PrivateSearch, churn, listing_fields

pytestmark = pytest.mark.integration
LISTINGS = 1_500


class Searcher(threading.Thread):
    def __init__(self, private: PrivateSearch, word: str, minimum: int, via_api: bool) -> None:
        super().__init__(daemon=True)
        self.private, self.word, self.minimum, self.via_api = private, word, minimum, via_api
        self.stop = threading.Event()
        self.done = 0
        self.failures: list[str] = []

    def run(self) -> None:
        if self.via_api:
            client = httpx.Client(base_url=self.private.api_url, timeout=10)
        else:
            client = httpx.Client(
                base_url=self.private.meili_url,
                timeout=10,
                headers={"Authorization": f"Bearer {self.private.search_key}"},
            )
        with client:
            while not self.stop.is_set():
                try:
                    if self.via_api:
                        r = client.get(
                            "/v1/search/listings",
                            params={
                                "q": self.word,
                                "category": "sports",
                                "sort": "price_asc",
                                "facets": "true",
                            },
                        )
                        ok = r.status_code == 200 and r.headers["X-Search-Backend"] == "meilisearch"
                        total = r.json()["total"] if ok else -1
                    else:
                        r = client.post(f"/indexes/{self.private.index}/search", json={"q": self.word})
                        ok = r.status_code == 200
                        total = r.json()["estimatedTotalHits"] if ok else -1
                    if not ok or total < self.minimum:
                        self.failures.append(f"{r.status_code} total={total} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.done += 1


async def test_reindex_while_searching_and_writing(private: PrivateSearch) -> None:
    word = "reindex" + uuid.uuid4().hex[:6].translate(str.maketrans("0123456789", "abcdefghij"))
    seller = await private.seller()
    ids: list[uuid.UUID] = []
    for start in range(0, LISTINGS, 500):
        async with private.session() as s:
            made = [
                await listings.create(s, seller, listing_fields(title=f"{word} {n}", price_amount=100 + n))
                for n in range(start, start + 500)
            ]
            for x in made:
                await listings.publish(s, x.id, seller, None)
            ids += [x.id for x in made]
    await private.wait_drained(within=60)
    # The writer below archives or sells at most this many: the result must never drop under the rest.
    minimum = LISTINGS - 200
    searchers = [Searcher(private, word, minimum, via_api=True) for _ in range(2)]
    searchers.append(Searcher(private, word, minimum, via_api=False))
    for searcher in searchers:
        searcher.start()
    settings = private.settings()
    writer = asyncio.create_task(churn(private, seller, ids, 200, random.Random(3)))
    report = await reindex(settings, progress=False)
    created = await writer
    for searcher in searchers:
        searcher.stop.set()
        searcher.join()

    assert report.documents >= minimum
    assert [s.failures[:3] for s in searchers] == [[], [], []]
    assert all(s.done > 5 for s in searchers), [s.done for s in searchers]
    await private.wait_drained()
    await private.assert_index_matches_db(ids + created)
    with private.master() as client:
        names = {i["uid"] for i in client.get("/indexes", params={"limit": 1000}).json()["results"]}
        assert f"{private.index}__reindex" not in names  # the old generation is gone
        settings_now = client.get(f"/indexes/{private.index}/settings").json()
        assert "price_bucket" in settings_now["filterableAttributes"]


async def test_one_reindex_at_a_time(private: PrivateSearch) -> None:
    settings = private.settings()
    results = await asyncio.gather(
        reindex(settings, progress=False), reindex(settings, progress=False), return_exceptions=True
    )
    assert sum(isinstance(r, ReindexBusy) for r in results) == 1, results
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
