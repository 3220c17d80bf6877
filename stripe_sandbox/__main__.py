"""CLI entry point.

``python -m stripe_sandbox --host 127.0.0.1 --port P [--state-file F]
[--webhook-url U] [--webhook-secret S] [--new-accounts onboarded|pending]``; the secret may come from
``$STRIPE_SANDBOX_WEBHOOK_SECRET`` instead (kept off the command line).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

import uvicorn

from stripe_sandbox.app import create_app
from stripe_sandbox.engine import NEW_ACCOUNT_MODES

# Where devstack passes the webhook signing secret (a command line is readable by any local user with `ps`).
WEBHOOK_SECRET_VARIABLE = "STRIPE_SANDBOX_WEBHOOK_SECRET"  # noqa: S105 (a variable name, not a secret)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox under uvicorn; refuses non-loopback hosts (it has no real security)."""
    parser = argparse.ArgumentParser(prog="python -m stripe_sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--state-file", default=None, help="persist state as JSON here (reloaded at start)")
    parser.add_argument("--webhook-url", default=None, help="POST every event here, signed")
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get(WEBHOOK_SECRET_VARIABLE),
        help=f"whsec_... signing secret for webhooks (default: ${WEBHOOK_SECRET_VARIABLE}, which keeps it off the "
        "command line)",
    )
    parser.add_argument(
        "--new-accounts",
        choices=NEW_ACCOUNT_MODES,
        default="onboarded",
        help="how connected accounts start: able to sell at once, or pending onboarding as on Stripe",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if not _loopback(args.host):
        parser.error(f"--host must be a loopback address, got {args.host!r}")
    if args.webhook_url and not args.webhook_secret:
        parser.error("--webhook-url needs --webhook-secret")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    app = create_app(args.state_file, args.webhook_url, args.webhook_secret, args.new_accounts)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
