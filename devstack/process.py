"""Child-process mechanics shared by every embedded service and app process.

Each child runs in its own session (process group) so a stop signal reaches its whole tree and a Ctrl-C
in the terminal reaches only us: we then stop children in dependency order instead of all at once.
A `Supervisor` owns every child it spawned, so nothing is left behind when the stack stops, even when
a stop arrives while another thread is still starting a service.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

_print_lock = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ServiceError(RuntimeError):
    """A service could not be started or died; the message says which and shows its last output."""


class StackStopping(ServiceError):
    """Raised when something tries to start a process after the stack began stopping."""


class ManagedProcess:
    """One child process: its output is logged, optionally echoed with a name prefix, and its tail kept."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
        echo: bool = False,
        passthrough: bool = False,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        on_exit: Callable[[ManagedProcess], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stop_signal = stop_signal
        self.stopping = False
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._echo = echo
        self._on_exit = on_exit
        self._log: IO[str] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = log_path.open("a", encoding="utf-8", errors="replace")
        # passthrough: the child writes straight to our terminal (progress bars need a real tty).
        out = None if passthrough else subprocess.PIPE
        try:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=None if passthrough else subprocess.STDOUT,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user is not None else None,
            )
        except OSError as exc:
            if self._log is not None:
                self._log.close()
            raise ServiceError(f"{name}: cannot start {self.argv[0]}: {exc}") from exc
        self._reader: threading.Thread | None = None
        if self.process.stdout is not None:
            self._reader = threading.Thread(target=self._pump, name=f"out-{name}", daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self) -> None:
        """Copy the child's output line by line to the log, the terminal and the tail buffer."""
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self._tail.append(line)
            if self._log is not None:
                self._log.write(_ANSI.sub("", line) + "\n")
                self._log.flush()
            if self._echo:
                with _print_lock:
                    sys.stdout.write(f"{self.name:>12} | {line}\n")
                    sys.stdout.flush()
        self.process.wait()
        if self._log is not None:
            self._log.close()
        if self._on_exit is not None:
            self._on_exit(self)

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def tail(self) -> str:
        """The last lines of output, for error messages."""
        return "\n".join(f"    {line}" for line in self._tail) or "    (no output)"

    def wait(self, timeout: float | None = None) -> int:
        """Wait for exit (e.g. a run-to-completion task); raises ServiceError on timeout."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{self.name} did not finish within {timeout:.0f}s\n{self.tail()}") from exc
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """Signal the whole process group, then SIGKILL it if it has not exited within `timeout`."""
        self.stopping = True
        if self.process.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with _print_lock:
                    print(f"[devstack] {self.name} ignored the stop signal for {timeout:.0f}s: killing it")
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        # Grandchildren that outlived their parent (same group) go too.
        self._signal_group(signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=5)


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    proc: ManagedProcess | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `check` until it returns True, the deadline passes, or `proc` exits (all with a clear error)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        if proc is not None and not proc.alive():
            if proc.stopping:
                raise StackStopping(f"{what}: stopped while starting")
            raise ServiceError(
                f"{what} exited with code {proc.returncode} before it was ready:\n{proc.tail()}"
            )
        try:
            if check():
                return
        except Exception as exc:  # each attempt may fail in its own way until the service is up
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            tail = f"\n{proc.tail()}" if proc is not None else ""
            raise ServiceError(f"{what} not ready after {timeout:.0f}s{detail}{tail}")
        time.sleep(interval)


class Supervisor:
    """Owns every child process of a stack: spawns them, notices unexpected deaths, stops them all."""

    def __init__(self, *, log_dir: Path | None = None, echo: bool = False) -> None:
        self.log_dir = log_dir
        self.echo = echo
        self._lock = threading.Lock()
        self._procs: list[ManagedProcess] = []
        self._closed = False
        self._died: list[ManagedProcess] = []
        self._changed = threading.Condition(self._lock)
        # Safety net for paths that skip our `finally` (sys.exit in a thread, interpreter shutdown).
        ref = weakref.ref(self)

        def _at_exit() -> None:
            if (sup := ref()) is not None:
                sup.stop_all()

        atexit.register(_at_exit)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        passthrough: bool = False,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        long_running: bool = True,
    ) -> ManagedProcess:
        """Start a child; a long-running child that exits on its own is reported by `wait_for_death`."""
        with self._lock:
            if self._closed:
                raise StackStopping(f"not starting {name}: the stack is stopping")
            proc = ManagedProcess(
                name,
                argv,
                env=env,
                cwd=cwd,
                log_path=self.log_dir / f"{name}.log" if self.log_dir is not None else None,
                echo=self.echo,
                passthrough=passthrough,
                user=user,
                stop_signal=stop_signal,
                on_exit=self._exited if long_running else None,
            )
            self._procs.append(proc)
            return proc

    def mark(self) -> int:
        """A position in the spawn history, for `spawned_since`."""
        with self._lock:
            return len(self._procs)

    def spawned_since(self, mark: int) -> list[ManagedProcess]:
        with self._lock:
            return self._procs[mark:]

    def _exited(self, proc: ManagedProcess) -> None:
        with self._changed:
            if not proc.stopping and not self._closed:
                self._died.append(proc)
            self._changed.notify_all()

    def wait_for_death(self, timeout: float | None = None) -> ManagedProcess | None:
        """Block until a long-running child exits unexpectedly (returned) or the timeout passes (None)."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self._died) or self._closed, timeout)
            return self._died[0] if self._died else None

    def stop(self, procs: Sequence[ManagedProcess], timeout: float = 15.0) -> None:
        """Stop the given children, newest first."""
        for proc in reversed(procs):
            proc.stop(timeout)

    def stop_all(self, timeout: float = 15.0) -> None:
        """Refuse new children and stop every child, newest first (reverse dependency order)."""
        with self._changed:
            self._closed = True
            procs = list(self._procs)
            self._changed.notify_all()
        self.stop(procs, timeout)
