"""A workflow that reads the wall clock, which no workflow may do (tests/workflows/test_sandbox_runner.py): in a
module of its own that imports only the standard library and the SDK, so Temporal's strict sandbox can import it
afresh for each run, as it imports the workflow modules in the workflow tests."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError


@workflow.defn
class ReadsTheClock:
    @workflow.run
    async def run(self) -> str:
        try:
            datetime.now()
        except RestrictedWorkflowAccessError:
            return "refused"
        return "allowed"
