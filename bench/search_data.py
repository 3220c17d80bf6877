"""The search bench's data: listings generated like the demo data's (templates, cities, conditions) and
bulk-loaded into PostgreSQL with COPY, and the four query shapes buyers send. Needs the repository root on
sys.path (bench/search.py puts it there)."""

from __future__ import annotations

import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.types.json import Jsonb

from bazaar.pg_listen import libpq_url
from bazaar.search.query import ListingQuery, SortOrder
from devstack.demo import CITIES, CONDITIONS, TEMPLATES

SHAPES = ["text", "text_category_price_sort", "geo_radius", "text_facets"]
# Top-level categories of the managed taxonomy (migration 0001): a category filter includes sub-categories.
ROOT_CATEGORIES = ["books-media", "electronics", "fashion", "home", "kids", "sports"]
FILLER = (
    "great condition works perfectly original box receipt included smoke free home collection only "
    "shipping possible price negotiable barely used some scratches fully functional cleaned tested "
    "comes with manual spare parts rarely used moving sale quick sale gift unwanted upgrade"
).split()


def query_words() -> list[str]:
    """Words buyers type: item words from the listing templates (3+ letters)."""
    words = {w.strip(",.").lower() for t in TEMPLATES for item in t.items for w in item.split()}
    return sorted(w for w in words if len(w) >= 3 and w.isalpha())


def generate(count: int, sellers: list[uuid.UUID], rng: random.Random) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    for _ in range(count):
        template = rng.choice(TEMPLATES)
        item, adjective = rng.choice(template.items), rng.choice(template.adjectives)
        city, country, lat, lng = rng.choice(CITIES)
        condition = rng.choice(CONDITIONS)
        low, high = template.price_range
        price = max(100, int(math.exp(rng.uniform(math.log(low), math.log(high)))))
        currency = rng.choices(["EUR", "GBP", "USD"], weights=[90, 5, 5])[0]
        description = (
            f"{item} in {condition.replace('_', ' ')} condition, {adjective}. "
            + " ".join(rng.choices(FILLER, k=rng.randint(8, 30)))
            + f". Pick-up in {city}."
        )
        published = now - timedelta(seconds=rng.randint(0, 90 * 86400))
        rows.append(
            (
                uuid.uuid4(),
                rng.choice(sellers),
                f"{item}, {adjective}",
                description,
                price,
                currency,
                template.category,
                condition,
                rng.randint(1, 3),
                lat + rng.uniform(-0.15, 0.15),
                lng + rng.uniform(-0.15, 0.15),
                city,
                country,
                "active",
                1,
                int(rng.paretovariate(1.5)) - 1,
                rng.choice([0, 0, 0, 1, 2]),
                published,
                published,
                published,
                [],
                Jsonb({}),
            )
        )
    return rows


def bulk_load(database_url: str, listings: int, seller_count: int) -> tuple[list[uuid.UUID], float]:
    """COPY sellers and listings straight into PostgreSQL (no outbox: the reindex builds the index)."""
    rng = random.Random(42)
    sellers = [uuid.uuid4() for _ in range(seller_count)]
    started = time.perf_counter()
    with psycopg.connect(libpq_url(database_url)) as conn:
        with conn.cursor().copy(
            "COPY users (id, email, password_hash, display_name, roles, is_active) FROM STDIN"
        ) as copy:
            for n, seller in enumerate(sellers):
                copy.write_row(
                    (seller, f"bench-seller-{n}@example.com", "x", f"Bench seller {n}", ["seller"], True)
                )
        columns = (
            "id, seller_id, title, description, price_amount, currency, category_slug, condition, "
            "quantity, lat, lng, city, country, status, version, view_count, order_count, "
            "published_at, created_at, updated_at, image_urls, attributes"
        )
        with conn.cursor().copy(f"COPY listings ({columns}) FROM STDIN") as copy:
            copy.set_types(
                [
                    "uuid",
                    "uuid",
                    "text",
                    "text",
                    "int8",
                    "text",
                    "text",
                    "text",
                    "int4",
                    "float8",
                    "float8",
                    "text",
                    "text",
                    "text",
                    "int4",
                    "int8",
                    "int8",
                    "timestamptz",
                    "timestamptz",
                    "timestamptz",
                    "text[]",
                    "jsonb",
                ]
            )
            for start in range(0, listings, 10_000):
                for row in generate(min(10_000, listings - start), sellers, rng):
                    copy.write_row(row)
        conn.execute("ANALYZE listings")
    return sellers, time.perf_counter() - started


# --------------------------------------------------------------------------------------- queries


def make_queries(shape: str, rng: random.Random, count: int = 200) -> list[ListingQuery]:
    words = query_words()
    queries = []
    for _ in range(count):
        city = rng.choice(CITIES)
        match shape:
            case "text":
                q = ListingQuery(q=rng.choice(words))
            case "text_category_price_sort":
                category = rng.choice(ROOT_CATEGORIES)
                low = rng.choice([500, 1_000, 2_000, 5_000])
                q = ListingQuery(
                    q=rng.choice(words),
                    categories=[category],
                    min_price=low,
                    max_price=low * rng.choice([5, 10, 20]),
                    currency="EUR",
                    sort=rng.choice([SortOrder.PRICE_ASC, SortOrder.NEWEST]),
                )
            case "geo_radius":
                q = ListingQuery(
                    lat=city[2], lng=city[3], radius_km=rng.choice([5.0, 10.0, 25.0]), sort=SortOrder.DISTANCE
                )
            case "text_facets":
                q = ListingQuery(q=rng.choice(words), facets=True)
            case _:
                raise ValueError(shape)
        queries.append(q)
    return queries


def api_target(q: ListingQuery) -> str:
    params: dict[str, Any] = {"q": q.q, "sort": q.sort.value}
    if q.categories:
        params["category"] = q.categories
    for name in ("min_price", "max_price", "currency", "lat", "lng", "radius_km"):
        if getattr(q, name) is not None:
            params[name] = getattr(q, name)
    if q.facets:
        params["facets"] = "true"
    return "/v1/search/listings?" + urlencode(params, doseq=True)
