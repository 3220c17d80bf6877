"""Search benchmark: 100,000 listings, four query shapes, three concurrencies, three ways to search, and
index freshness under a steady write load, all in one run on services started for it.

    .venv/bin/python bench/search.py            # make bench; see --help for sizes and durations

What it does, in order:
1. Starts the embedded stack (devstack: PostgreSQL, Temporal, Meilisearch, Stripe sandbox, worker, search
   sync, API) on free ports in a temp dir, plus a second API process whose Meilisearch URL points at a
   closed port: that one always answers from the PostgreSQL fallback.
2. Bulk-loads sellers and listings into PostgreSQL with COPY, then builds the index with the production
   reindex (snapshot -> new index -> swap): indexing throughput.
3. For each query shape (text; text + category + price range + sort; geo radius; text + facets) and
   concurrency 1, 8, 32: latency percentiles and throughput through our API (Meilisearch), straight
   against Meilisearch with the same request body the API sends, and through the API's PostgreSQL fallback.
4. Raw single-document task latency (one document per task, polled like search_sync polls), then, at each
   write rate, change-to-searchable latency under a steady stream of listing edits through the API, and the
   same changes at the same rate written straight to Meilisearch (one single-document task each: what
   Meilisearch itself does at that rate, its own batching included).
The last line printed is one JSON object with every figure and ratio.

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio (bench/http1.py, one connection per
worker), so that on a 2-core machine the client's own overhead stays small next to the servers it measures.
The listings and the queries are made in bench/search_data.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import operator
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
import psycopg  # noqa: E402
from http1 import Http1  # noqa: E402
from processes import log, start_stack, temp_stack  # noqa: E402
from search_data import SHAPES, api_target, bulk_load, make_queries  # noqa: E402

from bazaar.pg_listen import libpq_url  # noqa: E402
from bazaar.search.meili import Meili  # noqa: E402
from bazaar.search.outbox import SYNCED_CHANNEL  # noqa: E402
from bazaar.search.query import build_request  # noqa: E402
from bazaar.settings import Settings, get_settings  # noqa: E402
from devstack import services  # noqa: E402
from devstack.stack import Stack  # noqa: E402
from search_sync.reindex import reindex  # noqa: E402

TARGETS = ["api", "raw", "pg"]


# ------------------------------------------------------------------------------------------ load


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    backend_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else float("nan")

        out = {
            "n": len(lat),
            "errors": self.errors,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "rps": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
        }
        if self.backend_ms:
            out["backend_p50_ms"] = round(statistics.median(self.backend_ms), 3)
        return out


Call = Callable[[Http1, int], Awaitable[tuple[bool, float | None]]]


async def load(call: Call, url: str, concurrency: int, duration: float, warmup: float) -> Stats:
    """`concurrency` closed-loop workers; requests started inside the measured window are counted."""
    stats = Stats(seconds=duration)
    begin = time.perf_counter() + warmup
    end = begin + duration
    counter = iter(range(10**9))

    async def worker() -> None:
        conn = Http1(url)
        try:
            while (now := time.perf_counter()) < end:
                started = time.perf_counter()
                try:
                    ok, backend = await call(conn, next(counter))
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    ok, backend = False, None
                    await conn.close()
                elapsed = time.perf_counter() - started
                if now >= begin:
                    if ok:
                        stats.latencies.append(elapsed)
                        if backend is not None:
                            stats.backend_ms.append(backend)
                    else:
                        stats.errors += 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stats


def server_timing(header: str) -> dict[str, float]:
    """`meilisearch;dur=1.52, handler;dur=1.80` -> {"meilisearch": 1.52, "handler": 1.8}."""
    out = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition(";dur=")
        if sep:
            out[name] = float(value)
    return out


def api_call(targets: list[str], expect_backend: str) -> Call:
    async def call(conn: Http1, n: int) -> tuple[bool, float | None]:
        status, headers, _ = await conn.request("GET", targets[n % len(targets)])
        backend = server_timing(headers.get("server-timing", "")).get(expect_backend)
        return status == 200 and headers.get("x-search-backend") == expect_backend, backend

    return call


def raw_call(index: str, key: str, bodies: list[bytes]) -> Call:
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def call(conn: Http1, n: int) -> tuple[bool, float | None]:
        status, _, _ = await conn.request("POST", f"/indexes/{index}/search", bodies[n % len(bodies)], auth)
        return status == 200, None

    return call


# ------------------------------------------------------------------------------------- freshness


def percentiles(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    if not s:
        return {"n": 0}
    return {
        "n": len(s),
        "p50_ms": round(s[len(s) // 2] * 1000, 1),
        "p99_ms": round(s[min(len(s) - 1, int(0.99 * len(s)))] * 1000, 1),
        "max_ms": round(s[-1] * 1000, 1),
    }


def meili_time(stamp: str) -> datetime:
    """Meilisearch's RFC 3339 times (UTC, 'Z', 0-9 fraction digits; Python takes at most 6)."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00")


async def raw_task_latency(meili_url: str, master_key: str, index: str, ids: list[str]) -> dict[str, Any]:
    """One small document update per task, waited for the way search_sync waits (same client code)."""
    meili = Meili(meili_url, master_key, timeout=30)
    client_side, server_side = [], []
    try:
        for n, doc_id in enumerate(ids):
            started = time.perf_counter()
            task = await meili.wait_task(
                await meili.enqueue(
                    "PUT", f"/indexes/{index}/documents", json=[{"id": doc_id, "popularity": n}]
                )
            )
            client_side.append(time.perf_counter() - started)
            enqueued, finished = meili_time(task["enqueuedAt"]), meili_time(task["finishedAt"])
            server_side.append((finished - enqueued).total_seconds())
            await asyncio.sleep(0.02)
    finally:
        await meili.aclose()
    return {"client": percentiles(client_side), "meili_enqueued_to_finished": percentiles(server_side)}


async def probe(
    meili: Meili, index: str, doc_id: str, field: str, served: Callable[[Any], bool], since: float
) -> float | None:
    """Seconds from `since` until Meilisearch serves the document with `served(field)` true (None: not in 30 s)."""
    deadline = since + 30
    while time.perf_counter() < deadline:
        doc = await meili.request("GET", f"/indexes/{index}/documents/{doc_id}", params={"fields": field})
        if served(doc.get(field)):
            return time.perf_counter() - since
        await asyncio.sleep(0.002)
    return None


async def change_to_searchable(
    stack: Stack, index: str, writes: list[tuple[str, str, str, int]], rate: float
) -> dict[str, Any]:
    """Edits through the API at `rate`/s; each one timed from its 200 until Meilisearch serves the new version."""
    api = Http1(stack.api_url)
    meili = Meili(stack.meili_url, stack.meili_master_key, timeout=10)
    synced: list[float] = []
    listener = await psycopg.AsyncConnection.connect(libpq_url(stack.database_url), autocommit=True)
    await listener.execute(f"LISTEN {SYNCED_CHANNEL}")

    async def collect() -> None:
        async for notify in listener.notifies():
            synced.extend(ms / 1000 for ms in json.loads(notify.payload)["ms"])

    collector = asyncio.create_task(collect())
    latencies: list[float] = []
    probes: list[asyncio.Task[float | None]] = []

    started = time.perf_counter()
    try:
        for n, (listing_id, token, currency, amount) in enumerate(writes):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            body = json.dumps({"price": {"amount": amount + n, "currency": currency}}).encode()
            status, _, payload = await api.request(
                "PATCH",
                f"/v1/listings/{listing_id}",
                body,
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "If-Match": "*"},
            )
            done = time.perf_counter()
            if status == 200:
                version = json.loads(payload)["version"]
                served = probe(meili, index, listing_id, "version", partial(operator.le, version), done)
                probes.append(asyncio.create_task(served))
        latencies = [t for t in await asyncio.gather(*probes) if t is not None]
        await asyncio.sleep(0.5)  # last sync notifications
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await listener.close()
        await api.close()
        await meili.aclose()
    return {
        "writes": len(writes),
        "rate_per_s": rate,
        "api_response_to_searchable": percentiles(latencies),
        "sync_measured_outbox_to_task_succeeded": percentiles(synced),
    }


async def raw_change_to_searchable(
    meili_url: str, master_key: str, index: str, ids: list[str], rate: float
) -> dict[str, Any]:
    """The baseline of `change_to_searchable` at the same rate: one single-document task per change sent straight
    to Meilisearch (no API, no outbox, no sync), each timed from its enqueue answer until Meilisearch serves it."""
    meili = Meili(meili_url, master_key, timeout=10)
    latencies: list[float] = []
    probes: list[asyncio.Task[float | None]] = []

    started = time.perf_counter()
    try:
        for n, doc_id in enumerate(ids):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            marker = 1_000_000 + n  # what no other writer sets: this change is served when it shows
            await meili.enqueue(
                "PUT", f"/indexes/{index}/documents", json=[{"id": doc_id, "popularity": marker}]
            )
            served = probe(
                meili, index, doc_id, "popularity", partial(operator.eq, marker), time.perf_counter()
            )
            probes.append(asyncio.create_task(served))
        latencies = [t for t in await asyncio.gather(*probes) if t is not None]
    finally:
        await meili.aclose()
    return {"writes": len(ids), "rate_per_s": rate, "enqueued_to_searchable": percentiles(latencies)}


# ------------------------------------------------------------------------------------------ main


async def measure_search(stack: Stack, pg_api_url: str, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rng = random.Random(7)
    for shape in SHAPES:
        queries = make_queries(shape, rng)
        api_targets = [api_target(q) for q in queries]
        bodies = [json.dumps(build_request(q)).encode() for q in queries]
        calls = {
            "api": api_call(api_targets, "meilisearch"),
            "raw": raw_call("listings", stack.meili_search_key or "", bodies),
            "pg": api_call(api_targets, "postgres"),
        }
        urls = {"api": stack.api_url, "raw": stack.meili_url, "pg": pg_api_url}
        results[shape] = {}
        for target in TARGETS:
            results[shape][target] = {}
            for concurrency in args.concurrency:
                stats = await load(calls[target], urls[target], concurrency, args.duration, args.warmup)
                results[shape][target][f"c{concurrency}"] = summary = stats.summary()
                log(
                    f"  {shape:26} {target:4} c={concurrency:<3} p50 {summary['p50_ms']:8.2f} ms  "
                    f"p95 {summary['p95_ms']:8.2f}  p99 {summary['p99_ms']:8.2f}  {summary['rps']:8.1f} req/s  "
                    f"errors {summary['errors']}"
                    + (
                        f"  (backend p50 {summary['backend_p50_ms']:.2f} ms)"
                        if "backend_p50_ms" in summary
                        else ""
                    )
                )
    return results


def ratios(search: dict[str, Any], concurrency: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, targets in search.items():
        api, raw = targets["api"], targets["raw"]
        one, eight = f"c{concurrency[0]}", "c8" if "c8" in api else f"c{concurrency[-1]}"
        out[shape] = {
            "api_over_raw_p50_c1": round(api[one]["p50_ms"] / raw[one]["p50_ms"], 2),
            "api_over_raw_rps_c8": round(api[eight]["rps"] / raw[eight]["rps"], 2),
            "api_overhead_p50_ms_c1": round(api[one]["p50_ms"] - api[one].get("backend_p50_ms", 0.0), 2),
            "pg_over_api_p50_c1": round(targets["pg"][one]["p50_ms"] / api[one]["p50_ms"], 2),
        }
    return out


def seller_writes(stack: Stack, count: int) -> list[tuple[str, str, str, int]]:
    """`count` (listing, seller token, currency, price) to edit through the API."""
    with psycopg.connect(libpq_url(stack.database_url)) as conn:
        rows = conn.execute(
            "SELECT id, seller_id, currency, price_amount FROM listings ORDER BY random() LIMIT %s", (count,)
        ).fetchall()
        exp = int(time.time()) + 3600
        tokens: dict[Any, str] = {}
        writes = []
        for listing_id, seller_id, currency, amount in rows:
            if seller_id not in tokens:
                # An access token names a live login session (bazaar.auth): one per bench seller.
                login = conn.execute(
                    "INSERT INTO auth_sessions (id, user_id, token_version, expires_at)"
                    " SELECT gen_random_uuid(), id, token_version, now() + interval '1 hour' FROM users"
                    " WHERE id = %s RETURNING id",
                    (seller_id,),
                ).fetchone()
                assert login is not None
                claims = {
                    "sub": str(seller_id),
                    "sid": str(login[0]),
                    "ver": 0,
                    "roles": ["seller"],
                    "exp": exp,
                }
                tokens[seller_id] = jwt.encode(claims, stack.jwt_secret, algorithm="HS256")
            writes.append((str(listing_id), tokens[seller_id], currency, amount))
    return writes


async def bench(stack: Stack, pg_api_url: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "listings": args.listings,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "meili_max_indexing_memory": os.environ["MEILI_MAX_INDEXING_MEMORY"],
    }
    log(f"loading {args.listings} listings into PostgreSQL (COPY) ...")
    _, load_seconds = bulk_load(stack.database_url, args.listings, args.sellers)
    report["postgres_copy_seconds"] = round(load_seconds, 2)
    log(f"  {args.listings / load_seconds:.0f} rows/s")

    log("building the index (bazaar reindex: snapshot, new index, swap) ...")
    rep = await reindex(get_settings(), progress=sys.stderr.isatty())
    report["indexing"] = {
        "documents": rep.documents,
        "seconds": round(rep.indexing_seconds, 2),
        "docs_per_second": round(rep.docs_per_second),
        "swap_done_after_s": round(rep.seconds, 2),
    }
    log(f"  {rep.documents} documents in {rep.indexing_seconds:.1f}s = {rep.docs_per_second:.0f} docs/s")

    log(
        "search latency and throughput (api = our API on Meilisearch, raw = Meilisearch directly, "
        "pg = our API on the PostgreSQL fallback) ..."
    )
    report["search"] = await measure_search(stack, pg_api_url, args)
    report["ratios"] = ratios(report["search"], args.concurrency)

    log("raw single-document Meilisearch task latency ...")
    sample_ids = [w[0] for w in seller_writes(stack, args.raw_tasks)]
    report["raw_task_latency"] = await raw_task_latency(
        stack.meili_url, stack.meili_master_key, "listings", sample_ids
    )
    log(f"  {report['raw_task_latency']}")
    # Two steady rates: one slower than a Meilisearch batch (each change gets its own batch: our pipeline's
    # own cost) and one faster (changes queue behind the batch in flight and share the next one).
    report["freshness"] = {}
    for rate in args.write_rate:
        log(f"change-to-searchable under {rate}/s listing edits through the API ...")
        seconds = max(args.write_seconds, 40 / rate)  # at least 40 samples
        writes = seller_writes(stack, int(rate * seconds))
        report["freshness"][f"{rate:g}_per_s"] = result = await change_to_searchable(
            stack, "listings", writes, rate
        )
        log(f"  {result}")
        log(f"the same changes at {rate}/s written straight to Meilisearch ...")
        result["raw_same_rate"] = raw = await raw_change_to_searchable(
            stack.meili_url, stack.meili_master_key, "listings", [w[0] for w in writes], rate
        )
        log(f"  {raw}")

    raw_p99 = report["raw_task_latency"]["client"]["p99_ms"]
    # Issue 13's bars and goals (docs/benchmarks.md, "Search speed and freshness").
    report["targets"] = {
        "api_p50_le_1_4x_raw_c1": {s: r["api_over_raw_p50_c1"] <= 1.4 for s, r in report["ratios"].items()},
        "api_p50_le_1_2x_raw_c1_goal": {
            s: r["api_over_raw_p50_c1"] <= 1.2 for s, r in report["ratios"].items()
        },
        "api_rps_ge_0_75x_raw_c8": {s: r["api_over_raw_rps_c8"] >= 0.75 for s, r in report["ratios"].items()},
        "api_rps_ge_0_9x_raw_c8_goal": {
            s: r["api_over_raw_rps_c8"] >= 0.9 for s, r in report["ratios"].items()
        },
        "freshness_p99_le_1_5x_raw_task_p99": {
            rate: r["api_response_to_searchable"]["p99_ms"] <= 1.5 * raw_p99
            for rate, r in report["freshness"].items()
        },
        "freshness_p99_over_raw_task_p99": {
            rate: round(r["api_response_to_searchable"]["p99_ms"] / raw_p99, 2)
            for rate, r in report["freshness"].items()
        },
        # The same figure over Meilisearch written to directly at the same rate (its own batching included).
        "freshness_p99_over_raw_same_rate_p99": {
            rate: round(
                r["api_response_to_searchable"]["p99_ms"]
                / r["raw_same_rate"]["enqueued_to_searchable"]["p99_ms"],
                2,
            )
            for rate, r in report["freshness"].items()
        },
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--sellers", type=int, default=2_000)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per load run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--raw-tasks", type=int, default=100)
    parser.add_argument("--write-rate", type=float, nargs="+", default=[1.0, 20.0], help="listing edits/s")
    parser.add_argument("--write-seconds", type=float, default=15.0)
    parser.add_argument(
        "--meili-indexing-memory",
        default=services.MEILI_MAX_INDEXING_MEMORY,
        help="MEILI_MAX_INDEXING_MEMORY for the embedded Meilisearch (default: devstack's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    os.environ["MEILI_MAX_INDEXING_MEMORY"] = args.meili_indexing_memory  # read by meilisearch itself
    with temp_stack("bazaar-bench-", keep=args.keep, settings=Settings(_env_file=None)) as stack:
        log(f"starting services in {stack.data_dir} ...")
        start_stack(stack)
        # A second API whose Meilisearch is a closed port: every search takes the PostgreSQL fallback.
        dead_meili, pg_port = services.free_ports(2)
        pg_env = {
            **stack.child_env(),
            "MEILI_URL": f"http://127.0.0.1:{dead_meili}",
            "API_PORT": str(pg_port),
        }
        pg_api = services.start_api(stack.supervisor, pg_env, pg_port)
        report = asyncio.run(bench(stack, pg_api.url, args))
    report["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(report, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
