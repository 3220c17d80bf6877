"""Order-path benchmark: `POST /v1/orders` to `paid`, the actor actions, CPU, history size and worker memory,
each side by side with a bare-Temporal baseline measured in the same run on the same services.

    .venv/bin/python bench/orders.py            # make bench-orders; --quick for the smoke test; see --help

What runs: one embedded stack (devstack `Stack` on free ports in a temp dir: PostgreSQL, Temporal dev server
in memory, Meilisearch, Stripe sandbox, SMTP sink, worker, search sync, API), plus a *bare worker*: this script
re-invoked as `bench/orders.py --bare-worker <address> <task queue>` in its own process (own session), so its
CPU is measured apart from the load generator. The bare worker runs `BareOrder` (below): the same three
activities the order workflow runs before `paid` (the real `OrderActivities.reserve_stock`,
`PaymentActivities.charge`, `OrderActivities.record_order_state`, inputs built like workflows/order.py builds
them, same timeouts and retry policies), registered as plain activities on the bare worker's own task queue
(whether the order workflow runs them as local activities or not),
and `BareUpdate`, a workflow whose `ping` Update returns at once. Both workers use Temporal's default
sandboxed runner; this module is passed through the sandbox (it is the bench, not workflow code: re-importing
it per workflow would charge the baseline for the load generator's code).

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
   workflow from this process: p50/p95.
5. Actions: `--actions` fresh paid orders (placed at c=4, not measured), then sequentially (c=1) all
   `POST /v1/orders/{id}/accept` (seller), then all `/fulfil` (seller, carrier + tracking_number), then all
   `/confirm-receipt` (buyer): p50/p95 each (200 with the expected status, else an error), and each p50
   over the bare Update p50.
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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import inspect
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from temporalio import workflow  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.common import RetryPolicy  # noqa: E402
from temporalio.service import RPCError  # noqa: E402
from temporalio.worker import Worker  # noqa: E402
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions  # noqa: E402

from activities.orders import OrderActivities, OrderStateChange, ReserveStockInput  # noqa: E402
from activities.payments import ChargeRequest, PaymentActivities, make_stripe_client  # noqa: E402
from bazaar.settings import Settings, get_settings  # noqa: E402

PASSWORD = "bench-password-1"  # noqa: S105 (throwaway users of a throwaway stack)
PAYMENT_METHOD = "pm_card_visa"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The order workflow's activity options (workflows/order.py), copied so the baseline does not move when the
# order workflow is rewritten: database activities retried until they succeed, provider calls bounded.
DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
MONEY_TIMEOUT = timedelta(seconds=30)
MONEY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["PaymentRejected"],
)
REQUEST_TIMEOUT = 60.0
MACHINE = "machine_busy"  # pseudo-process in CPU readings: the whole machine, for the other-load figure
SETTLE_LIMIT = 30.0


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------ bare baseline


@dataclass
class BareInput:
    order_id: str
    buyer_id: str
    listing_id: str
    quantity: int
    payment_method: str
    idempotency_key: str


def reserve_stock_input(**values: Any) -> ReserveStockInput:
    """The reservation's input from the fields this version of it has (the order code is being
    reworked: e.g. `payment_method` is new); anything it lacks is left out."""
    names = {f.name for f in dataclasses.fields(ReserveStockInput)}
    return ReserveStockInput(**{k: v for k, v in values.items() if k in names})


def order_activities(settings: Settings) -> OrderActivities:
    """`OrderActivities()`, or `OrderActivities(settings)` where its constructor takes the settings."""
    ctor: Any = OrderActivities
    made: OrderActivities = ctor(settings) if inspect.signature(OrderActivities).parameters else ctor()
    return made


@workflow.defn
class BareOrder:
    """The order path to `paid` with nothing around it: reserve, charge, record the new state."""

    @workflow.run
    async def run(self, req: BareInput) -> str:
        reservation = await workflow.execute_activity_method(
            OrderActivities.reserve_stock,
            reserve_stock_input(
                order_id=req.order_id,
                buyer_id=req.buyer_id,
                listing_id=req.listing_id,
                quantity=req.quantity,
                idempotency_key=req.idempotency_key,
                workflow_id=workflow.info().workflow_id,
                payment_method=req.payment_method,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if not reservation.ok:
            return f"rejected:{reservation.reason}"
        charge = await workflow.execute_activity_method(
            PaymentActivities.charge,
            ChargeRequest(
                order_id=req.order_id,
                amount=reservation.amount,
                currency=reservation.currency,
                payment_method=req.payment_method,
                idempotency_key=f"{req.order_id}:charge:1",
                transfer_group=f"order-{req.order_id}",  # as the order workflow sets it
            ),
            start_to_close_timeout=MONEY_TIMEOUT,
            retry_policy=MONEY_RETRY,
        )
        status = "paid" if charge.succeeded else "cancelled"
        await workflow.execute_activity_method(
            OrderActivities.record_order_state,
            OrderStateChange(
                order_id=req.order_id,
                seq=2,
                status=status,
                reason=None if charge.succeeded else "payment_failed",
                payment_state="held_in_escrow" if charge.succeeded else "failed",
                actor_id=None,
                actor_role="system",
                action="order.paid" if charge.succeeded else "order.payment_failed",
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return status

    @workflow.signal
    def payment_reported(self, report: Any) -> None:
        """The sandbox's webhook reaches the order's workflow id (here this one) as on the real path."""


@workflow.defn
class BareUpdate:
    """A workflow that only answers a trivial Update: the floor of any actor action's round trip."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    def ping(self) -> int:
        return 0

    @workflow.signal
    def finish(self) -> None:
        self._done = True


async def bare_worker_main(address: str, task_queue: str) -> None:
    """`--bare-worker`: a worker for the baseline workflows, in a process of its own."""
    import importlib
    import signal

    from bazaar.db import get_engine

    settings = get_settings()
    # The workflow classes from the importable module (not __main__), passed through the sandbox.
    module = importlib.import_module("bench.orders")
    client = await Client.connect(address, namespace=settings.temporal_namespace)
    orders = order_activities(settings)
    payments = PaymentActivities(make_stripe_client(settings))
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[module.BareOrder, module.BareUpdate],
        activities=[orders.reserve_stock, payments.charge, orders.record_order_state],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("bench")
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        print(f"bare worker polling {task_queue}", flush=True)
        await stop.wait()
    await get_engine().dispose()


# ------------------------------------------------------------------------------------- /proc readings


def process_table() -> dict[int, tuple[int, int, float]]:
    """pid -> (parent pid, session id, CPU seconds: utime + stime + cutime + cstime) of every live process."""
    out: dict[int, tuple[int, int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue  # exited meanwhile
        rest = raw[raw.rindex(b")") + 2 :].split()
        # After the command (man 5 proc, 1-based): 4 ppid, 6 session, 14 utime, 15 stime, 16 cutime, 17 cstime.
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        out[int(entry.name)] = (int(rest[1]), int(rest[3]), ticks / CLK_TCK)
    return out


def tree_cpu(table: dict[int, tuple[int, int, float]], root: int) -> float:
    """CPU seconds of a process tree: the root, every process in its session, and all their descendants
    (PostgreSQL backends call setsid(), so only their parent links them to the postmaster). cutime/cstime
    of a live process carry the CPU of its exited, reaped children, so nothing is counted twice."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    members = {pid for pid, (_, sid, _) in table.items() if sid == root}
    if root in table:
        members.add(root)
    todo = list(members)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in members:
                members.add(child)
                todo.append(child)
    return sum(table[pid][2] for pid in members)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class CpuMeter:
    """Named process trees (by root pid) whose CPU is compared before and after a phase."""

    def __init__(self, trees: dict[str, int]) -> None:
        self.trees = trees

    def read(self) -> dict[str, float]:
        table = process_table()
        out = {name: tree_cpu(table, root) for name, root in self.trees.items()}
        out["loadgen"] = own_cpu()
        out[MACHINE] = machine_busy()
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}

    @staticmethod
    def server_total(delta: dict[str, float]) -> float:
        return sum(v for k, v in delta.items() if k not in ("loadgen", MACHINE))

    @staticmethod
    def others(delta: dict[str, float], wall: float) -> dict[str, float]:
        """What ran on the machine besides this bench while it measured (other users, other agents)."""
        other = max(0.0, delta[MACHINE] - CpuMeter.server_total(delta) - delta["loadgen"])
        return {
            "wall_s": round(wall, 2),
            "other_processes_cpu_s": round(other, 2),
            "other_processes_share_of_machine": round(other / (wall * (os.cpu_count() or 1)), 3),
            "load_average": round(os.getloadavg()[0], 2),
        }


# ------------------------------------------------------------------------------------------- HTTP


class Http1:
    """One keep-alive HTTP/1.1 connection (the load generator's own cost stays small on 2 cores)."""

    def __init__(self, url: str) -> None:
        parts = httpx.URL(url)
        self.host, self.port = parts.host or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._request(method, target, body, headers or {}), REQUEST_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            await self.close()
            raise

    async def _request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        if "content-length" in fields:
            payload = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunks.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(c[:-2] for c in chunks)
        else:
            payload = b""
        if fields.get("connection") == "close":
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = None


# ------------------------------------------------------------------------------------------ stats


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


# ------------------------------------------------------------------------------------------ world


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
    return Party(created.json()["id"], token.json()["access_token"])


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


# ----------------------------------------------------------------------------------------- bench


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
            status, payload = await conn.request("POST", "/v1/orders", body, headers)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
        ) as exc:
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
        conns = [Http1(self.api_url) for _ in range(concurrency)]

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
        handle = await self.client.start_workflow(
            BareUpdate.run, id=f"bare-update-{uuid.uuid4()}", task_queue=self.queue
        )
        for _ in range(5):
            await handle.execute_update(BareUpdate.ping)
        latencies = []
        for _ in range(self.args.updates):
            started = time.perf_counter()
            await handle.execute_update(BareUpdate.ping)
            latencies.append(time.perf_counter() - started)
        await handle.signal(BareUpdate.finish)
        return {"n": len(latencies), "p50_ms": pct(latencies, 0.5), "p95_ms": pct(latencies, 0.95)}

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
        conn = Http1(self.api_url)
        try:
            for action, who, body, expected in steps:
                run = Run()
                assert self.meter is not None
                before, started_at = self.meter.read(), time.perf_counter()
                for oid in orders:
                    buyer, seller = parties[oid]
                    actor = seller if who == "seller" else buyer
                    payload = json.dumps(body).encode() if body else b""
                    headers = {**actor.auth, **({"Content-Type": "application/json"} if body else {})}
                    started = time.perf_counter()
                    try:
                        status, answer = await conn.request(
                            "POST", f"/v1/orders/{oid}/{action}", payload, headers
                        )
                    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                        run.error(f"{action}: {type(exc).__name__}: {exc}")
                        continue
                    elapsed = time.perf_counter() - started
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
                }
                log(
                    f"  {action:16} p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f}  n {s['n']}  errors {s['errors']}"
                )
                if s["errors"]:
                    log(f"    errors: {s['error_samples']}")
                await self.settle()
        finally:
            await conn.close()
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
            "updates": args.updates,
            "event_orders": args.event_orders,
            "warmup": args.warmup,
            "listings": args.sellers * args.listings_per_seller,
            "buyers": args.buyers,
        },
        "temporal_dynamic_config": args.temporal_dynamic_config,
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
    log(f"  p50 {report['bare_update']['p50_ms']} ms  p95 {report['bare_update']['p95_ms']} ms")

    log(f"phase 5: actions on {args.actions} paid orders, sequential")
    report["actions"], completed = await b.actions()
    bare_p50 = report["bare_update"]["p50_ms"]
    report["action_ratios"] = {
        f"{a}_p50_over_bare_update_p50": ratio(report["actions"][a]["p50_ms"], bare_p50)
        for a in report["actions"]
    }
    log(f"  over the bare Update p50: {report['action_ratios']}")

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
        "accept_p50_over_bare_update": bar(
            report["action_ratios"].get("accept_p50_over_bare_update_p50"), 3.0, 2.0, False
        ),
        "fulfil_p50_over_bare_update": bar(
            report["action_ratios"].get("fulfil_p50_over_bare_update_p50"), 3.0, 2.0, False
        ),
        "confirm_receipt_p50_over_bare_update": bar(
            report["action_ratios"].get("confirm_receipt_p50_over_bare_update_p50"), 4.0, 3.0, False
        ),
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

    from devstack.stack import Ports, Stack

    # uvicorn's per-request access log is pumped through this process (devstack's log capture): it would
    # compete with the load generator, so the API under test does not write one (as bench/search.py).
    os.environ.setdefault("UVICORN_ACCESS_LOG", "false")
    base = Path(tempfile.mkdtemp(prefix="bazaar-bench-orders-"))
    base.chmod(0o755)  # the `postgres` OS user must traverse it when we run as root
    settings = Settings(_env_file=None)
    tuned_port = 0
    if args.temporal_dynamic_config:
        from devstack import services

        tuned_port = services.free_ports(1)[0]
        settings = Settings(_env_file=None, temporal_address=f"{services.LOOPBACK}:{tuned_port}")
    stack = Stack(base, Ports.free(), persistent=False, settings=settings)
    queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    report: dict[str, Any] = {}
    try:
        log(f"starting services in {base} ...")
        started = time.perf_counter()
        if args.temporal_dynamic_config:
            log(f"  Temporal dev server with {args.temporal_dynamic_config}")
            args.temporal_pid = start_tuned_temporal(stack, tuned_port, args.temporal_dynamic_config).pid
        stack.start()
        os.environ.update(stack.env)
        get_settings.cache_clear()
        args.bare_worker_pid = start_bare_worker(stack, queue).pid
        log(f"  up in {time.perf_counter() - started:.1f}s")
        report = asyncio.run(bench(args, stack, queue))
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"logs kept in {base / 'logs'}")
    report["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(finite(report), sort_keys=True, allow_nan=False), flush=True)


if __name__ == "__main__":
    main()
