"""The one settings object: every knob of every process, read from the environment or `.env`.

Defaults are the embedded dev stack's addresses (`make run`), so a process started by hand talks to a
running dev stack. Setting `DATABASE_URL`, `TEMPORAL_ADDRESS`, `MEILI_URL` or `STRIPE_API_BASE` makes
`devstack` use that existing service instead of starting its own (that is how production runs).
Secrets have no defaults: `devstack` generates dev secrets under `.data/`; production passes them in.
"""

from __future__ import annotations

from functools import lru_cache

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bazaar.orders.terms import DEFAULT_TERMS, OrderTerms

# Variables whose explicit presence means "use this existing service, start nothing embedded for it".
EXTERNAL_SERVICE_VARS = {
    "database_url": "postgres",
    "temporal_address": "temporal",
    "meili_url": "meilisearch",
    "stripe_api_base": "stripe",
    "smtp_host": "smtp",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    # Where embedded services keep their state.
    data_dir: str = ".data"

    # PostgreSQL (SQLAlchemy URL, psycopg 3 driver).
    database_url: str = "postgresql+psycopg://bazaar@127.0.0.1:54329/bazaar"
    database_pool_size: int = 10

    # Temporal.
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "bazaar-orders"
    temporal_ui_url: str = "http://127.0.0.1:8233"

    # Meilisearch: the admin key is used by search_sync and setup only; the API gets a search-only key.
    meili_url: str = "http://127.0.0.1:7700"
    meili_master_key: SecretStr | None = None
    meili_search_key: SecretStr | None = None
    meili_index: str = "listings"
    # The API answers from PostgreSQL when a search takes longer than this or Meilisearch is down...
    meili_search_timeout_seconds: float = Field(default=2.0, gt=0)
    # ...and tries Meilisearch again after this many seconds (circuit breaker).
    search_breaker_retry_seconds: float = Field(default=2.0, gt=0)

    # Stripe (the official SDK; the embedded default is the local sandbox).
    stripe_api_base: str = "http://127.0.0.1:12111"
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_timeout_seconds: float = 10.0

    # Marketplace money rules (integer minor units / basis points; never floats).
    platform_fee_bps: int = Field(default=DEFAULT_TERMS["fee_bps"], ge=0, le=10_000)
    platform_fee_fixed: int = Field(default=DEFAULT_TERMS["fee_fixed"], ge=0)
    platform_fee_refunded_pro_rata: bool = DEFAULT_TERMS["fee_refunded_pro_rata"]
    default_currency: str = "EUR"

    # Order timers (seconds; shorten them for demos and tests).
    order_acceptance_timeout_seconds: int = Field(default=DEFAULT_TERMS["acceptance_timeout_seconds"], gt=0)
    order_dispute_window_seconds: int = Field(default=DEFAULT_TERMS["dispute_window_seconds"], gt=0)
    order_acceptance_reminder_seconds: int = Field(default=DEFAULT_TERMS["acceptance_reminder_seconds"], gt=0)
    review_window_seconds: int = Field(default=DEFAULT_TERMS["review_window_seconds"], gt=0)
    # How often closed review windows are revealed (a Temporal Schedule): the most a reveal can be late.
    review_sweep_seconds: int = Field(default=300, gt=0)
    dispute_escalation_seconds: int = Field(default=DEFAULT_TERMS["dispute_escalation_seconds"], gt=0)
    # Returns (bazaar/returns): how long after shipping the buyer may ask, how long the seller has to answer
    # (then support decides), the buyer to send it back once approved (then it lapses), and the seller to confirm
    # it arrived once sent (then the refund goes out anyway).
    return_window_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    return_response_seconds: int = Field(default=3 * 24 * 3600, gt=0)
    return_ship_seconds: int = Field(default=14 * 24 * 3600, gt=0)
    return_receipt_seconds: int = Field(default=21 * 24 * 3600, gt=0)
    notification_max_attempts: int = Field(default=DEFAULT_TERMS["notification_max_attempts"], ge=1)
    # Failure bounds of an order (docs/failure-rules.md): how long a database step or a provider call may
    # keep failing transiently before the order is flagged for support, and how often it then retries.
    order_step_timeout_seconds: int = Field(default=DEFAULT_TERMS["step_timeout_seconds"], gt=0)
    order_provider_timeout_seconds: int = Field(default=DEFAULT_TERMS["provider_timeout_seconds"], gt=0)
    order_attention_retry_seconds: int = Field(default=DEFAULT_TERMS["attention_retry_seconds"], gt=0)
    # How long the API waits for an order's workflow before answering 202 with the order as it is.
    order_wait_seconds: float = Field(default=8.0, gt=0)
    # Delay before a failed notification's first retry; each next one doubles (capped at an hour).
    notification_first_retry_seconds: float = Field(default=1.0, gt=0)

    # Reconciliation with the payment provider: the worker keeps a daily Temporal Schedule (cron, UTC).
    reconciliation_cron: str = "30 2 * * *"
    # After a window ends, each later run re-checks its unsettled discrepancies for this long (late webhooks,
    # a worker down across the edge), resolving those that match by then.
    reconciliation_settle_seconds: int = Field(default=86_400, ge=0)

    # Worker: how many workflows it keeps in memory between their tasks (Temporal's sticky cache). Open orders
    # mostly wait for days; one evicted is replayed from its short history (a few ms) on its next task.
    worker_cached_workflows: int = Field(default=100, ge=1)
    # Worker: Prometheus endpoint (host:port) for its Temporal SDK metrics.
    worker_metrics_bind_address: str | None = None
    # Workers: provider requests per second for the whole platform (Stripe's documented limits are 100
    # operations/s in live mode, 25/s per endpoint, and 25/s in test mode: the default stays under both), split in
    # two (docs/architecture.md): the local-first calls on an Update's path (refund, transfer, reversal) may make
    # `payment_local_requests_per_second` of them, counted in PostgreSQL by every orders worker together, in fixed
    # windows that can admit twice that across a window's edge; the payments task queue gets the rest
    # (`payment_queue_requests_per_second`), which the Temporal server enforces for all its workers together.
    payment_requests_per_second: float = Field(default=25.0, gt=0)
    payment_local_requests_per_second: int = Field(default=5, ge=0)

    # Auth.
    jwt_secret: SecretStr | None = None
    # Signs the unsubscribe links in emails (the worker signs, the API checks); unset: the JWT secret, so a
    # single-process setup needs one secret, while production gives the worker this one and never the JWT's.
    unsubscribe_secret: SecretStr | None = None
    # Access tokens are short: logout, a password reset, deactivation and role changes end them at once anyway
    # (each request checks the session and the user's token version), this bounds what a stolen one is worth.
    access_token_ttl_seconds: int = Field(default=900, gt=0)
    # Refresh tokens (POST /v1/auth/refresh): rotated on every use; a reused one ends its whole session (except
    # within a few seconds of its rotation: bazaar.accounts.sessions.REUSE_GRACE, two tabs or a retried call).
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    email_verification_ttl_seconds: int = Field(default=48 * 3600, gt=0)
    password_reset_ttl_seconds: int = Field(default=3600, gt=0)
    # On: an account whose email is not verified may not place orders or publish listings (it may log in,
    # browse, set up a payout account and write drafts). Off in dev and tests; production compose turns it on.
    require_verified_email: bool = False
    # The lowest zxcvbn score (0-4) a new password must reach (common and breached-list passwords score 0-2).
    password_min_score: int = Field(default=3, ge=0, le=4)
    # The key of the API keys' keyed hash (HMAC-SHA256, bazaar/integrations/keys.py); unset: derived from the JWT
    # secret, so a single-process setup needs one secret. Changing it (or, unset, the JWT secret) revokes every key.
    api_key_secret: SecretStr | None = None

    # Outbound webhooks (bazaar/integrations, Standard Webhooks). Waits in seconds before each retry of a failed
    # delivery, comma-separated: after the last one fails the endpoint is disabled and its owner notified.
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,36000,36000,36000,36000,36000"
    # After a secret rotation, deliveries are signed with the old secret too for this long.
    webhook_secret_overlap_seconds: int = Field(default=86_400, ge=0)
    # A delivery attempt is a failure past this (connecting, sending and reading the answer).
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # On (dev, tests): an endpoint may be http://localhost or another loopback/private address. Off (production
    # compose): https only, to a public host name or address.
    webhook_allow_local_urls: bool = True

    # Request limits (`limits` notation, tiers separated by ";"), counted in PostgreSQL so every API replica
    # shares them; over a limit the API answers 429 `rate_limited` with Retry-After and RateLimit headers.
    # POST /v1/auth/token and /v1/auth/refresh per client address (every attempt counts).
    rate_limit_login_address: str = "30/minute;300/hour"
    # Failed logins per account: each tier exhausted locks the account's logins (even with the right password)
    # until that tier's window ends, so a lockout grows from a minute to an hour to a day.
    rate_limit_login_account: str = "5/minute;10/hour;30/day"
    # POST /v1/auth/register per client address.
    rate_limit_register_address: str = "20/hour"
    # Password reset (request and confirm) and email verification (confirm and resend) per client address.
    rate_limit_account_links_address: str = "20/hour"
    # Account emails (verification, password reset, "someone tried to register") to one account; beyond it the
    # request is answered the same but no mail is sent (no mail bombing through the API).
    rate_limit_account_mail: str = "5/hour"
    # POST /v1/orders per buyer.
    rate_limit_orders_buyer: str = "30/minute;300/day"
    # GET /v1/search/listings per client address without a token, and per user with one.
    rate_limit_search_anonymous: str = "60/minute"
    rate_limit_search_user: str = "300/minute"
    # GET /v1/listings/{id} per client address.
    rate_limit_listing_reads: str = "120/minute"
    # Views of one listing counted per client address (views rank search); more reads are served, not counted.
    rate_limit_view_count: str = "1/hour"
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (read by uvicorn itself): the client address
    # of the per-address limits, and whether a request came over TLS (HSTS). Comma-separated, "*" for any.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # Strict-Transport-Security max-age on responses to requests that came over TLS (0: no HSTS header).
    hsts_max_age_seconds: int = Field(default=365 * 24 * 3600, ge=0)

    # Email (a local SMTP sink in the dev stack).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "Bazaar <no-reply@bazaar.local>"

    # Prometheus scrapes /metrics with this bearer token; unset, only loopback clients may scrape.
    metrics_token: SecretStr | None = None

    # Traces (OpenTelemetry, bazaar/telemetry.py): every process sends its spans over OTLP/HTTP to this
    # collector (e.g. http://otel-collector:4318; the standard OTEL_EXPORTER_OTLP_* variables tune it), and/or
    # appends them as JSON lines to `<TRACES_DIR>/<process>.jsonl` (`make run`: .data/traces; read them with
    # `python -m cli trace <trace id>`). Neither set: spans are not recorded, but every request still gets a
    # trace id (in its log lines, the X-Trace-Id header and error bodies) that propagates to the worker.
    otel_exporter_otlp_endpoint: str | None = None
    traces_dir: str | None = None

    # API process.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    # The marketplace app's page of an order, for the order links in mails (`{order_id}` in it, e.g.
    # "https://shop.example.com/orders/{order_id}"); unset: the API's order URL (which needs a bearer token).
    order_link_template: str | None = None

    # Search sync.
    search_sync_batch_size: int = 500
    search_sync_poll_seconds: float = 0.2
    search_sync_max_backoff_seconds: float = Field(default=5.0, gt=0)

    # Hot-listing cache of the API (listing detail reads) and batched view counting.
    listing_cache_ttl_seconds: float = Field(default=30.0, ge=0)
    listing_cache_max_entries: int = Field(default=10_000, ge=0)
    popularity_flush_seconds: float = Field(default=5.0, gt=0)

    @field_validator("order_link_template")
    @classmethod
    def _names_the_order(cls, value: str | None) -> str | None:
        if value and "{order_id}" not in value:
            raise ValueError("ORDER_LINK_TEMPLATE must contain {order_id}")
        return value

    @field_validator(
        "rate_limit_login_address",
        "rate_limit_login_account",
        "rate_limit_register_address",
        "rate_limit_account_links_address",
        "rate_limit_account_mail",
        "rate_limit_orders_buyer",
        "rate_limit_search_anonymous",
        "rate_limit_search_user",
        "rate_limit_listing_reads",
        "rate_limit_view_count",
    )
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        parse_many(value)  # a typo fails at start, not at the first request
        return value

    @model_validator(mode="after")
    def _provider_budget(self) -> Settings:
        if self.payment_queue_requests_per_second <= 0:
            raise ValueError(
                "PAYMENT_REQUESTS_PER_SECOND must exceed twice PAYMENT_LOCAL_REQUESTS_PER_SECOND "
                "(the local-first calls' share, docs/architecture.md)"
            )
        return self

    @property
    def payment_queue_requests_per_second(self) -> float:
        """The payments task queue's rate limit: the provider's budget less what the local-first calls can take
        in any one second (twice their fixed-window quota)."""
        return self.payment_requests_per_second - 2 * self.payment_local_requests_per_second

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _retry_schedule(cls, value: str) -> str:
        cls.parse_delays(value)  # a typo fails at start, not at the first failed delivery
        return value

    @staticmethod
    def parse_delays(value: str) -> tuple[float, ...]:
        try:
            delays = tuple(float(part) for part in value.split(","))
        except ValueError as exc:
            raise ValueError(f"not a comma-separated list of seconds: {value!r}") from exc
        if not all(0 <= d < 10**7 for d in delays):  # also refuses NaN
            raise ValueError(f"each wait must be 0 <= seconds < 10^7: {value!r}")
        return delays

    def webhook_retry_delays(self) -> tuple[float, ...]:
        """The waits before each retry of a webhook delivery (`WEBHOOK_RETRY_SCHEDULE`)."""
        return self.parse_delays(self.webhook_retry_schedule)

    def api_key_hash_secret(self) -> str:
        """The key of the API keys' hash (`API_KEY_SECRET`, else the JWT secret's)."""
        return self.require("api_key_secret" if self.api_key_secret else "jwt_secret")

    def order_terms(self) -> OrderTerms:
        """The terms a new order freezes (bazaar.orders.terms)."""
        return OrderTerms(
            acceptance_timeout_seconds=self.order_acceptance_timeout_seconds,
            acceptance_reminder_seconds=self.order_acceptance_reminder_seconds,
            dispute_window_seconds=self.order_dispute_window_seconds,
            fee_bps=self.platform_fee_bps,
            fee_fixed=self.platform_fee_fixed,
            fee_refunded_pro_rata=self.platform_fee_refunded_pro_rata,
            review_window_seconds=self.review_window_seconds,
            dispute_escalation_seconds=self.dispute_escalation_seconds,
            notification_max_attempts=self.notification_max_attempts,
            step_timeout_seconds=self.order_step_timeout_seconds,
            provider_timeout_seconds=self.order_provider_timeout_seconds,
            attention_retry_seconds=self.order_attention_retry_seconds,
        )

    def link_secret(self) -> str:
        """The key of the signed links in emails (unsubscribe)."""
        return self.require("unsubscribe_secret" if self.unsubscribe_secret else "jwt_secret")

    def require(self, name: str) -> str:
        """The value of a secret that this process cannot run without, or a clear error."""
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"{name.upper()} is not set (see .env.example)")
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


@lru_cache
def get_settings() -> Settings:
    return Settings()
