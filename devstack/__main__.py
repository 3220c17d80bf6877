"""`python -m devstack run|test`: the dev stack in the foreground, or the full check suite.

`run` keeps its state in the settings' data dir (`.data/`) so a second run reuses it; every child is
in its own process group and is stopped, in reverse dependency order, on Ctrl-C, SIGTERM, or when any
child dies. `test` runs ruff, mypy and pytest (extra args go to pytest); exit code = first failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bazaar.settings import Settings
from devstack import services
from devstack.process import ServiceError
from devstack.stack import Ports, Stack

ROOT = Path(__file__).resolve().parent.parent


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM behaves like Ctrl-C: unwind and stop the stack cleanly."""
    raise KeyboardInterrupt


def _busy_ports(stack: Stack) -> list[str]:
    """Dev ports of services we would start that something already listens on."""
    p = stack.ports
    wanted = {
        "postgres": [p.postgres],
        "temporal": [p.temporal, p.temporal_ui],
        "meilisearch": [p.meili],
        "stripe": [p.stripe],
        "smtp": [p.smtp],
    }
    ports = [port for name in stack.embedded for port in wanted[name]] + [p.api, p.worker_metrics]
    return [str(port) for port in ports if services.port_in_use(port)]


def _format_credentials(creds: Any) -> list[str]:
    """`devstack.demo.DEMO_CREDENTIALS` in whatever plain shape it has (mapping or list of rows)."""
    rows = creds.items() if isinstance(creds, Mapping) else enumerate(creds)
    lines = []
    for key, value in rows:
        if isinstance(value, Mapping):
            value = "  ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, tuple | list):
            value = "  ".join(str(v) for v in value)
        lines.append(f"    {value}" if isinstance(key, int) else f"    {key}: {value}")
    return lines


def _banner(stack: Stack) -> str:
    lines = [
        "",
        "Bazaar dev stack is up (Ctrl-C stops everything):",
        f"  API docs        {stack.api_url}/docs",
        f"  API             {stack.api_url}",
        f"  Temporal UI     {stack.temporal_ui_url or '(external Temporal: ' + stack.temporal_address + ')'}",
        f"  Temporal gRPC   {stack.temporal_address}",
        f"  Meilisearch     {stack.meili_url}",
        f"  Stripe sandbox  {stack.stripe_api_base}",
        f"  PostgreSQL      {stack.database_url}",
        f"  Mail (SMTP {stack.smtp_host}:{stack.smtp_port})  "
        + (str(stack.mail_dir) if stack.smtp is not None else "(external SMTP server)"),
        f"  Logs            {stack.log_dir}",
        f"  Traces          {stack.traces_dir}  (python -m cli trace <X-Trace-Id>)",
        f"  Worker metrics  {stack.worker_metrics_url}  (API metrics: {stack.api_url}/metrics)",
        f"  Secrets         {stack.data_dir / 'dev-secrets.json'}",
    ]
    try:
        from devstack.demo import DEMO_CREDENTIALS  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        lines += ["  Demo accounts:", *_format_credentials(DEMO_CREDENTIALS)]
    return "\n".join([*lines, ""])


def run() -> int:
    settings = Settings()
    data_dir = Path(settings.data_dir)
    stack = Stack(
        data_dir if data_dir.is_absolute() else ROOT / data_dir,
        Ports.dev(settings),
        persistent=True,
        settings=settings,
        echo=True,
    )
    busy = _busy_ports(stack)
    if busy:
        print(
            f"[devstack] port(s) {', '.join(busy)} already in use: is another `make run` running?",
            file=sys.stderr,
        )
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored (`&`)
    code = 0
    reason = ""
    try:
        print(
            f"[devstack] starting {', '.join(stack.embedded) or 'no embedded services'} "
            f"(data in {stack.data_dir})",
            flush=True,
        )
        stack.start()
        try:
            stack.load_demo_data()
        except ServiceError as exc:  # the stack is still useful without demo data: say so, keep going
            print(
                f"\n[devstack] {exc}\n[devstack] continuing without demo data; it is retried at the next run",
                file=sys.stderr,
                flush=True,
            )
        print(_banner(stack), flush=True)
        died = stack.watch()
        print(
            f"\n[devstack] {died.name} exited unexpectedly with code {died.returncode}; stopping the stack."
            f"\n  last output:\n{died.tail()}\n  full log: {stack.log_dir / (died.name + '.log')}",
            file=sys.stderr,
            flush=True,
        )
        code = 1
        reason = f" because {died.name} died (exit code {died.returncode})"
    except KeyboardInterrupt:
        print("\n[devstack] stopping…", flush=True)
        code = 130
    except ServiceError as exc:
        print(f"\n[devstack] {exc}", file=sys.stderr, flush=True)
        code = 1
        reason = " after a start failure (see above)"
    finally:
        # A second Ctrl-C must not interrupt the orderly shutdown and leave orphans behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    print(f"[devstack] stopped{reason}.", flush=True)
    return code


# pytest workers of `make test`, each with its own embedded stack (tests/conftest.py): the suite mostly waits on
# its services, so two workers on two cores take about 12 minutes where one takes 15. More than four stacks
# would cost more memory than they save time.
MAX_TEST_WORKERS = 4


def test_workers() -> int:
    return max(1, min(MAX_TEST_WORKERS, len(os.sched_getaffinity(0))))


def test(pytest_args: Sequence[str]) -> int:
    """ruff, mypy, pytest in that order; all run, the exit code is the first non-zero one. Unless the arguments
    say how (`-n`, `-p no:xdist`), pytest spreads the test files over `test_workers()` processes."""
    py = sys.executable
    spread: list[str] = []
    chosen = "no:xdist" in pytest_args or any(a.startswith(("-n", "--numprocesses")) for a in pytest_args)
    if not chosen and test_workers() > 1:
        spread = ["-n", str(test_workers()), "--dist", "loadfile"]
    steps = [
        ("ruff", [py, "-m", "ruff", "check", "."]),
        ("mypy", [py, "-m", "mypy", "."]),
        ("pytest", [py, "-m", "pytest", *spread, *pytest_args]),
    ]
    results: list[tuple[str, int]] = []
    for name, argv in steps:
        print(f"[devstack] {' '.join([name, *argv[3:]])}", flush=True)
        results.append((name, subprocess.run(argv, cwd=ROOT, check=False).returncode))
    print("[devstack] " + ", ".join(f"{n}: {'ok' if c == 0 else f'FAILED ({c})'}" for n, c in results))
    return next((c for _, c in results if c != 0), 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole dev stack in the foreground")
    sub.add_parser("test", help="ruff, mypy, pytest (extra args are passed to pytest)")
    args = list(sys.argv[1:] if argv is None else argv)
    os.chdir(ROOT)  # `.env` and relative paths mean the repo's, wherever we are started from
    if args[:1] == ["test"]:
        return test(args[1:])  # everything after `test` is pytest's, even `-h`
    parser.parse_args(args)
    return run()


if __name__ == "__main__":
    sys.exit(main())
