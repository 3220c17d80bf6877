"""The order property test's invariant checks, after every step (the invariant itself is
`OrderMachine.nothing_lost_doubled_or_stuck`, tests/support/order_machine.py; what it checks is listed in
tests/workflows/test_order_properties.py): the workflows settle, then each order's workflow, table row, stock
and money agree.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from bazaar.orders.types import NEEDS_ATTENTION, ORDER_STATUS, PAYMENT_STATE, TERMINAL, OrderView
from tests.support.order_harness import Harness, Placed
from tests.support.order_model import World
from tests.support.order_world import (
    BUYER_PAYMENTS,
    CHARGEBACKS,
    ESCROW,
    REFUNDS,
    SELLER_PAYABLE,
    SELLER_PAYOUTS,
)
from workflows.dispute import dispute_workflow_id
from workflows.order import OrderWorkflow

# The sandbox's message for a workflow task that did not yield within its bound (temporalio/worker/_workflow.py).
DEADLOCK_TIMEOUT = "Potential deadlock detected"
SETTLE_BOUND = 15.0  # seconds the workflows may stay busy after a step


class OrderChecks:
    """The checks of `OrderMachine` (a mixin: the machine sets these attributes in its `__init__`)."""

    h: Harness
    world: World
    placed: dict[str, Placed]
    problems: list[str]
    histories: dict[str, tuple[str, int]]  # workflow id -> (run id, length) last read

    async def settle(self) -> tuple[list[str], dict[str, WorkflowExecutionDescription]]:
        """Wait until no activity runs and no open order has work pending (twice in a row, the histories
        unchanged), within SETTLE_BOUND. Returns what is still busy, and each open order's description."""
        deadline = time.monotonic() + SETTLE_BOUND
        previous: dict[str, int] | None = None
        busy: list[str] = []
        descs: dict[str, WorkflowExecutionDescription] = {}
        while time.monotonic() < deadline:
            busy = [f"{self.world.inflight} activities running"] if self.world.inflight else []
            descs = {}
            for order in self.placed.values():
                if order.final is not None:
                    continue  # closed, and nothing reopened it since
                try:
                    desc = await order.handle.describe()
                except RPCError:
                    continue
                raw = desc.raw_description
                descs[order.order_id] = desc
                if raw.pending_activities:
                    names = [p.activity_type.name for p in raw.pending_activities]
                    busy.append(f"{order.order_id[:8]} pending activities {names}")
                if raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt <= 1:
                    busy.append(f"{order.order_id[:8]} workflow task pending")  # (a failing one is reported)
            lengths = {order_id: desc.history_length for order_id, desc in descs.items()}
            if not busy and lengths == previous:
                return [], descs
            previous = None if busy else lengths
            await asyncio.sleep(0.05)
        return [f"not settled within {SETTLE_BOUND} s: {busy}"], descs

    async def check(self) -> list[str]:
        problems, descs = await self.settle()
        w = self.world
        problems += [f"model: {v}" for v in w.violations]
        held = w.held_stock()
        if w.listing.quantity + held != w.listing.initial:
            problems.append(
                f"stock: listing {w.listing.quantity} + held {held} != initial {w.listing.initial}"
            )
        for order in self.placed.values():
            found = await self.check_order(order, descs.get(order.order_id))
            problems += [f"order {order.order_id[:8]}: {p}" for p in found]
        return problems

    async def check_order(self, order: Placed, desc: WorkflowExecutionDescription | None) -> list[str]:
        """The order's workflow, its table row, its stock and its money agree (see the module docstring)."""
        w = self.world
        problems: list[str] = []
        if order.final is None:
            if desc is None:
                return []  # not started (a placement still in flight is held to its bound above)
            problems += await self.workflow_problems(order, desc)
        view = order.final or await self.view_now(order, desc)
        if view is None:
            return [*problems, "no view after settling"]
        row = w.orders.get(order.order_id)
        balance = w.balance(order.order_id)
        ledger = w.ledger_of(order.order_id)
        ended = view.status in TERMINAL and view.payment_state not in ("transfer_failed", "payout_on_hold")
        if row is None:
            if view.status != "rejected":
                problems.append(f"no orders row for a {view.status} order")
            return problems
        # The table is the workflow's view.
        if (row.status, row.reason, row.payment_state) != (view.status, view.reason, view.payment_state):
            problems.append(
                f"table {row.status}/{row.reason}/{row.payment_state} (seq {row.seq}) != workflow "
                f"{view.status}/{view.reason}/{view.payment_state}"
            )
        # Stock.
        if row.status in TERMINAL and row.stock_reserved and not row.shipped:
            problems.append(f"{row.status} ({row.reason}) but still holds {row.quantity} in stock")
        if row.status in ("pending", "paid", "confirmed") and not row.stock_reserved:
            problems.append(f"{row.status} but its stock went back to the listing (oversell)")
        # Money: the provider and the ledger agree, and the ledger balances.
        pairs = {
            "charged": (balance.charged, -ledger[BUYER_PAYMENTS]),
            "refunded": (balance.refunded, ledger[REFUNDS]),
            "paid out": (balance.transferred - balance.reversed, ledger[SELLER_PAYOUTS]),
            "charged back": (balance.charged_back, ledger[CHARGEBACKS]),
        }
        for what, (provider, booked) in pairs.items():
            if provider != booked:
                problems.append(f"{what}: provider {provider} != ledger {booked}")
        if sum(ledger.values()) != 0:
            problems.append(f"ledger does not balance: {ledger}")
        if balance.refunded > balance.charged:
            problems.append(f"refunded {balance.refunded} > charged {balance.charged}")
        if view.refunded_amount != balance.refunded:
            problems.append(f"view refunded {view.refunded_amount} != provider refunded {balance.refunded}")
        if ledger[SELLER_PAYABLE] < 0:
            problems.append(f"seller paid {-ledger[SELLER_PAYABLE]} more than was released: {ledger}")
        lost = any(
            key.startswith(f"{order.order_id}:transfer_reversal:") and p.outcome == "failed"
            for key, p in w.payments.items()
        )
        if ledger[ESCROW] < 0 and not lost:
            problems.append(f"escrow {ledger[ESCROW]} < 0 without a refused transfer reversal: {ledger}")
        if ended and ledger[ESCROW] > 0:
            problems.append(f"{view.status} ({view.reason}) but {ledger[ESCROW]} still in escrow: {ledger}")
        if ended and ledger[SELLER_PAYABLE] != 0:
            problems.append(f"{view.status} but {ledger[SELLER_PAYABLE]} released and not paid out")
        return problems

    async def workflow_problems(self, order: Placed, desc: WorkflowExecutionDescription) -> list[str]:
        problems = []
        if desc.status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
            problems.append(f"workflow is {desc.status}")
        problems += await self.task_failures(desc.id)
        problems += await self.task_failures(dispute_workflow_id(order.order_id))
        view = await self.view_now(order, desc)
        if view is None:
            return [*problems, "no view of the order (its workflow task keeps failing?)"]
        attrs = desc.typed_search_attributes
        shown = (attrs.get(ORDER_STATUS), attrs.get(PAYMENT_STATE), attrs.get(NEEDS_ATTENTION))
        if shown != (view.status, view.payment_state, view.attention is not None):
            problems.append(f"search attributes {shown} != view {view.status}/{view.payment_state}")
        ended = view.status in TERMINAL and view.payment_state not in ("transfer_failed", "payout_on_hold")
        if desc.status == WorkflowExecutionStatus.COMPLETED and not ended:
            problems.append(f"workflow ended with the order {view.status}/{view.payment_state}")
        if desc.status == WorkflowExecutionStatus.RUNNING and ended:
            try:  # it closes a moment after the Update that ended it (CLOSE_APART, workflows/order.py)
                await asyncio.wait_for(order.handle.result(), timeout=10)
                desc = await order.handle.describe()
            except (TimeoutError, WorkflowFailureError):
                problems.append(f"workflow still running with the order {view.status}/{view.payment_state}")
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            order.final = view
        return problems

    async def view_now(self, order: Placed, desc: WorkflowExecutionDescription | None) -> OrderView | None:
        """A running order's view (query), or a closed run's result (no replay needed)."""
        if desc is not None and desc.status == WorkflowExecutionStatus.COMPLETED:
            handle = self.h.client.get_workflow_handle(desc.id, run_id=desc.run_id, result_type=OrderView)
            result: OrderView = await handle.result()
            return result
        if desc is not None and desc.raw_description.pending_workflow_task.attempt > 1:
            return None  # its workflow task keeps failing: a query would wait for it (reported above)
        try:
            view: OrderView | None = await order.handle.query(
                OrderWorkflow.state, rpc_timeout=timedelta(seconds=10)
            )
        except RPCError as error:  # e.g. its workflow task keeps failing (reported with the failure)
            self.problems.append(f"order {order.order_id[:8]}: cannot query its state: {error}")
            return None
        return view

    async def task_failures(self, workflow_id: str) -> list[str]:
        """Workflow task failures (a bug in workflow code leaves the workflow RUNNING, retrying its task);
        a history is read again only when it grew."""
        try:
            desc = await self.h.client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return []
            raise
        seen = (desc.run_id or "", desc.history_length)
        if self.histories.get(workflow_id) == seen:
            return []
        self.histories[workflow_id] = seen
        found = []
        handle = self.h.client.get_workflow_handle(workflow_id, run_id=desc.run_id)
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_task_failed_event_attributes"):
                failure = event.workflow_task_failed_event_attributes.failure
                if DEADLOCK_TIMEOUT in failure.message:
                    # The SDK's 2 s bound on an activation, passed by a machine too busy (a garbage collection
                    # under load), not by the workflow's code: the task is tried again, and an order that stays
                    # stuck still fails the bounds on answers and settling.
                    continue
                where = [line.strip() for line in failure.stack_trace.splitlines() if "/workflows/" in line]
                found.append(
                    f"{workflow_id}: workflow task failed: {failure.application_failure_info.type} "
                    f"{failure.message[:200]} ({where[-1] if where else 'no workflow frame'})"
                )
        return found
