"""Search relevance, measured: the judged searches of tests/data/relevance.json over the demo catalogue,
run through Meilisearch and through the PostgreSQL fallback with the query code the API uses
(bazaar.search.query.search_meili / bazaar.search.fallback.search_postgres), scored with NDCG@10 and MRR@10.

Shared by bench/relevance.py (the figures) and tests/search_sync/test_relevance.py (a floor on them).

- The corpus is devstack.demo.demo_listings (what `make run` loads), its published listings, written
  straight into a migrated database of its own (no API round trips: a few seconds), then indexed by the
  production reindex (search_sync.reindex: the index settings of bazaar/search/index.py, the documents of
  listing_document).
- A judgment names listings by what a person sees: the title, the item (the title before its last ", "),
  the category, the city, the price. A listing gets the grade of the first judgment that matches it.
- Queries marked held_out were judged after the ranking was tuned on the others and are reported apart.
- NDCG@10 uses the gain 2^grade - 1 and the ideal ranking of every graded listing in the corpus; MRR@10
  counts the first hit of grade 2 or more (0 when none is in the top 10). Both are means over the queries.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bazaar.listings import lifecycle as listings
from bazaar.models import Listing, ListingStatus, User
from bazaar.search.fallback import search_postgres
from bazaar.search.meili import Meili
from bazaar.search.query import ListingQuery, search_meili
from bazaar.settings import Settings
from devstack.demo import DEMO_SELLERS, LISTING_COUNT, demo_listings
from search_sync.reindex import reindex

JUDGED = Path(__file__).resolve().parents[1] / "data" / "relevance.json"
K = 10
RELEVANT = 2  # MRR: the first hit of at least this grade
BACKENDS = ("meilisearch", "postgres")
_NAMESPACE = uuid.UUID("6f1d1b52-2c1e-4a8e-9d0c-52e1e7a0b0aa")  # stable listing ids: uuid5(namespace, n)


# ------------------------------------------------------------------------------------------ judgments


@dataclass(frozen=True)
class CorpusListing:
    id: str
    title: str
    category: str
    city: str
    price: float  # major units

    @property
    def item(self) -> str:
        return self.title.rsplit(", ", 1)[0]


def _one_of(value: str, wanted: str | list[str]) -> bool:
    return value in ([wanted] if isinstance(wanted, str) else wanted)


def matches(listing: CorpusListing, rule: dict[str, Any]) -> bool:
    for name, wanted in rule.items():
        match name:
            case "grade":
                continue
            case "title":
                ok = listing.title == wanted
            case "item":
                ok = _one_of(listing.item, wanted)
            case "title_contains":
                ok = wanted in listing.title
            case "category":
                ok = _one_of(listing.category, wanted)
            case "city":
                ok = _one_of(listing.city, wanted)
            case "max_price":
                ok = listing.price <= wanted
            case "min_price":
                ok = listing.price >= wanted
            case _:
                raise ValueError(f"unknown judgment field {name!r}")
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class JudgedQuery:
    q: str
    kind: str
    judgments: tuple[dict[str, Any], ...]
    held_out: bool = False  # judged after the tuning and not tuned on

    def grade(self, listing: CorpusListing) -> int:
        return next((int(j["grade"]) for j in self.judgments if matches(listing, j)), 0)


def load_judged(path: Path = JUDGED) -> list[JudgedQuery]:
    data = json.loads(path.read_text())
    return [
        JudgedQuery(q["q"], q["kind"], tuple(q["judgments"]), bool(q.get("held_out")))
        for q in data["queries"]
    ]


# -------------------------------------------------------------------------------------------- metrics


def dcg(grades: Sequence[int], k: int = K) -> float:
    return sum((2.0**g - 1) / math.log2(rank + 2) for rank, g in enumerate(grades[:k]))


def ndcg(ranked: Sequence[int], judged: Iterable[int], k: int = K) -> float:
    """`ranked`: the grades of the hits in result order; `judged`: the grades of every corpus listing."""
    ideal = dcg(sorted(judged, reverse=True), k)
    return dcg(ranked, k) / ideal if ideal else 0.0


def reciprocal_rank(ranked: Sequence[int], k: int = K, relevant: int = RELEVANT) -> float:
    return next((1.0 / (rank + 1) for rank, g in enumerate(ranked[:k]) if g >= relevant), 0.0)


# --------------------------------------------------------------------------------------------- corpus


def demo_corpus(count: int = LISTING_COUNT) -> list[dict[str, Any]]:
    """The published demo listings, as listing rows (the fields bazaar.listings.lifecycle.create takes)."""
    rows = []
    for n, (listing, published) in enumerate(demo_listings(count)):
        if not published:
            continue
        price: Any = listing["price"]
        location: Any = listing["location"]
        rows.append(
            {
                "id": uuid.uuid5(_NAMESPACE, str(n)),
                "title": listing["title"],
                "description": listing["description"],
                "price_amount": price["amount"],
                "currency": price["currency"],
                "category_slug": listing["category"],
                "condition": listing["condition"],
                "quantity": listing["quantity"],
                "image_urls": [],
                "lat": location["lat"],
                "lng": location["lng"],
                "city": location["city"],
                "country": location["country"],
                "attributes": listing["attributes"],
                "seller_index": n % len(DEMO_SELLERS),
            }
        )
    return rows


async def load_corpus(database_url: str, count: int = LISTING_COUNT) -> dict[str, CorpusListing]:
    """Write the demo sellers and their published listings into a migrated database that has none yet;
    returns them by id. Published a second apart in catalogue order, so "newest" breaks ties the same way
    every run."""
    rows = demo_corpus(count)
    engine = create_async_engine(database_url, pool_size=1)
    published = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            sellers = [
                User(email=email, password_hash="x", display_name=name, roles=["seller"])
                for email, name in DEMO_SELLERS
            ]
            session.add_all(sellers)
            await session.flush()
            values = []
            for n, row in enumerate(rows):
                fields = {k: v for k, v in row.items() if k != "seller_index"}
                at = published + timedelta(seconds=n)
                values.append(
                    {
                        **fields,
                        "seller_id": sellers[row["seller_index"]].id,
                        "status": ListingStatus.ACTIVE,
                        "version": 1,
                        "view_count": 0,
                        "order_count": 0,
                        "published_at": at,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
            await session.execute(insert(Listing), values)
    finally:
        await engine.dispose()
    return {
        str(r["id"]): CorpusListing(
            str(r["id"]), r["title"], r["category_slug"], r["city"], r["price_amount"] / 100
        )
        for r in rows
    }


async def index_corpus(settings: Settings) -> float:
    """Build `settings.meili_index` from the database with the production reindex; returns its seconds."""
    report = await reindex(settings, progress=False)
    return report.seconds


# ------------------------------------------------------------------------------------------ evaluation


@dataclass
class Scored:
    q: str
    kind: str
    held_out: bool
    ndcg: dict[str, float] = field(default_factory=dict)
    rr: dict[str, float] = field(default_factory=dict)
    top: dict[str, list[str]] = field(default_factory=dict)  # the titles (and grades) of the first hits


@dataclass
class Evaluation:
    scored: list[Scored]
    listings: int
    seconds: float

    def mean(self, metric: str, backend: str, kind: str | None = None, held_out: bool | None = None) -> float:
        values = [
            getattr(s, metric)[backend]
            for s in self.scored
            if (kind is None or s.kind == kind) and (held_out is None or s.held_out == held_out)
        ]
        return round(statistics.fmean(values), 4) if values else 0.0

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(s.kind for s in self.scored))

    def figures(self) -> dict[str, Any]:
        return {
            backend: {
                "ndcg_at_10": self.mean("ndcg", backend),
                "mrr_at_10": self.mean("rr", backend),
                "tuned_on": {
                    "queries": sum(1 for s in self.scored if not s.held_out),
                    "ndcg_at_10": self.mean("ndcg", backend, held_out=False),
                    "mrr_at_10": self.mean("rr", backend, held_out=False),
                },
                "held_out": {
                    "queries": sum(1 for s in self.scored if s.held_out),
                    "ndcg_at_10": self.mean("ndcg", backend, held_out=True),
                    "mrr_at_10": self.mean("rr", backend, held_out=True),
                },
                "by_kind": {
                    kind: {
                        "queries": sum(1 for s in self.scored if s.kind == kind),
                        "ndcg_at_10": self.mean("ndcg", backend, kind),
                        "mrr_at_10": self.mean("rr", backend, kind),
                    }
                    for kind in self.kinds()
                },
            }
            for backend in BACKENDS
        }


async def evaluate(
    judged: list[JudgedQuery],
    corpus: dict[str, CorpusListing],
    *,
    meili: Meili,
    index: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Evaluation:
    """Every judged query through both backends (the first page of K hits, relevance order)."""
    started = time.perf_counter()
    scored = []
    for judged_query in judged:
        grades = {i: judged_query.grade(listing) for i, listing in corpus.items()}
        if max(grades.values(), default=0) < RELEVANT:
            raise ValueError(f"{judged_query.q!r}: no listing of the corpus is graded {RELEVANT} or more")
        query = ListingQuery(q=judged_query.q, per_page=K)
        hits = {"meilisearch": [h["id"] for h in (await search_meili(meili, index, query)).hits]}
        async with sessionmaker() as session, session.begin():
            tree = await listings.taxonomy(session)
            hits["postgres"] = [h["id"] for h in (await search_postgres(session, query, tree)).hits]
        one = Scored(judged_query.q, judged_query.kind, judged_query.held_out)
        for backend, ids in hits.items():
            ranked = [grades.get(i, 0) for i in ids]
            one.ndcg[backend] = ndcg(ranked, grades.values())
            one.rr[backend] = reciprocal_rank(ranked)
            one.top[backend] = [
                f"{g} {corpus[i].title} ({corpus[i].city}, {corpus[i].price:g})" if i in corpus else f"? {i}"
                for i, g in zip(ids, ranked, strict=True)
            ]
        scored.append(one)
    return Evaluation(scored, len(corpus), time.perf_counter() - started)
