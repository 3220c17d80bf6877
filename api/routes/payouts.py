"""Seller payout accounts (connected accounts at the provider, where escrow is released to) and their standing
at the provider (bazaar/payments/onboarding.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from api.deps import Seller, Session, Temporal
from api.openapi import LOCATION, errors, merge
from api.payout_schemas import OnboardingLinkIn, OnboardingLinkOut, PayoutAccountIn, PayoutAccountOut
from api.schemas import BalanceOut, LedgerLineOut, SellerBalanceOut
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import PayoutAccount, User
from bazaar.payments import ledger, onboarding
from bazaar.payments.provider import (
    ONBOARDING_LINK_REFUSED,
    OnboardingLinkRequest,
    PayoutAccountRequest,
    PayoutAccountResult,
)
from bazaar.settings import get_settings
from bazaar.temporal import PAYMENTS, payout_account_workflow_id, task_queue
from workflows.failures import cause_of
from workflows.payout_account import OnboardingLinkWorkflow, PayoutAccountWorkflow

T = TypeVar("T")

router = APIRouter(prefix="/v1/payout-account", tags=["payouts"])


@router.post(
    "",
    status_code=201,
    response_model=PayoutAccountOut,
    responses=merge(
        {
            201: {"description": "the account, created", "headers": LOCATION},
            200: {
                "model": PayoutAccountOut,
                "description": "the seller's account as it is (the same request again)",
                "headers": LOCATION,
            },
        },
        errors(ErrorCode.PAYOUT_ACCOUNT_EXISTS),
    ),
)
async def create_payout_account(
    body: PayoutAccountIn, seller: Seller, session: Session, temporal: Temporal, response: Response
) -> PayoutAccountOut:
    """Create the seller's payout account at the provider (idempotent: one per seller; the same request again
    answers the account with 200, another country or currency is a 409 naming the account's)."""
    user = await session.get(User, seller.user_id)
    assert user is not None
    held = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == user.id))
    response.headers["Location"] = router.prefix
    if held is not None:  # the same request again: the account as it is, as a replay answers
        _same_account(held, body)
        response.status_code = 200
        return PayoutAccountOut.of(held)
    workflow_id = payout_account_workflow_id(str(user.id))
    try:
        try:
            creating = await temporal.start_workflow(
                PayoutAccountWorkflow.run,
                PayoutAccountRequest(
                    user_id=str(user.id),
                    email=user.email,
                    country=body.country,
                    default_currency=body.default_currency,
                ),
                id=workflow_id,
                task_queue=task_queue(PAYMENTS, get_settings().temporal_task_queue),
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
        except WorkflowAlreadyStartedError:
            # The same request a moment earlier is creating it: join it, and answer as a replay does (one 201).
            creating = temporal.get_workflow_handle_for(PayoutAccountWorkflow.run, workflow_id)
            response.status_code = 200
        result: PayoutAccountResult = await _bounded(creating.result())
        if not result.created:  # a run started after another request's had stored it
            response.status_code = 200
    except (TimeoutError, WorkflowFailureError) as exc:
        # The provider kept failing (the workflow's attempts are bounded): nothing was created twice
        # (idempotent on the user), so the seller can simply try again.
        raise DomainError(
            ErrorCode.SERVICE_UNAVAILABLE, "the payment provider could not create the account; retry shortly"
        ) from exc
    account = await session.scalar(
        select(PayoutAccount).where(PayoutAccount.provider_account_id == result.provider_account_id)
    )
    assert account is not None  # the workflow's activity stored it before returning
    _same_account(account, body)  # a request that joined another's creation may have asked for another one
    # The provider may report a new account before the activity stored our row of it: apply that report now.
    await onboarding.apply_stored_report(session, account)
    return PayoutAccountOut.of(account)


def _same_account(held: PayoutAccount, body: PayoutAccountIn) -> None:
    """409 if the seller's account is in another country or currency than `body` asks for."""
    if (held.country, held.default_currency) != (body.country, body.default_currency):
        raise DomainError(
            ErrorCode.PAYOUT_ACCOUNT_EXISTS,
            "the seller has a payout account already, in another country or currency",
            {"country": held.country, "default_currency": held.default_currency},
        )


@router.get("/balance", response_model=SellerBalanceOut)
async def get_payout_balance(
    seller: Seller, session: Session, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> SellerBalanceOut:
    """Money per currency: held in escrow, released but not yet transferred, and paid out; newest history first."""
    balances = await ledger.seller_balances(session, seller.user_id)
    history = await ledger.seller_history(session, seller.user_id, limit)
    return SellerBalanceOut(
        balances=[
            BalanceOut(currency=b.currency, held=b.held, available=b.available, paid_out=b.paid_out)
            for b in balances
        ],
        history=[
            LedgerLineOut(
                at=e.created_at,
                order_id=e.order_id,
                account=e.account.value,
                signed_amount=e.amount,
                currency=e.currency,
            )
            for e in history
        ],
    )


@router.get("", response_model=PayoutAccountOut, responses=errors(ErrorCode.NOT_FOUND))
async def get_payout_account(seller: Seller, session: Session) -> PayoutAccountOut:
    """The account and its standing at the provider: what it can do and what is due (kept current by the
    provider's `account.updated` events)."""
    account = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == seller.user_id))
    if account is None:
        raise DomainError(ErrorCode.NOT_FOUND, "no payout account yet")
    return PayoutAccountOut.of(account)


@router.post(
    "/onboarding-link",
    response_model=OnboardingLinkOut,
    responses=errors(ErrorCode.PAYOUT_ACCOUNT_REQUIRED, ErrorCode.PAYOUT_ACCOUNT_REFUSED),
)
async def create_onboarding_link(
    body: OnboardingLinkIn, seller: Seller, session: Session, temporal: Temporal
) -> OnboardingLinkOut:
    """A link to the provider's hosted onboarding of the seller's payout account (single use, valid for minutes):
    the seller gives the provider what it asks for there, and its reports then enable the account."""
    account = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == seller.user_id))
    if account is None:
        raise DomainError(
            ErrorCode.PAYOUT_ACCOUNT_REQUIRED, "create a payout account first (POST /v1/payout-account)"
        )
    try:
        linking = await temporal.start_workflow(
            OnboardingLinkWorkflow.run,
            OnboardingLinkRequest(account.provider_account_id, str(body.refresh_url), str(body.return_url)),
            id=f"onboarding-link-{seller.user_id}-{uuid.uuid4()}",
            task_queue=task_queue(PAYMENTS, get_settings().temporal_task_queue),
        )
        link = await _bounded(linking.result())
    except WorkflowFailureError as exc:
        refusal = cause_of(exc.cause)
        if isinstance(refusal, ApplicationError) and refusal.type == ONBOARDING_LINK_REFUSED:
            # Final (e.g. the provider no longer knows the account): retrying cannot help, support can.
            raise DomainError(
                ErrorCode.PAYOUT_ACCOUNT_REFUSED, f"the payment provider refused the link: {refusal.message}"
            ) from exc
        raise DomainError(
            ErrorCode.SERVICE_UNAVAILABLE, "the payment provider could not make the link; retry shortly"
        ) from exc
    except TimeoutError as exc:
        raise DomainError(
            ErrorCode.SERVICE_UNAVAILABLE, "the payment provider could not make the link; retry shortly"
        ) from exc
    return OnboardingLinkOut(url=link.url, expires_at=datetime.fromtimestamp(link.expires_at, UTC))


# One provider call through the worker: seconds at worst. Past this the answer is 503 with Retry-After (the
# workflow goes on, and the call is idempotent, so the seller retries); a request never hangs.
PROVIDER_WAIT_SECONDS = 30.0


async def _bounded(result: Awaitable[T]) -> T:
    """A provider call through the worker, waited for at most `PROVIDER_WAIT_SECONDS`."""
    return await asyncio.wait_for(result, PROVIDER_WAIT_SECONDS)
