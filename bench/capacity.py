"""Capacity model: orders/day, searches/s and listing changes/s in; worker processes per context, CPU cores,
Temporal history shards and persistence, Meilisearch nodes, PostgreSQL size and connections out.

    .venv/bin/python bench/capacity.py --orders-per-day 100000 --searches-per-second 200 \\
        --listing-changes-per-second 20 --listings 1000000

Every per-unit cost comes from one place, bench/capacity_figures.json, where each figure says whether it was
measured (and where: the docs/benchmarks.md section, the machine, the date), derived, counted from the code,
estimated or assumed. docs/scaling.md explains the model and has a worked example (a test keeps it equal to
what this script prints). Standard library only; the order timers come from bazaar/orders/terms.py (itself
standard library only). Prints a table, then as its last line one JSON object, like the other bench scripts.

Rates: every input rate is a daily average; the peak hour is `--peak-factor` times it, and everything is sized
for the peak at `--headroom` utilisation (0.6: a process or node runs at most 60 % busy at the peak).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bazaar.orders.terms import DEFAULT_TERMS  # noqa: E402  (standard library only)

FIGURES = Path(__file__).resolve().parent / "capacity_figures.json"
DAY = 86_400
SHAPES = ("text", "text_category_price_sort", "geo_radius", "text_facets")
KINDS = {"measured", "derived", "counted", "setting", "external", "estimate", "assumption"}


class Figures:
    """The figures file: `figures[name].value` (a number, or a dict of numbers), with its kind and source."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["figures"]

    def __call__(self, name: str) -> float:
        value = self.raw[name]["value"]
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"{self.path}: figure {name} is not a number")
        return float(value)

    def table(self, name: str) -> dict[str, float]:
        value = self.raw[name]["value"]
        if not isinstance(value, dict):
            raise TypeError(f"{self.path}: figure {name} is not a table")
        return {key: float(v) for key, v in value.items()}


@dataclass(frozen=True)
class Inputs:
    orders_per_day: float
    peak_factor: float
    searches_per_second: float
    listing_changes_per_second: float
    listings: int
    open_orders: int | None
    retention_days: float
    headroom: float
    growth: float
    provider_limit: float = 25.0


# `PAYMENT_REQUESTS_PER_SECOND`'s default (bazaar/settings.py; a test keeps them equal): Stripe's test-mode limit.
PROVIDER_LIMIT = 25.0


def next_power_of_two(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def processes(cores: float, headroom: float, floor: float) -> int:
    """Python processes for `cores` of CPU at the peak: one process uses at most one core (the GIL), and runs
    at most `headroom` busy; never fewer than `floor` (replicas that survive losing one)."""
    return max(int(floor), math.ceil(cores / headroom - 1e-9))


def plan(i: Inputs, f: Figures) -> dict[str, Any]:
    """Everything the model computes, in the JSON report's shape (rounded where printed)."""
    warnings: list[str] = []
    floor = f("min_replicas")

    # Rates at the peak hour: the daily average times the peak factor. Each order also queues its listing
    # document (the stock change) for the index.
    orders_s = i.orders_per_day / DAY * i.peak_factor
    searches_s = i.searches_per_second * i.peak_factor
    stock_changes = i.orders_per_day / DAY * f("stock_changes_per_order")
    docs_s = (i.listing_changes_per_second + stock_changes) * i.peak_factor

    # How long an order stays open (a running workflow): the seller accepts within the acceptance timeout, ships
    # (no timer: an assumption), then the buyer confirms or the dispute window passes. All at their longest, so
    # an upper bound; `--open-orders` overrides.
    open_days = (
        DEFAULT_TERMS["acceptance_timeout_seconds"] / DAY
        + f("shipping_days")
        + DEFAULT_TERMS["dispute_window_seconds"] / DAY
    )
    open_orders = i.open_orders if i.open_orders is not None else round(i.orders_per_day * open_days)

    # CPU per completed order, ms. Placement to `paid` is measured per process; the three actions after it
    # (accept, fulfil, confirm-receipt) are measured for the worker (py-spy) and the API and SQL (traced spans).
    # Worker CPU is split by task queue: payments runs the provider calls (charge, transfer: each one call with
    # its rows), orders the rest, plus a replay of the evicted order's history before each action.
    actions = f("actions_per_completed_order")
    payments_ms = f("provider_calls_per_completed_order") * f("payment_call_cpu_ms")
    orders_ms = (
        f("placement_cpu_ms_worker")
        - f("payment_call_cpu_ms")  # the charge, measured inside placement, belongs to payments
        + actions * (f("action_cpu_ms_worker") + f("replay_cpu_ms_per_action"))
    )
    # Temporal's work grows with the events it writes: placement's CPU scaled from its events to the whole order's.
    temporal_ms = f("placement_cpu_ms_temporal") * f("events_per_completed_order") / f("events_to_paid")
    api_order_ms = f("placement_cpu_ms_api") + actions * f("action_cpu_ms_api")
    sender_ms = f("emails_per_completed_order") * f("placement_cpu_ms_sender")  # placement mails one email
    pg_order_ms = f("placement_cpu_ms_postgres") + actions * f("action_sql_ms") + f("payout_sql_ms")

    # CPU per search, ms: the mix-weighted cost of each bench shape, in the API process and in Meilisearch.
    mix = f.table("search_mix")
    api_search_ms = sum(mix[s] * f(f"search_api_cpu_ms_{s}") for s in SHAPES)
    meili_search_ms = sum(mix[s] * f(f"search_meili_cpu_ms_{s}") for s in SHAPES)

    # Cores busy at the peak = rate x CPU per unit.
    cores = {
        "orders": orders_s * orders_ms / 1000,
        "payments": orders_s * payments_ms / 1000,
        "notifications": orders_s * sender_ms / 1000,
        "search_sync": docs_s * f("placement_cpu_ms_search_sync") / 1000,  # measured per order = per document
        "api": (orders_s * api_order_ms + searches_s * api_search_ms) / 1000,
        "temporal": orders_s * temporal_ms / 1000,
        "postgres": orders_s * pg_order_ms / 1000,
    }
    cores["temporal_db"] = cores["temporal"] * f("temporal_db_cpu_ratio")

    # Processes per context. search-sync runs active/standby: one process does all the work.
    procs = {
        name: processes(cores[name], i.headroom, floor)
        for name in ("orders", "payments", "notifications", "api")
    }
    procs["trust_reconciliation"] = int(floor)  # not measured: a daily run, a sweep, disputes
    procs["search_sync"] = int(floor)
    if cores["search_sync"] > i.headroom:
        warnings.append(
            f"search-sync needs {cores['search_sync']:.2f} cores at the peak: one active process cannot keep up"
        )

    # Orders worker memory: linear in the open orders it holds up to the measured range (606), flat beyond: a
    # worker caches at most WORKER_CACHED_WORKFLOWS (100) workflows, the rest live in Temporal only.
    open_per_process = open_orders / procs["orders"]
    held = min(open_per_process, f("worker_rss_measured_open_orders"))
    rss_mb = f("worker_rss_before_mb") + held * f("worker_rss_per_open_order_kb") / 1024

    # Provider requests at the peak: each completed order's charge and payout (refunds and reversals come on
    # top). Above the platform's limit (docs/architecture.md) the payments queue paces them: orders wait.
    provider_s = orders_s * f("provider_calls_per_completed_order")
    if provider_s > i.provider_limit:
        warnings.append(
            f"{provider_s:.1f} provider requests/s at the peak: above the limit of {i.provider_limit:g}/s "
            "(PAYMENT_REQUESTS_PER_SECOND); orders would wait in the payments queue: ask the provider for more "
            "(Stripe: 100/s in live mode) and raise the setting"
        )

    # Temporal history shards: sized for the peak events/s times the growth the cluster must absorb (the shard
    # count cannot change once the cluster exists), at most `events_per_shard_per_second` each, as a power of
    # two, never under the Helm chart's 512.
    events_s = orders_s * f("events_per_completed_order")
    shards_needed = events_s * i.growth / f("events_per_shard_per_second")
    shards = next_power_of_two(max(f("temporal_min_shards"), shards_needed))
    # Temporal persistence: each order's history (events x bytes x storage overhead) plus its visibility row,
    # kept while the order is open and for the namespace's retention after it closes.
    history_bytes = f("events_per_completed_order") * f("history_bytes_per_event")
    temporal_bytes = history_bytes * f("temporal_persistence_overhead") + f(
        "temporal_visibility_bytes_per_workflow"
    )
    kept_workflows = i.orders_per_day * (open_days + i.retention_days)
    temporal_gb = kept_workflows * temporal_bytes / 1e9

    # Meilisearch indexing: one batch at a time per index. A batch costs a fixed part that grows with the index
    # (the geo R-tree rewrite) plus a little per changed document; search-sync puts everything that arrived
    # meanwhile into the next batch. With r documents/s, a batch of r x T documents takes
    # T = B + r x T x c, so T = B / (1 - r x c); above r x c = 1 indexing cannot keep up.
    batch_fixed_s = (f("meili_batch_fixed_ms") + i.listings * f("meili_batch_ms_per_indexed_doc")) / 1000
    per_doc_s = f("meili_batch_ms_per_changed_doc") / 1000
    load = docs_s * per_doc_s
    if load >= 1:
        warnings.append(f"Meilisearch cannot index {docs_s:.0f} documents/s: batches would grow without end")
        batch_s = math.inf
    else:
        batch_s = batch_fixed_s / (1 - load)
    # Back to back once a change arrives, on average, before the batch in flight ends; then a change waits
    # for that batch and its own (the measured p99 is 2.34 batches), else one batch.
    busy = docs_s * batch_s >= 1
    freshness_s = batch_s * (f("meili_freshness_busy_factor") if busy else 1.0)
    indexing_cores = f("meili_indexing_cores") * min(1.0, docs_s * batch_s)
    if math.isfinite(freshness_s) and freshness_s > 5:
        warnings.append(
            f"change-to-searchable p99 ~{freshness_s:.1f} s: a batch costs {batch_fixed_s:.1f} s at "
            f"{i.listings:,} listings (docs/scaling.md: the index size sets freshness)"
        )
    # Nodes: every node holds the whole index and applies every batch (the indexing core), the rest of its
    # cores at `headroom` serve searches; never fewer than `min_replicas`.
    meili_search_cores = searches_s * meili_search_ms / 1000
    per_node = f("meili_node_cores") * i.headroom - indexing_cores
    if per_node <= 0:
        warnings.append("a Meilisearch node's indexing leaves it no cores for searches: use larger nodes")
        per_node = 1e-9
    nodes = max(int(floor), math.ceil(meili_search_cores / per_node - 1e-9))
    index_gb = i.listings * f("meili_index_bytes_per_listing") / 1e9
    # RAM: the whole index in the page cache, the indexing arena, the process. Disk: a reindex builds the new
    # index beside the old one before the swap.
    meili_ram_gb = index_gb + (f("meili_max_indexing_memory_mb") + f("meili_base_ram_mb")) / 1024
    meili_disk_gb = 2 * index_gb
    rebuild_min = i.listings / f("meili_reindex_docs_per_second") / 60
    cores["meilisearch"] = meili_search_cores + nodes * indexing_cores

    # PostgreSQL size: rows per completed order x measured bytes per row x bloat, and the rows each listing
    # change keeps (its audit and integrations events), per day; the listings themselves.
    row_bytes = f.table("pg_bytes_per_row")
    rows = f.table("rows_per_completed_order")
    rows["stripe_events"] = f("stripe_events_per_order")
    rows["reviews"] = f("reviews_per_order")
    bloat = f("pg_bloat_factor")
    order_bytes = sum(n * row_bytes[table] for table, n in rows.items()) * bloat
    change_rows = f.table("rows_per_listing_change")
    change_bytes = sum(n * row_bytes[table] for table, n in change_rows.items()) * bloat
    orders_day = i.orders_per_day * order_bytes
    changes_day = i.listing_changes_per_second * DAY * change_bytes
    listings_gb = i.listings * f("pg_bytes_per_listing") * bloat / 1e9
    year_gb = (orders_day + changes_day) * 365 / 1e9
    # Connections: every process's pool plus its overflow, and an API process's rate-limiter pool (half the size,
    # as much overflow: bazaar.db.get_counter_engine). Temporal's own database is apart.
    per_process = f("database_pool_size") + f("database_max_overflow")
    limiter_pool = 2 * max(1, int(f("database_pool_size")) // 2)
    connections = int(sum(procs.values()) * per_process + procs["api"] * limiter_pool)
    if connections > 100:
        warnings.append(
            f"{connections} PostgreSQL connections at most: above the default max_connections (100); raise it "
            "or put PgBouncer in front"
        )

    # What to provision: the processes and databases at `headroom` busy, Meilisearch in whole nodes.
    other = sum(v for name, v in cores.items() if name != "meilisearch")
    provision = math.ceil(other / i.headroom - 1e-9) + nodes * int(f("meili_node_cores"))
    return {
        "bench": "capacity",
        "inputs": {
            "orders_per_day": i.orders_per_day,
            "peak_factor": i.peak_factor,
            "searches_per_second": i.searches_per_second,
            "listing_changes_per_second": i.listing_changes_per_second,
            "listings": i.listings,
            "open_orders": open_orders,
            "retention_days": i.retention_days,
            "headroom": i.headroom,
            "growth": i.growth,
            "provider_limit": i.provider_limit,
        },
        "peak": {
            "orders_per_s": round(orders_s, 3),
            "searches_per_s": round(searches_s, 1),
            "documents_per_s": round(docs_s, 2),
            "open_days": round(open_days, 1),
        },
        "cpu_ms": {
            "per_order": {
                "orders": round(orders_ms, 1),
                "payments": round(payments_ms, 1),
                "notifications": round(sender_ms, 1),
                "api": round(api_order_ms, 1),
                "temporal": round(temporal_ms, 1),
                "postgres": round(pg_order_ms, 1),
            },
            "per_search": {"api": round(api_search_ms, 3), "meilisearch": round(meili_search_ms, 3)},
        },
        "cores_at_peak": {name: round(value, 3) for name, value in cores.items()},
        "cores_to_provision": provision,
        "processes": procs,
        "orders_worker_rss_mb": round(rss_mb, 1),
        "provider": {
            "requests_per_s_peak": round(provider_s, 2),
            "limit_per_s": i.provider_limit,
            "orders_per_s_at_the_limit": round(i.provider_limit / f("provider_calls_per_completed_order"), 1),
        },
        "temporal": {
            "events_per_s_peak": round(events_s, 1),
            "history_shards": shards,
            "shards_needed_with_growth": round(shards_needed, 1),
            "bytes_per_order": round(temporal_bytes),
            "workflows_kept": round(kept_workflows),
            "persistence_gb": round(temporal_gb, 1),
        },
        "meilisearch": {
            "nodes": nodes,
            "node_cores": f("meili_node_cores"),
            "search_cores_at_peak": round(meili_search_cores, 3),
            "indexing_cores_per_node": round(indexing_cores, 3),
            "batch_seconds": round(batch_s, 2) if math.isfinite(batch_s) else None,
            "documents_per_batch": round(docs_s * batch_s, 1) if math.isfinite(batch_s) else None,
            "freshness_p99_seconds": round(freshness_s, 2) if math.isfinite(freshness_s) else None,
            "index_gb": round(index_gb, 2),
            "ram_gb_per_node": round(meili_ram_gb, 1),
            "disk_gb_per_node": round(meili_disk_gb, 1),
            "rebuild_minutes": round(rebuild_min, 1),
        },
        "postgres": {
            "bytes_per_order": round(order_bytes),
            "bytes_per_listing_change": round(change_bytes),
            "gb_per_day": round((orders_day + changes_day) / 1e9, 2),
            "gb_per_year": round(year_gb),
            "gb_per_year_orders": round(orders_day * 365 / 1e9),
            "gb_per_year_listing_changes": round(changes_day * 365 / 1e9),
            "listings_gb": round(listings_gb, 1),
            "size_gb_after_one_year": round(listings_gb + year_gb),
            "connections_max": connections,
        },
        "warnings": warnings,
    }


def _n(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "cannot keep up" if value is None else f"{value:,.{digits}f}{unit}"


def table(report: dict[str, Any]) -> list[str]:
    """The human-readable summary printed above the JSON line."""
    i, p, c, pr = report["inputs"], report["peak"], report["cores_at_peak"], report["processes"]
    t, m, pg = report["temporal"], report["meilisearch"], report["postgres"]
    nodes = f"{m['nodes']} nodes x {m['node_cores']:.0f} vCPU"
    rows = [
        ("orders workers", f"{c['orders']:.2f} cores", f"{pr['orders']} processes"),
        ("  RSS per orders worker", "", f"{report['orders_worker_rss_mb']} MB"),
        ("payments workers", f"{c['payments']:.2f} cores", f"{pr['payments']} processes"),
        ("  provider requests", f"{report['provider']['requests_per_s_peak']:.1f}/s", f"limit {report['provider']['limit_per_s']:g}/s"),
        ("notifications (sender)", f"{c['notifications']:.2f} cores", f"{pr['notifications']} processes"),
        ("trust, reconciliation", "not measured", f"{pr['trust_reconciliation']} processes"),
        ("search-sync", f"{c['search_sync']:.2f} cores", "1 active + 1 standby"),
        ("API", f"{c['api']:.2f} cores", f"{pr['api']} processes"),
        ("Temporal server", f"{c['temporal']:.2f} cores", f"its database: {c['temporal_db']:.2f} cores"),
        ("Temporal history shards", f"{_n(t['events_per_s_peak'], 1)} events/s", f"{_n(t['history_shards'])}"),
        ("  needed with growth", "", _n(t["shards_needed_with_growth"], 1)),
        ("Temporal persistence", f"{_n(t['bytes_per_order'])} B/order", f"{_n(t['persistence_gb'], 1)} GB"),
        ("  workflows kept", "", _n(t["workflows_kept"])),
        ("Meilisearch", f"{c['meilisearch']:.2f} cores", nodes),
        ("  RAM, disk per node", "", f"{m['ram_gb_per_node']} GB, {m['disk_gb_per_node']} GB"),
        ("  batch, documents in it", _n(m["batch_seconds"], 2, " s"), _n(m["documents_per_batch"])),
        ("  change-to-searchable p99", "", _n(m["freshness_p99_seconds"], 1, " s")),
        ("  index, full reindex", f"{_n(m['index_gb'], 2)} GB", f"{m['rebuild_minutes']} minutes"),
        ("PostgreSQL", f"{c['postgres']:.2f} cores", f"{pg['connections_max']} connections at most"),
        ("  per order, per listing change", f"{_n(pg['bytes_per_order'])} B", f"{_n(pg['bytes_per_listing_change'])} B"),
        ("  growth", f"{_n(pg['gb_per_day'], 2)} GB/day", f"{_n(pg['gb_per_year'])} GB/year"),
        ("    of which orders, listing changes", "", f"{_n(pg['gb_per_year_orders'])}, {_n(pg['gb_per_year_listing_changes'])} GB/year"),
        ("  size after a year", f"{_n(pg['listings_gb'], 1)} GB listings", f"{_n(pg['size_gb_after_one_year'])} GB"),
        ("total", f"{sum(c.values()):.2f} cores", f"{report['cores_to_provision']} cores"),
    ]  # fmt: skip
    lines = [
        f"Bazaar capacity for {_n(i['orders_per_day'])} orders/day, {_n(i['searches_per_second'])} searches/s, "
        f"{_n(i['listing_changes_per_second'])} listing changes/s, {_n(i['listings'])} listings",
        f"peak (x{i['peak_factor']:g}): {p['orders_per_s']} orders/s, {_n(p['searches_per_s'], 1)} searches/s, "
        f"{p['documents_per_s']} documents/s to index",
        f"open orders: {_n(i['open_orders'])} ({p['open_days']} days each); sized at {i['headroom']:.0%} busy",
        "",
        f"{'what':<38} {'peak demand':<20} provision",
    ]
    lines += [f"{what:<38} {demand:<20} {provision}".rstrip() for what, demand, provision in rows]
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines


def parse(argv: list[str] | None) -> tuple[Inputs, Path]:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--orders-per-day", type=float, required=True, help="completed orders per day")
    ap.add_argument("--peak-factor", type=float, default=3.0, help="peak hour over the daily average (3)")
    ap.add_argument("--searches-per-second", type=float, required=True, help="daily average")
    ap.add_argument(
        "--listing-changes-per-second",
        type=float,
        required=True,
        help="listing documents to reindex, daily average (seller edits, view-count flushes, rating changes);\n"
        "the orders' own stock changes are added",
    )
    ap.add_argument("--listings", type=int, required=True, help="listings in the search index")
    ap.add_argument(
        "--open-orders", type=int, default=None, help="default: orders/day x the days an order stays open"
    )
    ap.add_argument(
        "--retention-days",
        type=float,
        default=7.0,
        help="Temporal namespace retention (TEMPORAL_RETENTION 168h)",
    )
    ap.add_argument("--headroom", type=float, default=0.6, help="utilisation at the peak (0.6)")
    ap.add_argument(
        "--growth", type=float, default=10.0, help="growth the history shard count must absorb (10)"
    )
    ap.add_argument(
        "--provider-limit",
        type=float,
        default=PROVIDER_LIMIT,
        help="the payment provider's requests/s for the platform, PAYMENT_REQUESTS_PER_SECOND (25: Stripe test\n"
        "mode; live mode allows 100)",
    )
    ap.add_argument(
        "--figures", type=Path, default=FIGURES, help="per-unit costs (bench/capacity_figures.json)"
    )
    a = ap.parse_args(argv)
    if not 0 < a.headroom <= 1:
        ap.error("--headroom must be in (0, 1]")
    if a.provider_limit <= 0:
        ap.error("--provider-limit must be positive")
    if a.peak_factor < 1 or a.growth < 1:
        ap.error("--peak-factor and --growth must be at least 1")
    amounts = (
        a.orders_per_day,
        a.searches_per_second,
        a.listing_changes_per_second,
        a.listings,
        a.retention_days,
    )
    if min(amounts) < 0:
        ap.error("rates, listings and retention must not be negative")
    inputs = Inputs(
        orders_per_day=a.orders_per_day,
        peak_factor=a.peak_factor,
        searches_per_second=a.searches_per_second,
        listing_changes_per_second=a.listing_changes_per_second,
        listings=a.listings,
        open_orders=a.open_orders,
        retention_days=a.retention_days,
        headroom=a.headroom,
        growth=a.growth,
        provider_limit=a.provider_limit,
    )
    return inputs, a.figures


def main(argv: list[str] | None = None) -> None:
    inputs, path = parse(argv)
    report = plan(inputs, Figures(path))
    for line in table(report):
        print(line)
    print(json.dumps(report, sort_keys=True, allow_nan=False), flush=True)


if __name__ == "__main__":
    main()
