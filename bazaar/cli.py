"""`python -m bazaar.cli` / `bazaar`: operator commands (migrate, grant a role, demo data, reconcile)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from bazaar.models import Role
from bazaar.settings import get_settings

if TYPE_CHECKING:
    from activities.reconciliation import ReconciliationSummary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bazaar")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    grant = commands.add_parser("grant-role", help="give a user the support or admin role")
    grant.add_argument("email")
    grant.add_argument(
        "role", choices=[Role.SUPPORT.value, Role.ADMIN.value, Role.SELLER.value, Role.BUYER.value]
    )
    demo_cmd = commands.add_parser("demo-data", help="load demo users and listings through the API")
    demo_cmd.add_argument("--api-url", default=None)
    demo_cmd.add_argument("--count", type=int, default=None)
    reconcile_cmd = commands.add_parser(
        "reconcile", help="reconcile payments with the provider over a window (default: yesterday, UTC)"
    )
    reconcile_cmd.add_argument("--since", default=None, help="ISO 8601 start, inclusive (e.g. 2026-11-24)")
    reconcile_cmd.add_argument(
        "--until", default=None, help="ISO 8601 end, exclusive (default: since + 1 day)"
    )
    reindex_cmd = commands.add_parser(
        "reindex", help="rebuild the search index from a snapshot and swap it in (no search downtime)"
    )
    reindex_cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.command == "migrate":
        from bazaar.migrate import upgrade

        upgrade(get_settings().database_url)
        print("database is at the latest migration")
    elif args.command == "grant-role":
        asyncio.run(_grant(args.email, Role(args.role)))
        print(f"{args.email} now has the {args.role} role (it applies to tokens issued from now on)")
    elif args.command == "demo-data":
        from bazaar import demo

        demo.load(
            args.api_url or get_settings().public_base_url, **({"count": args.count} if args.count else {})
        )
    elif args.command == "reconcile":
        import json
        from dataclasses import asdict

        summary = asyncio.run(_reconcile(args.since, args.until))
        print(json.dumps(asdict(summary), indent=2), flush=True)
        # The Temporal core runtime can abort during interpreter finalization (SIGABRT, see STACK.md);
        # everything is done and flushed, so leave without finalizing.
        os._exit(0)
    elif args.command == "reindex":
        from search_sync.reindex import reindex

        report = asyncio.run(reindex(get_settings(), progress=not args.no_progress))
        print(
            f"index {report.index}: {report.documents} documents ({report.docs_per_second:.0f}/s), "
            f"{report.caught_up} changes caught up, swapped in after {report.seconds:.1f}s"
        )


async def _grant(email: str, role: Role) -> None:
    from bazaar import auth
    from bazaar.db import get_engine, transaction

    async with transaction() as session:
        await auth.grant_role(session, email, role)
    await get_engine().dispose()


async def _reconcile(since: str | None, until: str | None) -> ReconciliationSummary:
    """Run (or join) the reconciliation workflow of the window on the worker; its summary."""
    from datetime import UTC, datetime, timedelta

    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from activities.reconciliation import ReconcileWindow, reconciliation_workflow_id
    from bazaar.temporal import connect
    from workflows.reconciliation import ReconciliationWorkflow, previous_day

    def moment(text: str) -> datetime:
        value = datetime.fromisoformat(text)
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # a bare date/time means UTC

    if since is None:
        window = previous_day(datetime.now(UTC))
        if until is not None:
            window = ReconcileWindow(since=window.since, until=moment(until).isoformat())
    else:
        start = moment(since)
        end = moment(until) if until else start + timedelta(days=1)
        window = ReconcileWindow(since=start.isoformat(), until=end.isoformat())
    settings = get_settings()
    client = await connect(settings)
    # Same window, same workflow id: a second run while one is going joins it, a later one repeats it.
    return await client.execute_workflow(
        ReconciliationWorkflow.run,
        window,
        id=reconciliation_workflow_id(window),
        task_queue=settings.temporal_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


if __name__ == "__main__":
    main()
