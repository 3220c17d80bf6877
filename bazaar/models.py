"""The data model: SQLAlchemy 2 typed mappings. Schema changes go through Alembic (bazaar/migrations)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    exists,
    false,
    func,
    not_,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A PostgreSQL enum type holding the members' values (every member's: see `OrderStatus.REJECTED`)."""
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])


def _text_enum(cls: type[enum.Enum], length: int) -> Enum:
    """A column of plain VARCHAR(length) read and written as `cls` (its members' values, no CHECK constraint):
    the database type does not change when a member is added."""
    return Enum(cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Role(enum.StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    SUPPORT = "support"
    ADMIN = "admin"


class ListingStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    SOLD = "sold"
    ARCHIVED = "archived"


class ListingCondition(enum.StrEnum):
    NEW = "new"
    LIKE_NEW = "like_new"
    GOOD = "good"
    FAIR = "fair"
    FOR_PARTS = "for_parts"


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CONFIRMED = "confirmed"
    FULFILLED = "fulfilled"
    COMPLETED = "completed"
    DISPUTED = "disputed"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    # The workflow's answer to a placement it refused (sold out, own listing, ...): nothing is stored for such
    # an order, so the database never holds this value. The model's `order_status` type lists it (`_enum`
    # maps every member) while the migrations' type does not; comparing the two (tests/bazaar/test_migrations.py)
    # compares no enum labels, and a write of it would be refused by PostgreSQL.
    REJECTED = "rejected"


class PaymentState(enum.StrEnum):
    """Where an order's money is (`orders.payment_state`, the `PaymentState` search attribute)."""

    NONE = "none"  # not charged yet
    HELD_IN_ESCROW = "held_in_escrow"  # charged, held on the platform balance
    FAILED = "failed"  # the charge was declined or refused: nothing taken
    FROZEN = "frozen"  # held while a dispute is open (or what a lost chargeback left over)
    RELEASED = "released"  # fee to the platform, the rest paid out to the seller
    REFUNDED = "refunded"  # given back to the buyer
    TRANSFER_FAILED = "transfer_failed"  # released, but the provider refused the seller's payout
    PAYOUT_ON_HOLD = (
        "payout_on_hold"  # released; the payout waits until the provider enables the seller's payouts
    )
    CHARGEBACK = "chargeback"  # withdrawn by the card network while it decides
    CHARGED_BACK = "charged_back"  # the card network decided for the buyer


class PaymentKind(enum.StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    TRANSFER = "transfer"
    TRANSFER_REVERSAL = "transfer_reversal"
    # Not calls we make: the card network takes the money (chargeback) or gives it back (dispute won).
    # Recorded like our calls so reconciliation can match the provider's dispute balance transactions.
    CHARGEBACK = "chargeback"
    CHARGEBACK_REVERSAL = "chargeback_reversal"


class PaymentOutcome(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class User(Timestamped, Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(80))
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped by a password change or reset, deactivation and role changes: every access token and session
    # issued before is refused from the next request on (bazaar.auth).
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthSession(Base):
    """One login: its access tokens carry its id (`sid`), its refresh tokens are one rotation family. Ended by
    logout, by a reused refresh token, or by the user's token version moving on."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_version: Mapped[int] = mapped_column(Integer)  # the user's, when the session began
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # of its newest refresh token
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))  # logout | refresh_reuse


class RefreshToken(Base):
    """A refresh token, stored as the SHA-256 of its value; spent (`used_at`) when rotated. Spent ones are kept
    until they expire so that a reuse is recognised (and ends the session)."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_session", "session_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AccountToken(Base):
    """A single-use token mailed to an account (verify the email, reset the password), stored as the SHA-256 of
    its value: it expires, and is spent by its first use."""

    __tablename__ = "account_tokens"
    __table_args__ = (Index("ix_account_tokens_user", "user_id", "purpose"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))  # verify_email | password_reset
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RateLimitCounter(Base):
    """A fixed-window request counter of the rate limits (bazaar.ratelimit), shared by every API replica.
    UNLOGGED: no WAL for a counter that may be lost in a crash (the limits then start afresh)."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = (Index("ix_rate_limit_counters_expires", "expires_at"), {"prefixes": ["UNLOGGED"]})

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PayoutAccount(Timestamped, Base):
    """A seller's connected account at the payment provider, where escrow is released to."""

    __tablename__ = "payout_accounts"
    __table_args__ = (
        # The few sellers who may not sell now (Listing.seller_can_sell, the search fallback's filter).
        Index("ix_payout_accounts_charges_disabled", "user_id", postgresql_where=text("NOT charges_enabled")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), unique=True)
    provider_account_id: Mapped[str] = mapped_column(String(64), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    default_currency: Mapped[str] = mapped_column(String(3))
    # The account's standing as the provider's `account.updated` events report it (bazaar/payments/onboarding.py);
    # all NULL until the first report.
    details_submitted: Mapped[bool | None] = mapped_column()
    charges_enabled: Mapped[bool | None] = mapped_column()
    payouts_enabled: Mapped[bool | None] = mapped_column()
    # {"currently_due": [...], "past_due": [...], "disabled_reason": ...} (onboarding.Requirements)
    requirements: Mapped[dict[str, Any] | None] = mapped_column()
    # `created` (Unix seconds) of the newest event applied: an older one delivered later changes nothing.
    status_reported_at: Mapped[int | None] = mapped_column(BigInteger)


class Category(Base):
    """Managed taxonomy: a tree of slugs."""

    __tablename__ = "categories"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_slug: Mapped[str | None] = mapped_column(ForeignKey("categories.slug"))
    name: Mapped[str] = mapped_column(String(80))


class Listing(Timestamped, Base):
    __tablename__ = "listings"
    __table_args__ = (
        CheckConstraint("price_amount > 0", name="price_positive"),
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        Index("ix_listings_seller_status", "seller_id", "status"),
        Index("ix_listings_status_published", "status", "published_at"),
        # Both from migration 0003, for the PostgreSQL search fallback.
        Index("ix_listings_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_listings_active_price", "price_amount", postgresql_where=text("status = 'active'")),
        # From migration 0010, for the fallback's relevance (bazaar/search/words.py): typos, category words.
        Index(
            "ix_listings_title_trgm",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ),
        Index("ix_listings_active_category", "category_slug", postgresql_where=text("status = 'active'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(140))
    description: Mapped[str] = mapped_column(Text, default="")
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    category_slug: Mapped[str] = mapped_column(ForeignKey("categories.slug"))
    condition: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    image_urls: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    city: Mapped[str | None] = mapped_column(String(80))
    country: Mapped[str | None] = mapped_column(String(2))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ListingStatus] = mapped_column(_enum(ListingStatus, "listing_status"))
    # Bumped on every change: the ETag, and the order of changes for search sync.
    version: Mapped[int] = mapped_column(Integer, default=1)
    view_count: Mapped[int] = mapped_column(BigInteger, default=0)
    order_count: Mapped[int] = mapped_column(BigInteger, default=0)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # False while the provider reports the seller's account unable to take charges (bazaar/payments/onboarding.py),
    # or while the seller's account is deactivated (bazaar.auth.set_active): read with the listing, so its search
    # document carries it; the search fallback filters on it.
    seller_can_sell: Mapped[bool] = column_property(
        and_(
            not_(
                exists()
                .where(PayoutAccount.user_id == seller_id, PayoutAccount.charges_enabled == false())
                .correlate_except(PayoutAccount)
            ),
            exists().where(User.id == seller_id, User.is_active.is_(True)).correlate_except(User),
        )
    )
    # Generated by PostgreSQL from title, city and description (migration 0003); read-only here.
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('simple', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('simple', coalesce(city, '')), 'B') || "
            "setweight(to_tsvector('simple', coalesce(description, '')), 'C')",
            persisted=True,
        ),
        deferred=True,
    )


class Order(Timestamped, Base):
    """Projection of the order workflow (the workflow is the source of truth for its state)."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("buyer_id", "idempotency_key", name="uq_orders_buyer_idempotency_key"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_orders_buyer", "buyer_id", "created_at"),
        Index("ix_orders_seller", "seller_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    listing_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("listings.id"))
    listing_title: Mapped[str] = mapped_column(String(140))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"))
    status_reason: Mapped[str | None] = mapped_column(String(64))
    payment_state: Mapped[PaymentState] = mapped_column(
        _text_enum(PaymentState, 32), default=PaymentState.NONE
    )
    # True while this order holds stock; cleared exactly once when the stock goes back.
    stock_reserved: Mapped[bool] = mapped_column(default=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    # What the order was placed with (null on orders from before it was kept): a retried request must match.
    payment_method: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    tracking: Mapped[dict[str, Any] | None] = mapped_column()
    # Last workflow event applied, so a replayed projection write never moves the row backwards.
    state_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The checkout that placed it with orders of other sellers (one payment for all); null: a single order.
    checkout_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("checkouts.id"), index=True)
    # Why support is looking at it ("<step>: <error>"): set when the workflow flags it, cleared by its next move.
    needs_attention: Mapped[str | None] = mapped_column(String(600))
    # What was bought (the listing columns above describe the first line). Loaded with the order.
    lines: Mapped[list[OrderLine]] = relationship(lazy="selectin", order_by="OrderLine.position")


class OrderLine(Base):
    """A listing an order bought: how many, at the unit price frozen when it was placed. The stock an order holds
    is its lines'."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="order_line_quantity_positive"),
        CheckConstraint(
            "refunded_quantity >= 0 AND refunded_quantity <= quantity",
            name="order_line_refunded_within_quantity",
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    listing_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("listings.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer)
    listing_title: Mapped[str] = mapped_column(String(140))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    # Units refunded by line (refunds by lines, returns): the order's workflow writes it with its transitions.
    refunded_quantity: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    # Units put back on sale already (refunded by line before the order shipped): its release gives back the rest.
    restocked_quantity: Mapped[int] = mapped_column(Integer, server_default="0", default=0)


class CheckoutStatus(enum.StrEnum):
    PENDING = "pending"  # stock reserved for every line, the payment running
    PAID = "paid"  # charged once: each seller's order runs on its own
    PAYMENT_FAILED = "payment_failed"  # declined or refused by the provider: nothing taken, the stock back


class Checkout(Timestamped, Base):
    """One payment for a cart of listings from several sellers, and the orders (one per seller) it placed. The
    `Checkout` workflow (workflows/checkout.py) owns it; its orders run as the usual order workflow."""

    __tablename__ = "checkouts"
    __table_args__ = (
        UniqueConstraint("buyer_id", "idempotency_key", name="uq_checkouts_buyer_idempotency_key"),
        CheckConstraint("amount > 0", name="checkout_amount_positive"),
        Index("ix_checkouts_buyer", "buyer_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    payment_method: Mapped[str] = mapped_column(String(64))
    status: Mapped[CheckoutStatus] = mapped_column(_text_enum(CheckoutStatus, 16))
    status_reason: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    orders: Mapped[list[Order]] = relationship(lazy="selectin", order_by="Order.id")


class Payment(Timestamped, Base):
    """Every money-moving provider call: its idempotency key, the provider's id and the outcome."""

    __tablename__ = "payments"

    __table_args__ = (CheckConstraint("num_nonnulls(order_id, checkout_id) = 1", name="payment_owner"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Whose money: an order's, or (a checkout's one charge for all its orders) the checkout's.
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"), index=True)
    checkout_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("checkouts.id"), index=True)
    kind: Mapped[PaymentKind] = mapped_column(_enum(PaymentKind, "payment_kind"))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    outcome: Mapped[PaymentOutcome] = mapped_column(_enum(PaymentOutcome, "payment_outcome"))
    provider_id: Mapped[str | None] = mapped_column(String(64), index=True)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(Text)
    provider_response: Mapped[dict[str, Any] | None] = mapped_column()


class SearchOutbox(Base):
    """A listing changed: written in the same transaction as the change, drained by search_sync."""

    __tablename__ = "search_outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    listing_id: Mapped[uuid.UUID] = mapped_column(index=True)
    listing_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # W3C traceparent of the change (bazaar.telemetry.traceparent): its batch continues the request's trace.
    trace_context: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Base):
    """Append-only log of who did what to which subject (also the order timeline)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_subject", "subject_type", "subject_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor_id: Mapped[uuid.UUID | None] = mapped_column()
    actor_role: Mapped[str] = mapped_column(String(16))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Deduplicates events written by retried activities.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)


class StripeEvent(Base):
    """Webhook events already processed (Stripe delivers at least once, in any order)."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    payload: Mapped[dict[str, Any]] = mapped_column()


class LedgerAccount(enum.StrEnum):
    BUYER_PAYMENTS = "buyer_payments"  # money that came in from buyers (negative: owed back to the world)
    ESCROW = "escrow"  # held by the platform until the order completes
    REFUNDS = "refunds"  # returned to buyers
    PLATFORM_FEES = "platform_fees"  # the marketplace's revenue
    SELLER_PAYABLE = "seller_payable"  # released to a seller, not yet transferred
    SELLER_PAYOUTS = "seller_payouts"  # transferred to the seller's connected account
    CHARGEBACKS = "chargebacks"  # withdrawn from the platform by the card network (a buyer's chargeback)


class LedgerEntry(Base):
    """Append-only double-entry ledger: each movement (`txn`) is entries summing to zero."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        # One entry per account and order in a movement: a checkout's charge books every order's share under one txn.
        UniqueConstraint("txn", "account", "order_id", name="uq_ledger_txn_account_order"),
        Index("ix_ledger_seller_account", "seller_id", "account"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    txn: Mapped[str] = mapped_column(String(255))  # the movement's idempotency key, e.g. "<order>:refund:1"
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    account: Mapped[LedgerAccount] = mapped_column(_enum(LedgerAccount, "ledger_account"))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReconciliationRun(Base):
    """One reconciliation window (our payments and ledger vs the provider); re-running it overwrites it."""

    __tablename__ = "reconciliation_runs"

    # e.g. "20261124T000000Z-20261125T000000Z": also the workflow id suffix, so a window runs as one workflow.
    window_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    workflow_id: Mapped[str] = mapped_column(String(128))
    runs: Mapped[int] = mapped_column(Integer, default=1)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    missing_ours: Mapped[int] = mapped_column(Integer, default=0)
    missing_provider: Mapped[int] = mapped_column(Integer, default=0)
    amount_mismatch: Mapped[int] = mapped_column(Integer, default=0)
    status_mismatch: Mapped[int] = mapped_column(Integer, default=0)
    # Since migration 0009 (bazaar/payments/reconcile.py, Category).
    currency_mismatch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    missing_ledger: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    ledger_only: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    unbalanced: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    first_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ReconciliationItem(Base):
    """One discrepancy of a window, with its lifecycle (bazaar/payments/discrepancies.py): `open` when found,
    `resolved` by the run that finds it matched again (`changed_by` NULL), or `acknowledged`/`resolved` by
    support with a note."""

    __tablename__ = "reconciliation_items"
    __table_args__ = (
        UniqueConstraint("window_id", "object_type", "object_id", "category", name="uq_reconciliation_item"),
        Index("ix_reconciliation_items_status", "status", "category", "object_type"),
        Index("ix_reconciliation_items_order", "order_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    window_id: Mapped[str] = mapped_column(
        ForeignKey("reconciliation_runs.window_id", ondelete="CASCADE"), index=True
    )
    # bazaar.payments.reconcile.Category: missing_ours | missing_provider | missing_ledger | ledger_only |
    # unbalanced | currency_mismatch | amount_mismatch | status_mismatch
    category: Mapped[str] = mapped_column(String(32))
    # payment_intent | refund | transfer | transfer_reversal | dispute | dispute_reversal | balance_transaction
    # | ledger
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(255))  # the provider's id, or our idempotency key
    order_id: Mapped[uuid.UUID | None] = mapped_column()
    ours_amount: Mapped[int | None] = mapped_column(BigInteger)
    provider_amount: Mapped[int | None] = mapped_column(BigInteger)
    ours_status: Mapped[str | None] = mapped_column(String(32))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Since migration 0009: the currencies of both sides, what the ledger booked, and the lifecycle.
    ours_currency: Mapped[str | None] = mapped_column(String(16))
    provider_currency: Mapped[str | None] = mapped_column(String(16))
    ledger_amount: Mapped[int | None] = mapped_column(BigInteger)
    ledger_currency: Mapped[str | None] = mapped_column(String(16))
    # open | acknowledged | resolved (bazaar.payments.discrepancies.ItemStatus)
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    changed_by: Mapped[uuid.UUID | None] = mapped_column()  # the support user; NULL: reconciliation itself
    note: Mapped[str | None] = mapped_column(Text)
