"""Reconciliation runs on the test stack: window edges nothing can straddle, and a window's workflow run on the
stack's worker (as `cli reconcile --since --until` does)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.reconciliation import ReconcileWindow, ReconciliationSummary, reconciliation_workflow_id
from bazaar.settings import get_settings
from workflows.reconciliation import ReconciliationWorkflow


def next_second() -> datetime:
    """The next whole second, once it has come: a window edge nothing of before or after can straddle."""
    edge = int(time.time()) + 1
    time.sleep(max(0.0, edge - time.time()) + 0.01)
    return datetime.fromtimestamp(edge, UTC)


async def reconcile_async(client: Client, since: datetime, until: datetime) -> ReconciliationSummary:
    """Run the window's workflow on the stack's worker, as `bazaar reconcile --since --until` does."""
    window = ReconcileWindow(since.isoformat(), until.isoformat())
    return await client.execute_workflow(
        ReconciliationWorkflow.run,
        window,
        id=reconciliation_workflow_id(window),
        task_queue=get_settings().temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


def reconcile(stack: Any, since: datetime, until: datetime) -> ReconciliationSummary:
    async def run() -> ReconciliationSummary:
        return await reconcile_async(await Client.connect(stack.temporal_address), since, until)

    return asyncio.run(run())
