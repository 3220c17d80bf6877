"""Create a seller's payout (connected) account: one short workflow per seller, id `payout-account-<user>`; and a
hosted onboarding link for it: one short workflow per link."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.queues import execute_activity

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from bazaar.payments.provider import (
        OnboardingLink,
        OnboardingLinkRequest,
        PayoutAccountRequest,
        PayoutAccountResult,
    )


@workflow.defn
class PayoutAccountWorkflow:
    @workflow.run
    async def run(self, req: PayoutAccountRequest) -> PayoutAccountResult:
        return await execute_activity(
            PaymentActivities.create_payout_account,
            req,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10),
        )


@workflow.defn
class OnboardingLinkWorkflow:
    @workflow.run
    async def run(self, req: OnboardingLinkRequest) -> OnboardingLink:
        # The seller is waiting on the API: a few quick attempts, then the API answers 503 and they retry.
        return await execute_activity(
            PaymentActivities.create_onboarding_link,
            req,
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=2), maximum_attempts=3),
        )
