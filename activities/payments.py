"""Money-moving calls to the payment provider (the official stripe SDK), each with a stored outcome.

Idempotency keys are built by the workflow from the order and the operation, never from the attempt, so a
retried activity (worker crash, dropped response) replays at the provider instead of charging twice. The
SDK's own retries are off: Temporal retries transient errors; declines and invalid requests are final.

The provider's request limit: calls on the payments queue are paced by the Temporal server (its rate limit); the
local-first ones (refund, transfer, reversal on an Update's path, in the orders worker) spend a `LocalProviderBudget`
first, and one it refuses is not made: the step goes to the payments queue at once."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import stripe
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.database import activity_transaction
from activities.orders import LedgerPosting
from activities.provider_budget import LOCAL_BUDGET_SPENT, LocalProviderBudget
from bazaar.errors import Rejection
from bazaar.integrations import events
from bazaar.models import LedgerAccount, Order, Payment, PaymentKind, PaymentOutcome, PayoutAccount
from bazaar.payments import ledger, onboarding
from bazaar.payments.provider import (
    ONBOARDING_LINK_REFUSED,
    OnboardingLink,
    OnboardingLinkRequest,
    PayoutAccountRequest,
    PayoutAccountResult,
)
from bazaar.settings import Settings

# The provider said no: the same request will never succeed, so it is final (recorded, not retried).
_REJECTIONS = (stripe.InvalidRequestError, stripe.IdempotencyError, stripe.AuthenticationError)


def make_stripe_client(settings: Settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.require("stripe_secret_key"),
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=0,
        http_client=stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds),
    )


@dataclass
class ChargeRequest:
    order_id: str  # "" for a checkout's charge
    amount: int
    currency: str
    payment_method: str
    idempotency_key: str
    transfer_group: str
    # A checkout's one charge for all its orders: the payment is the checkout's, its ledger movement books each
    # order's share into that order's escrow.
    checkout_id: str | None = None


@dataclass
class ChargeResult:
    succeeded: bool
    payment_intent_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass
class RefundRequest:
    order_id: str
    payment_intent_id: str
    amount: int
    currency: str
    idempotency_key: str
    reason: str


@dataclass
class RefundResult:
    refund_id: str
    amount: int


@dataclass
class ReleaseRequest:
    """Move what is left in escrow to the seller (minus the platform fee); ledger only."""

    order_id: str
    gross: int
    fee: int
    currency: str
    txn: str


# A transfer refused before any call: the seller's payouts are disabled at the provider (onboarding incomplete,
# or the account restricted).
PAYOUTS_DISABLED = "PayoutsDisabled"


@dataclass
class TransferRequest:
    order_id: str
    amount: int
    currency: str
    transfer_group: str
    idempotency_key: str
    # The escrow's release this transfer pays out: booked before the call, so the seller's balance never shows
    # the payout ahead of its release (the completion books the same posting again: once, by its txn).
    release: LedgerPosting | None = None


@dataclass
class TransferResult:
    transfer_id: str
    destination: str


@dataclass
class TransferReversalRequest:
    """Take a transfer back from the seller's connected account onto the platform balance."""

    order_id: str
    transfer_id: str
    amount: int
    currency: str
    idempotency_key: str
    reason: str


@dataclass
class TransferReversalResult:
    reversal_id: str
    amount: int


@dataclass
class ReleaseReversalRequest:
    """Undo a release (ledger only): the fee and the seller's share go back into escrow, frozen again."""

    order_id: str
    fee: int
    seller_share: int
    currency: str
    txn: str


@dataclass
class ChargebackMovement:
    """The card network took the disputed amount from the platform balance, or gave it back (dispute won)."""

    order_id: str
    dispute_id: str
    amount: int
    currency: str
    reinstated: bool
    key: str


class PaymentActivities:
    """Holds the provider client; registered as bound-method activities on the worker."""

    def __init__(self, client: stripe.StripeClient, local_requests_per_second: int) -> None:
        self.client = client
        self.local_budget = LocalProviderBudget(local_requests_per_second)

    @activity.defn
    async def charge(self, req: ChargeRequest) -> ChargeResult:
        """Charge the buyer onto the platform balance (the escrow), automatic capture."""
        stored = await _begin_attempt(
            req.order_id, PaymentKind.CHARGE, req.idempotency_key, req.amount, req.currency, req.checkout_id
        )
        owner = {"checkout_id": req.checkout_id} if req.checkout_id else {"order_id": req.order_id}
        if stored.outcome != PaymentOutcome.PENDING:
            return _charge_result(stored)
        try:
            with _counted(PaymentKind.CHARGE):
                intent = await self.client.v1.payment_intents.create_async(
                    params={
                        "amount": req.amount,
                        "currency": req.currency.lower(),
                        "payment_method": req.payment_method,
                        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                        "confirm": True,
                        "transfer_group": req.transfer_group,
                        # charge_key: the webhook recognises our own charge even before we stored its outcome.
                        "metadata": {**owner, "charge_key": req.idempotency_key},
                    },
                    options={"idempotency_key": req.idempotency_key},
                )
        except stripe.CardError as exc:  # a decline is an answer, not a failure to retry
            error = exc.error
            code = (error.decline_code or error.code) if error else None
            # The declined PaymentIntent exists at the provider: keep its id so reconciliation can match it.
            declined_intent = error.payment_intent.id if error and error.payment_intent else None
            await _record_outcome(
                req.idempotency_key,
                PaymentOutcome.FAILED,
                declined_intent,
                code or "card_declined",
                exc.user_message or str(exc),
                _body(exc),
            )
            return ChargeResult(
                succeeded=False,
                payment_intent_id=declined_intent,
                failure_code=code or "card_declined",
                failure_message=exc.user_message or str(exc),
            )
        except _REJECTIONS as exc:
            await _reject(req.idempotency_key, exc)
        succeeded = intent.status == "succeeded"
        metrics.payment_call(PaymentKind.CHARGE, metrics.SUCCEEDED if succeeded else metrics.DECLINED)
        await _record_outcome(
            req.idempotency_key,
            PaymentOutcome.SUCCEEDED if succeeded else PaymentOutcome.FAILED,
            intent.id,
            None if succeeded else intent.status,
            None,
            intent.to_dict(),
            movement={LedgerAccount.ESCROW: req.amount, LedgerAccount.BUYER_PAYMENTS: -req.amount}
            if succeeded
            else None,
        )
        return ChargeResult(
            succeeded=succeeded,
            payment_intent_id=intent.id,
            failure_code=None if succeeded else intent.status,
        )

    @activity.defn
    async def refund(self, req: RefundRequest) -> RefundResult:
        """Give money back to the buyer from escrow (never more than was captured: the provider checks too)."""
        provider_id = await _move_money(
            req.order_id,
            PaymentKind.REFUND,
            req.idempotency_key,
            req.amount,
            req.currency,
            lambda: self.client.v1.refunds.create_async(
                params={
                    "payment_intent": req.payment_intent_id,
                    "amount": req.amount,
                    "reason": "requested_by_customer",
                    "metadata": {"order_id": req.order_id, "reason": req.reason},
                },
                options={"idempotency_key": req.idempotency_key},
            ),
            {LedgerAccount.ESCROW: -req.amount, LedgerAccount.REFUNDS: req.amount},
            self.local_budget,
        )
        return RefundResult(provider_id, req.amount)

    @activity.defn
    async def release_escrow(self, req: ReleaseRequest) -> None:
        """Completed order: escrow becomes the seller's (minus the fee). No provider call."""
        await _post_for_order(
            req.order_id,
            req.txn,
            req.currency,
            {
                LedgerAccount.ESCROW: -req.gross,
                LedgerAccount.PLATFORM_FEES: req.fee,
                LedgerAccount.SELLER_PAYABLE: req.gross - req.fee,
            },
        )

    @activity.defn
    async def transfer(self, req: TransferRequest) -> TransferResult:
        """Pay the seller's connected account from the platform balance (separate charges and transfers)."""
        async with activity_transaction() as session:
            order = await ledger.order_seller(session, uuid.UUID(req.order_id))
            account = await session.scalar(
                select(PayoutAccount).where(PayoutAccount.user_id == order.seller_id)
            )
            if req.release is not None:
                entries = {LedgerAccount(name): amount for name, amount in req.release.entries.items()}
                await ledger.post(session, req.release.txn, order.id, order.seller_id, req.currency, entries)
        if account is None:
            raise ApplicationError(
                "seller has no payout account", type=Rejection.PAYMENT_REJECTED, non_retryable=True
            )
        if account.payouts_enabled is False:
            # Nothing is sent (so no attempt is stored): the order holds the payout until the provider reports
            # the seller's payouts enabled again (account.updated), then pays out under a new key.
            raise ApplicationError(
                "the provider has disabled the seller's payouts", type=PAYOUTS_DISABLED, non_retryable=True
            )
        destination = account.provider_account_id
        provider_id = await _move_money(
            req.order_id,
            PaymentKind.TRANSFER,
            req.idempotency_key,
            req.amount,
            req.currency,
            lambda: self.client.v1.transfers.create_async(
                params={
                    "amount": req.amount,
                    "currency": req.currency.lower(),
                    "destination": destination,
                    "transfer_group": req.transfer_group,
                    "metadata": {"order_id": req.order_id},
                },
                options={"idempotency_key": req.idempotency_key},
            ),
            {LedgerAccount.SELLER_PAYABLE: -req.amount, LedgerAccount.SELLER_PAYOUTS: req.amount},
            self.local_budget,
        )
        return TransferResult(provider_id, destination)

    @activity.defn
    async def reverse_transfer(self, req: TransferReversalRequest) -> TransferReversalResult:
        """The inverse of `transfer`: the seller's share comes back to the platform (chargeback after payout)."""
        provider_id = await _move_money(
            req.order_id,
            PaymentKind.TRANSFER_REVERSAL,
            req.idempotency_key,
            req.amount,
            req.currency,
            lambda: self.client.v1.transfers.reversals.create_async(
                req.transfer_id,
                params={"amount": req.amount, "metadata": {"order_id": req.order_id, "reason": req.reason}},
                options={"idempotency_key": req.idempotency_key},
            ),
            {LedgerAccount.SELLER_PAYOUTS: -req.amount, LedgerAccount.SELLER_PAYABLE: req.amount},
            self.local_budget,
        )
        return TransferReversalResult(provider_id, req.amount)

    @activity.defn
    async def reverse_release(self, req: ReleaseReversalRequest) -> None:
        """The inverse of `release_escrow` (ledger only): what was released is held in escrow again."""
        await _post_for_order(
            req.order_id,
            req.txn,
            req.currency,
            {
                LedgerAccount.ESCROW: req.fee + req.seller_share,
                LedgerAccount.PLATFORM_FEES: -req.fee,
                LedgerAccount.SELLER_PAYABLE: -req.seller_share,
            },
        )

    @activity.defn
    async def record_chargeback(self, req: ChargebackMovement) -> None:
        """Book what the card network did (no provider call: it already happened) with its ledger movement."""
        sign = -1 if req.reinstated else 1
        async with activity_transaction() as session:
            order = await ledger.order_seller(session, uuid.UUID(req.order_id))
            await session.execute(
                insert(Payment)
                .values(
                    id=uuid.uuid4(),
                    order_id=order.id,
                    kind=PaymentKind.CHARGEBACK_REVERSAL if req.reinstated else PaymentKind.CHARGEBACK,
                    idempotency_key=req.key,
                    amount=req.amount,
                    currency=req.currency,
                    outcome=PaymentOutcome.SUCCEEDED,
                    provider_id=req.dispute_id,
                )
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
            )
            await ledger.post(
                session,
                req.key,
                order.id,
                order.seller_id,
                req.currency,
                {LedgerAccount.CHARGEBACKS: sign * req.amount, LedgerAccount.ESCROW: -sign * req.amount},
            )

    @activity.defn
    async def create_payout_account(self, req: PayoutAccountRequest) -> PayoutAccountResult:
        """Create the seller's connected account once (idempotent on the user) and store it."""
        async with activity_transaction() as session:
            existing = await session.scalar(
                select(PayoutAccount).where(PayoutAccount.user_id == uuid.UUID(req.user_id))
            )
            if existing is not None:
                return PayoutAccountResult(
                    existing.provider_account_id, existing.country, existing.default_currency, created=False
                )
        account = await self.client.v1.accounts.create_async(
            params={
                "type": "express",
                "country": req.country,
                "email": req.email,
                "default_currency": req.default_currency.lower(),
                "capabilities": {"transfers": {"requested": True}},
                "metadata": {"user_id": req.user_id},
            },
            options={"idempotency_key": f"payout-account:{req.user_id}"},
        )
        # The account's standing as created (a new Express account can do nothing yet); its events keep it current.
        report = onboarding.AccountReport.model_validate(account.to_dict())
        async with activity_transaction() as session:
            await session.execute(
                insert(PayoutAccount)
                .values(
                    id=uuid.uuid4(),
                    user_id=uuid.UUID(req.user_id),
                    provider_account_id=account.id,
                    country=req.country,
                    default_currency=req.default_currency,
                    **onboarding.status_columns(report, account.created or 0),
                )
                .on_conflict_do_nothing(index_elements=["user_id"])
            )
        return PayoutAccountResult(account.id, req.country, req.default_currency)

    @activity.defn
    async def create_onboarding_link(self, req: OnboardingLinkRequest) -> OnboardingLink:
        """A hosted onboarding URL for the seller's account (an Account Link: single use, short-lived, so a retry
        simply makes another; no idempotency key needed)."""
        try:
            link = await self.client.v1.account_links.create_async(
                params={
                    "account": req.provider_account_id,
                    "type": "account_onboarding",
                    "refresh_url": req.refresh_url,
                    "return_url": req.return_url,
                }
            )
        except _REJECTIONS as exc:
            raise ApplicationError(str(exc), type=ONBOARDING_LINK_REFUSED, non_retryable=True) from exc
        return OnboardingLink(link.url, link.expires_at)


async def _move_money(
    order_id: str,
    kind: PaymentKind,
    key: str,
    amount: int,
    currency: str,
    call: Callable[[], Awaitable[stripe.StripeObject]],
    movement: dict[LedgerAccount, int],
    local_budget: LocalProviderBudget,
) -> str:
    """One provider money call, at most once per idempotency key: a stored success is returned as is;
    otherwise record the attempt, call, and store the outcome with its ledger movement. Run as a local
    activity, the call first spends `local_budget` (module doc). Returns the provider's id."""
    stored = await _begin_attempt(order_id, kind, key, amount, currency)
    if stored.outcome == PaymentOutcome.SUCCEEDED and stored.provider_id:
        return stored.provider_id
    if activity.info().is_local and not await local_budget.spend():
        raise ApplicationError(
            "the local share of the provider's request limit is spent this second",
            type=LOCAL_BUDGET_SPENT,
            non_retryable=True,
        )
    try:
        with _counted(kind):
            result = await call()
    except _REJECTIONS as exc:
        await _reject(key, exc)
    metrics.payment_call(kind, metrics.SUCCEEDED)
    response = result.to_dict()
    provider_id = str(response["id"])
    await _record_outcome(key, PaymentOutcome.SUCCEEDED, provider_id, None, None, response, movement=movement)
    return provider_id


@contextmanager
def _counted(kind: PaymentKind) -> Iterator[None]:
    """Count a provider call that raised, by what its error means (`activities.metrics`); the caller counts
    the answers."""
    try:
        yield
    except stripe.CardError:
        metrics.payment_call(kind, metrics.DECLINED)
        raise
    except _REJECTIONS as exc:
        metrics.payment_call(kind, metrics.ERROR if _in_progress(exc) else metrics.REJECTED)
        raise
    except Exception:
        metrics.payment_call(kind, metrics.ERROR)
        raise


async def _post_for_order(order_id: str, txn: str, currency: str, movement: dict[LedgerAccount, int]) -> None:
    """A ledger-only movement on an order, attributed to its seller."""
    async with activity_transaction() as session:
        order = await ledger.order_seller(session, uuid.UUID(order_id))
        await ledger.post(session, txn, order.id, order.seller_id, currency, movement)


async def _begin_attempt(
    order_id: str, kind: PaymentKind, key: str, amount: int, currency: str, checkout_id: str | None = None
) -> Payment:
    """The payment row of this idempotency key (an order's, or a checkout's): recorded as pending if it is new
    (one statement: on the orders' critical path), else as stored (a retry finds an earlier attempt's outcome)."""
    async with activity_transaction() as session:
        payment: Payment | None = await session.scalar(
            insert(Payment)
            .values(
                id=uuid.uuid4(),
                order_id=None if checkout_id else uuid.UUID(order_id),
                checkout_id=uuid.UUID(checkout_id) if checkout_id else None,
                kind=kind,
                idempotency_key=key,
                amount=amount,
                currency=currency,
                outcome=PaymentOutcome.PENDING,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(Payment)
        )
        payment = payment or await session.scalar(select(Payment).where(Payment.idempotency_key == key))
        assert payment is not None  # inserted now, or by an earlier attempt
        return payment


async def _record_outcome(
    key: str,
    outcome: PaymentOutcome,
    provider_id: str | None,
    failure_code: str | None,
    failure_message: str | None,
    response: dict[str, Any] | None,
    movement: dict[LedgerAccount, int] | None = None,
) -> None:
    """Store the provider's answer and, for a success, its ledger movement: one transaction."""
    async with activity_transaction() as session:
        payment = await session.scalar(
            select(Payment).where(Payment.idempotency_key == key).with_for_update()
        )
        assert payment is not None
        payment.outcome = outcome
        payment.provider_id = provider_id
        payment.failure_code = failure_code
        payment.failure_message = failure_message
        payment.provider_response = response
        if movement is None:
            return
        if payment.checkout_id is not None:  # one charge, booked as each order's share (the same accounts)
            orders = await session.scalars(select(Order).where(Order.checkout_id == payment.checkout_id))
            for order in orders:
                share = {
                    account: order.amount * (1 if amount > 0 else -1) for account, amount in movement.items()
                }
                await ledger.post(session, key, order.id, order.seller_id, payment.currency, share)
            return
        assert payment.order_id is not None
        order = await ledger.order_seller(session, payment.order_id)
        await ledger.post(session, key, order.id, order.seller_id, payment.currency, movement)
        if payment.kind == PaymentKind.TRANSFER_REVERSAL:  # the seller's integrations hear of it
            await events.payout_reversed(session, order, payment.amount, key)


async def _reject(key: str, exc: stripe.StripeError) -> NoReturn:
    """Record a final refusal and fail the activity without retries; transient conflicts are retried."""
    if _in_progress(exc):
        raise ApplicationError(str(exc), type="IdempotencyKeyInUse") from exc
    await _record_outcome(key, PaymentOutcome.FAILED, None, type(exc).__name__, str(exc), _body(exc))
    # What the provider said, for the people who read the refusal (the stored outcome keeps its request id).
    said = exc.user_message or type(exc).__name__
    raise ApplicationError(said, type=Rejection.PAYMENT_REJECTED, non_retryable=True) from exc


def _in_progress(exc: stripe.StripeError) -> bool:
    """The provider's "another request with this key is in progress": our previous attempt (e.g. from a worker
    that died mid-call) is still running there. Transient, unlike the other `_REJECTIONS`: retrying later gets
    its stored result."""
    return isinstance(exc, stripe.IdempotencyError) and exc.http_status == 409


def _charge_result(payment: Payment) -> ChargeResult:
    return ChargeResult(
        succeeded=payment.outcome == PaymentOutcome.SUCCEEDED,
        payment_intent_id=payment.provider_id,
        failure_code=payment.failure_code,
        failure_message=payment.failure_message,
    )


def _body(exc: stripe.StripeError) -> dict[str, Any] | None:
    return exc.json_body if isinstance(exc.json_body, dict) else None
