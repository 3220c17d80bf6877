"""The order bench's world and load mechanics: sellers with payout accounts and published listings, buyers
(all made through the API before anything is measured), a closed-loop load runner, and what a run records."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

PASSWORD = "bench-password-1"  # noqa: S105 (throwaway users of a throwaway stack)


# ----------------------------------------------------------------------------------------- stats


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile, in ms (values in seconds)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))] * 1000, 2)


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    order_ids: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])

    def summary(self) -> dict[str, Any]:
        n = len(self.latencies)
        return {
            "n": n,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "seconds": round(self.seconds, 3),
            "orders_per_s": round(n / self.seconds, 3) if self.seconds else 0.0,
            "p50_ms": pct(self.latencies, 0.50),
            "p95_ms": pct(self.latencies, 0.95),
            "max_ms": round(max(self.latencies) * 1000, 2) if self.latencies else float("nan"),
        }


async def closed_loop(count: int, concurrency: int, one: Callable[[int, int], Awaitable[None]]) -> float:
    """Run `one(slot, n)` for n in range(count) on `concurrency` slots; the wall seconds it took."""
    counter = iter(range(count))
    started = time.perf_counter()

    async def slot(k: int) -> None:
        for n in counter:
            await one(k, n)

    await asyncio.gather(*(slot(k) for k in range(concurrency)))
    return time.perf_counter() - started


# ----------------------------------------------------------------------------------------- world


@dataclass
class Party:
    user_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    sellers: list[Party]
    buyers: list[Party]
    listings: list[tuple[str, Party]]  # (listing id, its seller)

    def slot(self, k: int) -> tuple[Party, str, Party]:
        """Buyer, listing and seller of load slot k."""
        listing, seller = self.listings[k % len(self.listings)]
        return self.buyers[k % len(self.buyers)], listing, seller


async def register(http: httpx.AsyncClient, role: str, n: int, run: str) -> Party:
    email = f"bench-{role}-{n}-{run}@example.com"
    created = await http.post(
        "/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": f"Bench {role} {n}", "roles": [role]},
    )
    created.raise_for_status()
    token = await http.post("/v1/auth/token", data={"username": email, "password": PASSWORD})
    token.raise_for_status()
    access = token.json()["access_token"]
    me = await http.get("/v1/users/me", headers={"Authorization": f"Bearer {access}"})  # 202 names no account
    me.raise_for_status()
    return Party(me.json()["id"], access)


async def build_world(api_url: str, sellers: int, listings_per_seller: int, buyers: int) -> World:
    """Sellers with payout accounts and published listings of 10,000, and buyers, all through the API."""
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        seller_parties = [await register(http, "seller", n, run) for n in range(sellers)]
        listings = []
        for n, seller in enumerate(seller_parties):
            payout = await http.post(
                "/v1/payout-account",
                json={"country": "DE", "default_currency": "EUR"},
                headers=seller.auth,
            )
            payout.raise_for_status()
            for m in range(listings_per_seller):
                created = await http.post(
                    "/v1/listings",
                    headers=seller.auth,
                    json={
                        "title": f"Bench road bike {n}-{m} {run}",
                        "description": "Carbon frame, 56 cm",
                        "price": {"amount": 45_000, "currency": "EUR"},
                        "category": "bikes",
                        "condition": "good",
                        "quantity": 10_000,
                        "location": {"lat": 52.52, "lng": 13.405, "city": "Berlin", "country": "DE"},
                    },
                )
                created.raise_for_status()
                listing_id = created.json()["id"]
                published = await http.post(f"/v1/listings/{listing_id}/publish", headers=seller.auth)
                published.raise_for_status()
                listings.append((listing_id, seller))
        buyer_parties = [await register(http, "buyer", n, run) for n in range(buyers)]
    return World(seller_parties, buyer_parties, listings)
