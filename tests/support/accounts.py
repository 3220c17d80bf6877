"""Helpers for account and rate-limit tests: mail in the sink, tokens from mailed links, client addresses, and a
second API with the real (unrelaxed) request limits beside the test stack's."""

from __future__ import annotations

import contextlib
import email
import email.policy
import random
import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from bazaar.settings import Settings
from devstack import services
from devstack.process import Supervisor
from devstack.stack import RELAXED_LIMITS
from tests.support.http import PASSWORD, wait_until

_TOKEN = re.compile(r"[?&]token=([A-Za-z0-9_-]+)")


def client_address() -> str:
    """A client address of its own (RFC 2544's benchmarking range), sent as X-Forwarded-For: uvicorn believes it
    from the loopback test client, so each test's per-address limits are its own."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def from_address(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or {}), "X-Forwarded-For": address}


def new_email(name: str = "acct") -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}@example.com"


def mails_to(stack: Any, address: str, subject: str | None = None) -> list[EmailMessage]:
    found = []
    for path in sorted(Path(stack.mail_dir).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if message["To"] == address and (subject is None or subject in str(message["Subject"])):
            found.append(message)
    return found


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def mailed_token(stack: Any, address: str, subject: str, nth: int = 1, timeout: float = 20.0) -> str:
    """The token of the `nth` mail to `address` whose subject contains `subject` (waits for the sender)."""
    mails: list[EmailMessage] = wait_until(
        lambda: (found := mails_to(stack, address, subject)) and len(found) >= nth and found, timeout=timeout
    )
    match = _TOKEN.search(body_of(mails[nth - 1]))
    assert match, body_of(mails[nth - 1])
    return match.group(1)


def login(http: httpx.Client, address: str, password: str = PASSWORD, **headers: str) -> httpx.Response:
    return http.post("/v1/auth/token", data={"username": address, "password": password}, headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def limited_api(stack: Any, log_dir: Path, **overrides: str) -> Iterator[str]:
    """A second API process on the test stack's services with the production limits (the stack's own API runs
    with `RELAXED_LIMITS`), plus `overrides` (setting name -> value); yields its URL."""
    defaults = {name: str(Settings.model_fields[name.lower()].default) for name in RELAXED_LIMITS}
    with second_api(stack, log_dir, {**defaults, **{k.upper(): v for k, v in overrides.items()}}) as url:
        yield url


@contextlib.contextmanager
def second_api(stack: Any, log_dir: Path, env: dict[str, str], port: int | None = None) -> Iterator[str]:
    """A second API process (on `port`, or a free one) with the test stack's environment and `env` over it;
    yields its URL, stops it on exit."""
    if port is None:
        [port] = services.free_ports(1)
    supervisor = Supervisor(log_dir=log_dir)
    try:
        yield services.start_api(supervisor, {**stack.child_env(), **env, "API_PORT": str(port)}, port).url
    finally:
        supervisor.stop_all()
