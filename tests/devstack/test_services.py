"""The embedded services really start and answer, on free ports, through devstack's own code.

These start their own services (not the session `infra`), so they also cover what the fixtures rely on.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from temporalio.client import Client

from bazaar.settings import Settings
from devstack import services
from devstack.process import ServiceError, Supervisor, wait_until
from devstack.stack import (
    INFRA,
    PER_ADDRESS_LIMITS,
    RELAXED_LIMITS,
    DevSecrets,
    Ports,
    Stack,
    external_services,
)

DEV_PORTS = {54329, 7233, 8233, 7700, 12111, 1025, 8000}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="bazaar-devstack-test-"))
    base.chmod(0o755)  # reachable by the `postgres` OS user when we run as root
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sup(workdir: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(log_dir=workdir / "logs")
    yield supervisor
    supervisor.stop_all()


@pytest.fixture(scope="module")
def postgres(sup: Supervisor, workdir: Path) -> services.PostgresService:
    if services.find_pg_bindir() is None:
        pytest.skip("no PostgreSQL server binaries on this machine")
    [port] = services.free_ports(1)
    return services.start_postgres(sup, workdir / "pg1", port, durable=False)


@pytest.fixture(scope="module")
def temporal(sup: Supervisor) -> services.TemporalService:
    [port] = services.free_ports(1)
    return services.start_temporal(sup, port, ui_port=None, db_file=None)


@pytest.fixture(scope="module")
def meili(sup: Supervisor, workdir: Path) -> services.MeiliService:
    [port] = services.free_ports(1)
    return services.start_meilisearch(
        sup, workdir / "meili", port, master_key=DevSecrets.generate().meili_master_key
    )


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_free_ports_are_distinct_and_never_dev_ports() -> None:
    ports = Ports.free()
    values = list(vars(ports).values())
    assert len(set(values)) == len(values)
    assert not DEV_PORTS & set(values)
    # Below the kernel's ephemeral range (no outgoing connection takes one before its service binds it), in this
    # pytest-xdist worker's own slice.
    assert all(port in services._pickable_ports() for port in values), values


def test_postgres_answers_as_the_app_role(postgres: services.PostgresService) -> None:
    assert postgres.url.startswith("postgresql+psycopg://bazaar@127.0.0.1:")
    with psycopg.connect(_libpq(postgres.url)) as conn:
        row = conn.execute("SELECT 1, current_user, current_database()").fetchone()
    assert row == (1, "bazaar", "bazaar")


def test_postgres_restart_reuses_the_cluster(workdir: Path) -> None:
    """Second start on the same dir skips initdb and finds role and database already there."""
    if services.find_pg_bindir() is None:
        pytest.skip("no PostgreSQL server binaries on this machine")
    sup = Supervisor(log_dir=workdir / "logs-restart")
    try:
        [port] = services.free_ports(1)
        first = services.start_postgres(sup, workdir / "pg2", port)
        with psycopg.connect(_libpq(first.url), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
        first.stop()
        assert not first.proc.alive()
        version = (workdir / "pg2" / "pg" / "PG_VERSION").stat().st_mtime
        second = services.start_postgres(sup, workdir / "pg2", port)
        assert (workdir / "pg2" / "pg" / "PG_VERSION").stat().st_mtime == version
        with psycopg.connect(_libpq(second.url)) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        sup.stop_all()


async def test_temporal_client_lists_by_custom_search_attribute(temporal: services.TemporalService) -> None:
    client = await Client.connect(temporal.address, namespace="default")
    found = [wf async for wf in client.list_workflows("OrderStatus = 'paid' AND OrderAmount > 0")]
    assert found == []


def test_search_attributes_constant() -> None:
    assert services.SEARCH_ATTRIBUTES["OrderStatus"] == "Keyword"
    assert services.SEARCH_ATTRIBUTES["OrderAmount"] == "Int"
    assert set(services.SEARCH_ATTRIBUTES) == {
        "OrderStatus",
        "BuyerId",
        "SellerId",
        "ListingId",
        "OrderAmount",
        "PaymentState",
        "NeedsAttention",
    }


def test_meilisearch_health_and_key_scopes(meili: services.MeiliService) -> None:
    assert httpx.get(f"{meili.url}/health").json() == {"status": "available"}
    assert meili.search_key != meili.master_key
    new_index = {"uid": "listings_scope_test", "primaryKey": "id"}
    as_search = httpx.post(
        f"{meili.url}/indexes", json=new_index, headers={"Authorization": f"Bearer {meili.search_key}"}
    )
    assert as_search.status_code == 403
    as_master = httpx.post(
        f"{meili.url}/indexes", json=new_index, headers={"Authorization": f"Bearer {meili.master_key}"}
    )
    assert as_master.status_code == 202
    # The search key can search (the index exists once the task ran) and is idempotent to re-create.
    assert services.ensure_search_key(meili.url, meili.master_key) == meili.search_key


def test_smtp_sink_writes_eml_files(sup: Supervisor, workdir: Path) -> None:
    [port] = services.free_ports(1)
    sink = services.start_smtp_sink(sup, port, mail_dir=workdir / "mail")
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.sendmail("a@bazaar.local", ["b@example.com"], "Subject: Hello\r\n\r\nBody\r\n")
    deadline = time.monotonic() + 5
    while not list(sink.mail_dir.glob("*.eml")) and time.monotonic() < deadline:
        time.sleep(0.05)
    [eml] = list(sink.mail_dir.glob("*.eml"))
    assert b"Subject: Hello" in eml.read_bytes()
    sink.stop()
    assert not sink.proc.alive()


def test_external_vars_mean_external_services() -> None:
    assert external_services(set()) == frozenset()
    assert external_services({"database_url", "smtp_host", "jwt_secret"}) == {"postgres", "smtp"}
    assert external_services({"temporal_address", "meili_url", "stripe_api_base"}) == {
        "temporal",
        "meilisearch",
        "stripe",
    }


def test_explicit_setting_suppresses_the_embedded_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("DATABASE_URL", "TEMPORAL_ADDRESS", "MEILI_URL", "STRIPE_API_BASE", "SMTP_HOST"):
        monkeypatch.delenv(var, raising=False)
    # Nothing set explicitly (defaults only): everything is embedded.
    assert (
        Stack(tmp_path, Ports.free(), persistent=False, settings=Settings(_env_file=None)).embedded == INFRA
    )
    # Set to the embedded default (a copied .env.example): still the embedded service.
    same = Settings(_env_file=None, database_url="postgresql+psycopg://bazaar@127.0.0.1:54329/bazaar")
    assert "database_url" in same.model_fields_set
    assert Stack(tmp_path, Ports.free(), persistent=False, settings=same).embedded == INFRA
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app@db.example:5432/app")
    monkeypatch.setenv("SMTP_HOST", "mail.example")
    stack = Stack(tmp_path, Ports.free(), persistent=False, settings=Settings(_env_file=None))
    assert stack.embedded == ("temporal", "meilisearch", "stripe")
    assert stack.env["DATABASE_URL"] == "postgresql+psycopg://app@db.example:5432/app"
    assert stack.env["SMTP_HOST"] == "mail.example"
    # Other explicit settings (not service addresses) change nothing.
    assert external_services(Settings(_env_file=None, smtp_port=2525).model_fields_set) == {
        "postgres",
        "smtp",
    }


def test_make_runs_stack_relaxes_only_the_limits_per_client_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On `make run` every client is 127.0.0.1: a limit per address counted every local user as one (found from
    outside: registration answered 429 after the README's walk-through had run six times in an hour). Those are
    relaxed unless set; the limits per account and per buyer, and the provider's, keep their values."""
    for name in RELAXED_LIMITS:
        monkeypatch.delenv(name, raising=False)

    def env(persistent: bool, settings: Settings) -> dict[str, str]:
        return Stack(tmp_path, Ports.free(), persistent=persistent, settings=settings).child_env()

    local = env(True, Settings(_env_file=None))
    assert {name for name in RELAXED_LIMITS if name in local} == PER_ADDRESS_LIMITS
    assert "RATE_LIMIT_ORDERS_BUYER" not in local and "RATE_LIMIT_LOGIN_ACCOUNT" not in local
    assert set(RELAXED_LIMITS) <= set(env(False, Settings(_env_file=None)))  # a throwaway stack: all of them
    chosen = env(True, Settings(_env_file=None, rate_limit_register_address="20/hour"))
    assert "RATE_LIMIT_REGISTER_ADDRESS" not in chosen  # set by the user (here, or in .env): kept


def test_dev_secrets_are_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "dev-secrets.json"
    first = DevSecrets.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DevSecrets.load_or_create(path) == first
    assert first.stripe_secret_key.startswith("sk_test_")
    assert first.stripe_webhook_secret.startswith("whsec_")
    assert len(first.meili_master_key) >= 16
    assert json.loads(path.read_text())["jwt_secret"] == first.jwt_secret
    assert DevSecrets.generate() != first


def test_supervisor_reports_unexpected_death_and_kills_process_groups(tmp_path: Path) -> None:
    sup = Supervisor(log_dir=tmp_path)
    try:
        # A shell whose background grandchild would outlive it without process-group kills.
        tree = sup.spawn("tree", ["sh", "-c", "sleep 300 & echo started; wait"])
        dies = sup.spawn("dies", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"])
        died = sup.wait_for_death(timeout=10)
        assert died is dies
        assert died.returncode == 3
        assert "bye" in died.tail()
        tree.stop(timeout=5)
        assert not tree.alive()
        assert "started" in (tmp_path / "tree.log").read_text()
    finally:
        sup.stop_all()
    with pytest.raises(ServiceError):
        sup.spawn("late", ["true"])


def test_readiness_failure_shows_the_output(tmp_path: Path) -> None:
    sup = Supervisor(log_dir=tmp_path)
    try:
        proc = sup.spawn("broken", [sys.executable, "-c", "print('cannot bind'); raise SystemExit(1)"])
        with pytest.raises(ServiceError, match="cannot bind"):
            wait_until("broken", lambda: False, timeout=10, proc=proc)
    finally:
        sup.stop_all()


def test_infra_fixture_serves_everything(infra: Stack) -> None:
    """The session `infra` fixture: every service answers at the address it exports."""
    env = infra.env
    assert int(env["API_PORT"]) not in DEV_PORTS
    with psycopg.connect(_libpq(env["DATABASE_URL"])) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert httpx.get(f"{env['MEILI_URL']}/health").status_code == 200
    assert httpx.get(f"{env['STRIPE_API_BASE']}/_sandbox/health").status_code == 200
    with smtplib.SMTP(infra.smtp_host, infra.smtp_port, timeout=5) as smtp:
        assert smtp.noop()[0] == 250
    assert Settings().database_url == env["DATABASE_URL"]  # in-process settings see the test stack


def test_no_secret_is_on_a_command_line(infra: Stack) -> None:
    """Found from outside: `ps` showed the Stripe sandbox's webhook signing secret to any local user (and
    Meilisearch's master key)."""
    assert infra.stripe is not None and infra.meili is not None
    cmdline = Path(f"/proc/{infra.stripe.proc.pid}/cmdline").read_bytes().decode()
    assert infra.stripe_webhook_secret not in cmdline and "stripe_sandbox" in cmdline
    meili = Path(f"/proc/{infra.meili.proc.pid}/cmdline").read_bytes().decode()
    assert infra.meili.master_key not in meili and "--db-path" in meili
    environment = Path(f"/proc/{infra.stripe.proc.pid}/environ").read_bytes().decode()
    assert f"STRIPE_SANDBOX_WEBHOOK_SECRET={infra.stripe_webhook_secret}" in environment.split("\0")


def _apps_exist() -> bool:
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    modules = ("cli", "api.app", "search_sync.__main__")
    return (root / "worker.py").exists() and all(importlib.util.find_spec(m) for m in modules)


@pytest.mark.skipif(not _apps_exist(), reason="the app processes are not all written yet")
def test_stack_fixture_serves_the_api(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/healthz").status_code == 200
    assert {app.name for app in stack.apps} == {"worker", "sender", "search-sync", "api"}
    assert all(app.proc.alive() for app in stack.apps)
