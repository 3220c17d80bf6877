"""Create a seller's payout (connected) account: one short workflow per seller, id `payout-account-<user>`."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from bazaar.payments.provider import PayoutAccountRequest, PayoutAccountResult


@workflow.defn
class PayoutAccountWorkflow:
    @workflow.run
    async def run(self, req: PayoutAccountRequest) -> PayoutAccountResult:
        return await workflow.execute_activity_method(
            PaymentActivities.create_payout_account,
            req,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10),
        )
