"""`python -m cli` / `bazaar`: operator commands (migrate, grant or revoke a role, deactivate a user, demo data,
reconcile and its discrepancies, reindex, stuck orders, show a trace)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn

from bazaar.errors import DomainError
from bazaar.models import Role, User
from bazaar.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from activities.reconciliation import ReconciliationSummary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bazaar")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    for name, text in (
        ("grant-role", "give a user a role (e.g. support); the user's sessions end: log in again"),
        ("revoke-role", "take a role from a user; the user's sessions end at once"),
    ):
        role_cmd = commands.add_parser(name, help=text)
        role_cmd.add_argument("email")
        role_cmd.add_argument(
            "role", choices=[Role.SUPPORT.value, Role.ADMIN.value, Role.SELLER.value, Role.BUYER.value]
        )
    for name, text in (
        ("deactivate-user", "refuse a user's logins and end their sessions at once"),
        ("activate-user", "let a deactivated user log in again"),
    ):
        commands.add_parser(name, help=text).add_argument("email")
    demo_cmd = commands.add_parser("demo-data", help="load demo users and listings through the API")
    demo_cmd.add_argument("--api-url", default=None)
    demo_cmd.add_argument("--count", type=int, default=None)
    reconcile_cmd = commands.add_parser(
        "reconcile", help="reconcile payments with the provider over a window (default: yesterday, UTC)"
    )
    reconcile_cmd.add_argument(
        "--since", default=None, type=_moment, help="ISO 8601 start, inclusive (e.g. 2026-11-24)"
    )
    reconcile_cmd.add_argument(
        "--until", default=None, type=_moment, help="ISO 8601 end, exclusive (default: since + 1 day)"
    )
    findings = commands.add_parser(
        "reconciliation",
        help="reconciliation's discrepancies (as GET /v1/support/reconciliation) and their status",
    ).add_subparsers(dest="reconciliation_command", required=True)
    listing = findings.add_parser("list", help="list discrepancies, newest first (default: the open ones)")
    from bazaar.payments.discrepancies import DiscrepancyStatus
    from bazaar.payments.reconcile import DiscrepancyCategory

    listing.add_argument(
        "--status", action="append", choices=[s.value for s in DiscrepancyStatus], help="repeat for several"
    )
    listing.add_argument("--category", default=None, choices=[c.value for c in DiscrepancyCategory])
    listing.add_argument("--order", dest="order_id", default=None, type=uuid.UUID)
    listing.add_argument("--window", dest="window_id", default=None)
    listing.add_argument("--limit", type=_page_size, default=100, help="1 to 500, as the API takes")
    for name, text in (
        ("acknowledge", "someone is on it (it leaves the open gauge)"),
        ("resolve", "settled: say how in the note"),
        ("reopen", "open it again"),
    ):
        status_cmd = findings.add_parser(name, help=text)
        status_cmd.add_argument("item_id", type=int)
        status_cmd.add_argument("--note", required=True, type=_note, help="why: what was checked or done")
        status_cmd.add_argument(
            "--as", dest="staff_email", required=True, help="the acting support user's email"
        )
    reindex_cmd = commands.add_parser(
        "reindex", help="rebuild the search index from a snapshot and swap it in (no search downtime)"
    )
    reindex_cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    orders_cmd = commands.add_parser("orders", help="support's tools for orders that need attention")
    order_actions = orders_cmd.add_subparsers(dest="order_command", required=True)
    order_actions.add_parser(
        "stuck", help="list orders a person must look at (as GET /v1/support/stuck-orders)"
    )
    for name, text in (
        ("retry", "re-run the step the order is stuck on, now"),
        ("cancel", "cancel the order with a full refund (a pending order: once its charge has an outcome)"),
    ):
        action = order_actions.add_parser(name, help=text)
        action.add_argument("order_id", type=uuid.UUID, help="the order's id (a UUID)")
        action.add_argument("--as", dest="staff_email", required=True, help="the acting support user's email")
    trace_cmd = commands.add_parser(
        "trace",
        help="show one trace from TRACES_DIR (the JSON-lines spans `make run` writes): a tree of spans",
    )
    trace_cmd.add_argument("trace_id", help="32 hex digits: a response's X-Trace-Id, a log line's trace_id=")
    trace_cmd.add_argument("--dir", default=None, help="the traces directory (default: TRACES_DIR)")
    args = parser.parse_args(argv)
    if args.command == "reconcile":
        args.since, args.until = whole_seconds(args.since, args.until)
        if None not in (args.since, args.until) and args.until <= args.since:
            reconcile_cmd.error("--until must be after --since")
    try:
        _dispatch(args)
    except (
        DomainError
    ) as refused:  # a refusal of the domain's (an unknown user...) in one line, not a traceback
        raise SystemExit(f"refused: {refused.message}") from None


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "migrate":
        from bazaar.migrate import upgrade

        upgrade(get_settings().database_url)
        print("database is at the latest migration")
    elif args.command in ("grant-role", "revoke-role"):
        granted = args.command == "grant-role"
        asyncio.run(_account(args.email, role=Role(args.role), grant=granted))
        change = "now has" if granted else "no longer has"
        print(f"{args.email} {change} the {args.role} role (their sessions ended: they log in again)")
    elif args.command in ("deactivate-user", "activate-user"):
        active = args.command == "activate-user"
        asyncio.run(_account(args.email, active=active))
        print(f"{args.email} is {'active' if active else 'deactivated: their sessions ended'}")
    elif args.command == "demo-data":
        from devstack import demo

        demo.load(
            args.api_url or get_settings().public_base_url, **({"count": args.count} if args.count else {})
        )
    elif args.command == "reconcile":
        import json
        from dataclasses import asdict

        _leaving_after(lambda: json.dumps(asdict(asyncio.run(_reconcile(args.since, args.until))), indent=2))
    elif args.command == "reconciliation":
        print(asyncio.run(_reconciliation_command(args)), flush=True)
    elif args.command == "reindex":
        from search_sync.reindex import reindex

        report = asyncio.run(reindex(get_settings(), progress=not args.no_progress))
        print(
            f"index {report.index}: {report.documents} documents ({report.docs_per_second:.0f}/s), "
            f"{report.caught_up} changes caught up, swapped in after {report.seconds:.1f}s"
        )
    elif args.command == "trace":
        print(_trace(args.trace_id, args.dir))
    elif args.command == "orders":
        order_id, staff = getattr(args, "order_id", None), getattr(args, "staff_email", None)
        _leaving_after(lambda: asyncio.run(_order_command(args.order_command, order_id, staff)))


def _leaving_after(command: Callable[[], str]) -> NoReturn:
    """Run a command that holds a Temporal client, print its answer (or its refusal, on stderr) and leave without
    finalizing the interpreter: the Temporal core runtime can abort there (SIGABRT or SIGSEGV at exit, PyGILState
    errors, when a client was not shut down), which turned a refusal's exit 1 into a crash half the time."""
    code = 0
    try:
        print(command(), flush=True)
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            code = 1
        else:
            code = stop.code or 0
    except DomainError as refused:
        print(f"refused: {refused.message}", file=sys.stderr)
        code = 1
    except Exception:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _trace(trace_id: str, directory: str | None) -> str:
    from pathlib import Path

    from bazaar.telemetry import format_trace, read_trace

    settings = get_settings()
    made_by_run = Path(settings.data_dir) / "traces"  # where `make run` writes them (devstack's traces_dir)
    where = directory or settings.traces_dir or (str(made_by_run) if made_by_run.is_dir() else None)
    if not where:
        raise SystemExit(
            "no traces directory: set TRACES_DIR (make run writes to .data/traces) or pass --dir"
        )
    spans = read_trace(Path(where), trace_id)
    if not spans:
        raise SystemExit(
            f"no spans of trace {trace_id} in {where} (still buffered? spans are written in batches)"
        )
    return format_trace(spans)


async def _account(
    email: str, *, role: Role | None = None, grant: bool = True, active: bool | None = None
) -> None:
    """Change a role or the active flag; either bumps the user's token version (bazaar.auth)."""
    from bazaar import auth
    from bazaar.db import get_engine, transaction

    async with transaction() as session:
        if role is not None:
            await (auth.grant_role if grant else auth.revoke_role)(session, email, role)
        if active is not None:
            await auth.set_active(session, email, active)
    await get_engine().dispose()


def _page_size(text: str) -> int:
    """A list's page size, as `GET /v1/support/reconciliation` takes it (found from outside: 0 listed nothing)."""
    from api.reconciliation_schemas import MAX_ITEMS_PER_PAGE

    if not text.strip().isdecimal() or not 1 <= int(text) <= MAX_ITEMS_PER_PAGE:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_ITEMS_PER_PAGE}: {text!r}")
    return int(text)


def _note(text: str) -> str:
    """Support's note on a reconciliation item, under the API's rule (found from outside: the CLI took an empty
    one the API refuses)."""
    from pydantic import TypeAdapter, ValidationError

    from api.reconciliation_schemas import ItemNote

    try:
        note: str = TypeAdapter(ItemNote).validate_python(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(exc.errors()[0]["msg"]) from None
    return note


def whole_seconds(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    """A window's bounds are whole seconds: the whole seconds that hold the instants given (found from outside:
    a fraction crashed in the window's id, or ran under the id of another range)."""
    if until is not None and until.microsecond:
        until = until.replace(microsecond=0) + timedelta(seconds=1)
    return (since.replace(microsecond=0) if since else None), until


def _moment(text: str) -> datetime:
    """An ISO 8601 date or time (a bare one means UTC); argparse's usage error otherwise."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _reconcile(since: datetime | None, until: datetime | None) -> ReconciliationSummary:
    """Run (or join) the reconciliation workflow of the window on the worker; its summary."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from activities.reconciliation import ReconcileWindow, reconciliation_workflow_id
    from bazaar.temporal import RECONCILIATION, connect, task_queue
    from workflows.reconciliation import ReconciliationWorkflow, previous_day

    if since is None:
        window = previous_day(datetime.now(UTC))
        if until is not None:
            window = ReconcileWindow(since=window.since, until=until.isoformat())
    else:
        end = until or since + timedelta(days=1)
        window = ReconcileWindow(since=since.isoformat(), until=end.isoformat())
    settings = get_settings()
    client = await connect(settings)
    # Same window, same workflow id: a second run while one is going joins it, a later one repeats it.
    return await client.execute_workflow(
        ReconciliationWorkflow.run,
        window,
        id=reconciliation_workflow_id(window),
        task_queue=task_queue(RECONCILIATION, settings.temporal_task_queue),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def _support_user(session: AsyncSession, email: str | None) -> User:
    """The acting support user of a command (`--as`); exits when `email` is not one."""
    from sqlalchemy import select

    staff = await session.scalar(select(User).where(User.email == email))
    if staff is None or Role.SUPPORT.value not in staff.roles:
        raise SystemExit(f"{email} is not a support user")
    return staff


async def _reconciliation_command(args: argparse.Namespace) -> str:
    """`reconciliation list` prints what support's list shows; `acknowledge|resolve|reopen` set an item's
    status with a note, as the named support user."""
    import json

    from api.reconciliation_schemas import ReconciliationItemOut
    from bazaar.db import get_engine, transaction
    from bazaar.payments import discrepancies
    from bazaar.payments.discrepancies import DiscrepancyStatus

    try:
        async with transaction() as session:
            if args.reconciliation_command == "list":
                rows = await discrepancies.list_items(
                    session,
                    statuses=[DiscrepancyStatus(s) for s in args.status or ["open"]],
                    category=args.category,
                    order_id=args.order_id,
                    window_id=args.window_id,
                    limit=args.limit,
                )
                return json.dumps(
                    [ReconciliationItemOut.of(r).model_dump(mode="json") for r in rows], indent=2
                )
            staff = await _support_user(session, args.staff_email)
            status = {"acknowledge": "acknowledged", "resolve": "resolved", "reopen": "open"}
            item = await discrepancies.set_status(
                session,
                args.item_id,
                DiscrepancyStatus(status[args.reconciliation_command]),
                args.note,
                staff.id,
            )
            if item is None:
                raise SystemExit(f"no reconciliation item {args.item_id}")
            return ReconciliationItemOut.of(item).model_dump_json(indent=2)
    finally:
        await get_engine().dispose()


async def _order_command(command: str, order_id: str | None, staff_email: str | None) -> str:
    """`orders stuck` lists what support's queue lists; `orders retry|cancel` run the order's Update as the
    named support user (the same rules and audit trail as the API)."""
    import json
    from dataclasses import asdict
    from datetime import timedelta

    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError
    from temporalio.service import RPCError, RPCStatusCode

    from bazaar.db import get_engine, transaction
    from bazaar.orders.types import ORDER_STATUS, PAYMENT_STATE, STUCK_ORDERS_QUERY, ActionRequest, Actor
    from bazaar.temporal import connect, order_workflow_id
    from workflows.order import OrderWorkflow

    client = await connect(get_settings())
    if command == "stuck":
        rows = []
        async for execution in client.list_workflows(STUCK_ORDERS_QUERY):
            attributes = execution.typed_search_attributes
            rows.append(
                {
                    "workflow_id": execution.id,
                    "status": attributes.get(ORDER_STATUS),
                    "payment_state": attributes.get(PAYMENT_STATE),
                    "attention": (await execution.memo()).get("attention"),
                }
            )
        return json.dumps(rows, indent=2)
    try:
        async with transaction() as session:
            staff = await _support_user(session, staff_email)
    finally:
        await get_engine().dispose()
    update = OrderWorkflow.retry if command == "retry" else OrderWorkflow.cancel
    handle = client.get_workflow_handle(order_workflow_id(str(order_id)))
    try:
        view = await handle.execute_update(
            update, ActionRequest(Actor(str(staff.id), is_support=True)), rpc_timeout=timedelta(seconds=30)
        )
    except WorkflowUpdateFailedError as refused:  # the order's own answer, as the API's 409 gives it
        cause = refused.cause
        raise SystemExit(
            f"refused: {cause.message if isinstance(cause, ApplicationError) else cause}"
        ) from None
    except RPCError as failed:
        if failed.status == RPCStatusCode.NOT_FOUND:
            raise SystemExit(
                f"no running order {order_id} (an ended order is reopened through the API)"
            ) from None
        raise
    return json.dumps(asdict(view), indent=2)


if __name__ == "__main__":
    main()
