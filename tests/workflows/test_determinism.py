"""Workflows are deterministic (no I/O, clocks or randomness outside Temporal's APIs), and this is checked where it
can be (docs/workflow-versioning.md, "Determinism"):

- the workflow tests' workers run Temporal's strict sandbox (the SDK's default runner), which imports our workflow
  modules afresh for each run and refuses a clock read, randomness or I/O; the production worker runs them
  unsandboxed (`worker.WORKFLOW_RUNNER`), as a sandbox that passes our modules through checks nothing in them;
- every workflow module is read here for the calls and imports no workflow may make, on paths the tests do not run;
- every stored history replays (test_replay.py).
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from tests.support.clock_workflow import ReadsTheClock

ROOT = Path(__file__).resolve().parents[2]
# Calls no workflow may make (their dotted name as written), and modules none may import: Temporal has its own
# (`workflow.now()`, `workflow.random()`, `workflow.uuid4()`, timers, activities).
FORBIDDEN_CALLS = frozenset(
    {
        "datetime.now", "datetime.utcnow", "datetime.today", "date.today", "datetime.datetime.now",
        "uuid.uuid1", "uuid.uuid4", "uuid4", "open", "print", "input",
    }
)  # fmt: skip
FORBIDDEN_MODULES = frozenset(
    {"random", "time", "os", "socket", "threading", "subprocess", "secrets", "httpx", "stripe", "sqlalchemy",
     "psycopg", "requests", "meilisearch"}
)  # fmt: skip
# Test files whose workers run workflows outside the strict sandbox, and why: the production runner's own tests.
OWN_RUNNER = {
    "tests/workflows/test_determinism.py": "shows the two sandboxes apart",
    "tests/workflows/test_update_tracing.py": "the worker's tracing, as production runs it",
    "tests/api/test_telemetry.py": "one request's trace through a worker made like worker.py's",
    "tests/test_worker_queues.py": "replays under a patched `workflow.info`, which a sandbox would not see",
}


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


def nondeterminism(source: str) -> list[str]:
    """What in `source` no workflow may do: each forbidden call and import, with its line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and dotted(node.func) in FORBIDDEN_CALLS:
            found.append(f"line {node.lineno}: {dotted(node.func)}()")
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                modules = [node.module] if node.module and node.level == 0 else []
            found += [
                f"line {node.lineno}: import {m}" for m in modules if m.split(".")[0] in FORBIDDEN_MODULES
            ]
    return found


def test_the_check_finds_what_it_looks_for() -> None:
    source = "import time\nfrom datetime import datetime\ndef f():\n    return datetime.now(), uuid.uuid4()\n"
    assert nondeterminism(source) == ["line 1: import time", "line 4: datetime.now()", "line 4: uuid.uuid4()"]
    assert nondeterminism("def f(w):\n    return w.now(), workflow.uuid4(), workflow.random()\n") == []


def test_no_workflow_module_reads_a_clock_draws_randomness_or_does_io() -> None:
    found = {
        str(path.relative_to(ROOT)): problems
        for path in sorted((ROOT / "workflows").glob("*.py"))
        if (problems := nondeterminism(path.read_text()))
    }
    assert found == {}


def test_workflow_tests_run_their_workers_in_the_strict_sandbox() -> None:
    """A test `Worker` given a runner of its own is one of `OWN_RUNNER`: the others get the SDK's default, the
    strict sandbox that refuses what the production runner would let through."""
    own = set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and any(k.arg == "workflow_runner" for k in node.keywords):
                own.add(str(path.relative_to(ROOT)))
    assert own <= set(OWN_RUNNER), own - set(OWN_RUNNER)


@pytest.mark.integration
async def test_the_strict_sandbox_refuses_a_clock_read_that_one_passing_modules_through_lets_by(
    workflow_env: WorkflowEnvironment,
) -> None:
    passing_through = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
    )
    seen = {}
    for name, runner in (("strict", SandboxedWorkflowRunner()), ("passing through", passing_through)):
        queue = f"clock-{uuid.uuid4().hex[:8]}"
        async with Worker(
            workflow_env.client, task_queue=queue, workflows=[ReadsTheClock], workflow_runner=runner
        ):
            seen[name] = await workflow_env.client.execute_workflow(
                ReadsTheClock.run, id=f"clock-{uuid.uuid4()}", task_queue=queue
            )
    # If a later SDK checks passed-through modules too, worker.WORKFLOW_RUNNER's reason is gone: look again.
    assert seen == {"strict": "refused", "passing through": "allowed"}
