"""A private search stack beside the shared one: its own database (in the `infra` PostgreSQL), its own
Meilisearch (so tests may kill it), and its own search_sync and API processes on that database.

The shared `stack` is never touched: its sync drains the shared outbox into the shared Meilisearch, while
these tests need to kill and restart the sync and Meilisearch at will.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from api.listing_schemas import SearchOut
from bazaar.auth import Principal
from bazaar.errors import DomainError
from bazaar.listings import lifecycle as listings
from bazaar.models import AuthSession, Listing, Order, OrderStatus, PayoutAccount, SearchOutbox, User
from bazaar.pg_listen import libpq_url
from bazaar.settings import Settings
from bazaar.trust import reviews
from bazaar.trust.models import Review, ReviewDirection, ReviewWindow
from devstack import services
from devstack.process import ManagedProcess, Supervisor, wait_until
from devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "private-master-key-0123456789abcdef"


@dataclass
class PrivateSearch:
    infra: Stack
    base: Path
    sup: Supervisor
    database_url: str
    index: str
    meili_port: int
    api_port: int
    meili: services.MeiliService | None = None
    sync: ManagedProcess | None = None
    api: ManagedProcess | None = None
    _engine: Any = field(default=None, repr=False)

    @property
    def meili_url(self) -> str:
        return f"http://{services.LOOPBACK}:{self.meili_port}"

    def settings(self) -> Settings:
        """Settings of this private search (its database, Meilisearch and index), for in-process commands."""
        return Settings(
            _env_file=None,
            database_url=self.database_url,
            meili_url=self.meili_url,
            meili_master_key=MASTER_KEY,
            meili_index=self.index,
        )

    @property
    def api_url(self) -> str:
        return f"http://{services.LOOPBACK}:{self.api_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **self.infra.child_env(),  # with a throwaway stack's relaxed request limits
            "DATABASE_URL": self.database_url,
            "MEILI_URL": self.meili_url,
            "MEILI_MASTER_KEY": MASTER_KEY,
            "MEILI_INDEX": self.index,
            "PYTHONUNBUFFERED": "1",
            "SEARCH_SYNC_MAX_BACKOFF_SECONDS": "0.5",
            "SEARCH_SYNC_POLL_SECONDS": "0.2",
            **extra,
        }
        return env

    # ------------------------------------------------------------------------------------ Meilisearch

    def start_meili(self) -> None:
        # devstack caps Meilisearch's indexing memory (services.MEILI_MAX_INDEXING_MEMORY): tasks stay fast.
        self.meili = services.start_meilisearch(
            self.sup, self.base, self.meili_port, master_key=MASTER_KEY, index_pattern=f"{self.index}*"
        )

    def kill_meili(self) -> None:
        """An outage: SIGKILL, no clean shutdown (its data stays on disk for the restart)."""
        assert self.meili is not None
        self.meili.proc.stop_signal = signal.SIGKILL
        self.meili.proc.stop(timeout=10)
        self.meili = None

    @property
    def search_key(self) -> str:
        assert self.meili is not None
        return self.meili.search_key

    def master(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.meili_url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30
        )

    # ----------------------------------------------------------------------------------- app processes

    def start_sync(self) -> ManagedProcess:
        assert self.sync is None or not self.sync.alive()
        self.sync = self.sup.spawn(
            "search-sync", [sys.executable, "-m", "search_sync"], env=self.env(), cwd=ROOT
        )
        return self.sync

    def kill_sync(self) -> None:
        """A crash: SIGKILL, wherever it is in its batch."""
        assert self.sync is not None
        os.killpg(self.sync.pid, signal.SIGKILL)
        self.sync.wait(10)
        self.sync.stopping = True

    def start_api(self) -> None:
        env = self.env(
            MEILI_SEARCH_KEY=self.search_key,
            API_PORT=str(self.api_port),
            SEARCH_BREAKER_RETRY_SECONDS="0.5",
            MEILI_SEARCH_TIMEOUT_SECONDS="1.0",
            POPULARITY_FLUSH_SECONDS="0.3",
        )
        env.pop("MEILI_MASTER_KEY")  # the API must work with the search-only key alone
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:app",
            "--host",
            services.LOOPBACK,
            "--port",
            str(self.api_port),
        ]
        self.api = self.sup.spawn("api", argv, env=env, cwd=ROOT)
        wait_until(
            "private api",
            lambda: httpx.get(f"{self.api_url}/healthz").status_code == 200,
            timeout=60,
            proc=self.api,
            interval=0.1,
        )

    # ---------------------------------------------------------------------------------------- database

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A transaction on the private database (committed at the end)."""
        if self._engine is None:
            self._engine = create_async_engine(self.database_url, pool_size=4)
        async with async_sessionmaker(self._engine, expire_on_commit=False)() as s, s.begin():
            yield s

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def outbox_rows(self) -> int:
        async with self.session() as s:
            return int(await s.scalar(select(func.count()).select_from(SearchOutbox)) or 0)

    async def wait_drained(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while True:
            left = await self.outbox_rows()
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert left == 0, f"{left} outbox rows still waiting after {within}s"

    async def seller(self) -> Principal:
        """A seller with a payout account, written directly (no provider round trip in this database)."""
        async with self.session() as s:
            user = User(
                email=f"s-{uuid.uuid4().hex[:12]}@example.com",
                password_hash="x",
                display_name="S",
                roles=["seller"],
            )
            s.add(user)
            await s.flush()
            s.add(
                PayoutAccount(
                    user_id=user.id,
                    provider_account_id=f"acct_{uuid.uuid4().hex[:16]}",
                    country="DE",
                    default_currency="EUR",
                )
            )
            return Principal(user_id=user.id, roles=frozenset({"seller"}))

    def documents(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The index's documents for these ids (absent ones are missing from the result)."""
        with self.master() as client:
            found: dict[str, dict[str, Any]] = {}
            for start in range(0, len(ids), 1000):
                r = client.post(
                    f"/indexes/{self.index}/documents/fetch",
                    json={"ids": ids[start : start + 1000], "limit": 1000},
                )
                r.raise_for_status()
                found.update({d["id"]: d for d in r.json()["results"]})
            return found

    async def assert_index_matches_db(self, ids: list[uuid.UUID]) -> None:
        """Every public listing is in the index at its current version; no other listing is."""
        async with self.session() as s:
            rows = {x.id: x for x in (await s.scalars(select(Listing).where(Listing.id.in_(ids)))).all()}
        docs = self.documents([str(i) for i in ids])
        for listing_id in ids:
            row = rows.get(listing_id)
            doc = docs.get(str(listing_id))
            if row is None or row.status.value != "active":
                assert doc is None, f"{listing_id} ({row.status if row else 'deleted'}) is still in the index"
            else:
                assert doc is not None, f"active listing {listing_id} is missing from the index"
                assert (doc["version"], doc["price_amount"], doc["popularity"]) == (
                    row.version,
                    row.price_amount,
                    row.view_count + 10 * row.order_count,
                ), f"{listing_id}: index has v{doc['version']}, database v{row.version}"


def listing_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "title": f"Private listing {uuid.uuid4().hex[:6]}",
        "description": "Works well.",
        "price_amount": 1000,
        "currency": "EUR",
        "category_slug": "bikes",
        "condition": "good",
        "quantity": 1,
        "image_urls": [],
        "lat": 52.52,
        "lng": 13.405,
        "city": "Berlin",
        "country": "DE",
        "attributes": {},
    }
    fields.update(overrides)
    return fields


def create_private(infra: Stack, base: Path, sup: Supervisor) -> PrivateSearch:
    """Database (migrated), Meilisearch, search sync and API; the caller stops `sup` at the end."""
    name = f"bazaar_priv_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(infra.database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = infra.database_url.rsplit("/", 1)[0] + f"/{name}"
    meili_port, api_port = services.free_ports(2)
    priv = PrivateSearch(
        infra=infra,
        base=base,
        sup=sup,
        database_url=database_url,
        index=f"listings_priv_{uuid.uuid4().hex[:6]}",
        meili_port=meili_port,
        api_port=api_port,
    )
    migrate = subprocess.run(
        [sys.executable, "-m", "cli", "migrate"],
        env=priv.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    priv.start_meili()
    priv.start_sync()
    priv.start_api()
    return priv


def now() -> datetime:
    return datetime.now(UTC)


async def reveal_reviews(session: AsyncSession, listing_id: uuid.UUID, stars: list[int]) -> None:
    """Rate the listing's seller: per rating a completed order from a new buyer, with a buyer-to-seller review,
    revealed by the review round's own step (bazaar.trust.reviews.reveal, which counts it through
    reputation.apply_review). In the caller's transaction, so the reputation and the outbox rows for the
    seller's listings commit together."""
    listing = await session.get(Listing, listing_id)
    assert listing is not None
    for rating in stars:
        buyer = User(
            email=f"b-{uuid.uuid4().hex[:12]}@example.com",
            password_hash="x",
            display_name="B",
            roles=["buyer"],
        )
        session.add(buyer)
        await session.flush()
        order_id = uuid.uuid4()
        session.add(
            Order(
                id=order_id,
                buyer_id=buyer.id,
                seller_id=listing.seller_id,
                listing_id=listing.id,
                listing_title=listing.title,
                quantity=1,
                unit_amount=listing.price_amount,
                amount=listing.price_amount,
                currency=listing.currency,
                status=OrderStatus.COMPLETED,
                idempotency_key=f"rating-test-{order_id}",
                workflow_id=f"order-{order_id}",
            )
        )
        await session.flush()
        session.add(
            ReviewWindow(order_id=order_id, buyer_id=buyer.id, seller_id=listing.seller_id, closes_at=now())
        )
        session.add(
            Review(
                order_id=order_id,
                author_id=buyer.id,
                subject_id=listing.seller_id,
                direction=ReviewDirection.BUYER_TO_SELLER,
                rating=rating,
            )
        )
        await session.flush()
        assert [r.rating for r in await reviews.reveal(session, order_id)] == [rating]


def rate_seller(database_url: str, listing_id: str, stars: list[int]) -> None:
    """reveal_reviews in a transaction of its own, for synchronous tests (e.g. over HTTP on the shared stack)."""

    async def run() -> None:
        engine = create_async_engine(database_url, pool_size=1)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                await reveal_reviews(session, uuid.UUID(listing_id), stars)
        finally:
            await engine.dispose()

    asyncio.run(run())


# ---- shared by the private stack's tests ------------------------------------------------------------


async def churn(
    private: PrivateSearch, seller: Principal, ids: list[uuid.UUID], changes: int, rng: random.Random
) -> list[uuid.UUID]:
    """Many small committed changes of every kind; returns the ids of listings it created."""
    created: list[uuid.UUID] = []
    for n in range(changes):
        target = rng.choice(ids)
        try:
            async with private.session() as s:
                roll = rng.random()
                if roll < 0.7:
                    await listings.update(s, target, seller, None, {"price_amount": rng.randint(100, 99_999)})
                elif roll < 0.8:
                    await listings.archive(s, target, seller, None)
                elif roll < 0.9:
                    await listings.publish(s, target, seller, None)
                elif roll < 0.95:
                    await listings.update(s, target, seller, None, {"quantity": rng.choice([0, 1, 2])})
                else:
                    new = await listings.create(s, seller, listing_fields(price_amount=n + 1))
                    created.append(new.id)
        except DomainError:
            pass  # e.g. publishing an active listing or editing an archived one: not a change
    return created


def get(private: PrivateSearch, **params: Any) -> httpx.Response:
    response = httpx.get(f"{private.api_url}/v1/search/listings", params=params, timeout=10)
    assert response.status_code == 200, response.text
    SearchOut.model_validate(response.json())  # both backends answer in the documented shape
    return response


def backend(private: PrivateSearch) -> str:
    return get(private, q="anything").headers["X-Search-Backend"]


async def token_for(private: PrivateSearch, user_id: uuid.UUID) -> dict[str, str]:
    """An access token of a new login session of `user_id` (a token names a live session: bazaar.auth)."""
    async with private.session() as s:
        user = await s.get(User, user_id)
        assert user is not None
        login = AuthSession(
            user_id=user_id, token_version=user.token_version, expires_at=now() + timedelta(minutes=10)
        )
        s.add(login)
        await s.flush()
        claims = {
            "sub": str(user_id),
            "sid": str(login.id),
            "ver": user.token_version,
            "roles": list(user.roles),
            "exp": int(time.time()) + 600,
        }
    return {"Authorization": f"Bearer {jwt.encode(claims, private.infra.jwt_secret, algorithm='HS256')}"}
