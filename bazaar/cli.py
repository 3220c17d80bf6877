"""`python -m bazaar.cli` / `bazaar`: operator commands (migrate, grant a role, demo data)."""

from __future__ import annotations

import argparse
import asyncio

from bazaar.models import Role
from bazaar.settings import get_settings


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


async def _grant(email: str, role: Role) -> None:
    from bazaar import auth
    from bazaar.db import get_engine, transaction

    async with transaction() as session:
        await auth.grant_role(session, email, role)
    await get_engine().dispose()


if __name__ == "__main__":
    main()
