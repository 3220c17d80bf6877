"""Seller onboarding: a payout account's standing at the provider (details submitted, charges and payouts enabled,
what is due), as its `account.updated` events report it, and the rules that read it.

Events arrive late, repeated and in any order: a report is applied unless a newer one was applied already (by
the event's `created`, Unix seconds; two of the same second apply in the order they arrive). An event that
arrives before our row of the account exists (the provider reports an account as it creates it) stays stored
with the others (`stripe_events`) and is applied when the row appears (`apply_stored_report`). Until its first
report an account is unreported (NULL): nothing holds it back.

The rules:
- a listing is published only by a seller whose account is not reported unable to take charges (`require_can_sell`);
- a seller whose charges get disabled leaves search until they are enabled again: each listing reads
  `Listing.seller_can_sell` into its search document (and the PostgreSQL fallback filters on it), and the seller's
  listings are queued for search sync when it flips;
- a transfer waits while payouts are disabled (`payouts_enabled`, for the order workflow's transfer step).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import BigInteger, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.errors import DomainError, ErrorCode
from bazaar.models import PayoutAccount, StripeEvent
from bazaar.trust.reputation import reindex_seller_listings

log = logging.getLogger("bazaar.onboarding")

ACCOUNT_UPDATED = "account.updated"


class Requirements(BaseModel):
    """What the provider still needs from the seller (Stripe's `account.requirements`, the part we keep)."""

    model_config = ConfigDict(extra="ignore")
    currently_due: list[str] = Field(default_factory=list, description="needed now (or soon, by a deadline)")
    past_due: list[str] = Field(default_factory=list, description="overdue: what disabled charges or payouts")
    disabled_reason: str | None = Field(
        default=None,
        description="why the account is disabled, e.g. requirements.past_due (the provider's values)",
    )


class AccountReport(BaseModel):
    """The standing of a provider `account` object."""

    model_config = ConfigDict(extra="ignore")
    id: str
    details_submitted: bool
    charges_enabled: bool
    payouts_enabled: bool
    requirements: Requirements = Field(default_factory=Requirements)


async def record_report(session: AsyncSession, account: dict[str, Any], created: int) -> PayoutAccount | None:
    """Apply an `account.updated` event (its `data.object`, its `created`) to our row of the account; the row, or
    None when nothing changed: not an account of ours (yet: `apply_stored_report`), a newer report applied
    already, or an object that is not an account we can read."""
    try:
        report = AccountReport.model_validate(account)
    except ValidationError:
        log.warning("account.updated: not an account object we can read (%s)", account.get("id"))
        return None
    await _serialize(session, report.id)
    row = await session.scalar(
        select(PayoutAccount).where(PayoutAccount.provider_account_id == report.id).with_for_update()
    )
    return row if row is not None and await _apply(session, row, report, created) else None


async def apply_stored_report(session: AsyncSession, row: PayoutAccount) -> None:
    """Apply the newest stored `account.updated` of this account, if it is newer than what the row has: one that
    arrived before the row existed (right after the account is created, once per account)."""
    await _serialize(session, row.provider_account_id)
    await session.refresh(row, with_for_update=True)  # a webhook may have reported it meanwhile
    obj = StripeEvent.payload["data"]["object"]
    created = StripeEvent.payload["created"].astext.cast(BigInteger)
    stored = (
        await session.execute(
            select(obj, created)
            .where(StripeEvent.type == ACCOUNT_UPDATED, obj["id"].astext == row.provider_account_id)
            .order_by(created.desc())
            .limit(1)
        )
    ).first()
    if stored is not None:
        try:
            await _apply(session, row, AccountReport.model_validate(stored[0]), int(stored[1]))
        except ValidationError:
            log.warning("account.updated of %s: not an account object we can read", row.provider_account_id)


async def _serialize(session: AsyncSession, provider_account_id: str) -> None:
    """One writer per account until commit: a webhook that finds no row yet has stored its event by the time
    `apply_stored_report` looks for it, or finds the row."""
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext("payout-account:" + provider_account_id)))
    )


def status_columns(report: AccountReport, created: int) -> dict[str, Any]:
    """The payout_accounts columns of a report made at `created` (Unix seconds)."""
    return {
        "details_submitted": report.details_submitted,
        "charges_enabled": report.charges_enabled,
        "payouts_enabled": report.payouts_enabled,
        "requirements": report.requirements.model_dump(),
        "status_reported_at": created,
    }


async def _apply(session: AsyncSession, row: PayoutAccount, report: AccountReport, created: int) -> bool:
    if row.status_reported_at is not None and created < row.status_reported_at:
        return False  # an older report delivered late
    could_sell = row.charges_enabled is not False
    for column, value in status_columns(report, created).items():
        setattr(row, column, value)
    if could_sell != report.charges_enabled:
        # Their listings' documents carry Listing.seller_can_sell: search sync rewrites them (same transaction).
        await reindex_seller_listings(session, row.user_id)
    return True


def requirements_of(row: PayoutAccount) -> Requirements | None:
    """The stored requirements (None until the first report)."""
    return None if row.requirements is None else Requirements.model_validate(row.requirements)


async def require_can_sell(session: AsyncSession, seller_id: uuid.UUID) -> None:
    """Publishing needs a payout account (409 `payout_account_required`) that is not reported unable to take
    charges (409 `payout_account_not_ready`, with what is due)."""
    row = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == seller_id))
    if row is None:
        raise DomainError(ErrorCode.PAYOUT_ACCOUNT_REQUIRED, "create a payout account before publishing")
    if row.charges_enabled is False:
        due = requirements_of(row) or Requirements()
        raise DomainError(
            ErrorCode.PAYOUT_ACCOUNT_NOT_READY,
            "your payout account cannot take charges yet: finish onboarding with the payment provider "
            "(GET /v1/payout-account lists what is due)",
            {"requirements": due.model_dump()},
        )


async def payouts_enabled(session: AsyncSession, seller_id: uuid.UUID) -> bool:
    """Whether a transfer to the seller can go out now: they have a payout account whose payouts are not
    reported disabled (unreported: yes, as before onboarding was kept)."""
    found = (
        await session.execute(select(PayoutAccount.payouts_enabled).where(PayoutAccount.user_id == seller_id))
    ).first()
    return found is not None and found[0] is not False
