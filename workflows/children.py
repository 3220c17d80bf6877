"""Children a workflow starts and does not wait for: notifications, review rounds, dispute cases."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.queues import queue_of, workflow_owner


async def start_detached(
    run: Any, arg: Any, child_id: str, *, once: bool, summary: str | None = None
) -> None:
    """Start a child that outlives its parent (ABANDON), on its owner's task queue (`workflows/queues.py`); the
    parent waits only for the start. `once`: never
    again under this id (e.g. one delivery per event), else only while no run of it is open. `summary`: the
    child's static summary for operators (user metadata on its start: not compared on replay, so adding it
    needs no patch)."""
    try:
        await workflow.start_child_workflow(
            run,
            arg,
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE
            if once
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=summary,
            task_queue=queue_of(workflow_owner(run)),
        )
    except WorkflowAlreadyStartedError:  # it ran (or runs) already
        workflow.logger.info("child %s already started", child_id)
