"""The whole embedded stack: infra in parallel, then migrations, then the app processes.

A `Stack` is used by `python -m devstack run` (dev ports, persistent `.data/`) and by the test fixtures
(free ports, temp dir, in-memory Temporal). Any service the user pointed at an existing server
(`DATABASE_URL`, `TEMPORAL_ADDRESS`, `MEILI_URL`, `STRIPE_API_BASE`, `SMTP_HOST`) is not started.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from bazaar.settings import EXTERNAL_SERVICE_VARS, Settings
from devstack import services
from devstack.process import ManagedProcess, ServiceError, Supervisor

# Embedded services in start order (they are independent, so they start in parallel).
INFRA = ("postgres", "temporal", "meilisearch", "stripe", "smtp")
SECRETS_FILE = "dev-secrets.json"

# Every secret setting (its environment name), and the ones each app process gets: only those it uses, as the
# production compose file gives them (tests/test_compose_environment.py). The other settings go to every process.
SECRET_VARS = frozenset(
    name.upper() for name, field in Settings.model_fields.items() if "SecretStr" in repr(field.annotation)
)
PROCESS_SECRETS: dict[str, frozenset[str]] = {
    # verifies access tokens, API keys, unsubscribe links and Stripe webhooks; searches with the search-only key
    "api": frozenset(
        {
            "JWT_SECRET",
            "API_KEY_SECRET",
            "UNSUBSCRIBE_SECRET",
            "STRIPE_WEBHOOK_SECRET",
            "MEILI_SEARCH_KEY",
            "METRICS_TOKEN",
        }
    ),
    # calls Stripe; mails and signs unsubscribe links for notification workflows started before the outbox
    "worker": frozenset({"STRIPE_SECRET_KEY", "UNSUBSCRIBE_SECRET", "SMTP_PASSWORD"}),
    "sender": frozenset({"UNSUBSCRIBE_SECRET", "SMTP_PASSWORD"}),  # mails the outbox, signs unsubscribe links
    "search-sync": frozenset({"MEILI_MASTER_KEY"}),  # writes the index
    "migrate": frozenset(),  # the database only
    "demo-data": frozenset(),  # a client of the API like any other
}
# A throwaway stack (tests, benchmarks) drives its API from one client address, as many users and buyers at a
# pace no person reaches: its processes get these per-address and per-buyer limits unless the environment sets
# them (`child_env`).
# The account lockout (RATE_LIMIT_LOGIN_ACCOUNT) keeps its real value: tests do not trip it by accident.
RELAXED_LIMITS = {
    # The embedded Stripe sandbox has no request limit: tests and benchmarks measure the order path, not Stripe's
    # test-mode throttle (the defaults, for Stripe itself, stay in a persistent stack: `make run`).
    "PAYMENT_REQUESTS_PER_SECOND": "1000",
    "PAYMENT_LOCAL_REQUESTS_PER_SECOND": "250",
} | {
    name: "1000000/minute"
    for name in (
        "RATE_LIMIT_LOGIN_ADDRESS",
        "RATE_LIMIT_REGISTER_ADDRESS",
        "RATE_LIMIT_ACCOUNT_LINKS_ADDRESS",
        "RATE_LIMIT_ACCOUNT_MAIL",
        "RATE_LIMIT_ORDERS_BUYER",
        "RATE_LIMIT_SEARCH_ANONYMOUS",
        "RATE_LIMIT_SEARCH_USER",
        "RATE_LIMIT_LISTING_READS",
        "RATE_LIMIT_VIEW_COUNT",  # tests count many views from one address
    )
}

# On `make run`'s embedded stack every client is 127.0.0.1, so a limit per client address counts every user of
# it as one (found from outside: the README's walk-through ran six times an hour before registration answered
# 429). Those limits are relaxed there unless set; the limits per account and per buyer keep their values, as
# in production, where each client has its own address.
PER_ADDRESS_LIMITS = frozenset(
    {
        "RATE_LIMIT_LOGIN_ADDRESS",
        "RATE_LIMIT_REGISTER_ADDRESS",
        "RATE_LIMIT_ACCOUNT_LINKS_ADDRESS",
        "RATE_LIMIT_SEARCH_ANONYMOUS",
        "RATE_LIMIT_LISTING_READS",
    }
)


def external_services(explicit_fields: Iterable[str]) -> frozenset[str]:
    """Which services the user pointed at existing servers, from the explicitly set settings fields."""
    return frozenset(EXTERNAL_SERVICE_VARS[f] for f in explicit_fields if f in EXTERNAL_SERVICE_VARS)


def explicit_fields(settings: Settings) -> set[str]:
    """Fields set in the environment or `.env` to something other than their default.

    A value equal to the default is the embedded dev stack's own address: a verbatim copy of
    `.env.example` must not turn every embedded service off.
    """
    defaults = type(settings).model_fields
    return {f for f in settings.model_fields_set if getattr(settings, f) != defaults[f].default}


@dataclass(frozen=True)
class Ports:
    """Every loopback port the embedded stack binds."""

    postgres: int
    temporal: int
    temporal_ui: int
    meili: int
    stripe: int
    smtp: int
    api: int
    worker_metrics: int  # the worker's Prometheus endpoint (Temporal SDK metrics and ours)

    @classmethod
    def dev(cls, settings: Settings) -> Ports:
        """The dev stack's fixed ports, from the settings defaults (so hand-started processes find it)."""

        def port(url: str, fallback: int) -> int:
            return urlsplit(url if "//" in url else f"//{url}").port or fallback

        return cls(
            postgres=port(settings.database_url, 54329),
            temporal=port(settings.temporal_address, 7233),
            temporal_ui=port(settings.temporal_ui_url, 8233),
            meili=port(settings.meili_url, 7700),
            stripe=port(settings.stripe_api_base, 12111),
            smtp=settings.smtp_port,
            api=settings.api_port,
            worker_metrics=port(settings.worker_metrics_bind_address or "127.0.0.1:9464", 9464),
        )

    @classmethod
    def free(cls) -> Ports:
        """Free ports picked by the OS (tests: never collide with a running dev stack)."""
        return cls(*services.free_ports(len(fields(cls))))


@dataclass(frozen=True)
class DevSecrets:
    """Secrets the embedded stack needs; generated, never committed."""

    jwt_secret: str
    meili_master_key: str
    stripe_secret_key: str
    stripe_webhook_secret: str
    unsubscribe_secret: str  # its own, so the worker and the sender never get the JWT secret
    api_key_secret: str  # its own, so rotating the JWT secret (logging everyone out) keeps the API keys

    @classmethod
    def generate(cls) -> DevSecrets:
        return cls(
            jwt_secret=secrets.token_urlsafe(48),
            unsubscribe_secret=secrets.token_urlsafe(48),
            api_key_secret=secrets.token_urlsafe(48),
            meili_master_key=secrets.token_hex(24),
            stripe_secret_key=f"sk_test_{secrets.token_hex(24)}",
            stripe_webhook_secret=f"whsec_{secrets.token_hex(24)}",
        )

    @classmethod
    def load_or_create(cls, path: Path) -> DevSecrets:
        """Read `path`, creating it (mode 0600) on first use, so a dev data dir keeps its secrets."""
        fresh = asdict(cls.generate())
        stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        values = {k: stored.get(k) or v for k, v in fresh.items()}
        if values != stored:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(values, fh, indent=2)
            os.replace(tmp, path)
        path.chmod(0o600)
        return cls(**values)


def _secret(settings: Settings, name: str) -> str | None:
    value = getattr(settings, name)
    return None if value is None else str(value.get_secret_value())


class Stack:
    """Embedded services + app processes for one data dir; a context manager that always stops all.

    Usage: `with Stack(dir, Ports.free(), persistent=False) as s: s.start(); ...`. After `start_infra()`
    the connection attributes (`database_url`, ...) and `env` are valid; `api_url` after `start_apps()`.
    """

    def __init__(
        self,
        data_dir: Path | str,
        ports: Ports,
        *,
        persistent: bool,
        settings: Settings | None = None,
        secrets: DevSecrets | None = None,
        echo: bool = False,
        only: Iterable[str] | None = None,
        durable: bool | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.ports = ports
        self.persistent = persistent
        # Storage that survives a crash (PostgreSQL with fsync, Temporal's SQLite file): what a persistent stack
        # has; a throwaway one may ask for it too (the order bench measures on both).
        self.durable = persistent if durable is None else durable
        self.settings = settings if settings is not None else Settings()
        self.external = external_services(explicit_fields(self.settings))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if secrets is None:
            secrets = (
                DevSecrets.load_or_create(self.data_dir / SECRETS_FILE)
                if persistent
                else DevSecrets.generate()
            )
        self.secrets = secrets
        self.supervisor = Supervisor(log_dir=self.data_dir / "logs", echo=echo)
        self.postgres: services.PostgresService | None = None
        self.temporal: services.TemporalService | None = None
        self.meili: services.MeiliService | None = None
        self.stripe: services.StripeSandboxService | None = None
        self.smtp: services.SmtpService | None = None
        self.apps: list[services.Service] = []
        self.api: services.HttpService | None = None
        self._infra_started = False
        self._external_search_key: str | None = None
        # Restrict the embedded infra to these services (tests that need only some of them).
        self.only = frozenset(only) if only is not None else None

    # ------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def embedded(self) -> tuple[str, ...]:
        """The infra services this stack starts itself (the rest are the user's existing servers)."""
        return tuple(
            name for name in INFRA if name not in self.external and (self.only is None or name in self.only)
        )

    def start(self, *, demo_data: bool = False) -> None:
        """Infra, migrations, worker + search sync + API, and (optionally, once) demo data."""
        self.start_infra()
        self.start_apps(demo_data=demo_data)

    def start_infra(self) -> None:
        """Start the embedded services in parallel; raise the first failure (the rest keep running)."""
        if self._infra_started:
            return
        starters: dict[str, Callable[[], None]] = {
            "postgres": self._start_postgres,
            "temporal": self._start_temporal,
            "meilisearch": self._start_meili,
            "stripe": self._start_stripe,
            "smtp": self._start_smtp,
        }
        if "meilisearch" in self.external:
            self._check_external_meili()
        if "stripe" in self.external and _secret(self.settings, "stripe_secret_key") is None:
            raise ServiceError("STRIPE_API_BASE is set but STRIPE_SECRET_KEY is not")
        self._parallel([starters[name] for name in self.embedded])
        self._infra_started = True

    def start_apps(self, *, demo_data: bool = False) -> None:
        """Migrations (to completion), then worker, notification sender, search sync and API; then demo data
        if asked."""
        if not self._infra_started:
            self.start_infra()
        if self.apps:
            return
        sup = self.supervisor
        mark = sup.mark()
        try:
            services.run_migrations(sup, self.process_env("migrate"))
        except BaseException:
            sup.stop(sup.spawned_since(mark))
            raise

        def add(starter: Callable[[], services.Service]) -> Callable[[], None]:
            return lambda: self.apps.append(starter())

        self._parallel(
            [
                add(lambda: services.start_worker(sup, self.process_env("worker"))),
                add(lambda: services.start_sender(sup, self.process_env("sender"))),
                add(lambda: services.start_search_sync(sup, self.process_env("search-sync"))),
                add(self._start_api),
            ],
            on_failure=lambda: sup.stop(sup.spawned_since(mark)),
        )
        if demo_data:
            self.load_demo_data()

    def load_demo_data(self) -> bool:
        """Demo data through the running API, once per data dir (marker file); True when it ran now."""
        return services.load_demo_data(
            self.supervisor, self.process_env("demo-data"), self.data_dir, passthrough=self.supervisor.echo
        )

    def _start_api(self) -> services.HttpService:
        self.api = services.start_api(self.supervisor, self.process_env("api"), self.ports.api)
        return self.api

    def stop_apps(self) -> None:
        """Stop the app processes only (infra keeps running, e.g. for the `infra` test fixture)."""
        self.supervisor.stop([app.proc for app in self.apps])
        self.apps.clear()
        self.api = None

    def stop(self) -> None:
        """Stop every child in reverse start order (apps before the services they use)."""
        self.supervisor.stop_all()

    def watch(self) -> ManagedProcess:
        """Block until a child exits unexpectedly and return it (the caller then stops the stack)."""
        while True:
            died = self.supervisor.wait_for_death(timeout=1.0)
            if died is not None:
                return died

    def _parallel(self, jobs: list[Callable[[], None]], on_failure: Callable[[], None] | None = None) -> None:
        """Run start jobs on threads; on any failure (or Ctrl-C) stop what they spawned (default: all)."""
        pool = ThreadPoolExecutor(max_workers=max(1, len(jobs)), thread_name_prefix="start")
        try:
            futures: list[Future[None]] = [pool.submit(job) for job in jobs]
            errors = [f.exception() for f in futures]
            first = next((e for e in errors if e is not None), None)
            if first is not None:
                raise first
        except BaseException:
            # Kill what started so the remaining readiness waits end now, not at their deadline.
            (on_failure or self.supervisor.stop_all)()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # ---------------------------------------------------------------------------- infra starters

    def _start_postgres(self) -> None:
        self.postgres = services.start_postgres(
            self.supervisor,
            self.data_dir,
            self.ports.postgres,
            durable=self.durable,
            relocate=self.persistent,
        )

    def _start_temporal(self) -> None:
        self.temporal = services.start_temporal(
            self.supervisor,
            self.ports.temporal,
            ui_port=self.ports.temporal_ui if self.persistent else None,
            db_file=self.data_dir / "temporal.db" if self.durable else None,
            namespace=self.settings.temporal_namespace,
        )

    def _start_meili(self) -> None:
        self.meili = services.start_meilisearch(
            self.supervisor,
            self.data_dir,
            self.ports.meili,
            master_key=_secret(self.settings, "meili_master_key") or self.secrets.meili_master_key,
            index_pattern=f"{self.settings.meili_index}*",
        )

    def _start_stripe(self) -> None:
        self.stripe = services.start_stripe_sandbox(
            self.supervisor,
            self.ports.stripe,
            webhook_url=f"{self.public_base_url}/v1/webhooks/stripe",
            webhook_secret=self.stripe_webhook_secret,
            state_file=self.data_dir / "stripe.json" if self.persistent else None,
        )

    def _start_smtp(self) -> None:
        self.smtp = services.start_smtp_sink(self.supervisor, self.ports.smtp, mail_dir=self.mail_dir)

    def _check_external_meili(self) -> None:
        """An existing Meilisearch needs its keys; derive the search key from the master key if absent."""
        master = _secret(self.settings, "meili_master_key")
        if master is None:
            raise ServiceError("MEILI_URL is set but MEILI_MASTER_KEY is not (search sync needs it)")
        if _secret(self.settings, "meili_search_key") is None:
            self._external_search_key = services.ensure_search_key(
                self.settings.meili_url, master, f"{self.settings.meili_index}*"
            )

    # ------------------------------------------------------------------------- resolved addresses

    @property
    def database_url(self) -> str:
        if self.postgres is not None:
            return self.postgres.url
        return self.settings.database_url

    @property
    def temporal_address(self) -> str:
        return self.temporal.address if self.temporal is not None else self.settings.temporal_address

    @property
    def temporal_ui_url(self) -> str | None:
        if self.temporal is not None:
            return self.temporal.ui_url
        return self.settings.temporal_ui_url if "temporal" in self.external else None

    @property
    def meili_url(self) -> str:
        return self.meili.url if self.meili is not None else self.settings.meili_url

    @property
    def meili_master_key(self) -> str:
        if self.meili is not None:
            return self.meili.master_key
        return _secret(self.settings, "meili_master_key") or self.secrets.meili_master_key

    @property
    def meili_search_key(self) -> str | None:
        """None until Meilisearch is started (or when it is neither embedded nor configured)."""
        if self.meili is not None:
            return self.meili.search_key
        return _secret(self.settings, "meili_search_key") or self._external_search_key

    @property
    def stripe_api_base(self) -> str:
        return self.stripe.url if self.stripe is not None else self.settings.stripe_api_base

    @property
    def stripe_secret_key(self) -> str:
        return _secret(self.settings, "stripe_secret_key") or self.secrets.stripe_secret_key

    @property
    def stripe_webhook_secret(self) -> str:
        return _secret(self.settings, "stripe_webhook_secret") or self.secrets.stripe_webhook_secret

    @property
    def jwt_secret(self) -> str:
        return _secret(self.settings, "jwt_secret") or self.secrets.jwt_secret

    @property
    def smtp_host(self) -> str:
        return self.smtp.host if self.smtp is not None else self.settings.smtp_host

    @property
    def smtp_port(self) -> int:
        return self.smtp.port if self.smtp is not None else self.settings.smtp_port

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def api_url(self) -> str:
        return f"http://{services.LOOPBACK}:{self.ports.api}"

    @property
    def worker_metrics_url(self) -> str:
        return f"http://{services.LOOPBACK}:{self.ports.worker_metrics}/metrics"

    @property
    def traces_dir(self) -> str | None:
        """Where the processes write their spans: the setting, else `traces/` of a persistent stack's data
        dir (`make run`; read with `python -m cli trace <id>`); a throwaway stack (tests) writes none."""
        if self.settings.traces_dir:
            return self.settings.traces_dir
        return str(self.data_dir / "traces") if self.persistent else None

    @property
    def public_base_url(self) -> str:
        if "public_base_url" in explicit_fields(self.settings):
            return self.settings.public_base_url
        return self.api_url

    @property
    def env(self) -> dict[str, str]:
        """Settings for the app processes (names = `bazaar.settings` fields upper-cased).

        Values not known (yet), like the search key before Meilisearch runs, are left out.
        """
        values: dict[str, str | None] = {
            "DATA_DIR": str(self.data_dir),
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": self.settings.temporal_namespace,
            "TEMPORAL_UI_URL": self.temporal_ui_url,
            "MEILI_URL": self.meili_url,
            "MEILI_MASTER_KEY": self.meili_master_key,
            "MEILI_SEARCH_KEY": self.meili_search_key,
            "MEILI_INDEX": self.settings.meili_index,
            "STRIPE_API_BASE": self.stripe_api_base,
            "STRIPE_SECRET_KEY": self.stripe_secret_key,
            "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
            "JWT_SECRET": self.jwt_secret,
            "UNSUBSCRIBE_SECRET": _secret(self.settings, "unsubscribe_secret")
            or self.secrets.unsubscribe_secret,
            "API_KEY_SECRET": _secret(self.settings, "api_key_secret") or self.secrets.api_key_secret,
            "SMTP_HOST": self.smtp_host,
            "SMTP_PORT": str(self.smtp_port),
            "API_HOST": services.LOOPBACK,
            "API_PORT": str(self.ports.api),
            "PUBLIC_BASE_URL": self.public_base_url,
            "WORKER_METRICS_BIND_ADDRESS": f"{services.LOOPBACK}:{self.ports.worker_metrics}",
            "TRACES_DIR": self.traces_dir,
        }
        return {k: v for k, v in values.items() if v is not None}

    def child_env(self) -> dict[str, str]:
        """Our environment plus the resolved settings (which win over `.env`), every secret included: for
        operators' commands and tests. App processes get `process_env` instead. A throwaway stack's relaxed
        limits (`RELAXED_LIMITS`) are in it too, for the APIs tests and benchmarks start beside the stack's; a
        persistent one's relaxes only the limits per client address (`PER_ADDRESS_LIMITS`). A limit the user set
        (environment or `.env`) is kept."""
        relaxing = set(RELAXED_LIMITS) - (
            set(RELAXED_LIMITS) - PER_ADDRESS_LIMITS if self.persistent else set()
        )
        chosen = os.environ.keys() | {field.upper() for field in self.settings.model_fields_set}
        relaxed = {k: v for k, v in RELAXED_LIMITS.items() if k in relaxing and k not in chosen}
        return {**os.environ, **relaxed, **self.env, "PYTHONUNBUFFERED": "1"}

    def process_env(self, process: str) -> dict[str, str]:
        """The environment of the app process `process` (a key of `PROCESS_SECRETS`): every setting, but of
        the secrets only its own, whether they come from the resolved settings or from our environment."""
        own = PROCESS_SECRETS[process]
        env = {
            name: value
            for name, value in self.child_env().items()
            if name.upper() not in SECRET_VARS or name.upper() in own
        }
        return env
