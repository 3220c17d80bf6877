"""Starting a workflow that the request waits on: one round trip (update-with-start), bounded by
`ORDER_WAIT_SECONDS`. How an order, a checkout and a return are placed."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.errors import update_rejection
from api.routes.order_actions import STILL_RUNNING, wait_budget
from bazaar.idempotency import request_digest

T = TypeVar("T")


async def start_and_wait(
    temporal: Client,
    update: Any,
    args: list[Any],
    start: WithStartWorkflowOperation[Any, Any],
    workflow_id: str,
    result_type: type[T],
) -> T | None:
    """Start the workflow (a retry joins the running one) and wait for `update`'s answer; a workflow that has ended
    already (REJECT_DUPLICATE: e.g. a refusal, which stores nothing) answers with its result. None: still working
    after the wait. A rejected Update is the API's error for it."""
    left = wait_budget()  # one bound for both waits
    # One Update id per request: a retry of the same request joins the first Update (and gets its answer); another
    # request under the same key is another Update, which the workflow's validator refuses as a reused key. (One id
    # for all would answer every racing request with whichever came first.)
    update_id = f"{update.__name__}:{request_digest(args)}"
    try:
        answer: T = await asyncio.wait_for(
            temporal.execute_update_with_start_workflow(
                update, *args, start_workflow_operation=start, id=update_id
            ),
            left(),
        )
        return answer
    except STILL_RUNNING:
        return None
    except WorkflowUpdateFailedError as exc:
        raise update_rejection(exc) from exc
    except WorkflowAlreadyStartedError:
        pass
    try:
        result: T = await asyncio.wait_for(
            temporal.get_workflow_handle(workflow_id, result_type=result_type).result(),
            left(),
        )
        return result
    except TimeoutError:
        return None
