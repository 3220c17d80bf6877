"""Seller payout accounts (connected accounts at the provider, where escrow is released to)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy

from api.deps import Seller, Session, Temporal
from api.openapi import LOCATION, errors
from api.schemas import BalanceOut, LedgerLineOut, PayoutAccountIn, PayoutAccountOut, SellerBalanceOut
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import PayoutAccount, User
from bazaar.payments import ledger
from bazaar.payments.provider import PayoutAccountRequest, PayoutAccountResult
from bazaar.settings import get_settings
from workflows.payout_account import PayoutAccountWorkflow

router = APIRouter(prefix="/v1/payout-account", tags=["payouts"])


@router.post(
    "",
    status_code=201,
    response_model=PayoutAccountOut,
    responses={
        201: {"description": "the account (the same one again for a repeated call)", "headers": LOCATION}
    },
)
async def create_payout_account(
    body: PayoutAccountIn, seller: Seller, session: Session, temporal: Temporal, response: Response
) -> PayoutAccountOut:
    """Create the seller's payout account at the provider (idempotent: one per seller)."""
    user = await session.get(User, seller.user_id)
    assert user is not None
    try:
        result: PayoutAccountResult = await temporal.execute_workflow(
            PayoutAccountWorkflow.run,
            PayoutAccountRequest(
                user_id=str(user.id),
                email=user.email,
                country=body.country,
                default_currency=body.default_currency,
            ),
            id=f"payout-account-{user.id}",
            task_queue=get_settings().temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except WorkflowFailureError as exc:
        # The provider kept failing (the workflow's attempts are bounded): nothing was created twice
        # (idempotent on the user), so the seller can simply try again.
        raise DomainError(
            ErrorCode.SERVICE_UNAVAILABLE, "the payment provider could not create the account; retry shortly"
        ) from exc
    response.headers["Location"] = router.prefix
    return PayoutAccountOut(
        provider_account_id=result.provider_account_id,
        country=result.country,
        default_currency=result.default_currency,
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
    account = await session.scalar(select(PayoutAccount).where(PayoutAccount.user_id == seller.user_id))
    if account is None:
        raise DomainError(ErrorCode.NOT_FOUND, "no payout account yet")
    return PayoutAccountOut(
        provider_account_id=account.provider_account_id,
        country=account.country,
        default_currency=account.default_currency,
    )
