"""The dispute workflow: thread, information requests with deadlines, escalation, and its failure rule
(docs/failure-rules.md, "The dispute case"): bounded database steps, refusals that change nothing, a case
flagged past the bound that recovers, notifications written with their step (the outbox), and what operators
read in the Temporal UI.

`CaseDb` stands for the case's PostgreSQL: each fake activity is one transaction (the entry, its status change
and its notifications all land, or nothing does). The real activities' transactions are checked on PostgreSQL
in tests/activities/test_disputes_outbox.py.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.database import DATA_ERROR
from activities.disputes import DisputeStatusChange, OpenDispute, ThreadEntry
from bazaar.orders.types import ActionRequest
from bazaar.trust.models import DisputeResolution, DisputeSource
from bazaar.trust.notifications import NotificationEvent
from tests.support.orders import BUYER, SELLER, SUPPORT, placed
from tests.support.workflow_fakes import FakeWorld
from workflows.dispute import (
    ChargebackJoined,
    DisputeCase,
    DisputeMessageIn,
    DisputeState,
    DisputeWorkflow,
    InfoRequest,
    Resolution,
    dispute_workflow_id,
)
from workflows.order import OrderWorkflow

METADATA_QUERY = "__temporal_workflow_metadata"


@dataclass
class CaseDb:
    """The case's database: `down` fails every step transiently (a refused connection); a NUL byte in a
    body is refused like PostgreSQL refuses it (a non-retryable DataError)."""

    down: bool = False
    cases: list[OpenDispute] = field(default_factory=list)
    thread: list[ThreadEntry] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    outbox: list[NotificationEvent] = field(default_factory=list)  # notification rows, once per key
    attempts: int = 0

    def _commit(self, notices: list[NotificationEvent], write: Callable[[], None]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionRefusedError("connection refused (the database is down)")
        write()
        known = {n.event_key for n in self.outbox}
        self.outbox += [n for n in notices if n.event_key not in known]

    def notified(self) -> list[str]:
        return [n.event_type for n in self.outbox]

    def activities(self) -> list[Callable[..., Any]]:
        db = self

        @activity.defn(name="open_dispute_case")
        async def open_dispute_case(req: OpenDispute) -> str:
            db._commit(req.notices, lambda: db.cases.append(req))
            return "case-1"

        @activity.defn(name="append_dispute_thread")
        async def append_dispute_thread(entry: ThreadEntry) -> None:
            if "\x00" in entry.body:
                raise ApplicationError(
                    "the database refused the data: NUL byte", type=DATA_ERROR, non_retryable=True
                )

            def write() -> None:
                if all(e.dedupe_key != entry.dedupe_key for e in db.thread):
                    db.thread.append(entry)
                if entry.status is not None:
                    db.statuses.append(entry.status)

            db._commit(entry.notices, write)

        @activity.defn(name="set_dispute_status")
        async def set_dispute_status(change: DisputeStatusChange) -> None:
            db._commit(change.notices, lambda: db.statuses.append(change.status))

        return [open_dispute_case, append_dispute_thread, set_dispute_status]


def a_case(order: str, **terms: Any) -> DisputeCase:
    return DisputeCase(
        order,
        "buyer-1",
        "seller-1",
        "Road bike",
        source=DisputeSource.BUYER,
        reason_code="not_as_described",
        message="the frame is cracked",
        amount=45_000,
        currency="EUR",
        **terms,
    )


@asynccontextmanager
async def dispute(
    env: WorkflowEnvironment, db: CaseDb, **terms: Any
) -> AsyncIterator[WorkflowHandle[Any, DisputeState]]:
    queue = f"test-{uuid.uuid4()}"
    order = str(uuid.uuid4())
    case = a_case(order, **terms)
    async with Worker(env.client, task_queue=queue, workflows=[DisputeWorkflow], activities=db.activities()):
        handle = await env.client.start_workflow(
            DisputeWorkflow.run, case, id=f"dispute-{order}", task_queue=queue, static_summary=case.summary()
        )
        yield handle


async def refusal(call: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await call
    assert isinstance(failure.value.cause, ApplicationError)
    return failure.value.cause


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def until(check: Callable[[], Any], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def message(body: str, role: str = "seller", kind: str = "message") -> DisputeMessageIn:
    return DisputeMessageIn(f"{role}-1", role, body, kind)


# ---- the case's life ------------------------------------------------------------------------------------


async def test_unresolved_dispute_escalates_after_five_days(time_skipping_env: WorkflowEnvironment) -> None:
    db = CaseDb()
    async with dispute(time_skipping_env, db) as handle:
        await time_skipping_env.sleep(timedelta(days=4, hours=23))
        assert (await handle.query(DisputeWorkflow.status)).status == "open"
        await time_skipping_env.sleep(timedelta(hours=2))
        assert (await handle.query(DisputeWorkflow.status)).status == "escalated"
        assert await current_details(handle) == "escalated to support: waiting for support to resolve"
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.REFUND))
        state = await handle.result()
        assert await current_details(handle) == "resolved: refund"
    assert (state.status, state.resolution) == ("resolved", "refund")
    assert len(db.cases) == 1
    assert db.statuses == ["escalated", "resolved"]
    assert [e.kind for e in db.thread] == ["escalation"]
    # Each notification was written by its step (no notification children any more).
    assert db.notified() == ["dispute_opened", "dispute_escalated", "dispute_resolved"]
    [escalation] = db.thread[0].notices
    assert (escalation.recipient_ids, escalation.recipient_roles) == ([], ["support"])  # support only
    history = await handle.fetch_history()
    assert not any(
        e.HasField("start_child_workflow_execution_initiated_event_attributes") for e in history.events
    )


async def test_information_request_answered_and_unanswered(workflow_env: WorkflowEnvironment) -> None:
    """On the dev server: the time-skipping test server never answers an accepted Update (seen: RPC timeout)."""
    db = CaseDb()
    async with dispute(workflow_env, db) as handle:
        asked = await handle.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "seller", "Photos of the packaging?", 86_400)
        )
        assert (asked.status, asked.waiting_for) == ("awaiting_info", ["seller"])
        details = await current_details(handle)
        match = re.fullmatch(r"waiting for the seller's answer until (.+ UTC)", details)
        assert match, details
        until_ = datetime.strptime(match[1], "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
        assert abs((until_ - datetime.now(UTC) - timedelta(days=1)).total_seconds()) < 120
        answered = await handle.execute_update(
            DisputeWorkflow.add_message, message("Here they are", kind="evidence")
        )
        assert (answered.status, answered.waiting_for) == ("open", [])
        assert (await current_details(handle)).startswith("open: waiting for support to resolve (escalates")
        await handle.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "buyer", "Did you keep the box?", 1)
        )
        await until(lambda: _not_waiting(handle))
        await handle.signal(DisputeWorkflow.chargeback_joined, ChargebackJoined("dp_1", 45_000, "EUR"))
        await until(lambda: _thread_has(db, "chargeback"))
        note = "Half back for the dent"
        await handle.signal(
            DisputeWorkflow.resolved, Resolution(DisputeResolution.PARTIAL_REFUND, 10_000, note=note)
        )
        await handle.result()
        assert await current_details(handle) == "resolved: partial_refund (100.00 EUR refunded)"
    # Found from outside: the party asked was not told until when, and the resolution reached both sides as its
    # enum value, without the money or support's note.
    asked_by = datetime.fromisoformat(db.thread[0].data["answer_by"])
    assert abs((asked_by - datetime.now(UTC) - timedelta(days=1)).total_seconds()) < 120
    ask = db.outbox[1].data["message"]
    assert ask.startswith("support asks the seller (please answer by ") and ask.endswith(
        "Photos of the packaging?"
    )
    assert asked_by.strftime("%Y-%m-%d %H:%M UTC") in ask
    assert db.outbox[-1].data["resolution"] == (
        "the buyer is refunded in part, the rest goes to the seller (100.00 EUR back). Support's note: \"Half back "
        'for the dent"'
    )
    kinds = [(e.author_role, e.kind) for e in db.thread]
    assert kinds == [
        ("support", "info_request"),
        ("seller", "evidence"),
        ("support", "info_request"),
        ("system", "no_response"),
        ("system", "chargeback"),
    ]
    assert len({e.dedupe_key for e in db.thread}) == len(db.thread)
    # The status changes were saved with their entries: asked, answered, asked again, resolved.
    assert db.statuses == ["awaiting_info", "open", "awaiting_info", "resolved"]
    assert db.notified() == ["dispute_opened"] + ["dispute_updated"] * 5 + ["dispute_resolved"]
    assert [len(e.notices) for e in db.thread] == [1, 1, 1, 1, 1]  # each entry carries its own news
    # A message tells everyone but its author: the seller's evidence goes to the buyer and support.
    told = db.thread[1].notices[0]
    assert (told.recipient_ids, told.recipient_roles) == (["buyer-1"], ["support"])


async def _not_waiting(handle: WorkflowHandle[Any, DisputeState]) -> bool:
    return not (await handle.query(DisputeWorkflow.status)).waiting_for


async def _thread_has(db: CaseDb, kind: str) -> bool:
    return any(e.kind == kind for e in db.thread)


async def test_a_resolved_case_waits_for_nobody(workflow_env: WorkflowEnvironment) -> None:
    db = CaseDb()
    async with dispute(workflow_env, db) as handle:
        asked = await handle.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "seller", "Tracking number?", 86_400)
        )
        assert asked.waiting_for == ["seller"]
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.RELEASE))
        final: DisputeState = await handle.result()
        queried = await handle.query(DisputeWorkflow.status)
    assert (final.status, final.waiting_for, queried.waiting_for) == ("resolved", [], [])


async def test_a_message_is_not_news_to_its_author(workflow_env: WorkflowEnvironment) -> None:
    db = CaseDb()
    async with dispute(workflow_env, db) as handle:
        for author in ("buyer", "seller", "support"):
            await handle.execute_update(
                DisputeWorkflow.add_message, message(f"from the {author}", role=author)
            )
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.REFUND))
        await handle.result()
    told = {e.author_role: (e.notices[0].recipient_ids, e.notices[0].recipient_roles) for e in db.thread}
    assert told == {
        "buyer": (["seller-1"], ["support"]),
        "seller": (["buyer-1"], ["support"]),
        "support": (["buyer-1", "seller-1"], []),  # the parties; not support staff for their own message
    }


async def test_bad_input_and_late_messages_are_refused(time_skipping_env: WorkflowEnvironment) -> None:
    db = CaseDb()
    async with dispute(time_skipping_env, db) as handle:
        for bad in (DisputeMessageIn("x", "stranger", "hi"), DisputeMessageIn("buyer-1", "buyer", "  ")):
            refused = await refusal(handle.execute_update(DisputeWorkflow.add_message, bad))
            assert refused.type == "InvalidRequest"
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.RELEASE))
        await handle.result()
    assert db.thread == []


# ---- the failure rule -----------------------------------------------------------------------------------


async def test_data_the_database_refuses_refuses_the_update_and_changes_nothing(
    workflow_env: WorkflowEnvironment,
) -> None:
    db = CaseDb()
    async with dispute(workflow_env, db) as handle:
        await handle.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "seller", "Receipt?", 86_400)
        )
        before = await handle.query(DisputeWorkflow.status)
        outbox, attempts = list(db.outbox), db.attempts
        started = time.monotonic()
        refused = await refusal(handle.execute_update(DisputeWorkflow.add_message, message("bad \x00 byte")))
        assert time.monotonic() - started < 10  # refused at once, not retried
        assert refused.type == "InvalidRequest"
        assert "add_message could not be saved" in str(refused) and "nothing was changed" in str(refused)
        after = await handle.query(DisputeWorkflow.status)
        assert after == before  # still waiting for the seller, same count, not flagged
        assert (after.status, after.waiting_for, after.attention) == ("awaiting_info", ["seller"], None)
        assert db.outbox == outbox and db.attempts == attempts  # no notification for what was not saved
        assert [e.kind for e in db.thread] == ["info_request"]
        # The case goes on: the seller's next message answers the request.
        answered = await handle.execute_update(DisputeWorkflow.add_message, message("Here it is"))
        assert (answered.status, answered.messages, answered.waiting_for) == ("open", 2, [])
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.RELEASE))
        await handle.result()
    assert [e.body for e in db.thread] == ["Receipt?", "Here it is"]


async def test_a_database_down_past_the_bound_flags_the_case_which_recovers(
    workflow_env: WorkflowEnvironment,
) -> None:
    """The Update is refused after the step bound (never hangs), the case is flagged (status, memo, current
    details) and refuses further Updates at once; once the database is back, the case tells support and the
    flag clears on its own."""
    db = CaseDb()
    async with dispute(workflow_env, db, step_timeout_seconds=2, attention_retry_seconds=1) as handle:
        await handle.execute_update(DisputeWorkflow.add_message, message("first", role="buyer"))
        db.down = True
        started = time.monotonic()
        refused = await refusal(handle.execute_update(DisputeWorkflow.add_message, message("lost?")))
        assert time.monotonic() - started < 15
        assert refused.type == "NeedsAttention" and "nothing was changed" in str(refused)
        state = await handle.query(DisputeWorkflow.status)
        assert state.messages == 1  # nothing changed
        assert state.attention is not None and state.attention.startswith("add_message: ")
        assert (await current_details(handle)).startswith("needs attention: add_message: ")
        memo = await (await handle.describe()).memo()
        assert str(memo["attention"]).startswith("add_message: ")
        started = time.monotonic()
        again = await refusal(handle.execute_update(DisputeWorkflow.add_message, message("again")))
        assert again.type == "NeedsAttention" and time.monotonic() - started < 5  # at once: the validator
        assert (await handle.query(DisputeWorkflow.status)).attention is not None  # still down: still flagged
        db.down = False
        await until(lambda: cleared(handle))
        assert not (await current_details(handle)).startswith("needs attention")
        assert (await (await handle.describe()).memo()).get("attention") is None
        [told] = [n for n in db.outbox if n.event_key.endswith(":attention-1")]
        assert (told.recipient_ids, told.recipient_roles) == ([], ["support"])
        assert "add_message" in told.data["message"]
        await handle.signal(DisputeWorkflow.retry)  # nothing to retry: a no-op, the case goes on
        later = await handle.execute_update(DisputeWorkflow.add_message, message("back again"))
        assert later.messages == 2
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.RELEASE))
        await handle.result()
    assert [e.body for e in db.thread] == ["first", "back again"]
    assert len({e.dedupe_key for e in db.thread}) == 2  # a refused attempt's key is never reused


async def cleared(handle: WorkflowHandle[Any, DisputeState]) -> bool:
    return (await handle.query(DisputeWorkflow.status)).attention is None


async def test_a_case_that_cannot_open_is_flagged_answers_at_once_and_opens_on_supports_retry(
    workflow_env: WorkflowEnvironment,
) -> None:
    db = CaseDb(down=True)
    async with dispute(workflow_env, db, step_timeout_seconds=1, attention_retry_seconds=3600) as handle:
        await until(lambda: _flagged(handle))
        attention = (await handle.query(DisputeWorkflow.status)).attention
        assert attention is not None and attention.startswith("open_dispute_case: ")
        details = await current_details(handle)
        assert details.startswith("needs attention: open_dispute_case: ") and "| opening the case" in details
        refused = await refusal(handle.execute_update(DisputeWorkflow.add_message, message("hello?")))
        assert refused.type == "NeedsAttention"
        db.down = False
        await handle.signal(DisputeWorkflow.retry)  # support does not wait for the hourly retry
        await until(lambda: cleared(handle))
        assert len(db.cases) == 1 and db.notified().count("dispute_opened") == 1
        await handle.execute_update(DisputeWorkflow.add_message, message("now it works"))
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.REFUND))
        assert (await handle.result()).status == "resolved"


async def _flagged(handle: WorkflowHandle[Any, DisputeState]) -> bool:
    return (await handle.query(DisputeWorkflow.status)).attention is not None


# ---- operators ------------------------------------------------------------------------------------------


async def test_a_case_the_order_opens_carries_its_summary_and_current_details(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent"))
        await world.eventually(lambda: bool(world.dispute_cases))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = workflow_env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        described = await case.describe()
        assert await described.static_summary() == "Dispute on order 450.00 EUR: Road bike, buyer dispute"
        opened = await current_details(case)
        assert re.fullmatch(
            r"open: waiting for support to resolve \(escalates to support at .+ UTC\)", opened
        )
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        await case.result()
        assert await current_details(case) == "resolved: refund (450.00 EUR refunded)"  # the whole order
        await order.result()


def test_the_summary_names_the_chargeback() -> None:
    case = a_case("o-1")
    case.source, case.provider_dispute_id = DisputeSource.CHARGEBACK, "dp_9"
    case.listing_title = "A very  long\ttitle " * 10
    summary = case.summary()
    assert summary.startswith("Dispute on order 450.00 EUR: A very long title A very")
    assert summary.endswith("…, chargeback dp_9") and "\t" not in summary
