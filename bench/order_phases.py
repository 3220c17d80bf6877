"""The order bench's phases (bench/orders.py runs them; its docstring says what each one measures): orders on
the API path and on the bare-Temporal path, waiting for their side effects to settle, CPU around each run,
worker memory with open orders, histories, the bare Update round trip, the actor actions, events per order."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from baseline import BareInput, BareOrder, BareUpdate
from http1 import CONNECTION_ERRORS, Http1
from order_world import Run, World, closed_loop, pct
from processes import MACHINE, CpuMeter, log, proc_status
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

PAYMENT_METHOD = "pm_card_visa"
REQUEST_TIMEOUT = 60.0
SETTLE_LIMIT = 30.0


def paced_figures(run: Run) -> dict[str, Any]:
    """What a paced baseline reports: how many, p50 and p95."""
    summary = run.summary()
    return {k: summary[k] for k in ("n", "p50_ms", "p95_ms")}


class Bench:
    def __init__(
        self, args: argparse.Namespace, stack: Any, client: Client, world: World, queue: str
    ) -> None:
        self.args = args
        self.stack = stack
        self.client = client
        self.world = world
        self.queue = queue
        self.api_url: str = stack.api_url
        self.meter: CpuMeter | None = None
        self.settle_seconds: list[float] = []

    # ---- one order on each path
    async def api_order(self, conn: Http1, k: int, run: Run) -> dict[str, Any] | None:
        buyer, listing, _ = self.world.slot(k)
        body = json.dumps({"listing_id": listing, "payment_method": PAYMENT_METHOD}).encode()
        headers = {
            **buyer.auth,
            "Idempotency-Key": f"bench-{uuid.uuid4()}",
            "Content-Type": "application/json",
        }
        started = time.perf_counter()
        try:
            status, _, payload = await conn.request("POST", "/v1/orders", body, headers)
        except CONNECTION_ERRORS as exc:
            run.error(f"POST /v1/orders: {type(exc).__name__}: {exc}")
            return None
        elapsed = time.perf_counter() - started
        order: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            order = json.loads(payload)
        if status == 201 and order.get("status") == "paid":
            run.latencies.append(elapsed)
            run.order_ids.append(str(order["id"]))
            return order
        run.error(f"POST /v1/orders: HTTP {status} {payload[:200]!r}")
        return None

    async def bare_order(self, k: int, run: Run) -> None:
        buyer, listing, _ = self.world.slot(k)
        order_id = str(uuid.uuid4())
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(
                self.client.execute_workflow(
                    BareOrder.run,
                    BareInput(order_id, buyer.user_id, listing, 1, PAYMENT_METHOD, f"bare-{order_id}"),
                    id=f"bare-order-{order_id}",
                    task_queue=self.queue,
                ),
                REQUEST_TIMEOUT,
            )
        except Exception as exc:  # any failure of the baseline is an error to report, not a crash
            run.error(f"BareOrder: {type(exc).__name__}: {exc}")
            return
        elapsed = time.perf_counter() - started
        if result == "paid":
            run.latencies.append(elapsed)
            run.order_ids.append(order_id)
        else:
            run.error(f"BareOrder returned {result}")

    async def api_load(self, count: int, concurrency: int) -> Run:
        run = Run()
        conns = [Http1(self.api_url, timeout=REQUEST_TIMEOUT) for _ in range(concurrency)]

        async def one(k: int, n: int) -> None:
            await self.api_order(conns[k], k, run)

        try:
            run.seconds = await closed_loop(count, concurrency, one)
        finally:
            for conn in conns:
                await conn.close()
        return run

    async def bare_load(self, count: int, concurrency: int) -> Run:
        run = Run()

        async def one(k: int, n: int) -> None:
            await self.bare_order(k, run)

        run.seconds = await closed_loop(count, concurrency, one)
        return run

    # ---- quiescence
    async def settle(self) -> float:
        """Wait until the side effects of what just ran are done (at most SETTLE_LIMIT s); the seconds it took."""
        assert self.meter is not None
        started = time.perf_counter()
        deadline = started + SETTLE_LIMIT
        async with httpx.AsyncClient(base_url=self.stack.stripe_api_base, timeout=5) as sandbox:
            while time.perf_counter() < deadline:
                before = self.meter.read()
                await asyncio.sleep(0.5)
                busy = CpuMeter.server_total(CpuMeter.delta(before, self.meter.read()))
                pending = (await sandbox.get("/_sandbox/health")).json().get("webhooks_pending", 0)
                running = (
                    await self.client.count_workflows(
                        "WorkflowId STARTS_WITH 'notify-' AND ExecutionStatus='Running'"
                    )
                ).count
                if busy < 0.1 and pending == 0 and running == 0:
                    break
        took = time.perf_counter() - started
        self.settle_seconds.append(round(took, 2))
        return took

    async def measured(
        self, load: Callable[[int, int], Awaitable[Run]], count: int, concurrency: int
    ) -> tuple[Run, dict[str, float], dict[str, float]]:
        """Run a load between two settled CPU readings: the run, CPU seconds by process, the other load."""
        assert self.meter is not None
        await self.settle()
        before, started = self.meter.read(), time.perf_counter()
        run = await load(count, concurrency)
        await self.settle()
        delta = CpuMeter.delta(before, self.meter.read())
        others = CpuMeter.others(delta, time.perf_counter() - started)
        return run, {k: round(v, 3) for k, v in delta.items() if k != MACHINE}, others

    # ---- phases
    async def warm_up(self) -> None:
        log("warm-up (not measured) ...")
        api = await self.api_load(self.args.warmup, min(2, self.args.warmup))
        bare = await self.bare_load(self.args.warmup, min(2, self.args.warmup))
        log(
            f"  api {api.summary()['n']} ok / {api.errors} errors; bare {bare.summary()['n']} ok / {bare.errors}"
        )
        if api.errors or bare.errors:
            log(f"  warm-up errors: {api.error_samples + bare.error_samples}")
        handle = await self.client.start_workflow(
            BareUpdate.run, id=f"bare-update-{uuid.uuid4()}", task_queue=self.queue
        )
        for _ in range(10):
            await handle.execute_update(BareUpdate.ping)
        await handle.signal(BareUpdate.finish)

    async def open_orders(self, worker_pid: int) -> dict[str, Any]:
        await self.settle()
        before = proc_status(worker_pid)
        open_before = await self.running_orders()
        log(
            f"worker RSS: {before['VmRSS'] / 1024:.1f} MB with {open_before} open orders; placing "
            f"{self.args.open_orders} more through the API (c=8) ..."
        )
        run = await self.api_load(self.args.open_orders, min(8, max(1, self.args.open_orders)))
        await self.settle()
        after = proc_status(worker_pid)
        open_after = await self.running_orders()
        added = max(1, open_after - open_before)
        result = {
            "placed": len(run.latencies),
            "errors": run.errors,
            "error_samples": run.error_samples,
            "open_orders_before": open_before,
            "open_orders_after": open_after,
            "rss_before_mb": round(before["VmRSS"] / 1024, 1),
            "rss_after_mb": round(after["VmRSS"] / 1024, 1),
            "hwm_after_mb": round(after["VmHWM"] / 1024, 1),
            "rss_per_open_order_kb": round((after["VmRSS"] - before["VmRSS"]) / added, 1),
            "placing": run.summary(),
        }
        log(
            f"  {result['rss_after_mb']} MB (VmHWM {result['hwm_after_mb']}) with {open_after} open orders, "
            f"{result['rss_per_open_order_kb']} kB per order; placed at {run.summary()['orders_per_s']} orders/s, "
            f"{run.errors} errors"
        )
        result["bare_worker_for_scale"] = await self.open_bare_workflows(self.args.open_orders)
        return result

    async def open_bare_workflows(self, count: int) -> dict[str, Any]:
        """For scale, not a target: the bare worker's RSS with as many open BareUpdate workflows."""
        pid = self.args.bare_worker_pid
        before = proc_status(pid)

        async def start(k: int, n: int) -> None:
            await self.client.start_workflow(
                BareUpdate.run, id=f"bare-open-{uuid.uuid4()}", task_queue=self.queue
            )

        await closed_loop(count, 8, start)
        await self.settle()
        after = proc_status(pid)
        out = {
            "open_workflows": count,
            "rss_before_mb": round(before["VmRSS"] / 1024, 1),
            "rss_after_mb": round(after["VmRSS"] / 1024, 1),
            "rss_per_open_workflow_kb": round((after["VmRSS"] - before["VmRSS"]) / max(1, count), 1),
        }
        log(
            f"  for scale: bare worker {out['rss_before_mb']} -> {out['rss_after_mb']} MB with {count} open "
            f"BareUpdate workflows ({out['rss_per_open_workflow_kb']} kB each)"
        )
        return out

    async def running_orders(self) -> int:
        found = await self.client.count_workflows(
            "WorkflowId STARTS_WITH 'order-' AND ExecutionStatus='Running'"
        )
        return found.count

    async def throughput(self) -> dict[str, Any]:
        out: dict[str, Any] = {"api": {}, "bare": {}, "cpu": {"api": {}, "bare": {}}, "ids": {}}
        for i, c in enumerate(self.args.concurrency):
            paths = ["api", "bare"] if i % 2 == 0 else ["bare", "api"]
            for path in paths:
                load = self.api_load if path == "api" else self.bare_load
                run, cpu, others = await self.measured(load, self.args.orders_per_level, c)
                s = {**run.summary(), "machine": others}
                out[path][f"c{c}"] = s
                if i == 0:
                    out["ids"][path] = run.order_ids
                out["cpu"][path][f"c{c}"] = cpu
                server = CpuMeter.server_total(cpu)
                per = server / s["n"] if s["n"] else float("nan")
                log(
                    f"  {path:4} c={c:<3} {s['orders_per_s']:7.2f} orders/s  p50 {s['p50_ms']:8.1f} ms  "
                    f"p95 {s['p95_ms']:8.1f}  max {s['max_ms']:8.1f}  errors {s['errors']}  "
                    f"server CPU {per * 1000:.1f} ms/order  (other processes: "
                    f"{others['other_processes_share_of_machine']:.0%} of the machine, load {others['load_average']})"
                )
                if s["errors"]:
                    log(f"    errors: {s['error_samples']}")
        return out

    async def history_timing(self, workflow_ids: list[str]) -> dict[str, Any]:
        """Where an order's time goes inside Temporal, from its history's event timestamps: workflow tasks
        (scheduled -> started: dispatch to the worker; started -> completed: the worker's processing) and
        activities (scheduled -> completed). Open orders: the history so far (waiting for the seller)."""
        dispatch: list[float] = []
        processing: list[float] = []
        activities: list[float] = []
        tasks_per: list[int] = []
        events_per: list[int] = []
        for wid in workflow_ids:
            try:
                events = (await self.client.get_workflow_handle(wid).fetch_history()).events
            except RPCError:
                continue
            scheduled: dict[int, float] = {}
            tasks = 0
            for e in events:
                t = e.event_time.ToDatetime().timestamp()
                kind = e.event_type
                if kind in (
                    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                ):
                    scheduled[e.event_id] = t
                elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    tasks += 1
                    attrs = e.workflow_task_started_event_attributes
                    scheduled[e.event_id] = t
                    if attrs.scheduled_event_id in scheduled:
                        dispatch.append(t - scheduled[attrs.scheduled_event_id])
                elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                    started = e.workflow_task_completed_event_attributes.started_event_id
                    if started in scheduled:
                        processing.append(t - scheduled[started])
                elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                    sched = e.activity_task_completed_event_attributes.scheduled_event_id
                    if sched in scheduled:
                        activities.append(t - scheduled[sched])
            tasks_per.append(tasks)
            events_per.append(len(events))
        return {
            "workflows": len(tasks_per),
            "events_per_workflow_p50": statistics.median(events_per) if events_per else None,
            "workflow_tasks_per_workflow_p50": statistics.median(tasks_per) if tasks_per else None,
            "workflow_task_dispatch_ms": {"p50": pct(dispatch, 0.5), "p95": pct(dispatch, 0.95)},
            "workflow_task_processing_ms": {"p50": pct(processing, 0.5), "p95": pct(processing, 0.95)},
            "activity_ms": {"p50": pct(activities, 0.5), "p95": pct(activities, 0.95)},
        }

    async def bare_update(self) -> dict[str, Any]:
        """The bare Update's round trip, and beside it (interleaved, so drift hits all alike) the floors of a
        transition saved before it answers: an Update that runs one no-op local activity, and one whose local
        activity writes a row."""
        handle = await self.client.start_workflow(
            BareUpdate.run, id=f"bare-update-{uuid.uuid4()}", task_queue=self.queue
        )
        kinds = {
            "ping": BareUpdate.ping,
            "ping_local": BareUpdate.ping_local,
            "ping_saved": BareUpdate.ping_saved,
        }
        for update in kinds.values():
            for _ in range(5):
                await handle.execute_update(update)
        latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(self.args.updates):
            for kind, update in kinds.items():
                started = time.perf_counter()
                await handle.execute_update(update)
                latencies[kind].append(time.perf_counter() - started)
        await handle.signal(BareUpdate.finish)
        summary = {
            kind: {"n": len(xs), "p50_ms": pct(xs, 0.5), "p95_ms": pct(xs, 0.95)}
            for kind, xs in latencies.items()
        }
        return {
            **summary["ping"],
            "with_local_activity": summary["ping_local"],
            "with_saved_row": summary["ping_saved"],
        }

    async def actions(self) -> tuple[dict[str, Any], list[str]]:
        placing = await self.api_load(self.args.actions, min(4, self.args.actions))
        orders = list(placing.order_ids)
        if placing.errors:
            log(f"  placing for the actions: {placing.errors} errors: {placing.error_samples}")
        # The order's seller and buyer, from the listing it was placed on.
        async with httpx.AsyncClient(base_url=self.api_url, timeout=60) as http:
            parties = {}
            buyers = {b.user_id: b for b in self.world.buyers}
            sellers = {listing: seller for listing, seller in self.world.listings}
            for oid in orders:
                got = await http.get(f"/v1/orders/{oid}", headers=self.world.buyers[0].auth)
                if got.status_code != 200:
                    # Another buyer's order: find it through each buyer (setup only, not measured).
                    for b in self.world.buyers:
                        got = await http.get(f"/v1/orders/{oid}", headers=b.auth)
                        if got.status_code == 200:
                            break
                body = got.json()
                parties[oid] = (buyers[body["buyer_id"]], sellers[body["listing_id"]])
        await self.settle()
        steps: list[tuple[str, str, dict[str, Any] | None, str]] = [
            ("accept", "seller", None, "confirmed"),
            ("fulfil", "seller", {"carrier": "DHL", "tracking_number": "JD014600003SE"}, "fulfilled"),
            ("confirm-receipt", "buyer", None, "completed"),
        ]
        out: dict[str, Any] = {}
        completed: list[str] = []
        conn = Http1(self.api_url, timeout=REQUEST_TIMEOUT)
        # The baseline side by side: after each action, one Update with a row saved and one bare Update, each
        # request starting `action_interval` after the one before: the baseline comes at the same moments and the
        # way the actions come (idle processes woken by each request), not minutes apart and back to back.
        bare = await self.client.start_workflow(
            BareUpdate.run, id=f"bare-update-paced-{uuid.uuid4()}", task_queue=self.queue
        )
        for update in (BareUpdate.ping, BareUpdate.ping_saved):
            for _ in range(5):
                await bare.execute_update(update)
        try:
            # The API's own floor: an authenticated read of the order (auth, one indexed read, the JSON answer).
            reads = Run()
            for oid in orders:
                started = time.perf_counter()
                status, _, answer = await conn.request("GET", f"/v1/orders/{oid}", b"", parties[oid][1].auth)
                if status == 200:
                    reads.latencies.append(time.perf_counter() - started)
                else:
                    reads.error(f"read: HTTP {status} {answer[:200]!r}")
            summary = reads.summary()
            out["api_read"] = {
                k: summary[k] for k in ("n", "errors", "error_samples", "p50_ms", "p95_ms", "max_ms")
            }
            log(f"  {'GET order':16} p50 {summary['p50_ms']:8.1f} ms  p95 {summary['p95_ms']:8.1f}")
            for action, who, body, expected in steps:
                run, paced, paced_saved = Run(), Run(), Run()
                assert self.meter is not None
                before, started_at = self.meter.read(), time.perf_counter()
                for oid in orders:
                    buyer, seller = parties[oid]
                    actor = seller if who == "seller" else buyer
                    payload = json.dumps(body).encode() if body else b""
                    headers = {**actor.auth, **({"Content-Type": "application/json"} if body else {})}
                    started = time.perf_counter()
                    try:
                        status, _, answer = await conn.request(
                            "POST", f"/v1/orders/{oid}/{action}", payload, headers
                        )
                    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                        run.error(f"{action}: {type(exc).__name__}: {exc}")
                        continue
                    elapsed = time.perf_counter() - started
                    last = started
                    if self.args.action_interval > 0:
                        # The saved Update after the action, the bare one after it: the bare Update (the bars'
                        # baseline) follows a baseline request, as the next action does, and never shares the
                        # pause with what an action set off after its answer (confirm-receipt's transfer).
                        for baseline, update in (
                            (paced_saved, BareUpdate.ping_saved),
                            (paced, BareUpdate.ping),
                        ):
                            await asyncio.sleep(
                                max(0.0, self.args.action_interval - (time.perf_counter() - last))
                            )
                            last = time.perf_counter()
                            await bare.execute_update(update)
                            baseline.latencies.append(time.perf_counter() - last)
                    await asyncio.sleep(max(0.0, self.args.action_interval - (time.perf_counter() - last)))
                    state = None
                    with contextlib.suppress(ValueError, AttributeError):
                        state = json.loads(answer).get("status")
                    if status == 200 and state == expected:
                        run.latencies.append(elapsed)
                        if action == "confirm-receipt":
                            completed.append(oid)
                    else:
                        run.error(f"{action}: HTTP {status} {answer[:200]!r}")
                s = run.summary()
                others = CpuMeter.others(
                    CpuMeter.delta(before, self.meter.read()), time.perf_counter() - started_at
                )
                out[action.replace("-", "_")] = {
                    **{k: s[k] for k in ("n", "errors", "error_samples", "p50_ms", "p95_ms", "max_ms")},
                    "machine": others,
                    **(
                        {
                            "paced_bare_update": paced_figures(paced),
                            "paced_saved_update": paced_figures(paced_saved),
                        }
                        if paced.latencies
                        else {}
                    ),
                }
                log(
                    f"  {action:16} p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f}  n {s['n']}  errors {s['errors']}"
                )
                if paced.latencies:
                    log(
                        f"  {'  bare, paced':16} p50 {paced_figures(paced)['p50_ms']:8.1f} ms; with a row saved "
                        f"p50 {paced_figures(paced_saved)['p50_ms']:8.1f} ms"
                    )
                if s["errors"]:
                    log(f"    errors: {s['error_samples']}")
                await self.settle()
        finally:
            await conn.close()
            await bare.signal(BareUpdate.finish)
        return out, completed

    async def events(self, order_ids: list[str]) -> dict[str, Any]:
        prefix_query = True
        order_type: str | None = None
        per_order: list[dict[str, Any]] = []
        for oid in order_ids:
            await self.wait_children_closed(oid)
            found: dict[str, str] = {}  # workflow id -> type
            counts: dict[str, int] = {}
            pending = [f"order-{oid}"]
            if prefix_query:
                try:
                    async for wf in self.client.list_workflows(
                        f"WorkflowId STARTS_WITH 'notify-order:{oid}:' OR "
                        f"WorkflowId IN ('reviews-{oid}', 'dispute-{oid}')"
                    ):
                        pending.append(wf.id)
                except Exception as exc:  # the server does not support the query: the child events only
                    log(
                        f"  visibility prefix query unsupported ({type(exc).__name__}: {exc}); child events only"
                    )
                    prefix_query = False
            while pending:
                wid = pending.pop()
                if wid in found:
                    continue
                try:
                    events = (await self.client.get_workflow_handle(wid).fetch_history()).events
                except RPCError as exc:  # e.g. a child whose start failed: nothing to count
                    log(f"  no history for {wid}: {exc}")
                    continue
                wtype = events[0].workflow_execution_started_event_attributes.workflow_type.name
                found[wid] = wtype
                counts[wid] = len(events)
                if wid == f"order-{oid}":
                    order_type = wtype
                for e in events:
                    if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                        pending.append(
                            e.start_child_workflow_execution_initiated_event_attributes.workflow_id
                        )
            by_type: dict[str, int] = {}
            for wid, n in counts.items():
                by_type[found[wid]] = by_type.get(found[wid], 0) + n
            per_order.append(
                {"order_id": oid, "total": sum(counts.values()), "workflows": len(counts), "by_type": by_type}
            )
        types = sorted({t for o in per_order for t in o["by_type"]})
        result = {
            "orders": len(per_order),
            "order_workflow_type": order_type,
            "median_per_order": statistics.median(o["total"] for o in per_order) if per_order else None,
            "per_order": [o["total"] for o in per_order],
            "median_by_workflow_type": {
                t: statistics.median(o["by_type"].get(t, 0) for o in per_order) for t in types
            },
            "median_workflows_per_order": statistics.median(o["workflows"] for o in per_order)
            if per_order
            else None,
            "visibility_prefix_query": prefix_query,
        }
        log(
            f"  {result['median_per_order']} events per completed order (median): {result['median_by_workflow_type']}"
        )
        return result

    async def wait_children_closed(self, oid: str) -> None:
        deadline = time.perf_counter() + SETTLE_LIMIT
        while time.perf_counter() < deadline:
            with contextlib.suppress(Exception):
                running = await self.client.count_workflows(
                    f"WorkflowId STARTS_WITH 'notify-order:{oid}:' AND ExecutionStatus='Running'"
                )
                if running.count == 0:
                    return
            await asyncio.sleep(0.3)
