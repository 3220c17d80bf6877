"""Each dev process gets only its own secrets (devstack.stack.PROCESS_SECRETS), the same ones the production
compose file gives its service; checked in the table and in the environments of the running test stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.stack import PROCESS_SECRETS, SECRET_VARS
from tests.support.compose import APP_SERVICES, environment_of, load_compose, services_of


def test_devstack_gives_each_process_the_secrets_compose_gives_it() -> None:
    compose = services_of(load_compose())
    for service in APP_SERVICES:
        given = set(environment_of(compose[service])) & SECRET_VARS
        assert given == set(PROCESS_SECRETS[service]), service


@pytest.mark.parametrize("process", sorted(PROCESS_SECRETS))
def test_process_env_holds_only_its_own_secrets(stack: Any, process: str) -> None:
    env = stack.process_env(process)
    held = {name for name in env if name.upper() in SECRET_VARS}
    assert held <= PROCESS_SECRETS[process], process
    if process == "api":
        assert {"JWT_SECRET", "STRIPE_WEBHOOK_SECRET"} <= held
    if process == "worker":
        assert "STRIPE_SECRET_KEY" in held and "JWT_SECRET" not in held


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_running_processes_hold_only_their_own_secrets(stack: Any) -> None:
    running = {proc.name: proc for proc in stack.supervisor.spawned_since(0) if proc.process.poll() is None}
    checked = 0
    for name in ("api", "worker", "sender", "search-sync"):
        if name not in running:
            continue
        held = {key for key in _environ(running[name].pid) if key.upper() in SECRET_VARS}
        assert held <= PROCESS_SECRETS[name], (name, held - PROCESS_SECRETS[name])
        checked += 1
    assert checked == 4, sorted(running)
