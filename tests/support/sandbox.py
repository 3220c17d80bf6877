"""The Stripe sandbox as a real subprocess on a free port, and what its tests read off the SDK's answers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx
import stripe

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_sandbox_suite"


def free_port() -> int:
    """Ask the OS for an unused loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxProcess:
    """``python -m stripe_sandbox`` in a subprocess, stopped on exit."""

    def __init__(self, *extra_args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self) -> SandboxProcess:
        cmd = [
            sys.executable,
            "-m",
            "stripe_sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        pythonpath = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
        # Logs go to a file, not a pipe nobody drains (a full pipe would block the server).
        self.log = tempfile.NamedTemporaryFile(prefix="stripe-sandbox-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = Path(self.log.name).read_text()
                raise RuntimeError(f"stripe sandbox exited early: {err}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_sandbox/health", timeout=0.5).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("stripe sandbox did not become healthy")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.log is not None:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
            self.log = None

    def client(self, **kwargs: object) -> stripe.StripeClient:
        """An official SDK client pointed at this sandbox (no SDK-side retries)."""
        return stripe.StripeClient(API_KEY, base_addresses={"api": self.url}, max_network_retries=0, **kwargs)  # type: ignore[arg-type]

    def control(self, method: str, path: str, json: object | None = None) -> httpx.Response:
        """Call a ``/_sandbox`` control endpoint."""
        resp = httpx.request(method, f"{self.url}{path}", json=json, timeout=5)
        return resp


def headers_of(obj: stripe.StripeObject) -> Mapping[str, str]:
    """HTTP response headers (case-insensitive) of the call that returned ``obj``."""
    assert obj.last_response is not None
    headers: Mapping[str, str] = obj.last_response.headers
    return headers
