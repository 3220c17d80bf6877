"""What the benches run on and how they watch it: the embedded stack they start (devstack, free ports, a temp
dir), progress lines, and /proc readers for the CPU and memory of the processes under test.

Imports nothing of the project at module level: the order bench's bare worker imports this module too, and
its memory is reported (devstack is imported only by `temp_stack`, in the load generator).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bazaar.settings import Settings
    from devstack.stack import Stack

CLK_TCK = os.sysconf("SC_CLK_TCK")
MACHINE = "machine_busy"  # pseudo-process in CPU readings: the whole machine, for the other-load figure


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------- the stack


@contextlib.contextmanager
def temp_stack(
    prefix: str,
    *,
    keep: bool,
    settings: Settings | None = None,
    only: Iterable[str] | None = None,
    durable: bool = False,
) -> Iterator[Stack]:
    """A devstack `Stack` (not started) on free ports in a fresh temp dir; on exit it is stopped and the
    dir removed, unless `keep` (its logs stay there). `only`: the infra services it may start (all).
    `durable`: storage as `make run` has it (PostgreSQL with fsync, Temporal in a SQLite file), not in memory."""
    from bazaar.settings import Settings
    from devstack.stack import Ports, Stack

    # uvicorn's per-request access log is pumped through this process (devstack's log capture): it would
    # compete with the load generator for the GIL, so the APIs under test do not write one.
    os.environ.setdefault("UVICORN_ACCESS_LOG", "false")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)  # the `postgres` OS user must traverse it when we run as root
    stack = Stack(
        base,
        Ports.free(),
        persistent=False,
        settings=settings if settings else Settings(_env_file=None),
        only=only,
        durable=durable,
    )
    try:
        yield stack
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def start_stack(stack: Stack) -> None:
    """Start everything (no demo data) and point this process's settings at it."""
    from bazaar.settings import get_settings

    stack.start()
    os.environ.update(stack.env)
    get_settings.cache_clear()


# -------------------------------------------------------------------------------- /proc readings


def process_table() -> dict[int, tuple[int, int, float]]:
    """pid -> (parent pid, session id, CPU seconds: utime + stime + cutime + cstime) of every live process."""
    out: dict[int, tuple[int, int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue  # exited meanwhile
        rest = raw[raw.rindex(b")") + 2 :].split()
        # After the command (man 5 proc, 1-based): 4 ppid, 6 session, 14 utime, 15 stime, 16 cutime, 17 cstime.
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        out[int(entry.name)] = (int(rest[1]), int(rest[3]), ticks / CLK_TCK)
    return out


def tree_cpu(table: dict[int, tuple[int, int, float]], root: int) -> float:
    """CPU seconds of a process tree: the root, every process in its session, and all their descendants
    (PostgreSQL backends call setsid(), so only their parent links them to the postmaster). cutime/cstime
    of a live process carry the CPU of its exited, reaped children, so nothing is counted twice."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    members = {pid for pid, (_, sid, _) in table.items() if sid == root}
    if root in table:
        members.add(root)
    todo = list(members)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in members:
                members.add(child)
                todo.append(child)
    return sum(table[pid][2] for pid in members)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class CpuMeter:
    """Named process trees (by root pid) whose CPU is compared before and after a phase."""

    def __init__(self, trees: dict[str, int]) -> None:
        self.trees = trees

    def read(self) -> dict[str, float]:
        table = process_table()
        out = {name: tree_cpu(table, root) for name, root in self.trees.items()}
        out["loadgen"] = own_cpu()
        out[MACHINE] = machine_busy()
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}

    @staticmethod
    def server_total(delta: dict[str, float]) -> float:
        return sum(v for k, v in delta.items() if k not in ("loadgen", MACHINE))

    @staticmethod
    def others(delta: dict[str, float], wall: float) -> dict[str, float]:
        """What ran on the machine besides this bench while it measured (other users, other agents)."""
        other = max(0.0, delta[MACHINE] - CpuMeter.server_total(delta) - delta["loadgen"])
        return {
            "wall_s": round(wall, 2),
            "other_processes_cpu_s": round(other, 2),
            "other_processes_share_of_machine": round(other / (wall * (os.cpu_count() or 1)), 3),
            "load_average": round(os.getloadavg()[0], 2),
        }
